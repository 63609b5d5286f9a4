#!/usr/bin/env python3
"""Renders the chart with each toggle both ways and checks what each way must contain, and that
the schema refuses mistyped values. Every rendering is validated strictly.

usage: chart_toggles.py HELM CHART KUBE_VERSION
Prints one line per check and "toggles: N passed, M failed".
"""
import subprocess

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import manifests  # noqa: E402  (hack/lib/manifests.py: the one reader of rendered manifests)


def render(helm, chart, kube, *sets):
    args = [helm, "template", "fsx", chart, "--namespace", "kube-system", "--kube-version", kube]
    for s in sets:
        args += ["--set", s]
    p = subprocess.run(args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def objects(text):
    return manifests.objects(text)


def validate(text):
    p = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-"], input=text, capture_output=True, text=True)
    return p.returncode == 0, p.stdout + p.stderr


def pod(objs, kind, name):
    return manifests.pod_spec(objs[(kind, name)])


def main(helm, chart, kube):
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))

    cases = [
        ("nodeComponentOnly", lambda o: ("StatefulSet", "fsx-csi-controller") not in o
         and ("ClusterRole", "fsx-csi-external-provisioner-role") not in o and ("DaemonSet", "fsx-csi-node") in o,
         lambda o: ("StatefulSet", "fsx-csi-controller") in o),
        ("controller.podDisruptionBudget.enabled", lambda o: ("PodDisruptionBudget", "fsx-csi-controller") in o,
         lambda o: ("PodDisruptionBudget", "fsx-csi-controller") not in o),
        ("controller.serviceAccount.create", lambda o: ("ServiceAccount", "fsx-csi-controller-sa") in o,
         lambda o: ("ServiceAccount", "fsx-csi-controller-sa") not in o
         and pod(o, "StatefulSet", "fsx-csi-controller")["serviceAccountName"] == "fsx-csi-controller-sa"),
        ("node.serviceAccount.create", lambda o: ("ServiceAccount", "fsx-csi-node-sa") in o,
         lambda o: ("ServiceAccount", "fsx-csi-node-sa") not in o),
        ("node.tolerateAllTaints", lambda o: pod(o, "DaemonSet", "fsx-csi-node")["tolerations"] == [{"operator": "Exists"}],
         lambda o: {"key": "fsx.csi.aws.com/agent-not-ready", "operator": "Exists"} in pod(o, "DaemonSet", "fsx-csi-node")["tolerations"]
         and {"operator": "Exists"} not in pod(o, "DaemonSet", "fsx-csi-node")["tolerations"]),
        ("controller.metrics.enabled",
         lambda o: "--metrics-address=:3301" in pod(o, "StatefulSet", "fsx-csi-controller")["containers"][0]["args"]
         and ("Service", "fsx-csi-controller-metrics") in o,
         lambda o: not any("--metrics-address" in a for a in pod(o, "StatefulSet", "fsx-csi-controller")["containers"][0]["args"])
         and ("Service", "fsx-csi-controller-metrics") not in o),
        ("node.metrics.enabled",
         lambda o: "--metrics-address=:3302" in pod(o, "DaemonSet", "fsx-csi-node")["containers"][0]["args"]
         and ("Service", "fsx-csi-node-metrics") in o,
         lambda o: ("Service", "fsx-csi-node-metrics") not in o),
        ("sidecars.nodeDriverRegistrar.enabled",
         lambda o: "node-driver-registrar" in [c["name"] for c in pod(o, "DaemonSet", "fsx-csi-node")["containers"]]
         and not any(a.startswith("--kubelet-registration-path") for a in pod(o, "DaemonSet", "fsx-csi-node")["containers"][0]["args"]),
         lambda o: "node-driver-registrar" not in [c["name"] for c in pod(o, "DaemonSet", "fsx-csi-node")["containers"]]
         and "--kubelet-registration-path=/var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock" in pod(o, "DaemonSet", "fsx-csi-node")["containers"][0]["args"]
         and "registration-dir" not in [v["name"] for v in pod(o, "DaemonSet", "fsx-csi-node")["volumes"]]),
        ("sidecars.snapshotter.enabled",
         lambda o: "csi-snapshotter" in [c["name"] for c in pod(o, "StatefulSet", "fsx-csi-controller")["containers"]]
         and ("ClusterRole", "fsx-csi-external-snapshotter-role") in o,
         lambda o: "csi-snapshotter" not in [c["name"] for c in pod(o, "StatefulSet", "fsx-csi-controller")["containers"]]
         and ("ClusterRole", "fsx-csi-external-snapshotter-role") not in o),
    ]
    for key, when_true, when_false in cases:
        for value, expect in (("true", when_true), ("false", when_false)):
            rc, out, err = render(helm, chart, kube, f"{key}={value}")
            if rc != 0:
                check(f"{key}={value} renders", False, err.strip())
                continue
            valid, why = validate(out)
            check(f"{key}={value} renders valid objects with what it promises", valid and expect(objects(out)), why)
    rc, out, err = render(helm, chart, kube, "proxy.httpsProxy=http://proxy:3128", "proxy.noProxy=.internal",
                          "controller.awsAccessSecret.name=aws-secret", "controller.logLevel=5",
                          "imagePullSecrets[0]=regcred", "node.dnsPolicy=None", "node.dnsConfig.nameservers[0]=169.254.169.253")
    env = {e["name"]: e for e in pod(objects(out), "StatefulSet", "fsx-csi-controller")["containers"][0]["env"]} if rc == 0 else {}
    check("proxy, static credentials from a secret and log level reach the controller",
          env.get("HTTPS_PROXY", {}).get("value") == "http://proxy:3128" and env.get("NO_PROXY", {}).get("value") == ".internal"
          and env.get("AWS_ACCESS_KEY_ID", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "aws-secret"
          and env.get("RUST_LOG", {}).get("value") == "trace", err or env)
    # ServiceMonitors (a CRD, so not validated against the core schemas), with both endpoints on.
    both = ("controller.metrics.enabled=true", "node.metrics.enabled=true")
    for value in ("true", "false"):
        rc, out, err = render(helm, chart, kube, *both, f"serviceMonitor.enabled={value}", "serviceMonitor.labels.release=prom")
        docs = objects(out) if rc == 0 else {}
        monitors = {n for (k, n) in docs if k == "ServiceMonitor"}
        ok = monitors == ({"fsx-csi-controller", "fsx-csi-node"} if value == "true" else set())
        if value == "true" and ok:
            m = docs[("ServiceMonitor", "fsx-csi-node")]
            svc = docs[("Service", "fsx-csi-node-metrics")]
            ok = (m["metadata"]["labels"].get("release") == "prom"
                  and all(svc["metadata"]["labels"].get(k) == v for k, v in m["spec"]["selector"]["matchLabels"].items())
                  and m["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"])
        check(f"serviceMonitor.enabled={value} renders {'a ServiceMonitor per endpoint, selecting its Service' if value == 'true' else 'none'}",
              ok, err or monitors)
    for bad in ["controller.metrics.port=http", "serviceMonitor.interval=often", "controller.replicaCont=3", "controller.logFormat=xml", "node.kubeletPath=relative",
                "csidriver.fsGroupPolicy=Always", "sidecars.provisioner.timeout=soon", "image.pullPolicy=Sometimes"]:
        rc, _, err = render(helm, chart, kube, bad)
        check(f"the schema refuses {bad}", rc != 0 and "schema" in err, err.strip()[:200])
    passed = sum(results)
    print(f"toggles: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
