#!/usr/bin/env bash
# A Kubernetes control plane on 127.0.0.1 with this driver, the FSx emulator and the real CSI
# sidecars, without containers or AWS, for trying the manifests and examples by hand:
#
#   hack/cluster.sh up [kustomize|helm]   build (cached), start, install; prints KUBECONFIG
#   hack/cluster.sh down                  stop everything and remove the state
#   hack/cluster.sh status                what runs, and where the logs are
#
# then, for example:
#   export KUBECONFIG=/tmp/fsx-csi-cluster/admin.kubeconfig
#   kubectl apply -f deploy/examples/dynamic-provisioning/   # subnet ids are not checked
#   kubectl get pvc -w
#
# No kubelet runs here, so pods stay Pending; claims bind, grow and are deleted for real
# through the driver. State lives in $CLUSTER_DIR (default /tmp/fsx-csi-cluster). Root lets
# the two controller replicas have their own hostnames (leader election); without root only
# one runs. Internal (used by tests): `replica N start|kill|stop`, `reinstall PATH`, `uninstall`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/common.sh
source hack/lib/common.sh
# shellcheck source=lib/cluster.sh
source hack/lib/cluster.sh

replicas() { if [[ $(id -u) -eq 0 ]]; then echo 0 1; else echo 0; fi; }

case ${1:-} in
  up)
    path=${2:-kustomize}
    if [[ -d $CLUSTER_DIR/pids ]] && compgen -G "$CLUSTER_DIR/pids/*.pid" >/dev/null; then
      echo "a cluster is already up in $CLUSTER_DIR (hack/cluster.sh down first)" >&2
      exit 1
    fi
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR"
    CLUSTER_BIN=$(bash hack/lib/build-control-plane.sh | tail -n 1)
    echo "$CLUSTER_BIN" >"$CLUSTER_DIR/bin-dir"
    cargo build --quiet -p fsx-csi-driver -p fsx-emulator
    python3 -c 'import yaml' 2>/dev/null || pip install -q pyyaml
    cluster_log "control plane"
    cluster_control_plane
    cluster_log "FSx emulator"
    cluster_emulator
    cluster_log "installing ($path)"
    cluster_install "$path"
    echo "$path" >"$CLUSTER_DIR/install-path"
    for i in $(replicas); do
      cluster_log "controller replica $i"
      cluster_replica "$i"
    done
    echo "export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig"
    echo "kubectl=$CLUSTER_BIN/kubectl"
    ;;
  down)
    cluster_down
    rm -rf "$CLUSTER_DIR"
    ;;
  status)
    for f in "$CLUSTER_DIR"/pids/*.pid; do
      [[ -e $f ]] || { echo "nothing runs"; exit 0; }
      n=$(basename "$f" .pid)
      if kill -0 "$(cat "$f")" 2>/dev/null; then s=running; else s=exited; fi
      printf '%-26s %-8s %s\n' "$n" "$s" "$CLUSTER_DIR/logs/$n.log"
    done
    ;;
  replica)
    CLUSTER_BIN=$(cat "$CLUSTER_DIR/bin-dir")
    case ${3:-} in
      start) cluster_replica "$2" ;;
      kill) cluster_stop_replica "$2" kill ;;
      stop) cluster_stop_replica "$2" ;;
      *) echo "usage: hack/cluster.sh replica N start|kill|stop" >&2; exit 2 ;;
    esac
    ;;
  uninstall)
    CLUSTER_BIN=$(cat "$CLUSTER_DIR/bin-dir")
    for i in $(replicas); do cluster_stop_replica "$i"; done
    cluster_uninstall
    ;;
  reinstall)
    CLUSTER_BIN=$(cat "$CLUSTER_DIR/bin-dir")
    for i in $(replicas); do cluster_stop_replica "$i"; done
    cluster_uninstall
    cluster_install "${2:-kustomize}"
    echo "${2:-kustomize}" >"$CLUSTER_DIR/install-path"
    for i in $(replicas); do cluster_replica "$i"; done
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
