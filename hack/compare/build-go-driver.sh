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
GO_DRIVER_VERSION=${GO_DRIVER_VERSION:-v1.9.0}
BUILD_SCRIPT_VERSION=1
module=sigs.k8s.io/aws-fsx-csi-driver
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fsx-csi-driver/go-driver/$GO_DRIVER_VERSION-b$BUILD_SCRIPT_VERSION"
bin="$cache/aws-fsx-csi-driver"
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "==> installing Go (needed to build the Go driver)" >&2
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi
src="$cache/src"
rm -rf "$src"
mkdir -p "$src"
cd "$src"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
dir=$(go mod download -json "$module@$GO_DRIVER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[[ -d $dir ]] || { echo "could not download $module@$GO_DRIVER_VERSION" >&2; exit 1; }
go_line=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$dir/go.mod" | head -n 1)
{
  echo "module fsx-csi-driver.local/compare"
  echo
  echo "go ${go_line:-1.24}"
  echo
  echo "require $module $GO_DRIVER_VERSION"
} >go.mod
cp "$dir/go.sum" go.sum
chmod u+w go.sum
cat >tools.go <<GO
//go:build tools

// The Go driver's command, so that go mod tidy keeps its dependencies.
package tools

import _ "$module/cmd"
GO
echo "==> resolving the Go driver's modules ($GO_DRIVER_VERSION)" >&2
go mod tidy >&2
ldflags="-X $module/pkg/driver.driverVersion=$GO_DRIVER_VERSION -X $module/pkg/cloud.driverVersion=$GO_DRIVER_VERSION"
ldflags+=" -X $module/pkg/driver.gitCommit=release -X $module/pkg/driver.buildDate=release -s -w"
echo "==> building the Go driver $GO_DRIVER_VERSION" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$module/cmd" >&2
mv "$bin.tmp" "$bin"
cd /
rm -rf "$src"
echo "$bin"
