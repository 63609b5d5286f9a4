#!/usr/bin/env bash
# Deployment checks: kustomize renders; the output, the Helm chart's output and every
# example validate strictly against Kubernetes 1.30 and the newest version
# kubernetes-validate knows; helm lint; the chart and the kustomize base agree; yamllint;
# and the binary starts with the manifests' own container args.
# Installs kubernetes-validate, yamllint (PyPI), helm and promtool (go install) and, without
# kubectl, kustomize (go install). Also checks the chart's dashboard and alerts
# (deploy/monitoring.py). Ends with "deploy checks: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/common.sh
source hack/lib/common.sh
root=$ROOT
checks=hack/tiers/deploy
export K8S_OLDEST=1.30.0

mkdir -p bin
python3 -c 'import yaml' 2>/dev/null || pip install -q pyyaml
command -v kubernetes-validate >/dev/null || pip install -q kubernetes-validate
command -v yamllint >/dev/null || pip install -q yamllint
install_go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
if command -v kubectl >/dev/null; then
  kustomize() { kubectl kustomize "$@"; }
else
  install_go_tool kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5
  kustomize() { command kustomize build "$@"; }
fi

# The same debug build as the control-plane and node tiers' (with the stand-in): no rebuild.
cargo build --quiet -p fsx-csi-driver -p fsx-emulator --features fsx-csi-driver/lustre-stand-in

