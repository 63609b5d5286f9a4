#!/usr/bin/env bash
# Builds what a Kubernetes node needs, from the Go module proxy, for the node tier: the kubelet
# and kube-scheduler (the control plane's version), containerd with ctr and its runc shim, the
# CNI plugins the node's pod network uses (bridge, host-local, loopback), and a pause binary
# (static, for the sandbox image). runc itself comes from Debian's packages (installed by the
# tier). Kept under ~/.cache with a version stamp; a second run costs nothing. Prints the bin
# directory on its last line.
#
#   K8S_VERSION         kubelet and kube-scheduler (default 1.37.2, as the control plane)
#   CONTAINERD_VERSION  containerd, ctr and containerd-shim-runc-v2 (default v2.4.2)
#   CNI_VERSION         github.com/containernetworking/plugins (default v1.10.0)
#
# Facts this rests on (measured): Debian bookworm's containerd is 1.6.20, whose CRI is the
# v1alpha2/v1 mix kubelet 1.37 no longer speaks to; containerd v2's root module has no replace
# lines, so `go install` builds it (CGO_ENABLED=0: no btrfs, no seccomp from libseccomp, which
# runc applies itself). The kubelet needs the same wrapper module as the control plane.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=common.sh
source hack/lib/common.sh
K8S_VERSION=${K8S_VERSION:-1.37.2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CNI_VERSION=${CNI_VERSION:-v1.10.0}
BUILD_SCRIPT_VERSION=1 # the cache key: bump it when what is built changes
stamp="node-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-cni-$CNI_VERSION-b$BUILD_SCRIPT_VERSION"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fsx-csi-driver/node/$stamp"
bin="$cache/bin"
tools=(kubelet kube-scheduler containerd ctr containerd-shim-runc-v2 pause cni/bridge cni/host-local cni/loopback)
have_all() { for t in "${tools[@]}"; do [[ -x $bin/$t ]] || return 1; done; }
if have_all; then
  echo "$bin"
  exit 0
fi
ensure_go "the node"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$bin/cni"
started=$SECONDS

# containerd, ctr and the shim: straight from their module.
for cmd in containerd ctr containerd-shim-runc-v2; do
  [[ -x $bin/$cmd ]] && continue
  echo "==> building $cmd $CONTAINERD_VERSION" >&2
  GOBIN="$cache/gobin" go install -trimpath \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD_VERSION" >&2
  mv "$cache/gobin/$cmd" "$bin/$cmd"
done
for plugin in bridge host-local loopback; do
  [[ -x $bin/cni/$plugin ]] && continue
  kind=main; [[ $plugin == host-local ]] && kind=ipam
  echo "==> building the CNI plugin $plugin $CNI_VERSION" >&2
  GOBIN="$cache/gobin" go install -trimpath -ldflags "-s -w" \
    "github.com/containernetworking/plugins/plugins/$kind/$plugin@$CNI_VERSION" >&2
  mv "$cache/gobin/$plugin" "$bin/cni/$plugin"
done
rm -rf "$cache/gobin"

# The sandbox's pause process: sleeps until a signal, reaps nothing (the pod's pid namespace
# is not shared in the tier). Static, for a FROM-scratch image.
if [[ ! -x $bin/pause ]]; then
  src="$cache/pause-src"
  go_wrapper_module "$src" fsx-csi-driver.local/pause 1.22 </dev/null
  cat >"$src/main.go" <<'GO'
// pause: the pod sandbox's process. Exits 0 on SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
GO
  go_wrapper_build "$src" "$bin/pause" . "-s -w"
  rm -rf "$src"
fi

# The kubelet and kube-scheduler: k8s.io/kubernetes through a wrapper module, as the control
# plane (common.sh's k8s_* helpers).
if [[ ! -x $bin/kubelet || ! -x $bin/kube-scheduler ]]; then
  src="$cache/src"
  replaces=$(k8s_staging_replaces "$K8S_VERSION" "$(k8s_gomod "$K8S_VERSION")")
  {
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    echo "$replaces"
    echo ")"
  } | go_wrapper_module "$src" fsx-csi-driver.local/node 1.24
  go_wrapper_tools "$src" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler
  (cd "$src" && go mod tidy >&2)
  ldflags=$(k8s_version_ldflags "$K8S_VERSION")
  go_wrapper_build "$src" "$bin/kubelet" k8s.io/kubernetes/cmd/kubelet "$ldflags"
  go_wrapper_build "$src" "$bin/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
  rm -rf "$src"
fi
have_all || { echo "the node build left something out: ${tools[*]}" >&2; exit 1; }
echo "==> node binaries built in $((SECONDS - started))s" >&2
echo "$bin"
