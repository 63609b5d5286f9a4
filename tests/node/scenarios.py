#!/usr/bin/env python3
"""The node tier's scenarios (hack/tiers/node.sh): pods on a real kubelet and containerd read
and write through the driver's node plugin, running as the DaemonSet users install. Every check
is made from inside the pods (kubectl exec and logs, through the kubelet) or from the node's
mount table. Ends with "node: N passed, M failed".

usage: scenarios.py --install kustomize|helm
Environment: CLUSTER_DIR, with the node tier's cluster up and the install applied.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_DIR = os.environ["CLUSTER_DIR"]
BIN = open(os.path.join(CLUSTER_DIR, "bin-dir")).read().strip()
NODE = "fsx-node-1"
KUBELET = "/var/lib/kubelet"
APP_IMAGE = "public.ecr.aws/docker/library/busybox:1.36"
EXAMPLES = os.path.join(ROOT, "deploy", "examples")

results = []
figures = []


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    return bool(ok)


def kubectl(*args, input=None, check_rc=True, timeout=120):
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


def wait_for(what, predicate, timeout=120):
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


def exec_in(ns, pod, *command):
    """Runs command in the pod's first container; (rc, output)."""
    p = subprocess.run(
        [os.path.join(BIN, "kubectl"), "--kubeconfig", os.path.join(CLUSTER_DIR, "admin.kubeconfig"),
         "-n", ns, "exec", pod, "--", *command],
        capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def running(ns, pod, timeout=180):
    def ready():
        p = get("-n", ns, "pod", pod)
        return p if p and p["status"].get("phase") == "Running" else None
    return wait_for(f"pod {ns}/{pod} Running", ready, timeout)


def gone(*args, timeout=120):
    return wait_for(f"{' '.join(args)} gone", lambda: get(*args) is None, timeout)


def namespace(ns):
    apply(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))


def pod(ns, name, claim, command, read_only=False, extra=None):
    spec = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": APP_IMAGE, "command": ["/bin/sh", "-c", command],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": read_only}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}],
        },
    }
    if extra:
        extra(spec)
    apply(json.dumps(spec))


def mounts():
    """The node's mount table (this process shares the node's mount namespace)."""
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f]


def mounts_of(volume_handle_hash=None, pv=None):
    out = []
    for f in mounts():
        point = f[4]
        if volume_handle_hash and f"/fsx.csi.aws.com/{volume_handle_hash}/globalmount" in point:
            out.append(f)
        elif pv and point.endswith(f"/volumes/kubernetes.io~csi/{pv}/mount"):
            out.append(f)
    return out


def staging_hash(volume_handle):
    import hashlib
    return hashlib.sha256(volume_handle.encode()).hexdigest()


def bound_pv(ns, claim, timeout=180):
    def pv():
        c = get("-n", ns, "pvc", claim)
        if not c or c["status"].get("phase") != "Bound":
            return None
        return get("pv", c["spec"]["volumeName"])
    return wait_for(f"claim {ns}/{claim} Bound", pv, timeout)


def node_plugin_log(since_marker=None):
    out = kubectl("-n", "kube-system", "logs", "daemonset/fsx-csi-node", "-c", "fsx-plugin", "--tail=-1",
                  check_rc=False)
    return out


# ---------------------------------------------------------------------------------------------


def seed_walkthrough(install):
    """1. The dynamic-provisioning example as shipped: the StorageClass, the claim, the pod that
    writes a line every five seconds; a second pod reads the lines back."""
    ns = f"seed-{install}"
    namespace(ns)
    ex = os.path.join(EXAMPLES, "dynamic-provisioning")
    start = time.time()
    for f in ("storageclass.yaml", "claim.yaml", "pod.yaml"):
        kubectl("-n", ns, "apply", "-f", os.path.join(ex, f))
    p = running(ns, "fsx-app", timeout=240)
    if not check(f"{install}: the example's pod is Running with its FSx claim", p):
        print(kubectl("-n", ns, "describe", "pod", "fsx-app", check_rc=False)[-3000:])
        return None
    first_line = wait_for("the first line in /data/out.txt",
                          lambda: exec_in(ns, "fsx-app", "cat", "/data/out.txt")[1].startswith("hello from FSx"), 60)
    figures.append(f"{install}: kubectl apply → the pod's first line written in {time.time() - start:.1f}s "
                   "(includes the file system's creation: emulator delay 2s, controller poll 15s)")
    check(f"{install}: the pod writes \"hello from FSx\" to /data/out.txt", first_line)
    pv = bound_pv(ns, "fsx-claim")
    handle = pv["spec"]["csi"]["volumeHandle"]
    pod(ns, "reader", "fsx-claim", "sleep 2; cat /data/out.txt; sleep 3600")
    running(ns, "reader")
    lines = wait_for("the reader's lines", lambda: [l for l in kubectl("-n", ns, "logs", "reader", check_rc=False)
                                                    .splitlines() if l.startswith("hello from FSx")], 60)
    check(f"{install}: a second pod reads the writer's lines", lines, kubectl("-n", ns, "logs", "reader",
                                                                             check_rc=False)[-500:])
    # One staging mount for the volume, one bind per pod, at the kubelet's real paths.
    h = staging_hash(handle)
    stage = mounts_of(volume_handle_hash=h)
    targets = mounts_of(pv=pv["metadata"]["name"])
    check(f"{install}: one staging mount at plugins/kubernetes.io/csi/fsx.csi.aws.com/<sha256>/globalmount "
          f"and one bind per pod", len(stage) == 1 and len(targets) == 2,
          f"staging {[m[4] for m in stage]}, targets {[m[4] for m in targets]}")
    # The mount the app container sees.
    rc, out = exec_in(ns, "fsx-app", "cat", "/proc/self/mountinfo")
    data = [l for l in out.splitlines() if " /data " in l]
    check(f"{install}: the app container sees /data as the stood-in Lustre mount",
          data and " - lustre " not in data[0] and "fsx-lustre-stand-in/" in data[0], data)
    return ns, pv


