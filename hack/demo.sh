#!/usr/bin/env bash
# The driver's main job, end to end, on the bundled FSx emulator:
# CreateVolume (3000 GiB → 3600 GiB) → wait → ControllerGetVolume → NodeStage/Publish
# → NodeUnpublish/Unstage → DeleteVolume → FSx API calls by operation.
#
# Needs only the repo and cargo. As root, the node steps run the real mount(2) path in a
# private mount namespace; without a Lustre client the kernel answers ENODEV, which the
# demo shows. Cleans up its processes and temp files on exit, failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/common.sh
source hack/lib/common.sh

CREATE_DELAY_MS=${CREATE_DELAY_MS:-8000}

# Only the three programs the demo runs (each release binary is linked with fat LTO).
echo "==> building (release): the driver, the FSx emulator and the demo client"
cargo build --release --quiet -p fsx-csi-driver --bin fsx-csi-driver -p fsx-emulator --bin fsx-emulator \
  -p fsx-csi-tools --bin csi-demo
bin=target/release

tmp=$(mktemp -d -t fsx-demo.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $rc -ne 0 && -f "$tmp/driver.log" ]]; then
    echo "---- last lines of the driver log ----"; tail -n 30 "$tmp/driver.log"
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

echo "==> starting the FSx emulator (creations take $((CREATE_DELAY_MS / 1000)) s)"
"$bin/fsx-emulator" --create-delay-ms "$CREATE_DELAY_MS" --delete-delay-ms 2000 >"$tmp/emulator.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$tmp/emulator.out" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$tmp/emulator.out")
[[ -n "$endpoint" ]] || { echo "emulator did not start"; cat "$tmp/emulator.out"; exit 1; }
echo "    $endpoint"

export AWS_ENDPOINT_URL_FSX="$endpoint" AWS_ENDPOINT_URL_EC2="$endpoint" AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret
socket="$tmp/csi.sock"
kubelet="$tmp/kubelet"
mkdir -p "$kubelet"
driver_args=(--mode all --endpoint "unix://$socket" --node-id demo-node --kubelet-dir "$kubelet" --poll-interval 1s)
demo_args=(--socket "$socket" --emulator "$endpoint" --kubelet-dir "$kubelet")

if [[ $(id -u) -eq 0 ]] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
  # A private mount namespace keeps every mount away from this machine, and a private
  # /etc/hosts lets the file system's DNS name resolve to 127.0.0.1 once it is known.
  cp /etc/hosts "$tmp/hosts"
  echo "==> starting fsx-csi-driver --mode all (private mount namespace)"
  unshare -m --propagation private -- sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' \
    "$tmp/hosts" "$bin/fsx-csi-driver" "${driver_args[@]}" 2>"$tmp/driver.log" &
  pids+=($!)
  demo_args+=(--hosts-file "$tmp/hosts")
else
  echo "==> starting fsx-csi-driver --mode all (not root: the node steps will be skipped)"
  "$bin/fsx-csi-driver" "${driver_args[@]}" 2>"$tmp/driver.log" &
  pids+=($!)
fi
wait_for_socket "$socket" "${pids[-1]}" 10 || { echo "driver did not start"; cat "$tmp/driver.log"; exit 1; }

# The client runs in the background so that Ctrl-C reaches the trap at once (bash defers
# traps until a foreground command ends), and the trap stops it with everything else.
"$bin/csi-demo" "${demo_args[@]}" &
client=$!
pids+=("$client")
wait "$client"

echo
echo "==> the mount(2) call, as the driver logged it"
grep -o 'call=.*' "$tmp/driver.log" | head -n 1 | sed 's/^/    /' || true
