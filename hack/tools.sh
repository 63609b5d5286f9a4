# Installs the Go-built tools the scripts use into bin/ with a version stamp; sourced.
install_go_tool() { # name version package
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  mkdir -p "$root/bin"
  if [[ ! -x "$root/bin/$1" || "$(cat "$root/bin/.$1.version" 2>/dev/null)" != "$2" ]]; then
    command -v go >/dev/null || { apt-get update -qq && apt-get install -y -qq golang-go >/dev/null; }
    echo "==> installing $1 $2 into bin/" >&2
    GOBIN="$root/bin" GOFLAGS=-mod=mod go install "$3@$2" >&2
    echo "$2" >"$root/bin/.$1.version"
  fi
}
HELM_VERSION=v3.22.0
KUSTOMIZE_VERSION=v5.8.1
ACTIONLINT_VERSION=v1.7.12
