#!/usr/bin/env bash
# A Kubernetes cluster on this machine with this driver, the FSx emulator and the real CSI
# sidecars, without AWS, for trying the manifests and examples by hand:
#
#   hack/cluster.sh up [kustomize|helm]   build (cached), start, install; prints KUBECONFIG
#   hack/cluster.sh down                  stop everything and remove the state
#   hack/cluster.sh status                what runs, and where the logs are
#
# then, for example:
#   export KUBECONFIG=/tmp/fsx-csi-cluster/kubeconfig
#   kubectl apply -f deploy/examples/dynamic-provisioning/   # subnet ids are not checked
#   kubectl get pvc,pod -w
#
# As root, `up` runs a real node: the node tier's kubelet, containerd and runc in private
# mount, network and PID namespaces (hack/lib/node.sh; Lustre stood in by the test-only
# feature lustre-stand-in), with the driver's StatefulSet and DaemonSet as pods, so pods run
# and write their files; the API server is reached from the host's 127.0.0.1 through a
# forwarder. Without root (or with `up --no-node`), only the control plane runs, with the
# driver and the sidecars as processes: claims bind, grow and are deleted for real, and pods
# stay Pending. Both install with subdirectory volumes enabled (the kustomize component, the
# chart value), the controller mounting its stood-in file systems (feature lustre-stand-in) in
# a mount namespace of its own, which needs root: see deploy/examples/subdirectory/README.md.
# State lives in $CLUSTER_DIR (default /tmp/fsx-csi-cluster). Internal (used by
# tests, on the control plane alone): `replica N start|kill|stop`, `reinstall PATH`,
# `uninstall`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/common.sh
source hack/lib/common.sh
# shellcheck source=lib/cluster.sh
source hack/lib/cluster.sh

replicas() { if [[ $(id -u) -eq 0 ]]; then echo 0 1; else echo 0; fi; }

# The sandbox with a node. Host-side processes (the namespaces' holder and the API forwarder)
# keep their pids and logs in $CLUSTER_DIR/host: the pid files in $CLUSTER_DIR/pids are the
# namespace's own numbers, which mean other processes on the host.
sandbox_up() { # kustomize|helm
  # shellcheck source=lib/node.sh
  source hack/lib/node.sh
  node_build
  local host="$CLUSTER_DIR/host" port
  mkdir -p "$host"
  echo "$CLUSTER_BIN" >"$CLUSTER_DIR/bin-dir"
  echo "$NODE_BIN" >"$CLUSTER_DIR/node-bin-dir"
  port=$(cluster_free_port)
  node_cgroups >"$host/cgroups-before"
  cluster_log "a node (kubelet, containerd, runc) in private namespaces, the control plane, the driver ($1)"
  setsid unshare --mount --net --pid --fork --mount-proc --propagation private \
    bash hack/cluster.sh --sandbox-inside "$1" >"$host/sandbox.log" 2>&1 </dev/null &
  echo $! >"$host/sandbox.pid"
  setsid python3 hack/lib/forward.py "tcp:127.0.0.1:$port" "unix:$CLUSTER_DIR/api.sock" >"$host/api-forward.log" 2>&1 </dev/null &
  echo $! >"$host/api-forward.pid"
  local deadline=$((SECONDS + 900))
  until [[ -e $CLUSTER_DIR/ready ]]; do
    if ! kill -0 "$(cat "$host/sandbox.pid")" 2>/dev/null || ((SECONDS > deadline)); then
      echo "the sandbox did not come up; the end of $host/sandbox.log:" >&2
      tail -n 30 "$host/sandbox.log" >&2
      exit 1
    fi
    sleep 1
  done
  sed "s|server: https://127.0.0.1:[0-9]*|server: https://127.0.0.1:$port|" "$CLUSTER_DIR/admin.kubeconfig" >"$CLUSTER_DIR/kubeconfig"
  echo "export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
  echo "kubectl=$CLUSTER_BIN/kubectl"
}

