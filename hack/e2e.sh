#!/usr/bin/env bash
# End-to-end test on a real EKS cluster (needs an AWS account; it cannot run in CI here).
# It creates nothing it does not delete: installs the driver, runs the dynamic-provisioning
# example, checks the pod's file on the FSx volume, then deletes everything, waiting until
# the file system is gone.
#
#   IMAGE=123456789012.dkr.ecr.us-east-1.amazonaws.com/fsx-csi-driver:0.1.0 \
#   ROLE_ARN=arn:aws:iam::123456789012:role/AmazonFSxCSIDriverRole \
#   SUBNET_ID=subnet-... SECURITY_GROUP_ID=sg-... hack/e2e.sh
#
# Needs: kubectl pointing at the cluster, helm, aws CLI. The role must carry
# deploy/iam-policy.json and trust the cluster's OIDC provider for
# kube-system:fsx-csi-controller-sa. The security group must allow TCP 988 from the nodes,
# and the nodes need the Lustre client kernel module.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IMAGE:?set IMAGE to the pushed fsx-csi-driver image}"
: "${ROLE_ARN:?set ROLE_ARN to the IAM role of the controller}"
: "${SUBNET_ID:?set SUBNET_ID}"
: "${SECURITY_GROUP_ID:?set SECURITY_GROUP_ID}"
TIMEOUT=${TIMEOUT:-30m}
ns=fsx-e2e-$RANDOM
release=fsx-e2e
fs_id=""

cleanup() {
  set +e
  echo "==> cleaning up"
  kubectl delete namespace "$ns" --wait=true --timeout=10m
  kubectl delete storageclass fsx-e2e-sc --ignore-not-found
  if [[ -n "$fs_id" ]]; then
    echo "    waiting for $fs_id to be deleted"
    for _ in $(seq 120); do
      aws fsx describe-file-systems --file-system-ids "$fs_id" >/dev/null 2>&1 || break
      sleep 15
    done
  fi
  helm uninstall "$release" --namespace kube-system --wait
}
trap cleanup EXIT

echo "==> installing the driver ($IMAGE)"
helm upgrade --install "$release" deploy/helm/aws-fsx-csi-driver --namespace kube-system \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set controller.serviceAccount.annotations."eks\.amazonaws\.com/role-arn"="$ROLE_ARN" \
  --wait --timeout 5m

echo "==> dynamic provisioning example"
kubectl create namespace "$ns"
sed -e "s/subnet-0123456789abcdef0/$SUBNET_ID/" -e "s/sg-0123456789abcdef0/$SECURITY_GROUP_ID/" \
  -e "s/name: fsx-sc/name: fsx-e2e-sc/" deploy/examples/dynamic-provisioning/storageclass.yaml | kubectl apply -f -
sed -e "s/storageClassName: fsx-sc/storageClassName: fsx-e2e-sc/" deploy/examples/dynamic-provisioning/claim.yaml \
  | kubectl apply -n "$ns" -f -
kubectl apply -n "$ns" -f deploy/examples/dynamic-provisioning/pod.yaml

echo "==> waiting for the PVC to bind (FSx creations take 5-15 minutes)"
kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Bound pvc/fsx-claim --timeout="$TIMEOUT"
fs_id=$(kubectl get pv "$(kubectl get pvc -n "$ns" fsx-claim -o jsonpath='{.spec.volumeName}')" -o jsonpath='{.spec.csi.volumeHandle}')
echo "    bound to $fs_id"
kubectl wait -n "$ns" --for=condition=Ready pod/fsx-app --timeout=10m

echo "==> checking the file on the volume"
sleep 12
out=$(kubectl exec -n "$ns" fsx-app -- cat /data/out.txt)
echo "$out" | tail -n 3
grep -q "hello from FSx" <<<"$out"
kubectl exec -n "$ns" fsx-app -- sh -c 'grep -q " /data lustre " /proc/mounts'
echo "==> e2e: OK"
