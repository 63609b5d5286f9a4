#!/usr/bin/env bash
# The node tier: a real Kubernetes node runs the driver as users install it, and pods read and
# write through it. Ends with "node: N passed, M failed".
#
# What runs for real: etcd, kube-apiserver (Node authorizer, NodeRestriction),
# kube-controller-manager, kube-scheduler, the kubelet (its own client certificate, as
# system:node:fsx-node-1), containerd v2 with Debian's runc and the CNI bridge plugin, the
# driver's StatefulSet and DaemonSet applied from kustomize and from the Helm chart, as pods
# from images imported into containerd (nothing can be pulled here: hack/lib/images.py writes
# them), the real csi-provisioner/resizer/snapshotter in those pods, and the scenarios'
# pods (busybox from Debian, under the examples' image name).
#
# What is stood in, and said again in the output:
# - Lustre: the node image's driver is built with the test-only feature `lustre-stand-in`
#   (src/mount/stand_in.rs): a Lustre mount is a bind of a directory per file system; all
#   around it is the shipped code. The shipped binary and image never have the feature.
# - FSx: the FSx emulator, on the node's bridge address (the controller pod reaches it there).
# - node-driver-registrar and livenessprobe: the Go module proxy refuses both, so
#   tests/tools/src/bin/csi-sidecar-stand-in.rs takes their place, under their image names,
#   taking exactly the flags the manifests pass (an unknown flag fails the pod).
# - kube-proxy: two DNAT rules send the `kubernetes` Service's address to the API server.
# - The node's kernel, as the plugin reads it: the module index under /lib/modules (with the
#   Lustre client, or without it for the scenario of a node that cannot mount Lustre) and
#   debugfs's lnet/nis (LNet up over TCP, or with an @efa interface), both tmpfs files.
# - What EKS gives the controller (IRSA credentials, the region, the FSx endpoint) is set as
#   environment on its container.
#
# Isolation (the kubelet deletes files it believes it owns; CI runs as root on a developer's
# machine): everything runs in private mount, network and PID namespaces (unshare), with
# tmpfs over /var and /run, the kubelet's working directory an empty directory of the tier,
# and its volume plugin directory moved under /var. After the run the tier checks that
# nothing outside its own directory changed (a fingerprint of /, /etc, /usr, /var/lib, /opt and
# /root taken before and after), once the empty cgroups runc left for its containers are
# removed (no namespace covers /sys/fs/cgroup).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh

if [[ ${1:-} != --inside ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "node: 0 passed, 1 failed (the node tier needs root: mounts, namespaces, runc)"; exit 1; }
  started=$SECONDS
  # shellcheck source=../lib/node.sh
  source hack/lib/node.sh
  node_build
  echo "==> binaries ready in $((SECONDS - started))s"
  CLUSTER_DIR=$(mktemp -d -t fsx-node.XXXXXX)
  export CLUSTER_DIR
  fingerprint() {
    # Names, sizes and mtimes of what a stray kubelet or runtime would touch first, and the
    # containers' cgroups (which no namespace covers).
    for d in / /etc /usr /usr/bin /bin /var/lib /opt /root; do find "$d" -maxdepth 1 -printf '%p %s %T@\n' 2>/dev/null; done |
      grep -v -e "^/tmp" -e "^/var/lib/apt" -e "^/var/lib/dpkg" -e "^/root/.cache" -e "^/root/.cargo" -e "^/root/go" -e "^/var/lib/systemd" | sort
    node_cgroups
  }
  node_cgroups >"$CLUSTER_DIR/cgroups-before"
  fingerprint >"$CLUSTER_DIR/before"
  rc=0
  unshare --mount --net --pid --fork --mount-proc --propagation private bash "$0" --inside 2>&1 |
    tee "$CLUSTER_DIR/inside.log" || rc=$?
  read -r passed failed < <(tier_counts node "$CLUSTER_DIR/inside.log") || { passed=0; failed=1; }
  node_cgroups_cleanup "$CLUSTER_DIR/cgroups-before"
  fingerprint >"$CLUSTER_DIR/after"
  if diff "$CLUSTER_DIR/before" "$CLUSTER_DIR/after" >"$CLUSTER_DIR/changed"; then
    passed=$((passed + 1))
    echo "ok   nothing outside the tier's directory changed (/, /etc, /usr, /bin, /var/lib, /opt, /root, the containers' cgroups)"
  else
    failed=$((failed + 1))
    echo "FAIL the node tier changed something outside its directory:"; head -n 20 "$CLUSTER_DIR/changed"
  fi
  echo "node tier: $((SECONDS - started))s"
  if [[ $rc -eq 0 && $failed -eq 0 ]]; then rm -rf "$CLUSTER_DIR"; else echo "(the tier's logs are kept in $CLUSTER_DIR)"; fi
  echo "node: $passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit
fi

# ---- inside the private namespaces ---------------------------------------------------------
# shellcheck source=../lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=../lib/node.sh
source hack/lib/node.sh
export PATH="$NODE_BIN:$PATH"
finish() {
  local rc=$?
  if [[ $rc -ne 0 && -d $CLUSTER_DIR/logs ]]; then
    for f in "$CLUSTER_DIR"/logs/*.log; do echo "--- the end of $(basename "$f")"; tail -n 15 "$f"; done
  fi
  node_down
  cluster_down
}
trap finish EXIT
node_up
echo "node: stood in here: Lustre (binds of a directory per file system, feature lustre-stand-in), FSx (the emulator),"
echo "      node-driver-registrar and livenessprobe (csi-sidecar-stand-in), kube-proxy (two DNAT rules),"
echo "      the kernel's Lustre module index and LNet's interface list (files on tmpfs)"
passed=0
failed=0
for install in kustomize helm; do
  echo "==> the driver from $install"
  if node_install "$install"; then
    check "$install: the driver's test image has the Dockerfile's binary path, user and entrypoint, static musl" \
      node_image_matches_dockerfile
    python3 tests/node/scenarios.py --install "$install" 2>&1 | tee "$CLUSTER_DIR/scenarios.log" || true
    read -r p f < <(tier_counts node "$CLUSTER_DIR/scenarios.log") || true
    if [[ -z ${p:-} ]]; then failed=$((failed + 1)); echo "FAIL the $install scenarios did not finish"; else passed=$((passed + p)); failed=$((failed + f)); fi
  else
    failed=$((failed + 1)); echo "FAIL installing the driver from $install"
  fi
  node_uninstall
done
echo "node: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
