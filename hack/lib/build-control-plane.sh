#!/usr/bin/env bash
# Builds a Kubernetes control plane and the CSI sidecars from the Go module proxy, without
# containers: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, csi-provisioner,
# csi-resizer, csi-snapshotter and snapshot-controller (with the VolumeSnapshot CRDs of the same
# release). The binaries are kept under ~/.cache with a version stamp, so a second run costs
# nothing. Prints the bin directory on its last line.
#
#   K8S_VERSION          Kubernetes version of the control plane and kubectl (default 1.37.2)
#   PROVISIONER_VERSION  external-provisioner (default: the tag the manifests pin)
#   RESIZER_VERSION      external-resizer (default: the tag the manifests pin)
#   SNAPSHOTTER_VERSION  external-snapshotter: csi-snapshotter, snapshot-controller and the
#                        CRDs (default: the tag the manifests pin)
#   ETCD_VERSION         etcd server (default: the one that Kubernetes version requires)
#
# Facts this rests on (measured): `go install` refuses k8s.io/kubernetes (its go.mod replaces
# every k8s.io staging repository), so a wrapper module requires it and replaces each staging
# repository with its published v0.MINOR.PATCH twin; etcd's root module has replace lines too,
# so a ten-line main calls etcdmain.Main. The proxy's checksum database has no entry for
# sig-storage-lib-external-provisioner/v11 v11.0.1: its go.sum lines are seeded from the
# provisioner's own go.sum. Versions are stamped at link time, or kubectl cannot parse the
# server version.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=common.sh
source hack/lib/common.sh
root=$ROOT
manifest=deploy/kubernetes/base/controller.yaml
pinned() { sed -n "s|.*image: registry.k8s.io/sig-storage/$1:\(v[0-9.]*\).*|\1|p" "$manifest" | head -n 1; }
K8S_VERSION=${K8S_VERSION:-1.37.2}
PROVISIONER_VERSION=${PROVISIONER_VERSION:-$(pinned csi-provisioner)}
RESIZER_VERSION=${RESIZER_VERSION:-$(pinned csi-resizer)}
SNAPSHOTTER_VERSION=${SNAPSHOTTER_VERSION:-$(pinned csi-snapshotter)}
BUILD_SCRIPT_VERSION=4  # the cache key: bump it when what is built changes
provisioner_major=${PROVISIONER_VERSION%%.*}
resizer_major=${RESIZER_VERSION%%.*}
# Module paths carry the major version from v2 on.
module_of() { if [[ $2 == v0 || $2 == v1 ]]; then echo "$1"; else echo "$1/$2"; fi; }
provisioner_module=$(module_of github.com/kubernetes-csi/external-provisioner "$provisioner_major")
resizer_module=$(module_of github.com/kubernetes-csi/external-resizer "$resizer_major")
snapshotter_major=${SNAPSHOTTER_VERSION%%.*}
snapshotter_module=$(module_of github.com/kubernetes-csi/external-snapshotter "$snapshotter_major")

stamp="k8s-$K8S_VERSION-etcd-${ETCD_VERSION:-default}-provisioner-$PROVISIONER_VERSION-resizer-$RESIZER_VERSION-snapshotter-$SNAPSHOTTER_VERSION-b$BUILD_SCRIPT_VERSION"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fsx-csi-driver/cluster/$stamp"
bin="$cache/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl csi-provisioner csi-resizer csi-snapshotter snapshot-controller)
have_all() { for t in "${tools[@]}"; do [[ -x $bin/$t ]] || return 1; done; [[ -s $cache/crd/snapshot-crds.yaml ]]; }
if have_all; then
  echo "$bin"
  exit 0
fi

ensure_go "the control plane"
src="$cache/src"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$bin"

# The staging repositories k8s.io/kubernetes replaces, read from its own go.mod.
gomod=$(k8s_gomod "$K8S_VERSION")
replaces=$(k8s_staging_replaces "$K8S_VERSION" "$gomod")
ETCD_VERSION=${ETCD_VERSION:-$(sed -n 's|^\s*go.etcd.io/etcd/server/v3 v\([0-9.]*\).*|\1|p' "$gomod" | head -n 1)}
[[ -n $ETCD_VERSION ]] || { echo "could not read the etcd version from $gomod" >&2; exit 1; }
{
  echo "require ("
  echo "  k8s.io/kubernetes v$K8S_VERSION"
  echo "  go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
  echo "  $provisioner_module $PROVISIONER_VERSION"
  echo "  $resizer_module $RESIZER_VERSION"
  echo "  $snapshotter_module $SNAPSHOTTER_VERSION"
  echo ")"
  echo
  echo "replace ("
  echo "$replaces"
  echo ")"
} | go_wrapper_module "$src" fsx-csi-driver.local/cluster 1.24
mkdir -p "$src/cmd/etcd"
cd "$src"
cat >cmd/etcd/main.go <<'GO'
// The etcd server; its root module carries replace lines, so it is built from here.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
go_wrapper_tools "$src" "$provisioner_module/cmd/csi-provisioner" "$resizer_module/cmd/csi-resizer" \
  "$snapshotter_module/cmd/csi-snapshotter" "$snapshotter_module/cmd/snapshot-controller" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl
# Seed go.sum with the provisioner's own lines for the modules the checksum database may lack.
prov_sum=$(go mod download -json "$provisioner_module@$PROVISIONER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')/go.sum
grep '^sigs.k8s.io/sig-storage-lib-external-provisioner' "$prov_sum" >go.sum || true
echo "==> resolving modules (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, provisioner $PROVISIONER_VERSION, resizer $RESIZER_VERSION, snapshotter $SNAPSHOTTER_VERSION)" >&2
go mod tidy >&2

ldflags=$(k8s_version_ldflags "$K8S_VERSION")
build() { go_wrapper_build "$src" "$bin/$1" "$2" "${3:-$ldflags}"; }  # name package [ldflags]
build etcd ./cmd/etcd "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubectl k8s.io/kubernetes/cmd/kubectl
build csi-provisioner "$provisioner_module/cmd/csi-provisioner" "-s -w -X main.version=$PROVISIONER_VERSION"
build csi-resizer "$resizer_module/cmd/csi-resizer" "-s -w -X main.version=$RESIZER_VERSION"
build csi-snapshotter "$snapshotter_module/cmd/csi-snapshotter" "-s -w -X main.version=$SNAPSHOTTER_VERSION"
build snapshot-controller "$snapshotter_module/cmd/snapshot-controller" "-s -w -X main.version=$SNAPSHOTTER_VERSION"
# The VolumeSnapshot CRDs of the same release, from its client module.
client_module=github.com/kubernetes-csi/external-snapshotter/client/$snapshotter_major
client_dir=$(go mod download -json "$client_module@$SNAPSHOTTER_VERSION" 2>/dev/null | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[[ -d $client_dir/config/crd ]] || { echo "no CRDs in $client_module@$SNAPSHOTTER_VERSION" >&2; exit 1; }
mkdir -p "$cache/crd"
for f in "$client_dir"/config/crd/snapshot.storage.k8s.io_*.yaml; do cat "$f"; echo "---"; done >"$cache/crd/snapshot-crds.yaml.tmp"
mv "$cache/crd/snapshot-crds.yaml.tmp" "$cache/crd/snapshot-crds.yaml"
cd "$root"
rm -rf "$src"
echo "$bin"