def read_only(install):
    """3. readOnly in the pod and in the PV; nosuid/nodev from mountOptions hold in the pod."""
    ns = f"ro-{install}"
    namespace(ns)
    apply(json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": f"ro-{install}"},
        "provisioner": "fsx.csi.aws.com", "reclaimPolicy": "Delete",
        "parameters": {"subnetId": "subnet-0123456789abcdef0", "deploymentType": "SCRATCH_2"},
        "mountOptions": ["nosuid", "nodev"],
    }))
    apply(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": f"ro-{install}",
                 "resources": {"requests": {"storage": "1200Gi"}}},
    }))
    pod(ns, "writer", "data", "echo seeded > /data/seed.txt; sleep 3600")
    if not check(f"{install}: a writer pod on a nosuid,nodev class runs", running(ns, "writer", 240)):
        return
    wait_for("the seed file", lambda: exec_in(ns, "writer", "cat", "/data/seed.txt")[1].strip() == "seeded", 30)
    pod(ns, "reader", "data", "sleep 3600", read_only=True)
    if not check(f"{install}: a readOnly pod of the same claim runs", running(ns, "reader")):
        return
    rc, out = exec_in(ns, "reader", "sh", "-c", "echo x > /data/new.txt")
    check(f"{install}: a write in the readOnly pod fails with EROFS", rc != 0 and "Read-only file system" in out, out)
    rc, out = exec_in(ns, "reader", "cat", "/data/seed.txt")
    check(f"{install}: the readOnly pod reads the writer's file", out.strip() == "seeded", out)
    rc, out = exec_in(ns, "reader", "cat", "/proc/self/mountinfo")
    data = [l for l in out.splitlines() if " /data " in l]
    opts = data[0].split()[5].split(",") if data else []
    check(f"{install}: the readOnly pod's /data is ro,nosuid,nodev as the container sees it",
          {"ro", "nosuid", "nodev"} <= set(opts), data)
    rc, out = exec_in(ns, "writer", "cat", "/proc/self/mountinfo")
    data = [l for l in out.splitlines() if " /data " in l]
    opts = data[0].split()[5].split(",") if data else []
    check(f"{install}: the writer's /data is rw,nosuid,nodev", {"rw", "nosuid", "nodev"} <= set(opts), data)
    # A setuid-root copy of busybox on the volume does not make a non-root user root.
    rc, out = exec_in(ns, "writer", "sh", "-c", "cp /bin/busybox /data/suid && chmod 4755 /data/suid && "
                      "su -s /data/suid nobody -c '/data/suid id -u' 2>&1 || /data/suid id -u")
    check(f"{install}: a setuid binary on the nosuid volume gains no privileges",
          "0" != out.strip().splitlines()[-1] if out.strip() else False, out)


def cleanup(install, ns, pv):
    """4. Pod deleted → NodeUnpublishVolume; last pod gone → NodeUnstageVolume; nothing left."""
    name = pv["metadata"]["name"]
    h = staging_hash(pv["spec"]["csi"]["volumeHandle"])
    kubectl("-n", ns, "delete", "pod", "reader", "--wait=false")
    check(f"{install}: a deleted pod's bind is unmounted, the staging mount stays",
          wait_for("one target left", lambda: len(mounts_of(pv=name)) == 1 and len(mounts_of(volume_handle_hash=h)) == 1))
    kubectl("-n", ns, "delete", "pod", "fsx-app", "--wait=false")
    check(f"{install}: the last pod gone, the volume is unstaged",
          wait_for("no mounts of the volume", lambda: not mounts_of(pv=name) and not mounts_of(volume_handle_hash=h)))
    stage_dir = os.path.join(KUBELET, "plugins/kubernetes.io/csi/fsx.csi.aws.com", h)
    check(f"{install}: nothing left of it under the kubelet dir",
          wait_for("the staging directory removed", lambda: not os.path.exists(os.path.join(stage_dir, "globalmount")), 30),
          os.listdir(stage_dir) if os.path.isdir(stage_dir) else "")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--install", required=True)
    install = a.parse_args().install
    started = time.time()
    seeded = None
    try:
        seeded = seed_walkthrough(install)
        read_only(install)
        if seeded:
            cleanup(install, *seeded)
    except Exception as e:  # noqa: BLE001 - a crash is one failed check, and the count still prints
        check(f"{install}: the scenarios ran to the end", False, repr(e))
    for f in figures:
        print(f"figure: {f}")
    print(f"{install}: scenarios took {time.time() - started:.0f}s")
    p = sum(1 for _, ok in results if ok)
    print(f"node: {p} passed, {len(results) - p} failed")


if __name__ == "__main__":
    main()
