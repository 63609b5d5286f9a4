#!/usr/bin/env python3
"""The chart's dashboard and alerts (values dashboard.enabled, prometheusRule.enabled), checked
against the driver: the rendered ConfigMap carries Grafana's sidecar label and a dashboard
whose every query names only metrics the driver serves (the README's table, which a unit test
keeps equal to the driver's registry); the rendered PrometheusRule's rules pass `promtool check rules` and the unit tests
in tests/monitoring/alerts-test.yaml (`promtool test rules`: each alert fires on what it is for,
and not on what is normal); every alert has a runbook line in the README.

usage: monitoring.py HELM PROMTOOL CHART KUBE_VERSION
Prints one line per check and "monitoring: N passed, M failed".
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import manifests  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


def served_metrics():
    """The series names the driver serves: the README's metric table, which a unit test keeps
    equal to the driver's registry (metrics::tests::the_readme_metric_table_is_the_registry)."""
    text = open(os.path.join(ROOT, "README.md")).read().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for name, kind in re.findall(r"^\| `(fsx_csi_[a-z_]+)` \| (\w+) ", text, re.M):
        names |= {name + "_bucket", name + "_sum", name + "_count"} if kind == "histogram" else {name}
    return names


def main(helm, promtool, chart, kube):
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))

    p = subprocess.run([helm, "template", "fsx", chart, "--namespace", "kube-system", "--kube-version", kube,
                        "--set", "dashboard.enabled=true", "--set", "prometheusRule.enabled=true"],
                       capture_output=True, text=True)
    check("the chart renders with the dashboard and the alerts on", p.returncode == 0, p.stderr[-500:])
    objs = manifests.objects(p.stdout) if p.returncode == 0 else {}
    off = subprocess.run([helm, "template", "fsx", chart, "--namespace", "kube-system", "--kube-version", kube],
                         capture_output=True, text=True).stdout
    check("off by default: no dashboard ConfigMap, no PrometheusRule",
          "fsx-csi-driver-dashboard" not in off and "kind: PrometheusRule" not in off)

    cm = objs.get(("ConfigMap", "fsx-csi-driver-dashboard"))
    check("the dashboard ConfigMap has Grafana's sidecar label", cm and cm["metadata"]["labels"].get("grafana_dashboard") == "1",
          cm and cm["metadata"].get("labels"))
    try:
        dash = json.loads(cm["data"]["fsx-csi-driver.json"]) if cm else {}
    except ValueError as e:
        dash = {}
        check("the dashboard is JSON", False, e)
    exprs = [t["expr"] for panel in dash.get("panels", []) for t in panel.get("targets", [])]
    check("the dashboard has its panels and queries", dash.get("uid") and len(dash.get("panels", [])) >= 8 and
          all(exprs), len(exprs))
    served = served_metrics()
    check("the README lists the driver's metrics", len(served) > 20, sorted(served))
    used = {n for e in exprs for n in re.findall(r"\bfsx_csi_[a-z_]+", e)}
    check("every metric the dashboard queries is one the driver serves", used and used <= served, sorted(used - served))

    rule = objs.get(("PrometheusRule", "fsx-csi-driver-alerts"))
    check("the PrometheusRule renders", rule)
    if not rule:
        return results
    work = tempfile.mkdtemp(prefix="fsx-rules.")
    try:
        import yaml
        with open(os.path.join(work, "rules.yaml"), "w") as f:
            yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
        shutil.copy(os.path.join(ROOT, "tests", "monitoring", "alerts-test.yaml"), work)
        c = subprocess.run([promtool, "check", "rules", os.path.join(work, "rules.yaml")], capture_output=True, text=True)
        check("promtool check rules: the rule's PromQL and templates are valid", c.returncode == 0, (c.stdout + c.stderr)[-800:])
        t = subprocess.run([promtool, "test", "rules", os.path.join(work, "alerts-test.yaml")], capture_output=True, text=True)
        check("promtool test rules: each alert fires on what it is for, and not on what is normal (tests/monitoring)",
              t.returncode == 0, (t.stdout + t.stderr)[-1500:])
        alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
        rule_metrics = {n for g in rule["spec"]["groups"] for r in g["rules"] for n in re.findall(r"\bfsx_csi_[a-z_]+", r["expr"])}
        check("every metric the alerts use is one the driver serves", rule_metrics <= served, sorted(rule_metrics - served))
        tested = open(os.path.join(work, "alerts-test.yaml")).read()
        check("every alert has a unit test", all(f"alertname: {a}" in tested for a in alerts),
              [a for a in alerts if f"alertname: {a}" not in tested])
        readme = open(os.path.join(ROOT, "README.md")).read()
        check("every alert has a runbook line in the README's troubleshooting table",
              all(re.search(rf"^\| `?{a}`? ", readme, re.M) for a in alerts),
              [a for a in alerts if not re.search(rf"^\| `?{a}`? ", readme, re.M)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    r = main(*sys.argv[1:5])
    print(f"monitoring: {sum(r)} passed, {len(r) - sum(r)} failed")
    sys.exit(0 if all(r) else 1)
