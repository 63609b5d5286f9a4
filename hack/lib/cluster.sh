# A Kubernetes control plane on 127.0.0.1 without containers, with the driver, the FSx
# emulator and the real CSI sidecars; sourced by hack/cluster.sh (and through it the
# control-plane tier) and hack/tiers/chart-upgrades.sh, after hack/lib/common.sh.
#
# Knobs for the node tier (hack/tiers/node.sh), which runs this in its own network namespace:
# CLUSTER_API_BIND / CLUSTER_API_ADVERTISE / CLUSTER_API_SANS (the API server's address and
# extra certificate names), CLUSTER_EXTRA_CONTROLLERS (more kube-controller-manager
# controllers), CLUSTER_EMULATOR_ADDRESS (where the FSx emulator listens).
#
# Layout under $CLUSTER_DIR: pki/ (a CA, the apiserver's serving certificate, client
# certificates, the service-account key), *.kubeconfig, logs/, pids/, ports, rendered.yaml (the
# manifests applied). No kubelet runs here: pods stay Pending, claims and volumes bind.
#
# The sidecars run as the controller's service account (a token from the TokenRequest API)
# with their arguments read from the applied StatefulSet, so a missing RBAC verb or a flag a
# sidecar no longer takes fails for real. Only four things are added: --kubeconfig, the
# socket path, free ports for the metrics endpoints (two replicas share the host), and
# shorter leader-election timings (so a leader change takes seconds). Each controller replica
# (driver, provisioner, resizer, snapshotter) runs in its own UTS namespace with the hostname
# of its pod, since the sidecars take their leader-election identity from it; that needs root,
# as CI has. The snapshot-controller and the VolumeSnapshot CRDs run as a cluster's add-on.

CLUSTER_DIR=${CLUSTER_DIR:-/tmp/fsx-csi-cluster}
CLUSTER_NAMESPACE=kube-system
cluster_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

cluster_log() { printf '==> %s\n' "$*" >&2; }

# Prints a free TCP port on 127.0.0.1.
cluster_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts a command in the background in its own session, recording its pid.
cluster_spawn() { # name command...
  local name=$1
  shift
  mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/pids"
  setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/$name.pid"
}

# Stops a spawned process (and its session): SIGTERM, or SIGKILL with "kill".
cluster_stop() { # name [kill]
  local f="$CLUSTER_DIR/pids/$1.pid" pid sig=TERM
  [[ ${2:-} == kill ]] && sig=KILL
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$f"
}

