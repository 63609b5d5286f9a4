# A Kubernetes node inside the node tier's private namespaces (hack/tiers/node.sh): containerd,
# the kubelet, kube-scheduler, the pod network, the images. Sourced after common.sh and
# cluster.sh; needs CLUSTER_DIR, CLUSTER_BIN (the control plane) and NODE_BIN
# (hack/lib/build-node.sh).
# shellcheck shell=bash

NODE_NAME=fsx-node-1
NODE_IP=10.88.0.1
NODE_SUBNET=10.88.0.0/16
NODE_SANDBOX_IMAGE=registry.k8s.io/pause:3.10
NODE_APP_IMAGE=public.ecr.aws/docker/library/busybox:1.36
NODE_CONTAINERD_SOCK=/run/containerd/containerd.sock
# The node's Availability Zone, as EKS labels its nodes: the emulator's zone of the examples'
# subnet-0123456789abcdef0 (the plugin reports it; PVs of that subnet get it as node affinity).
NODE_ZONE=us-east-1a

nctr() { "$NODE_BIN/ctr" --address "$NODE_CONTAINERD_SOCK" -n k8s.io "$@"; }

# The namespaces' own /var and /run (tmpfs; /var shared, so Bidirectional mounts propagate),
# loopback up, and the node's bridge with its address (the CNI bridge plugin adopts it).
node_namespaces() {
  mount -t tmpfs -o mode=0755 fsx-node-var /var
  mount --make-shared /var
  mount -t tmpfs -o mode=0755 fsx-node-run /run
  mkdir -p /var/lib/kubelet /var/log/pods /var/lib/containerd /var/lib/cni /run/containerd
  ip link set lo up
  ip link add cni0 type bridge
  ip addr add "$NODE_IP/16" dev cni0
  ip link set cni0 up
  mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/kubelet-work" "$CLUSTER_DIR/cni/net.d"
  # The node DaemonSet mounts /lib/modules (type Directory), which every EKS node has; the
  # plugin reads the module index there to tell whether Lustre can be mounted. The node gets
  # its own index in this namespace only: a tmpfs over /lib/modules, or, on a machine without
  # one, an overlay on /usr/lib whose upper layer is the tier's. node_lustre_module sets it.
  if [[ -d /lib/modules ]]; then
    mount -t tmpfs -o mode=0755 fsx-node-modules /lib/modules
  else
    local lib
    lib=$(readlink -f /lib)
    mkdir -p "$CLUSTER_DIR/lib-upper" "$CLUSTER_DIR/lib-work"
    mount -t overlay fsx-node-lib -o "lowerdir=$lib,upperdir=$CLUSTER_DIR/lib-upper,workdir=$CLUSTER_DIR/lib-work" "$lib"
  fi
  mkdir -p "/lib/modules/$(uname -r)"
  node_lustre_module installed
  # The DaemonSet also mounts debugfs (/sys/kernel/debug), where LNet lists its interfaces;
  # this node's stands in as a tmpfs listing LNet up over TCP, as after a first Lustre mount.
  mount -t tmpfs -o mode=0700 fsx-node-debugfs /sys/kernel/debug
  node_lnet_nids 0@lo "$NODE_IP@tcp"
}

# The stood-in module index of the running kernel: with the Lustre client (installed) or
# without it (missing).
node_lustre_module() {
  local index
  index="/lib/modules/$(uname -r)/modules.alias"
  case $1 in
    installed) printf 'alias fs-lustre lustre\n' >"$index.new" ;;
    missing) printf 'alias fs-ext4 ext4\n' >"$index.new" ;;
  esac
  mv "$index.new" "$index"
}

# The stood-in LNet interface list (debugfs lnet/nis, as lnet/lnet/router_proc.c writes it).
node_lnet_nids() {
  mkdir -p /sys/kernel/debug/lnet
  {
    printf '%-24s %6s %5s %4s %4s %4s %5s %5s %5s\n' nid status alive refs peer rtr max tx min
    local nid
    for nid in "$@"; do
      printf '%-24s %6s %5d %4d %4d %4d %5d %5d %5d\n' "$nid" up -1 1 8 0 256 256 256
    done
  } >/sys/kernel/debug/lnet/nis.new
  mv /sys/kernel/debug/lnet/nis.new /sys/kernel/debug/lnet/nis
}

