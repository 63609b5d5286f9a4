#!/usr/bin/env bash
# The abuse tier: the release driver (node and controller) in a memory cgroup at the chart's
# limits (64 MiB, 128 MiB) against the attacks a peer on its sockets can make (an HPACK bomb,
# 2000 idle connections, unfinished header blocks, 20,000 streams on one connection, held
# 4 MiB bodies, CONTINUATION and reset floods, file-descriptor exhaustion, a flood of the
# metrics port). After each: the driver is alive, its RSS under the limit, and a fresh client's
# GetPluginInfo answers within a second. Prints each figure (tests/tools/src/bin/csi-abuse.rs).
#   hack/tiers/abuse.sh                         every attack, both modes
#   hack/tiers/abuse.sh --modes node --only hpack-bomb,metrics-flood
# Needs root (the memory cgroup). Ends with "abuse: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
if [[ $(id -u) -ne 0 ]]; then
  echo "the abuse tier needs root (it creates a memory cgroup); CI runs as root"
  echo "abuse: 0 passed, 1 failed"
  exit 1
fi
cargo build --release --quiet -p fsx-csi-driver -p fsx-csi-tools
target/release/csi-abuse --bin-dir target/release "$@"
