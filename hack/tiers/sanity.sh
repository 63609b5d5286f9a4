#!/usr/bin/env bash
# csi-sanity (kubernetes-csi/csi-test v5.4.0) against the driver's real services over a real
# socket: the controller on the FSx emulator, the node on the real mount(2) path with tmpfs
# standing in for Lustre, in a private mount namespace (the harness makes it; needs root).
#
# Ends with "csi-sanity: N passed, M failed, K skipped". Skips are allowed only for
# capabilities the driver does not advertise; csi-sanity skips those specs itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
root=$ROOT
GIB=$((1 << 30))

install_go_tool csi-sanity "$CSI_SANITY_VERSION" github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity

if [[ $(id -u) -ne 0 ]]; then
  echo "csi-sanity needs root (the node specs mount in a private mount namespace); CI runs as root."
  echo "csi-sanity: 0 passed, 0 failed, 0 skipped (not run: not root)"
  exit 0
fi

echo "==> building the sanity harness"
cargo build --quiet -p fsx-csi-tools --bin csi-sanity-harness
harness="$root/target/debug/csi-sanity-harness"

tmp=$(mktemp -d -t fsx-sanity.XXXXXX)
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kubelet="$tmp/kubelet"
# csi-sanity creates its mount and staging directories with mkdir, not mkdir -p.
mkdir -p "$kubelet/pods/sanity" "$kubelet/plugins/sanity"
# PERSISTENT_2, so that the snapshot specs run (FSx backs up persistent file systems only).
cat >"$tmp/params.yaml" <<YAML
subnetId: subnet-0123456789abcdef0
securityGroupIds: sg-0123456789abcdef0
deploymentType: PERSISTENT_2
perUnitStorageThroughput: "125"
dataCompressionType: LZ4
YAML
cat >"$tmp/snapshot-params.yaml" <<YAML
extraTags: suite=csi-sanity
YAML
# A VolumeAttributesClass that raises throughput and moves the maintenance window.
cat >"$tmp/mutable-params.yaml" <<YAML
perUnitStorageThroughput: "250"
weeklyMaintenanceStartTime: "6:02:00"
YAML

"$harness" --socket "$tmp/csi.sock" --kubelet-dir "$kubelet" >"$tmp/harness.out" 2>"$tmp/harness.log" &
pid=$!
wait_for_socket "$tmp/csi.sock" "$pid" 10 || { echo "harness did not start"; cat "$tmp/harness.log"; exit 1; }

# Sizes FSx can create: PERSISTENT_2 takes 1200, 2400, then multiples of 2400 GiB, so the
# specs that compare requested and returned sizes use valid ones.
set +e
"$root/bin/csi-sanity" \
  --csi.endpoint "unix://$tmp/csi.sock" \
  --csi.mountdir "$kubelet/pods/sanity/mount" \
  --csi.stagingdir "$kubelet/plugins/sanity/staging" \
  --csi.testvolumeparameters "$tmp/params.yaml" \
  --csi.testsnapshotparameters "$tmp/snapshot-params.yaml" \
  --csi.testvolumemutableparameters "$tmp/mutable-params.yaml" \
  --csi.testvolumesize $((1200 * GIB)) \
  --csi.testvolumeexpandsize $((2400 * GIB)) \
  --ginkgo.no-color --ginkgo.v 2>&1 | tee "$tmp/sanity.out"
rc=${PIPESTATUS[0]}
set -e

summary=$(grep -E '^(SUCCESS|FAIL)! -- ' "$tmp/sanity.out" | tail -n 1)
passed=$(sed -n 's/.*-- \([0-9]*\) Passed.*/\1/p' <<<"$summary")
failed=$(sed -n 's/.* \([0-9]*\) Failed.*/\1/p' <<<"$summary")
skipped=$(sed -n 's/.* \([0-9]*\) Skipped.*/\1/p' <<<"$summary")
if [[ -z "$passed" ]]; then
  echo "---- harness log ----"; tail -n 40 "$tmp/harness.log"
  echo "csi-sanity: 0 passed, 1 failed, 0 skipped (no summary; exit $rc)"
  exit 1
fi
if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi
echo "csi-sanity: $passed passed, $failed failed, $skipped skipped"
[[ $rc -eq 0 && $failed -eq 0 ]]
