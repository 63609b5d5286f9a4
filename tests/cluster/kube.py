"""What the scenario scripts share (tests/cluster/scenarios.py, tests/node/scenarios.py): the
counted check, kubectl against the tier's API server, and waiting for an event.

Environment: CLUSTER_DIR (with bin-dir and admin.kubeconfig, as hack/lib/cluster.sh leaves it).
"""

import json
import os
import subprocess
import time

CLUSTER_DIR = os.environ.get("CLUSTER_DIR", "/tmp/fsx-csi-cluster")
BIN = open(os.path.join(CLUSTER_DIR, "bin-dir")).read().strip()

results = []
figures = []


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    return bool(ok)


def kubectl(*args, input=None, check_rc=True, timeout=None):
    cmd = [os.path.join(BIN, "kubectl"), "--kubeconfig", os.path.join(CLUSTER_DIR, "admin.kubeconfig"), *args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def get(*args):
    out = kubectl("get", *args, "-o", "json", check_rc=False)
    return json.loads(out) if out.strip() else None


def apply(text):
    kubectl("apply", "-f", "-", input=text)


def wait_for(what, predicate, timeout=90):
    """Polls predicate() until it returns something truthy; returns it, or None at the timeout."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = predicate()
        except Exception:  # noqa: BLE001 - the object may not exist yet
            v = None
        if v:
            return v
        time.sleep(0.25)
    print(f"     (timed out after {timeout}s waiting for {what})", flush=True)
    return None
