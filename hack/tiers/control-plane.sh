#!/usr/bin/env bash
# The control-plane tier: builds (cached) and starts a real Kubernetes control plane on
# 127.0.0.1 with the driver, the FSx emulator and the real CSI sidecars (hack/cluster.sh), then
# runs the users' scenarios through them (tests/cluster/scenarios.py): first with the
# kustomize install, then with the rendered Helm chart; then chart upgrades with helm itself
# (hack/tiers/chart-upgrades.sh). Ends with "cluster: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
CLUSTER_DIR=$(mktemp -d -t fsx-cluster.XXXXXX)
export CLUSTER_DIR
log=$(mktemp -t fsx-cluster-log.XXXXXX)
finish() {
  local rc=$?
  if [[ $rc -ne 0 && -d $CLUSTER_DIR/logs ]]; then
    for f in "$CLUSTER_DIR"/logs/*.log; do echo "--- the end of $(basename "$f")"; tail -n 15 "$f"; done
  fi
  bash hack/cluster.sh down >/dev/null 2>&1 || true
  rm -f "$log"
}
trap finish EXIT
passed=0
failed=0
count() { # label, what: adds the log's "<label>: N passed, M failed"
  local p f
  read -r p f < <(tier_counts "$1" "$log") || true
  if [[ -z ${p:-} ]]; then failed=$((failed + 1)); echo "FAIL $2 did not finish"; return; fi
  passed=$((passed + p)); failed=$((failed + f))
}
started=$SECONDS
if ! bash hack/cluster.sh up --no-node kustomize; then
  echo "cluster: 0 passed, 1 failed (the cluster did not come up)"
  exit 1
fi
echo "==> cluster up in $((SECONDS - started))s (build included)"
python3 tests/cluster/scenarios.py --only kustomize 2>&1 | tee "$log" || true
count cluster "the scenarios"
echo "==> the rendered Helm chart"
if bash hack/cluster.sh reinstall helm; then
  python3 tests/cluster/scenarios.py --only helm 2>&1 | tee "$log" || true
  count cluster "the scenarios"
else
  failed=$((failed + 1)); echo "FAIL installing the Helm chart"
fi
echo "==> chart upgrades on the real apiserver"
bash hack/cluster.sh uninstall
bash hack/tiers/chart-upgrades.sh 2>&1 | tee "$log" || true
count "chart upgrades" "the chart upgrade tests"
echo "cluster tier: $((SECONDS - started))s"
echo "cluster: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