# kube-proxy's part for the one Service pods use: kubernetes.default (10.96.0.1:443) to the
# API server, from pods (PREROUTING) and from host-network processes (OUTPUT).
node_service_dnat() {
  local api_port
  api_port=$(cat "$CLUSTER_DIR/ports/apiserver")
  for chain in PREROUTING OUTPUT; do
    iptables -t nat -A "$chain" -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:$api_port"
  done
}

# A client certificate and kubeconfig for a component: name, subject.
node_client() {
  local p="$CLUSTER_DIR/pki"
  (
    cd "$p"
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 2>/dev/null
  )
  cluster_kubeconfig "$CLUSTER_DIR/$1.kubeconfig" "client-certificate: $p/$1.crt" "client-key: $p/$1.key"
}

node_scheduler() {
  node_client kube-scheduler "/CN=system:kube-scheduler"
  cluster_free_port >"$CLUSTER_DIR/ports/scheduler"
  cluster_spawn kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(cat "$CLUSTER_DIR/ports/scheduler")" --leader-elect=false --v=1
}

node_containerd() {
  cat >"$CLUSTER_DIR/cni/net.d/10-fsx-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "fsx-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
      "ipam": {
        "type": "host-local", "dataDir": "/var/lib/cni/networks",
        "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
  cat >"$CLUSTER_DIR/containerd.toml" <<EOF
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$NODE_CONTAINERD_SOCK"

# containerd's "opt" plugin makes /opt/containerd on the machine by default: kept in the tier's
# directory like every other root and state directory.
[plugins."io.containerd.internal.v1.opt"]
  path = "$CLUSTER_DIR/opt"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "$NODE_SANDBOX_IMAGE"

# A machine whose root lacks CAP_SYS_RESOURCE (this one) cannot lower a process's
# oom_score_adj: the sandbox's -998 failed runc's init ("failed to update
# /proc/self/oom_score_adj: Permission denied"). Kept at or above containerd's own instead.
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "${NODE_RUNC:-$(command -v runc)}"
  SystemdCgroup = false

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["$NODE_BIN/cni"]
  conf_dir = "$CLUSTER_DIR/cni/net.d"
EOF
  cluster_spawn containerd "$NODE_BIN/containerd" --config "$CLUSTER_DIR/containerd.toml" --log-level warn
  cluster_wait 60 "containerd" "$CLUSTER_DIR/logs/containerd.log" nctr version
}

# Builds every image the manifests, the examples and the sandbox name, and imports it.
node_images() {
  local dir="$CLUSTER_DIR/images" musl="$cluster_root/target/x86_64-unknown-linux-musl/release" img=hack/lib/images.py
  mkdir -p "$dir"
  local started=$SECONDS
  python3 "$img" build "$dir/pause.tar" --name "$NODE_SANDBOX_IMAGE" --file "$NODE_BIN/pause:/pause:0755" \
    --entrypoint '["/pause"]' --user 65535:65535
  # The examples' application image: Debian's static busybox with its applets.
  local links=() a
  for a in $(/bin/busybox --list); do [[ $a == busybox ]] || links+=(--link "/bin/$a:busybox"); done
  # And /bin/euid, which prints its effective uid: a setuid-root copy of it shows whether a
  # mount honours nosuid (busybox drops a setuid for its applets, so it cannot show that).
  printf '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("euid=%%d\\n", (int)geteuid()); return 0; }\n' >"$dir/euid.c"
  musl-gcc -static -O2 -o "$dir/euid" "$dir/euid.c"
  python3 "$img" build "$dir/busybox.tar" --name "$NODE_APP_IMAGE" --file /bin/busybox:/bin/busybox:0755 \
    --file "$dir/euid:/bin/euid:0755" "${links[@]}" --dir /tmp:1777 --dir /data --cmd '["sh"]'
  for f in "$dir"/*.tar; do nctr images import "$f" >>"$CLUSTER_DIR/logs/images.log" 2>&1; done
  echo "==> images built and imported in $((SECONDS - started))s"
}

# The images of one rendered install: the driver (from the Dockerfile's layout), the
# controller's sidecars (the control plane's builds, with their shared libraries), and the
# registrar and livenessprobe stand-ins under the names the manifests give. The sidecars'
# images run as root, as the kubernetes-csi images do (distroless/static, no USER): the CSI
# socket is 0600.
node_install_images() { # rendered.yaml
  local dir="$CLUSTER_DIR/images" musl="$cluster_root/target/x86_64-unknown-linux-musl/release" img=hack/lib/images.py
  local name base want
  want=$(python3 "$img" dockerfile Dockerfile)
  local user entry binary
  user=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user"])' "$want")
  entry=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["entrypoint"]))' "$want")
  binary=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["binary"])' "$want")
  while read -r name; do
    base=${name##*/}; base=${base%%:*}
    local out="$dir/$base.tar"
    case $base in
      fsx-csi-driver)
        # distroless/static's layout: CA bundle, passwd and group with nonroot, /tmp.
        printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/passwd"
        printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/group"
        python3 "$img" build "$out" --name "$name" --file "$musl/fsx-csi-driver:$binary:0755" \
          --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644 \
          --file "$dir/passwd:/etc/passwd:0644" --file "$dir/group:/etc/group:0644" --dir /tmp:1777 \
          --dir /home/nonroot:0700 --user "$user" --entrypoint "$entry"
        ;;
      csi-provisioner | csi-resizer | csi-snapshotter)
        python3 "$img" build "$out" --name "$name" --file "$CLUSTER_BIN/$base:/$base:0755" --libs-for "/$base" \
          --entrypoint "[\"/$base\"]"
        ;;
      csi-node-driver-registrar)
        python3 "$img" build "$out" --name "$name" --file "$musl/csi-sidecar-stand-in:/csi-sidecar-stand-in:0755" \
          --entrypoint '["/csi-sidecar-stand-in", "registrar"]'
        ;;
      livenessprobe)
        python3 "$img" build "$out" --name "$name" --file "$musl/csi-sidecar-stand-in:/csi-sidecar-stand-in:0755" \
          --entrypoint '["/csi-sidecar-stand-in", "livenessprobe"]'
        ;;
      *) echo "no image for $name" >&2; return 1 ;;
    esac
    nctr images import "$out" >>"$CLUSTER_DIR/logs/images.log" 2>&1
    # The same driver under a second tag, for the DaemonSet roll scenario.
    if [[ $base == fsx-csi-driver ]]; then nctr images tag --force "$name" "${name%:*}:rolled" >>"$CLUSTER_DIR/logs/images.log" 2>&1; fi
  done < <(sed -n 's/^ *image: *"\{0,1\}\([^" ]*\)"\{0,1\} *$/\1/p' "$1" | sort -u)
}

