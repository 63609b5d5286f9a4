#!/usr/bin/env bash
# Fuzzes everything that parses outside input (tests/fuzz.rs, bolero on stable Rust): each
# target replays its checked-in corpus (tests/__fuzz__/<target>/corpus/), then runs random
# inputs for the given time.
#   hack/tiers/fuzz.sh                 every target, 60 s each
#   hack/tiers/fuzz.sh 600             every target, 10 minutes each
#   hack/tiers/fuzz.sh 300 node_requests storage_class_structured
# A failure prints the input and BOLERO_RANDOM_SEED=...; rerun with that variable set to
# reproduce it, and add the input to the target's corpus once fixed.
# Ends with "fuzz: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
seconds=${1:-60}
shift || true
filters=("$@")
[[ ${#filters[@]} -gt 0 ]] || filters=(fuzz_)
log=$(mktemp -t fsx-fuzz.XXXXXX)
trap 'rm -f "$log"' EXIT
set +e
BOLERO_RANDOM_TEST_TIME_MS=$((seconds * 1000)) cargo test --test fuzz -- --nocapture "${filters[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
read -r p f < <(cargo_counts "$log") || true
if [[ -z $p ]]; then p=0; f=1; echo "FAILED: the fuzz targets did not run (build error?)"; fi
echo "fuzz: $p passed, $f failed"
[[ $rc -eq 0 && $f -eq 0 ]]
