# What the hack/ scripts share; sourced, never run. Defines ROOT (the repository), puts bin/
# and cargo on PATH, and provides:
#   ensure_go WHY                      Go from Debian's packages, if missing
#   install_go_tool NAME VERSION PKG   `go install` into bin/, rebuilt only when VERSION changes
#   go_wrapper_module DIR NAME GO      a Go module in DIR (go.mod from stdin's require/replace
#                                      lines), for commands `go install` cannot build alone
#   go_wrapper_tools DIR PKG...        its tools.go, so `go mod tidy` keeps PKG's dependencies
#   go_wrapper_build DIR OUT PKG FLAGS builds PKG in DIR into OUT (atomically)
#   k8s_gomod / k8s_staging_replaces / k8s_version_ldflags
#                                      k8s.io/kubernetes through such a module
#   cached_cargo_target                a clone without target/ builds into ~/.cache (per rustc)
#   tier_counts LABEL FILE             "P F" from the last "LABEL: P passed, F failed" line
#   cargo_counts FILE                  "P F" summed over cargo test's "test result:" lines
#   check WHAT COMMAND...              runs a check, prints ok/FAIL, counts in passed/failed
#   wait_for_socket PATH PID SECONDS   until a unix socket accepts connections (PID alive)
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/bin:$HOME/.cargo/bin:$PATH"

# The Go-built tools installed into bin/ (each with a .NAME.version stamp).
HELM_VERSION=v3.22.0
KUSTOMIZE_VERSION=v5.8.1
ACTIONLINT_VERSION=v1.7.12
CSI_SANITY_VERSION=v5.4.0
# promtool (checks and unit-tests the chart's alerts); Prometheus 3.x modules are v0.3xx.
PROMTOOL_VERSION=v0.316.0

# A fresh clone (no target/) builds into a cargo target directory kept under ~/.cache, one per
# rustc version: a second run of the test command on this machine rebuilds only this
# workspace's crates (their sources are newer), not the ~360 crates of Cargo.lock. target/ becomes a
# link to it, so every script's target/... paths stay as they are. Other rustc versions'
# directories are removed (each is ~16 GB). A checkout with its own target/ keeps it.
cached_cargo_target() {
  [[ -e "$ROOT/target" || -L "$ROOT/target" ]] && return
  local base stamp
  base="${XDG_CACHE_HOME:-$HOME/.cache}/fsx-csi-driver/cargo"
  stamp="t1-$(rustc -vV | sha256sum | cut -c1-12)"
  mkdir -p "$base/$stamp"
  find "$base" -mindepth 1 -maxdepth 1 -type d ! -name "$stamp" -exec rm -rf {} +
  ln -s "$base/$stamp" "$ROOT/target"
  echo "==> cargo builds into $base/$stamp (target/ links to it)" >&2
}

ensure_go() { # why
  command -v go >/dev/null && return
  echo "==> installing Go (needed to build $1)" >&2
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
}

install_go_tool() { # name version package
  mkdir -p "$ROOT/bin"
  # A `go install`ed binary often reports version "(dev)": the stamp records which it is.
  if [[ ! -x "$ROOT/bin/$1" || "$(cat "$ROOT/bin/.$1.version" 2>/dev/null)" != "$2" ]]; then
    ensure_go "$1"
    echo "==> installing $1 $2 into bin/" >&2
    GOBIN="$ROOT/bin" GOFLAGS=-mod=mod go install "$3@$2" >&2
    echo "$2" >"$ROOT/bin/.$1.version"
  fi
}

go_wrapper_module() { # dir module-name go-version; require/replace lines on stdin
  rm -rf "$1"
  mkdir -p "$1"
  { printf 'module %s\n\ngo %s\n\n' "$2" "$3"; cat; } >"$1/go.mod"
}

go_wrapper_tools() { # dir package...
  local dir=$1 p
  shift
  {
    printf '//go:build tools\n\n// The commands this module builds, so that go mod tidy keeps their dependencies.\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'
  } >"$dir/tools.go"
}

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging repository
# with ./staging/src. A wrapper module requires it and replaces each with its published
# v0.MINOR.PATCH twin.
k8s_gomod() { # version: the path of k8s.io/kubernetes's go.mod in the module cache
  go mod download -json "k8s.io/kubernetes@v$1" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p'
}

k8s_staging_replaces() { # version gomod: the wrapper's replace lines, one per staging repository
  local staging s
  mapfile -t staging < <(sed -n 's|^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*|\1|p' "$2" | sort -u)
  [[ ${#staging[@]} -gt 10 ]] || { echo "could not read the staging repositories from $2" >&2; return 1; }
  for s in "${staging[@]}"; do echo "  $s => $s v0.${1#*.}"; done
}

k8s_version_ldflags() { # version: stripped, with the version stamped (kubectl parses the server's)
  local major=${1%%.*} minor=${1#*.} out="-s -w" pkg
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $pkg.gitVersion=v$1 -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$out"
}

go_wrapper_build() { # dir output package ldflags (extra environment may be exported by the caller)
  echo "==> building $(basename "$2")" >&2
  (cd "$1" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -trimpath -ldflags "$4" -o "$2.tmp" "$3" >&2)
  mv "$2.tmp" "$2"
}

tier_counts() { # label file
  sed -n "s/^$1: \\([0-9]*\\) passed, \\([0-9]*\\) failed.*/\\1 \\2/p" "$2" | tail -n 1
}

cargo_counts() { # file
  sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$1" |
    awk '{ p += $1; f += $2; n++ } END { if (n) print p, f }'
}

passed=${passed:-0}
failed=${failed:-0}
check() { # description, command...
  local what=$1 out
  shift
  out=$(mktemp -t fsx-check.XXXXXX)
  if "$@" >"$out" 2>&1; then
    passed=$((passed + 1)); echo "ok   $what"
  else
    failed=$((failed + 1)); echo "FAIL $what"; tail -n 30 "$out" | sed 's/^/     /'
  fi
  rm -f "$out"
}

wait_for_socket() { # path pid seconds
  local end=$((SECONDS + $3))
  while ((SECONDS < end)); do
    kill -0 "$2" 2>/dev/null || return 1
    python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
