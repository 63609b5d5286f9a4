#!/usr/bin/env bash
# Part of the control-plane tier (hack/tiers/control-plane.sh runs it).
# Chart upgrades on the test tier's real kube-apiserver (hack/cluster.sh up, nothing installed):
# `helm upgrade` from this chart's earlier layout, `helm upgrade` of a release made with the
# Go driver's chart layout to ours with a values file written for the Go chart, and an install
# over a service account that already exists (serviceAccount.create=false). Immutable
# selectors, kinds that change and objects that helm must not own are what break there.
# Ends with "chart upgrades: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
# shellcheck source=../lib/cluster.sh
source hack/lib/cluster.sh
install_go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
CLUSTER_BIN=$(cat "$CLUSTER_DIR/bin-dir")
chart=deploy/helm/aws-fsx-csi-driver
fixtures=tests/cluster/fixtures
ns=kube-system
log="$CLUSTER_DIR/logs/chart-tests.log"
helm() { "$ROOT/bin/helm" --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" --namespace "$ns" "$@"; }
passed=0
failed=0
selector() { kctl -n "$ns" get "$1" "$2" -o jsonpath='{.spec.selector.matchLabels}' 2>>"$log"; }
same() { [[ "$1" == "$2" ]] || { echo "expected $2, got $1"; return 1; }; }
gone() { ! kctl -n "$ns" get "$1" "$2" >/dev/null 2>&1; }
uninstall() { helm uninstall "$1" --wait --timeout 60s >>"$log" 2>&1 || true; }

# 1. From this chart's earlier layout (0.1.0, packaged in the fixtures).
check "this chart's earlier layout installs" helm install fsx "$fixtures/previous-chart-0.1.0.tgz" --wait=false
ds_before=$(selector daemonset fsx-csi-node)
sts_before=$(selector statefulset fsx-csi-controller)
check "helm upgrade from the earlier layout, with its values file" \
  helm upgrade fsx "$chart" -f "$fixtures/previous-values.yaml" --wait=false
check "the DaemonSet keeps its selector" same "$(selector daemonset fsx-csi-node)" "$ds_before"
check "the StatefulSet keeps its selector" same "$(selector statefulset fsx-csi-controller)" "$sts_before"
uninstall fsx

# 2. From the Go driver's chart layout, with a values file written for the Go chart.
check "the Go chart's layout installs" helm install fsx "$fixtures/go-chart-layout" --wait=false
go_ds=$(selector daemonset fsx-csi-node)
check "helm upgrade from the Go chart's layout with its values file" \
  helm upgrade fsx "$chart" -f "$fixtures/go-chart-values.yaml" --wait=false
check "the node DaemonSet keeps the Go chart's selector" same "$(selector daemonset fsx-csi-node)" "$go_ds"
check "the Go chart's controller Deployment is gone" gone deployment fsx-csi-controller
check "the controller StatefulSet replaces it" kctl -n "$ns" get statefulset fsx-csi-controller
uninstall fsx

# 3. Over a service account made outside the chart (eksctl, Terraform).
kctl -n "$ns" create serviceaccount fsx-csi-controller-sa >>"$log" 2>&1 || true
check "install over an existing service account with serviceAccount.create=false" \
  helm install fsx "$chart" --set controller.serviceAccount.create=false --wait=false
uninstall fsx
check "the service account made outside the chart survives the uninstall" kctl -n "$ns" get serviceaccount fsx-csi-controller-sa
kctl -n "$ns" delete serviceaccount fsx-csi-controller-sa >>"$log" 2>&1 || true

echo "chart upgrades: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