node_kubelet() {
  node_client kubelet "/CN=system:node:$NODE_NAME/O=system:nodes"
  local healthz
  healthz=$(cluster_free_port)
  echo "$healthz" >"$CLUSTER_DIR/ports/kubelet-healthz"
  cat >"$CLUSTER_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$NODE_CONTAINERD_SOCK
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: ["none"]
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CLUSTER_DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
address: $NODE_IP
port: $(cluster_free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
resolvConf: ""
volumePluginDir: /var/lib/kubelet-volume-plugins
volumeStatsAggPeriod: 5s
serializeImagePulls: false
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerWithTaints:
  - {key: fsx.csi.aws.com/agent-not-ready, effect: NoExecute}
EOF
  # An empty working directory of the tier's own (see the header: the kubelet deletes files).
  (cd "$CLUSTER_DIR/kubelet-work" && cluster_spawn kubelet "$NODE_BIN/kubelet" --config "$CLUSTER_DIR/kubelet.yaml" \
    --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --cert-dir "$CLUSTER_DIR/kubelet-pki" --root-dir /var/lib/kubelet --v=2 \
    --node-labels "topology.kubernetes.io/zone=$NODE_ZONE")
  cluster_wait 120 "the node to be Ready" "$CLUSTER_DIR/logs/kubelet.log" \
    sh -c "$CLUSTER_BIN/kubectl --kubeconfig $CLUSTER_DIR/admin.kubeconfig get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
}

# Renders and applies an install path, with its images; the controller gets what EKS gives
# it (credentials, region, the FSx endpoint) as environment.
node_install() { # kustomize|helm
  cluster_render "$1" "$CLUSTER_DIR/rendered.yaml"
  node_install_images "$CLUSTER_DIR/rendered.yaml"
  kctl apply -f "$CLUSTER_DIR/rendered.yaml" >"$CLUSTER_DIR/logs/apply-$1.log"
  kctl -n "$CLUSTER_NAMESPACE" set env statefulset/fsx-csi-controller -c fsx-plugin \
    AWS_ENDPOINT_URL_FSX="http://$NODE_IP:$(cat "$CLUSTER_DIR/ports/emulator")" \
    AWS_ENDPOINT_URL_EC2="http://$NODE_IP:$(cat "$CLUSTER_DIR/ports/emulator")" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=node-tier AWS_SECRET_ACCESS_KEY=node-tier AWS_EC2_METADATA_DISABLED=true >/dev/null
  # Subdirectory volumes (enabled by cluster_render): the controller mounts the file systems
  # it makes directories on; here a file system is a directory of the node's stand-in store,
  # which the controller (built with lustre-stand-in) binds from, so it gets that directory
  # at the same path. Test only: on EKS the controller mounts Lustre over the network.
  local store=/var/lib/kubelet/plugins/fsx.csi.aws.com/fsx-lustre-stand-in
  kctl -n "$CLUSTER_NAMESPACE" patch statefulset fsx-csi-controller --type json -p "[
    {\"op\": \"add\", \"path\": \"/spec/template/spec/volumes/-\",
     \"value\": {\"name\": \"lustre-stand-in\", \"hostPath\": {\"path\": \"$store\", \"type\": \"DirectoryOrCreate\"}}},
    {\"op\": \"add\", \"path\": \"/spec/template/spec/containers/0/volumeMounts/-\",
     \"value\": {\"name\": \"lustre-stand-in\", \"mountPath\": \"$store\"}}]" >/dev/null
  kctl -n "$CLUSTER_NAMESPACE" rollout status daemonset/fsx-csi-node --timeout=180s >>"$CLUSTER_DIR/logs/apply-$1.log" 2>&1 &&
    kctl -n "$CLUSTER_NAMESPACE" rollout status statefulset/fsx-csi-controller --timeout=180s >>"$CLUSTER_DIR/logs/apply-$1.log" 2>&1 || {
    kctl -n "$CLUSTER_NAMESPACE" get pods -o wide >&2
    kctl -n "$CLUSTER_NAMESPACE" describe pods >"$CLUSTER_DIR/logs/describe-$1.log" 2>&1
    return 1
  }
}

node_uninstall() {
  [[ -f $CLUSTER_DIR/rendered.yaml ]] || return 0
  kctl delete -f "$CLUSTER_DIR/rendered.yaml" --ignore-not-found --wait --timeout=120s >>"$CLUSTER_DIR/logs/apply.log" 2>&1 || true
}

node_down() {
  # The kubelet first (so it stops restarting containers), then every container, containerd.
  cluster_stop kubelet
  if [[ -S $NODE_CONTAINERD_SOCK ]]; then
    nctr tasks ls -q 2>/dev/null | while read -r t; do nctr tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
  fi
  cluster_stop containerd
}

# The driver image of the last install has the Dockerfile's binary path, user and entrypoint,
# and its binary is the static musl build (so the test image and the Dockerfile cannot drift).
node_image_matches_dockerfile() {
  python3 - "$CLUSTER_DIR/images/fsx-csi-driver.tar" Dockerfile <<'PY'
import json, subprocess, sys
sys.path.insert(0, "hack/lib")
import images
got, want = images.archive_config(sys.argv[1]), images.dockerfile(sys.argv[2])
problems = []
if got["config"].get("User") != want["user"]:
    problems.append(f"user {got['config'].get('User')} != {want['user']}")
if got["config"].get("Entrypoint") != want["entrypoint"]:
    problems.append(f"entrypoint {got['config'].get('Entrypoint')} != {want['entrypoint']}")
if want["binary"] not in got["files"]:
    problems.append(f"{want['binary']} not in the image ({got['files']})")
print(json.dumps({"image": got, "dockerfile": want}))
sys.exit("; ".join(problems) if problems else 0)
PY
  file -L target/x86_64-unknown-linux-musl/release/fsx-csi-driver | grep -Eq 'statically linked|static-pie linked'
}

# Builds (cached) what a node needs, from the host: Debian's runc, iptables, static busybox and
# musl-gcc; the control plane and node binaries; the driver (with lustre-stand-in) and the
# sidecar stand-ins as static musl release binaries; the emulator. Sets CLUSTER_BIN, NODE_BIN.
node_build() {
  local need=()
  command -v runc >/dev/null || need+=(runc)
  command -v iptables >/dev/null || need+=(iptables)
  [[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q 'statically linked' || need+=(busybox-static)
  command -v musl-gcc >/dev/null || need+=(musl-tools)
  command -v file >/dev/null || need+=(file)
  if ((${#need[@]})); then
    echo "==> installing ${need[*]} (Debian)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl >&2
  CLUSTER_BIN=$(bash hack/lib/build-control-plane.sh | tail -n 1)
  NODE_BIN=$(bash hack/lib/build-node.sh | tail -n 1)
  echo "==> building the node image's binaries (static musl, release; the driver with lustre-stand-in)" >&2
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target x86_64-unknown-linux-musl \
    -p fsx-csi-driver -p fsx-csi-tools --bin fsx-csi-driver --bin csi-sidecar-stand-in \
    --features fsx-csi-driver/lustre-stand-in >&2
  # The same debug build as the control-plane tier's (with the stand-in), so neither rebuilds it.
  cargo build --locked -p fsx-emulator -p fsx-csi-driver --features fsx-csi-driver/lustre-stand-in >&2
  # The Helm install path renders the chart inside the namespaces, where the Go module proxy
  # cannot be reached: helm is installed here, before.
  install_go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm >&2
  export CLUSTER_BIN NODE_BIN
}

# Inside the private namespaces: the control plane, the emulator, the pod network, containerd,
# the images and the kubelet, up and Ready.
node_up() {
  node_namespaces
  export CLUSTER_API_BIND=0.0.0.0 CLUSTER_API_ADVERTISE=$NODE_IP CLUSTER_API_SANS="IP:$NODE_IP,IP:10.96.0.1"
  export CLUSTER_EXTRA_CONTROLLERS=daemonset,garbagecollector,root-ca-cert-publisher,nodelifecycle,namespace
  cluster_control_plane
  echo "$CLUSTER_BIN" >"$CLUSTER_DIR/bin-dir"
  CLUSTER_EMULATOR_ADDRESS=$NODE_IP cluster_emulator
  node_service_dnat
  node_scheduler
  node_containerd
  node_images
  node_kubelet
}

# The cgroups runc made for the node's containers (containerd's namespace k8s.io). Namespaces
# do not cover /sys/fs/cgroup, and a container killed with its namespace leaves an empty one
# behind: the tier and the sandbox remove those they made (empty ones only: rmdir).
node_cgroups() {
  find /sys/fs/cgroup -maxdepth 4 -type d \( -name k8s.io -o -path '*/k8s.io/*' \) 2>/dev/null | sort
}
node_cgroups_cleanup() { # the list taken before
  local d
  comm -13 "$1" <(node_cgroups) | sort -r | while read -r d; do rmdir "$d" 2>/dev/null || true; done
}