# Inside the namespaces: the node and the install, then wait until told to stop.
sandbox_inside() { # kustomize|helm
  # shellcheck source=lib/node.sh
  source hack/lib/node.sh
  CLUSTER_BIN=$(cat "$CLUSTER_DIR/bin-dir")
  NODE_BIN=$(cat "$CLUSTER_DIR/node-bin-dir")
  export CLUSTER_BIN NODE_BIN PATH="$NODE_BIN:$PATH"
  trap 'node_down; cluster_down' EXIT
  trap 'exit 0' TERM INT
  node_up
  cluster_spawn api-inside python3 hack/lib/forward.py "unix:$CLUSTER_DIR/api.sock" \
    "tcp:127.0.0.1:$(cat "$CLUSTER_DIR/ports/apiserver")"
  node_install "$1"
  echo "$1" >"$CLUSTER_DIR/install-path"
  touch "$CLUSTER_DIR/ready"
  echo "up: the node is Ready and the driver installed ($1)"
  sleep infinity &
  wait $!
}

sandbox_down() {
  local host="$CLUSTER_DIR/host" pid init
  if [[ -f $host/sandbox.pid ]]; then
    pid=$(cat "$host/sandbox.pid")
    # The namespace's init (the inner script) stops the kubelet, the containers and the rest;
    # everything left in the PID namespace dies with it.
    init=$(pgrep -P "$pid" | head -n 1 || true)
    [[ -n $init ]] && kill -TERM "$init" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    [[ -n $init ]] && kill -KILL "$init" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ -f $host/api-forward.pid ]]; then kill "$(cat "$host/api-forward.pid")" 2>/dev/null || true; fi
  # shellcheck source=lib/node.sh
  source hack/lib/node.sh
  if [[ -f $host/cgroups-before ]]; then node_cgroups_cleanup "$host/cgroups-before"; fi
}

case ${1:-} in
  up)
    shift
    node=1
    if [[ ${1:-} == --no-node ]]; then node=0; shift; fi
    path=${1:-kustomize}
    if compgen -G "$CLUSTER_DIR/pids/*.pid" >/dev/null || compgen -G "$CLUSTER_DIR/host/*.pid" >/dev/null; then
      echo "a cluster is already up in $CLUSTER_DIR (hack/cluster.sh down first)" >&2
      exit 1
    fi
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR"
    if ((node)) && [[ $(id -u) -ne 0 ]]; then
      cluster_log "not root: the control plane alone (a node needs root: mounts, namespaces, runc)"
      node=0
    fi
    if ((node)); then
      sandbox_up "$path"
      exit
    fi
    CLUSTER_BIN=$(bash hack/lib/build-control-plane.sh | tail -n 1)
    echo "$CLUSTER_BIN" >"$CLUSTER_DIR/bin-dir"
    # The driver with the Lustre stand-in: subdirectory volumes mount their file systems.
    cargo build --quiet -p fsx-csi-driver -p fsx-emulator --features fsx-csi-driver/lustre-stand-in
    python3 -c 'import yaml' 2>/dev/null || pip install -q pyyaml
    cluster_log "control plane"
    cluster_control_plane
    cluster_scheduler
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
    if [[ -d $CLUSTER_DIR/host ]]; then sandbox_down; else cluster_down; fi
    rm -rf "$CLUSTER_DIR"
    ;;
  --sandbox-inside)
    sandbox_inside "$2"
    ;;
  status)
    if [[ -d $CLUSTER_DIR/host ]]; then
      for f in "$CLUSTER_DIR"/host/*.pid; do
        n=$(basename "$f" .pid)
        if kill -0 "$(cat "$f")" 2>/dev/null; then s=running; else s=exited; fi
        printf '%-26s %-8s %s\n' "$n" "$s" "$CLUSTER_DIR/host/$n.log"
      done
      echo "inside the node's namespaces: logs in $CLUSTER_DIR/logs"
      exit 0
    fi
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
