#!/usr/bin/env bash
# Builds the Go driver (kubernetes-sigs/aws-fsx-csi-driver) from the Go module proxy, for
# hack/compare.sh; cached under ~/.cache with a version stamp. Prints the binary's path on its
# last line.
#
#   GO_DRIVER_VERSION   the Go driver's release (default v1.9.0)
#
# `go install sigs.k8s.io/aws-fsx-csi-driver/cmd@VERSION` fails here (the proxy refuses the
# version list it asks for), so a wrapper module requires the release, takes its go.sum, and
# builds its cmd package with CGO_ENABLED=0 and the upstream Makefile's -ldflags.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=common.sh
source hack/lib/common.sh
GO_DRIVER_VERSION=${GO_DRIVER_VERSION:-v1.9.0}
BUILD_SCRIPT_VERSION=1
module=sigs.k8s.io/aws-fsx-csi-driver
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fsx-csi-driver/go-driver/$GO_DRIVER_VERSION-b$BUILD_SCRIPT_VERSION"
bin="$cache/aws-fsx-csi-driver"
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
ensure_go "the Go driver"
src="$cache/src"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
dir=$(go mod download -json "$module@$GO_DRIVER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[[ -d $dir ]] || { echo "could not download $module@$GO_DRIVER_VERSION" >&2; exit 1; }
go_line=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$dir/go.mod" | head -n 1)
echo "require $module $GO_DRIVER_VERSION" | go_wrapper_module "$src" fsx-csi-driver.local/compare "${go_line:-1.24}"
go_wrapper_tools "$src" "$module/cmd"
cp "$dir/go.sum" "$src/go.sum"
chmod u+w "$src/go.sum"
echo "==> resolving the Go driver's modules ($GO_DRIVER_VERSION)" >&2
(cd "$src" && go mod tidy >&2)
ldflags="-X $module/pkg/driver.driverVersion=$GO_DRIVER_VERSION -X $module/pkg/cloud.driverVersion=$GO_DRIVER_VERSION"
ldflags+=" -X $module/pkg/driver.gitCommit=release -X $module/pkg/driver.buildDate=release -s -w"
CGO_ENABLED=0 go_wrapper_build "$src" "$bin" "$module/cmd" "$ldflags"
rm -rf "$src"
echo "$bin"
