#!/usr/bin/env bash
# Benchmarks: print figures for the speed and memory targets (read them; nothing here fails
# on a slow machine). Builds release binaries first.
#   hack/bench.sh              controller and node
#   hack/bench.sh controller   200 concurrent volumes: FSx calls, bind lag, peak RSS
#   hack/bench.sh node         start-up, idle RSS, publish latency, RSS with 200 targets
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
cargo build --release --quiet -p fsx-csi-driver -p fsx-csi-tools
bench=target/release/csi-bench
case "$what" in
  controller) "$bench" controller ;;
  node) "$bench" node ;;
  all) "$bench" controller; echo; "$bench" node ;;
  *) echo "usage: hack/bench.sh [controller|node]"; exit 2 ;;
esac
