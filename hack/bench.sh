#!/usr/bin/env bash
# Benchmarks: print figures for the speed and memory targets (read them; nothing here fails
# on a slow machine). Builds release binaries first, the driver as the image ships it: a
# static musl binary (installs the musl target and musl-gcc if missing).
#   hack/bench.sh              controller and node
#   hack/bench.sh controller   200 concurrent volumes: FSx calls, bind lag, peak RSS
#   hack/bench.sh cadence      the adaptive poll at the defaults: creations, growths and backups
#                              of 3 and 10 minutes, 1/50/200 creations at once (about 31 min), then
#                              creations up to 20 s longer at random (FSx's spread)
#   hack/bench.sh node         start-up, idle RSS, publish latency, RSS with 200 targets
#   hack/bench.sh chaos        100 volumes created and deleted under SIGKILLs, throttling and 5xx
#   hack/bench.sh taint        the node plugin removing the agent-not-ready taint on a real
#                              apiserver (hack/cluster.sh): delay after registration, RSS
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
arch=$(uname -m)
musl=$arch-unknown-linux-musl
rustup target list --installed | grep -qx "$musl" || rustup target add "$musl"
command -v musl-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null; }
cargo build --release --quiet -p fsx-csi-driver -p fsx-csi-tools
env "CC_${arch}_unknown_linux_musl=musl-gcc" cargo build --release --quiet --target "$musl" -p fsx-csi-driver
# The shipped driver beside the test tools csi-bench runs from the same directory.
shipped=target/bench-shipped
mkdir -p "$shipped"
cp "target/$musl/release/fsx-csi-driver" "$shipped/"
cp target/release/csi-sanity-harness "$shipped/"
echo "fsx-csi-driver as shipped (static, $musl): $(stat -c %s "$shipped/fsx-csi-driver") bytes;" \
  "the glibc build: $(stat -c %s target/release/fsx-csi-driver) bytes"
bench() { target/release/csi-bench --bin-dir "$shipped" "$@"; }
chaos() { CHAOS_PROFILE=release bash hack/tiers/chaos.sh --volumes 100 --kill-every-ms 4000; }
taint() {
  CLUSTER_DIR=$(mktemp -d -t fsx-bench-cluster.XXXXXX)
  export CLUSTER_DIR
  trap 'bash hack/cluster.sh down >/dev/null 2>&1 || true' EXIT
  bash hack/cluster.sh up --no-node kustomize >/dev/null
  FSX_CSI_DRIVER_BIN=$PWD/$shipped/fsx-csi-driver python3 tests/cluster/scenarios.py --only taint
}
case "$what" in
  controller) bench controller ;;
  node) bench node ;;
  cadence) bench cadence; echo; bench cadence --jitter-s 20 --volumes 1,50 ;;
  chaos) chaos ;;
  taint) taint ;;
  all) bench controller; echo; bench node; echo; chaos; echo; taint; echo; bench cadence ;;
  *) echo "usage: hack/bench.sh [controller|node|chaos|taint|cadence]"; exit 2 ;;
esac