tmp=$(mktemp -d -t fsx-deploy.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
validate() { # file: strict, against the oldest supported and the newest known version
  kubernetes-validate --strict --quiet -k "$K8S_OLDEST" "$1" && kubernetes-validate --strict --quiet "$1"
}

check "kustomize renders deploy/kubernetes/base" kustomize deploy/kubernetes/base
check "kustomize renders deploy/kubernetes/overlays/stable" bash -c "$(declare -f kustomize); kustomize deploy/kubernetes/overlays/stable >'$tmp/kustomize.yaml'"
check "rendered kustomize output validates (strict, $K8S_OLDEST and newest)" validate "$tmp/kustomize.yaml"
check "helm lint" helm lint --strict deploy/helm/aws-fsx-csi-driver
check "helm template renders" bash -c "helm template fsx deploy/helm/aws-fsx-csi-driver --namespace kube-system --kube-version $K8S_OLDEST >'$tmp/helm.yaml'"
check "rendered chart validates (strict, $K8S_OLDEST and newest)" validate "$tmp/helm.yaml"
# VolumeSnapshot objects are CRDs and VolumeAttributesClass is newer than the oldest version
# checked: those documents are checked by tests/examples.rs (the driver's own parsers) and in
# the control-plane tier; the rest of each file validates here.
for f in $(find deploy/examples -name '*.yaml' | sort); do
  python3 hack/lib/manifests.py core-docs "$f" "$tmp/example.yaml"
  if [[ -s $tmp/example.yaml ]]; then
    check "example $f validates" validate "$tmp/example.yaml"
  fi
done
check "every chart value is used by a template" python3 $checks/chart_values.py deploy/helm/aws-fsx-csi-driver
fixtures=tests/cluster/fixtures
check "helm lint with a values file written for the Go driver's chart" helm lint --strict -f $fixtures/go-chart-values.yaml deploy/helm/aws-fsx-csi-driver
check "the Go chart's values render valid objects" bash -c "helm template fsx deploy/helm/aws-fsx-csi-driver --namespace kube-system --kube-version $K8S_OLDEST -f $fixtures/go-chart-values.yaml >'$tmp/go.yaml' && kubernetes-validate --strict --quiet -k $K8S_OLDEST '$tmp/go.yaml'"
check "the Go chart's map extraTags and image maps become the driver's and the sidecars' forms" bash -c "grep -q 'value: \"env=prod,team=ml\"' '$tmp/go.yaml' && grep -q 'image: public.ecr.aws/csi-components/csi-provisioner:v5.3.0-eksbuild.1' '$tmp/go.yaml'"
check "this chart's earlier values (string images, replicas, string extraTags) render valid objects" bash -c "helm template fsx deploy/helm/aws-fsx-csi-driver --namespace kube-system --kube-version $K8S_OLDEST -f $fixtures/previous-values.yaml >'$tmp/prev.yaml' && kubernetes-validate --strict --quiet -k $K8S_OLDEST '$tmp/prev.yaml' && grep -q 'replicas: 3' '$tmp/prev.yaml'"
check "the chart's storageClasses render valid StorageClasses, numbers and booleans as strings" bash -c "$(declare -f validate); set -e
  helm template fsx deploy/helm/aws-fsx-csi-driver --namespace kube-system --kube-version $K8S_OLDEST -f $fixtures/storage-classes-values.yaml >'$tmp/sc.yaml'
  validate '$tmp/sc.yaml'
  grep -q 'throughputCapacity: \"4000\"' '$tmp/sc.yaml'
  grep -q 'finalBackupOnDelete: \"true\"' '$tmp/sc.yaml'
  grep -q 'provisioningMode: \"subdirectory\"' '$tmp/sc.yaml'"
refused_by_schema() { # a StorageClass parameter the key table does not allow
  ! helm template fsx deploy/helm/aws-fsx-csi-driver --kube-version "$K8S_OLDEST" --set 'storageClasses[0].name=x' \
    --set 'storageClasses[0].parameters.subnetId=subnet-0123456789abcdef0' --set "storageClasses[0].parameters.$1" >/dev/null 2>&1
}
check "the chart's schema refuses an unknown StorageClass key and a value outside a key's list" bash -c "$(declare -f refused_by_schema); K8S_OLDEST=$K8S_OLDEST; refused_by_schema storageTyp=SSD && refused_by_schema storageType=NVME && ! refused_by_schema storageType=INTELLIGENT_TIERING"
subdir_class() { # a subdirectory class with one more parameter: 0 if the schema takes it
  helm template fsx deploy/helm/aws-fsx-csi-driver --kube-version "$K8S_OLDEST" --set 'storageClasses[0].name=x' \
    --set 'storageClasses[0].parameters.provisioningMode=subdirectory' \
    --set 'storageClasses[0].parameters.fileSystemId=fs-0123456789abcdef0' --set "storageClasses[0].parameters.$1" >/dev/null 2>&1
}
check "the chart's schema takes a subdirectory class and refuses file system keys in it" bash -c "$(declare -f subdir_class); K8S_OLDEST=$K8S_OLDEST; subdir_class basePath=/k8s && ! subdir_class subnetId=subnet-0123456789abcdef0 && ! subdir_class provisioningMode=dir"
toggles() { python3 $checks/chart_toggles.py "$root/bin/helm" deploy/helm/aws-fsx-csi-driver "$K8S_OLDEST"; }
check "every chart toggle renders both ways, and the schema refuses mistyped values" toggles
check "chart and kustomize base agree" python3 $checks/compare_manifests.py "$tmp/kustomize.yaml" "$tmp/helm.yaml"
# Metrics on: the kustomize component and the chart's values render the same thing.
mkdir -p "$tmp/metrics-overlay"
rel() { python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$tmp/metrics-overlay"; }
printf 'resources:\n  - %s\ncomponents:\n  - %s\n' "$(rel deploy/kubernetes/overlays/stable)" "$(rel deploy/kubernetes/components/metrics)" >"$tmp/metrics-overlay/kustomization.yaml"
check "with metrics on, the kustomize component and the chart agree, and both validate" bash -c "$(declare -f kustomize validate); set -e
  kustomize '$tmp/metrics-overlay' >'$tmp/k-metrics.yaml'
  helm template fsx deploy/helm/aws-fsx-csi-driver --namespace kube-system --kube-version $K8S_OLDEST --set controller.metrics.enabled=true --set node.metrics.enabled=true >'$tmp/h-metrics.yaml'
  validate '$tmp/k-metrics.yaml'; validate '$tmp/h-metrics.yaml'
  python3 $checks/compare_manifests.py '$tmp/k-metrics.yaml' '$tmp/h-metrics.yaml'"
# Subdirectory volumes on: likewise, the privileged controller they need.
mkdir -p "$tmp/subdir-overlay"
printf 'resources:\n  - %s\ncomponents:\n  - %s\n' "$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' deploy/kubernetes/overlays/stable "$tmp/subdir-overlay")" \
  "$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' deploy/kubernetes/components/subdirectory "$tmp/subdir-overlay")" >"$tmp/subdir-overlay/kustomization.yaml"
check "with subdirectory volumes on, the kustomize component and the chart agree, both validate, and only then is the controller privileged" bash -c "$(declare -f kustomize validate); set -e
  kustomize '$tmp/subdir-overlay' >'$tmp/k-subdir.yaml'
  helm template fsx deploy/helm/aws-fsx-csi-driver --namespace kube-system --kube-version $K8S_OLDEST --set controller.subdirectoryVolumes.enabled=true >'$tmp/h-subdir.yaml'
  validate '$tmp/k-subdir.yaml'; validate '$tmp/h-subdir.yaml'
  python3 $checks/compare_manifests.py '$tmp/k-subdir.yaml' '$tmp/h-subdir.yaml'
  grep -q -- '--subdirectory-mount-dir=/var/lib/fsx-csi-driver/mounts' '$tmp/h-subdir.yaml'
  [ \$(grep -c 'privileged: true' '$tmp/h-subdir.yaml') -gt \$(grep -c 'privileged: true' '$tmp/helm.yaml') ]
  ! grep -q -- '--subdirectory-mount-dir' '$tmp/helm.yaml'"
# The dashboard and the alerts: queries against the driver's metrics, the rules through
# promtool (check, and the unit tests in tests/monitoring), a runbook line per alert.
install_go_tool promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool
check "the chart's Grafana dashboard and PrometheusRule (promtool check and test rules)" \
  python3 $checks/monitoring.py "$root/bin/helm" "$root/bin/promtool" deploy/helm/aws-fsx-csi-driver "$K8S_OLDEST"
check "yamllint deploy/" yamllint -s deploy/
check "IAM policy is valid JSON" python3 -m json.tool deploy/iam-policy.json
check "IAM policy works in every partition (aws, aws-us-gov, aws-cn): no arn:aws: literal" bash -c "! grep -q 'arn:aws:' deploy/iam-policy.json"
install_go_tool actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
check "the GitHub workflows pass actionlint" actionlint -shellcheck= .github/workflows/*.yaml
check "the binary starts with the manifests' args" python3 $checks/manifest_args.py target/debug/fsx-csi-driver target/debug/fsx-emulator "$tmp/kustomize.yaml" "$tmp/helm.yaml" "$tmp/go.yaml" "$tmp/prev.yaml"

echo "deploy checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
