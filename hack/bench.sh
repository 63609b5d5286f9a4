#!/usr/bin/env bash
# Benchmarks: print figures for the speed and memory targets (read them; nothing here fails
# on a slow machine). Builds release binaries first.
#   hack/bench.sh              controller and node
#   hack/bench.sh controller   200 concurrent volumes: FSx calls, bind lag, peak RSS
#   hack/bench.sh node         start-up, idle RSS, publish latency, RSS with 200 targets
#   hack/bench.sh chaos        100 volumes created and deleted under SIGKILLs, throttling and 5xx
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
cargo build --release --quiet -p fsx-csi-driver -p fsx-csi-tools
bench=target/release/csi-bench
case "$what" in
  controller) "$bench" controller ;;
  node) "$bench" node ;;
  chaos) CHAOS_PROFILE=release bash hack/chaos.sh --volumes 100 --kill-every-ms 4000 ;;
  all) "$bench" controller; echo; "$bench" node; echo; CHAOS_PROFILE=release bash hack/chaos.sh --volumes 100 --kill-every-ms 4000 ;;
  *) echo "usage: hack/bench.sh [controller|node|chaos]"; exit 2 ;;
esac
