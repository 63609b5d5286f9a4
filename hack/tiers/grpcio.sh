#!/usr/bin/env bash
# Drives the real driver binary's socket with gRPC clients other than Go's: Python's grpcio
# (gRPC C-core), which sends the socket path as :authority. Installs grpcio into a virtualenv
# cached under ~/.cache with a version stamp. Ends with "python grpcio: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
GRPCIO_VERSION=${GRPCIO_VERSION:-1.85.3}
venv="$HOME/.cache/fsx-csi-driver/python-grpcio-$GRPCIO_VERSION"
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import grpc' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "grpcio==$GRPCIO_VERSION"
fi
cargo build --quiet --bin fsx-csi-driver
work=$(mktemp -d -t fsx-clients.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/kubelet"
target/debug/fsx-csi-driver --mode node --node-id clients-node --kubelet-dir "$work/kubelet" \
  --endpoint "unix://$work/csi.sock" 2>"$work/driver.log" &
pid=$!
if ! wait_for_socket "$work/csi.sock" "$pid" 10; then
  cat "$work/driver.log"
  echo "python grpcio: 0 passed, 1 failed"
  exit 1
fi
"$venv/bin/python" tests/clients/python_grpcio.py "$work/csi.sock"
