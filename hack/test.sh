#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests (as root, the node tests run the
# real mount(2) path in private mount namespaces), the fuzz targets (corpus and a bounded random
# run), a non-Go gRPC client on the real socket, the chaos test (SIGKILLs under throttling),
# the abuse tier (the release binary in a memory cgroup under hostile load),
# csi-sanity over the real socket, the users' scenarios through a real Kubernetes control plane
# and the real CSI sidecars (built from the Go module proxy, cached under ~/.cache), the
# deployment checks (manifests, chart, examples), and ends with "N passed, M failed" counting
# every check of every tier.
# Installs what it needs; a missing tool is an install step, never a skip. Each tier is a
# script in hack/tiers/ that ends with "<tier>: N passed, M failed" and runs on its own too.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/common.sh
source hack/lib/common.sh

passed=0
failed=0
log=$(mktemp -t fsx-test.XXXXXX)
trap 'rm -f "$log"' EXIT

section() { printf '\n==> %s\n' "$*"; }

section "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo --version
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
cached_cargo_target

section "cargo fmt --check"
if cargo fmt --all -- --check; then passed=$((passed + 1)); else echo "FAILED: cargo fmt"; failed=$((failed + 1)); fi

section "cargo clippy (warnings are errors)"
if cargo clippy --workspace --all-targets --quiet -- -D warnings; then
  passed=$((passed + 1))
else
  echo "FAILED: cargo clippy"; failed=$((failed + 1))
fi

section "cargo test --workspace"
if [[ $(id -u) -ne 0 ]]; then
  echo "note: not root: the node tests that mount will say so and skip; CI runs as root"
fi
set +e
# The fuzz targets run in their own tier below, with a time budget.
cargo test --workspace --no-fail-fast -- --skip fuzz_ 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
read -r p f < <(cargo_counts "$log") || true
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
if [[ $rc -ne 0 ]] && ! grep -q '^test result: FAILED' "$log"; then
  echo "FAILED: cargo test did not complete (build error?)"; failed=$((failed + 1))
fi

# Runs a sub-suite that ends with "<label>: N passed, M failed" and adds its counts; a
# non-zero exit without counted failures counts as one failure.
run_counted() { # label, script, args...
  local label=$1 script=$2 rc p f
  shift 2
  section "$label"
  set +e
  bash "$script" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  read -r p f < <(tier_counts "$label" "$log") || true
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  if [[ $rc -ne 0 && ${f:-0} -eq 0 ]]; then echo "FAILED: $script exited $rc"; failed=$((failed + 1)); fi
}
FUZZ_SECONDS=${FUZZ_SECONDS:-6}
run_counted "fuzz" hack/tiers/fuzz.sh "$FUZZ_SECONDS"
run_counted "python grpcio" hack/tiers/grpcio.sh
run_counted "chaos" hack/tiers/chaos.sh
run_counted "abuse" hack/tiers/abuse.sh
run_counted "csi-sanity" hack/tiers/sanity.sh
run_counted "cluster" hack/tiers/control-plane.sh
run_counted "deploy checks" hack/tiers/deploy.sh
run_counted "node" hack/tiers/node.sh

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
