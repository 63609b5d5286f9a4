#!/usr/bin/env bash
# The chaos test (tests/tools/src/bin/csi-chaos.rs): concurrent creations, then deletions,
# against the FSx emulator under 30% throttling and 10% HTTP 500s, with the controller
# SIGKILLed and restarted every few seconds. Passes when every volume has exactly one file
# system and none is left after the deletions; prints the figures.
#   hack/tiers/chaos.sh                  the CI size (20 volumes)
#   hack/tiers/chaos.sh --volumes 200    bigger (hack/bench.sh runs 100)
# Ends with "chaos: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
profile=${CHAOS_PROFILE:-debug}
if [[ $profile == release ]]; then
  cargo build --quiet --release -p fsx-csi-driver -p fsx-csi-tools
else
  cargo build --quiet -p fsx-csi-driver -p fsx-csi-tools
fi
exec "target/$profile/csi-chaos" --driver "target/$profile/fsx-csi-driver" "$@"