# Waits until a command succeeds, or fails after $1 seconds with the named log.
cluster_wait() { # seconds what log command...
  local seconds=$1 what=$2 log=$3 deadline
  shift 3
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out waiting for $what; the end of $log:" >&2
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

cluster_pki() {
  local p="$CLUSTER_DIR/pki"
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=fsx-test-ca" 2>/dev/null
    cert() { # name subject [san]
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      if [[ -n ${3:-} ]]; then printf 'subjectAltName=%s\n' "$3" >"$1.ext"; else : >"$1.ext"; fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
    }
    cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc${CLUSTER_API_SANS:+,$CLUSTER_API_SANS}"
    cert admin "/CN=admin/O=system:masters"
    cert controller-manager "/CN=system:kube-controller-manager"
    cert scheduler "/CN=system:kube-scheduler"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

cluster_kubeconfig() { # file user-args...
  local file=$1
  shift
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: fsx-test
    cluster:
      server: https://127.0.0.1:$(cat "$CLUSTER_DIR/ports/apiserver")
      certificate-authority: $CLUSTER_DIR/pki/ca.crt
users:
  - name: user
    user:
$(printf '      %s\n' "$@")
contexts:
  - name: fsx-test
    context: {cluster: fsx-test, user: user}
current-context: fsx-test
EOF
}

kctl() { "$CLUSTER_BIN/kubectl" --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" "$@"; }

# Starts kube-scheduler (the control plane alone: WaitForFirstConsumer claims of pods on
# Node objects, for zone-aware placement; the node tier starts its own).
cluster_scheduler() {
  local p="$CLUSTER_DIR/pki"
  cluster_kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" "client-certificate: $p/scheduler.crt" "client-key: $p/scheduler.key"
  cluster_free_port >"$CLUSTER_DIR/ports/scheduler"
  cluster_spawn kube-scheduler "$CLUSTER_BIN/kube-scheduler" --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(cat "$CLUSTER_DIR/ports/scheduler")" --leader-elect=false --v=1
}

# Starts etcd, kube-apiserver and kube-controller-manager; waits until the API answers.
cluster_control_plane() {
  mkdir -p "$CLUSTER_DIR/ports"
  for p in etcd etcd-peer apiserver controller-manager emulator; do cluster_free_port >"$CLUSTER_DIR/ports/$p"; done
  local etcd_port api_port
  etcd_port=$(cat "$CLUSTER_DIR/ports/etcd")
  api_port=$(cat "$CLUSTER_DIR/ports/apiserver")
  cluster_pki
  cluster_spawn etcd "$CLUSTER_BIN/etcd" --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$(cat "$CLUSTER_DIR/ports/etcd-peer")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(cat "$CLUSTER_DIR/ports/etcd-peer")" \
    --initial-cluster "default=http://127.0.0.1:$(cat "$CLUSTER_DIR/ports/etcd-peer")" \
    --quota-backend-bytes 1073741824 --log-level warn
  local p="$CLUSTER_DIR/pki"
  cluster_spawn kube-apiserver "$CLUSTER_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "${CLUSTER_API_BIND:-127.0.0.1}" --advertise-address "${CLUSTER_API_ADVERTISE:-127.0.0.1}" \
    --secure-port "$api_port" --enable-admission-plugins NodeRestriction \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --endpoint-reconciler-type none --allow-privileged=true \
    --service-cluster-ip-range 10.96.0.0/24 --profiling=false --v=1 \
    --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
    --kubelet-preferred-address-types InternalIP
  cluster_kubeconfig "$CLUSTER_DIR/admin.kubeconfig" "client-certificate: $p/admin.crt" "client-key: $p/admin.key"
  cluster_kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" "client-certificate: $p/controller-manager.crt" \
    "client-key: $p/controller-manager.key"
  cluster_wait 120 "kube-apiserver" "$CLUSTER_DIR/logs/kube-apiserver.log" kctl get --raw /readyz
  # Without the PV controller the provisioner does nothing (it sets the storage-provisioner
  # annotation); without the PVC and PV protection controllers their finalizers block deletion.
  cluster_spawn kube-controller-manager "$CLUSTER_BIN/kube-controller-manager" \
    --kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(cat "$CLUSTER_DIR/ports/controller-manager")" \
    --controllers persistentvolume-binder,persistentvolume-expander,pvc-protection,pv-protection,statefulset,deployment,replicaset,serviceaccount${CLUSTER_EXTRA_CONTROLLERS:+,$CLUSTER_EXTRA_CONTROLLERS} \
    --root-ca-file "$p/ca.crt" \
    --leader-elect=false --use-service-account-credentials=true --v=1
  cluster_wait 60 "the default service account" "$CLUSTER_DIR/logs/kube-controller-manager.log" \
    kctl -n default get serviceaccount default
  # The VolumeSnapshot CRDs and the snapshot-controller of the release the manifests pin: the
  # cluster's part of snapshots, as the EKS add-on installs it (with the admin's rights).
  kctl apply -f "$(dirname "$CLUSTER_BIN")/crd/snapshot-crds.yaml" >"$CLUSTER_DIR/logs/crds.log"
  # Retried: kubectl wait fails at once (rather than waits) on a CRD whose status has no
  # conditions yet.
  cluster_wait 60 "the VolumeSnapshot CRDs" "$CLUSTER_DIR/logs/crds.log" \
    kctl wait --for condition=established --timeout=10s crd/volumesnapshots.snapshot.storage.k8s.io \
    crd/volumesnapshotcontents.snapshot.storage.k8s.io crd/volumesnapshotclasses.snapshot.storage.k8s.io
  cluster_spawn snapshot-controller "$CLUSTER_BIN/snapshot-controller" \
    --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" --leader-election=false --v=2
}

# Renders the manifests of an install path: kustomize (the stable overlay) or helm, with
# subdirectory volumes enabled as a user enables them (the component, the chart value), so
# that subdirectory StorageClasses can be tried here.
cluster_render() { # kustomize|helm output
  case $1 in
    kustomize)
      local k="$CLUSTER_DIR/kustomize"
      mkdir -p "$k"
      # kustomize takes relative paths only.
      local rel
      rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$cluster_root/deploy/kubernetes" "$k")
      printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/overlays/stable\ncomponents:\n  - %s/components/subdirectory\n' \
        "$rel" "$rel" >"$k/kustomization.yaml"
      kctl kustomize "$k" >"$2"
      ;;
    helm)
      # Rendered for the server's version (helm built from source would assume 1.20).
      local server
      server=$(kctl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
      # With the metrics endpoints on, as an operator who scrapes them runs it.
      install_go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
      "$ROOT/bin/helm" template fsx "$cluster_root/deploy/helm/aws-fsx-csi-driver" \
        --namespace "$CLUSTER_NAMESPACE" --kube-version "$server" \
        --set controller.metrics.enabled=true --set node.metrics.enabled=true \
        --set controller.subdirectoryVolumes.enabled=true >"$2"
      ;;
    *) echo "unknown install path $1" >&2; return 1 ;;
  esac
}

# Applies an install path's manifests; the controller's service account token and
# kubeconfig are made for the sidecars (and the token file for the driver's events).
cluster_install() { # kustomize|helm
  cluster_render "$1" "$CLUSTER_DIR/rendered.yaml"
  kctl apply -f "$CLUSTER_DIR/rendered.yaml" >"$CLUSTER_DIR/logs/apply.log"
  local sa token
  sa=$(python3 "$cluster_root/hack/lib/manifests.py" service-account "$CLUSTER_DIR/rendered.yaml")
  echo "$sa" >"$CLUSTER_DIR/service-account"
  token=$(kctl -n "$CLUSTER_NAMESPACE" create token "$sa" --duration 24h)
  cluster_kubeconfig "$CLUSTER_DIR/controller.kubeconfig" "token: $token"
  # The driver reads the same token as a file, as it reads its projected token in the pod.
  (umask 077 && printf '%s' "$token" >"$CLUSTER_DIR/controller.token")
}

# Removes what cluster_install applied.
cluster_uninstall() {
  [[ -f $CLUSTER_DIR/rendered.yaml ]] || return 0
  kctl delete -f "$CLUSTER_DIR/rendered.yaml" --ignore-not-found --timeout=60s >>"$CLUSTER_DIR/logs/apply.log" 2>&1 || true
}

# Starts the FSx emulator binary.
cluster_emulator() {
  local address=${CLUSTER_EMULATOR_ADDRESS:-127.0.0.1}
  cluster_spawn fsx-emulator "$cluster_root/target/debug/fsx-emulator" --port "$(cat "$CLUSTER_DIR/ports/emulator")" \
    --address "$address" --create-delay-ms "${EMULATOR_CREATE_DELAY_MS:-2000}" --delete-delay-ms 1000
  cluster_wait 30 "the FSx emulator" "$CLUSTER_DIR/logs/fsx-emulator.log" \
    curl -sf "http://$address:$(cat "$CLUSTER_DIR/ports/emulator")/_emulator/stats"
}

# Starts controller replica $1: the driver, the provisioner and the resizer, as one pod would
# run them, with the hostname fsx-csi-controller-$1.
cluster_replica() { # index
  local i=$1 host="fsx-csi-controller-$1" sock="$CLUSTER_DIR/replica-$1/csi.sock"
  mkdir -p "$CLUSTER_DIR/replica-$i"
  local uts=()
  if [[ $(id -u) -eq 0 ]]; then uts=(unshare --uts --fork sh -c "hostname $host && exec \"\$@\"" sh); fi
  # Subdirectory volumes: the driver (built with lustre-stand-in) mounts each file system, a
  # directory of $CLUSTER_DIR/lustre (shared by the replicas, as one file system is), in a
  # mount namespace of its own, as in its pod.
  local mountns=()
  if [[ $(id -u) -eq 0 ]]; then mountns=(unshare --mount --propagation private --fork); fi
  local driver_args
  mapfile -t driver_args < <(python3 "$cluster_root/hack/lib/manifests.py" args "$CLUSTER_DIR/rendered.yaml" \
    fsx-plugin "$sock" --override poll-interval=500ms --override metrics-address=127.0.0.1:0 \
    --override progress-event-interval=2s \
    --override "subdirectory-mount-dir=$CLUSTER_DIR/replica-$i/mounts" --override "kubelet-dir=$CLUSTER_DIR/lustre")
  cluster_spawn "driver-$i" env AWS_ENDPOINT_URL_FSX="http://127.0.0.1:$(cat "$CLUSTER_DIR/ports/emulator")" \
    AWS_ENDPOINT_URL_EC2="http://127.0.0.1:$(cat "$CLUSTER_DIR/ports/emulator")" \
    AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=cluster AWS_SECRET_ACCESS_KEY=cluster AWS_EC2_METADATA_DISABLED=true \
    KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$(cat "$CLUSTER_DIR/ports/apiserver")" \
    KUBE_TOKEN_FILE="$CLUSTER_DIR/controller.token" KUBE_CA_FILE="$CLUSTER_DIR/pki/ca.crt" \
    "${mountns[@]}" "${uts[@]}" "$cluster_root/target/debug/fsx-csi-driver" "${driver_args[@]}"
  cluster_wait 30 "the driver's socket" "$CLUSTER_DIR/logs/driver-$i.log" test -S "$sock"
  local lease=(--leader-election-lease-duration=6s --leader-election-renew-deadline=4s --leader-election-retry-period=1s)
  local sidecar args
  local sidecars=(csi-provisioner csi-resizer)
  # The snapshotter runs when the rendered StatefulSet has it (the chart can leave it out).
  if python3 "$cluster_root/hack/lib/manifests.py" args "$CLUSTER_DIR/rendered.yaml" csi-snapshotter "$sock" >/dev/null 2>&1; then
    sidecars+=(csi-snapshotter)
  fi
  for sidecar in "${sidecars[@]}"; do
    # Two replicas share this host's network: their metrics endpoints take free ports.
    mapfile -t args < <(python3 "$cluster_root/hack/lib/manifests.py" args "$CLUSTER_DIR/rendered.yaml" \
      "$sidecar" "$sock" --override http-endpoint=127.0.0.1:0)
    cluster_spawn "$sidecar-$i" "${uts[@]}" "$CLUSTER_BIN/$sidecar" \
      "${args[@]}" --kubeconfig "$CLUSTER_DIR/controller.kubeconfig" "${lease[@]}"
  done
}

cluster_stop_replica() { # index [kill]
  for name in csi-provisioner csi-resizer csi-snapshotter driver; do
    [[ -f $CLUSTER_DIR/pids/$name-$1.pid ]] && cluster_stop "$name-$1" "${2:-}"
  done
  return 0
}

cluster_down() {
  [[ -d $CLUSTER_DIR/pids ]] || return 0
  local f
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    [[ -e $f ]] || continue
    cluster_stop "$(basename "$f" .pid)"
  done
}
