#!/usr/bin/env bash
# Side by side with the Go driver (kubernetes-sigs/aws-fsx-csi-driver): builds it from the Go
# module proxy (hack/lib/build-go-driver.sh, cached) and this driver as the image ships it
# (static musl), then runs the same work on both binaries over their sockets against the same
# FSx emulator and prints both columns, their ratio, and how the cost grows with N.
#
#   hack/compare.sh                         N = 50, 200 and 1000, an account of 10,000 file systems
#   hack/compare.sh --volumes 10,50,100     other points on the curve
#
# Figures are printed, not checked: times on a loaded machine are noisy, memory is stable.
set -euo pipefail
cd "$(dirname "$0")/.."
go_bin=$(bash hack/lib/build-go-driver.sh | tail -n 1)
arch=$(uname -m)
musl=$arch-unknown-linux-musl
rustup target list --installed | grep -qx "$musl" || rustup target add "$musl"
command -v musl-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null; }
cargo build --release --quiet -p fsx-csi-tools --bin csi-compare --bin csi-sanity-harness
env "CC_${arch}_unknown_linux_musl=musl-gcc" cargo build --release --quiet --target "$musl" -p fsx-csi-driver
echo "$(date -u +%F), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), $(uname -sr);" \
  "ours: static musl release build; Go: $("$go_bin" --version 2>&1 | tr -d " \n" | cut -c1-160 || true)"
echo
target/release/csi-compare --ours "target/$musl/release/fsx-csi-driver" --go "$go_bin" \
  --harness target/release/csi-sanity-harness "$@"
