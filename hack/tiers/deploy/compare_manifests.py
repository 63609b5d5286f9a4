#!/usr/bin/env python3
"""Asserts that the kustomize base and the Helm chart render the same deployment in the ways
that matter: the same objects, the driver name and CSIDriver spec, the same containers per
workload with the same args, env, ports, socket and kubelet paths, sidecar images, RBAC rules,
security contexts, resources and the preStop hook. Labels and the image name may differ.

usage: compare_manifests.py KUSTOMIZE.yaml HELM.yaml
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import manifests  # noqa: E402  (hack/lib/manifests.py: the one reader of rendered manifests)


def load(path):
    return manifests.objects(path)


def containers(obj):
    spec = manifests.pod_spec(obj)
    out = {}
    for c in spec["containers"]:
        image = c["image"]
        if c["name"] == "fsx-plugin":
            image = image.rsplit(":", 1)[-1]  # the tag; the repository is the user's
        out[c["name"]] = {
            "image": image,
            "args": c.get("args", []),
            "env": c.get("env", []),
            "ports": c.get("ports", []),
            "volumeMounts": c.get("volumeMounts", []),
            "securityContext": c.get("securityContext", {}),
            "resources": c.get("resources", {}),
            "livenessProbe": c.get("livenessProbe", {}),
            "lifecycle": c.get("lifecycle", {}),
        }
    return out


def pod_shape(obj):
    spec = manifests.pod_spec(obj)
    keys = ["serviceAccountName", "priorityClassName", "securityContext", "volumes", "tolerations", "nodeSelector",
            "automountServiceAccountToken", "terminationGracePeriodSeconds"]
    return {k: spec.get(k) for k in keys}


def main(kustomize_path, helm_path):
    k, h = load(kustomize_path), load(helm_path)
    failures = []

    def check(what, a, b):
        if a != b:
            failures.append(f"{what} differs:\n  kustomize: {a}\n  helm:      {b}")

    check("objects", sorted(k), sorted(h))
    check("CSIDriver spec", k[("CSIDriver", "fsx.csi.aws.com")]["spec"], h[("CSIDriver", "fsx.csi.aws.com")]["spec"])
    for key in [("StatefulSet", "fsx-csi-controller"), ("DaemonSet", "fsx-csi-node")]:
        if key not in k or key not in h:
            failures.append(f"{key} missing")
            continue
        kc, hc = containers(k[key]), containers(h[key])
        check(f"{key[1]} containers", list(kc), list(hc))
        for name in kc:
            for field in kc[name]:
                check(f"{key[1]}/{name} {field}", kc[name][field], hc.get(name, {}).get(field))
        check(f"{key[1]} pod spec", pod_shape(k[key]), pod_shape(h[key]))
        check(f"{key[1]} replicas/strategy", {x: k[key]["spec"].get(x) for x in ("replicas", "updateStrategy", "podManagementPolicy")},
              {x: h[key]["spec"].get(x) for x in ("replicas", "updateStrategy", "podManagementPolicy")})
    for key in k:
        if key[0] in ("ClusterRole", "Role"):
            check(f"{key} rules", k[key].get("rules"), h.get(key, {}).get("rules"))
        if key[0] in ("ClusterRoleBinding", "RoleBinding"):
            check(f"{key} binding", (k[key]["roleRef"], k[key]["subjects"]), (h.get(key, {}).get("roleRef"), h.get(key, {}).get("subjects")))
        if key[0] == "ServiceAccount":
            check(f"{key} annotations", k[key]["metadata"].get("annotations"), h.get(key, {}).get("metadata", {}).get("annotations"))
        if key[0] in ("PodDisruptionBudget", "Service"):
            check(f"{key} spec", k[key]["spec"], h.get(key, {}).get("spec"))

    # The driver name and socket paths the kubelet and sidecars rely on.
    node = containers(k[("DaemonSet", "fsx-csi-node")])
    reg = " ".join(node["node-driver-registrar"]["args"])
    if "/var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock" not in reg:
        failures.append("node-driver-registrar does not register /var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock")

    for f in failures:
        print("FAIL:", f)
    print(f"compared {len(k)} objects: {'agree' if not failures else str(len(failures)) + ' differences'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
