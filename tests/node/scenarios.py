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

sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
from kube import apply, check, figures, get, kubectl, results, wait_for  # noqa: E402


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
    # The driver's side: the reader's target on the node is ro,nosuid,nodev.
    reader = get("-n", ns, "pod", "reader")
    pv = bound_pv(ns, "data")
    target = [m for m in mounts_of(pv=pv["metadata"]["name"]) if reader["metadata"]["uid"] in m[4]]
    opts = set(target[0][5].split(",")) if target else set()
    check(f"{install}: the driver published the readOnly target ro,nosuid,nodev", {"ro", "nosuid", "nodev"} <= opts,
          [m[4:6] for m in target])
    rc, out = exec_in(ns, "writer", "cat", "/proc/self/mountinfo")
    data = [l for l in out.splitlines() if " /data " in l]
    opts = data[0].split()[5].split(",") if data else []
    check(f"{install}: the writer's /data is rw,nosuid,nodev as the container sees it", {"rw", "nosuid", "nodev"} <= set(opts), data)
    # A setuid-root program on the volume, run by uid 65534 in a pod of its own: the kernel
    # ignores the bit on a nosuid mount.
    rc, out = exec_in(ns, "writer", "sh", "-c", "cp /bin/euid /data/euid && chmod 4755 /data/euid && ls -l /data/euid")
    def nobody(spec):
        spec["spec"]["securityContext"] = {"runAsUser": 65534, "runAsGroup": 65534}
    pod(ns, "setuid-rw", "data", "/data/euid; sleep 3600", extra=nobody)
    pod(ns, "setuid-ro", "data", "/data/euid; sleep 3600", read_only=True, extra=nobody)
    said = {p: wait_for(f"{p}'s output", lambda p=p: (lambda o: o if "euid=" in o else None)(
        kubectl("-n", ns, "logs", p, check_rc=False)), 120) for p in ("setuid-rw", "setuid-ro")}
    check(f"{install}: a setuid-root program on the nosuid volume runs as its caller (euid 65534), not root",
          (said["setuid-rw"] or "").strip() == "euid=65534", said)
    # What the container runtime does to a readOnly volumeMount: runc remounts the container's
    # bind MS_RDONLY alone, which clears nosuid/nodev the mount had (runc issue 1247). Not the
    # driver's mount: reported, and said in the README.
    rc, out = exec_in(ns, "reader", "cat", "/proc/self/mountinfo")
    data = [l for l in out.splitlines() if " /data " in l]
    ro_opts = data[0].split()[5] if data else "?"
    figures.append(f"{install}: a readOnly volumeMount as the container sees it, with Debian's runc "
                   f"{subprocess.run(['runc', '--version'], capture_output=True, text=True).stdout.split()[2]}: "
                   f"{ro_opts}; a setuid-root program there runs with {(said['setuid-ro'] or '?').strip()}")
    kubectl("delete", "namespace", ns, "--wait=false")


def sharing(install):
    """2. A two-replica Deployment sharing one claim (one staging mount, two binds, each pod
    sees the other's file); a StatefulSet with volumeClaimTemplates (two claims, two file
    systems)."""
    ns = f"share-{install}"
    namespace(ns)
    kubectl("-n", ns, "apply", "-f", os.path.join(EXAMPLES, "dynamic-provisioning", "storageclass.yaml"))
    apply(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "fsx-sc",
                 "resources": {"requests": {"storage": "1200Gi"}}},
    }))
    container = {"name": "app", "image": APP_IMAGE, "command": ["/bin/sh", "-c",
                 "echo $HOSTNAME > /data/$HOSTNAME; sleep 3600"],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    apply(json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 1, "containers": [container],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]}}},
    }))
    apply(json.dumps({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                     "terminationGracePeriodSeconds": 1, "containers": [container]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteMany"], "storageClassName": "fsx-sc",
                     "resources": {"requests": {"storage": "1200Gi"}}}}]},
    }))

    def names(label):
        pods = (get("-n", ns, "pods", "-l", label) or {}).get("items", [])
        up = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]
        return up if len(up) == 2 else None

    web = wait_for("the Deployment's two pods", lambda: names("app=web"), 240)
    if not check(f"{install}: a two-replica Deployment on one claim runs", web):
        return
    seen = wait_for("each pod's file in the other", lambda: all(
        set(exec_in(ns, p, "ls", "/data")[1].split()) >= set(web) for p in web), 30)
    check(f"{install}: each replica sees the other's file through the shared claim", seen,
          {p: exec_in(ns, p, "ls", "/data")[1] for p in web})
    pv = bound_pv(ns, "shared")
    h = staging_hash(pv["spec"]["csi"]["volumeHandle"])
    check(f"{install}: the shared claim has one staging mount and two binds",
          len(mounts_of(volume_handle_hash=h)) == 1 and len(mounts_of(pv=pv["metadata"]["name"])) == 2)
    db = wait_for("the StatefulSet's two pods", lambda: names("app=db"), 240)
    if not check(f"{install}: a StatefulSet with volumeClaimTemplates runs two pods", db):
        return
    handles = {bound_pv(ns, f"data-{p}")["spec"]["csi"]["volumeHandle"] for p in db}
    check(f"{install}: its two claims are two file systems", len(handles) == 2 and all(h.startswith("fs-") for h in handles),
          handles)
    alone = all(set(exec_in(ns, p, "ls", "/data")[1].split()) == {p} for p in db)
    check(f"{install}: each StatefulSet replica sees only its own volume", alone,
          {p: exec_in(ns, p, "ls", "/data")[1] for p in db})
    kubectl("delete", "namespace", ns, "--wait=false")


def taint_and_registration(install):
    """7. The node registered with the readiness taint; the plugin was registered by the kubelet
    (through the registrar stand-in), the CSINode lists the driver, and the taint is gone."""
    node = get("node", NODE)
    taints = [t["key"] for t in (node["spec"].get("taints") or [])]
    check(f"{install}: the readiness taint is gone from the node", "fsx.csi.aws.com/agent-not-ready" not in taints, taints)
    csinode = get("csinode", NODE)
    drivers = [d["name"] for d in (csinode or {}).get("spec", {}).get("drivers") or []]
    check(f"{install}: the kubelet wrote the CSINode with fsx.csi.aws.com", "fsx.csi.aws.com" in drivers, drivers)
    log = node_plugin_log()
    check(f"{install}: the plugin removed the taint only after the kubelet registered it",
          "the kubelet registered the plugin; taint removed" in log or "the node has no such taint" in log, log[-800:])
    reg = kubectl("-n", "kube-system", "logs", "daemonset/fsx-csi-node", "-c", "node-driver-registrar", check_rc=False)
    check(f"{install}: the registrar stand-in took the manifests' flags and the kubelet registered the plugin",
          "the kubelet says Registered" in reg, reg[-500:])


def kubelet_metrics():
    return kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics", check_rc=False)


def metric(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            # name{labels} value [timestamp]
            return float(line[line.index("}") + 1:].split()[0] if "}" in line else line.split()[1])
    return None


def volume_stats(install, ns, claim):
    """8. The kubelet's kubelet_volume_stats_* for the claim carry what the plugin reported."""
    def stats():
        t = kubelet_metrics()
        cap = metric(t, "kubelet_volume_stats_capacity_bytes", namespace=ns, persistentvolumeclaim=claim)
        used = metric(t, "kubelet_volume_stats_used_bytes", namespace=ns, persistentvolumeclaim=claim)
        inodes = metric(t, "kubelet_volume_stats_inodes", namespace=ns, persistentvolumeclaim=claim)
        return (cap, used, inodes) if cap else None
    got = wait_for("kubelet_volume_stats for the claim", stats, 60)
    if not check(f"{install}: the kubelet reports kubelet_volume_stats_* for the claim", got):
        return
    cap, used, inodes = got
    pv = bound_pv(ns, claim)
    store = os.path.join(KUBELET, "plugins/fsx.csi.aws.com/fsx-lustre-stand-in", pv["spec"]["csi"]["volumeAttributes"]["mountname"])
    st = os.statvfs(store)
    check(f"{install}: capacity and inodes are the file system's statfs (what NodeGetVolumeStats returned)",
          cap == st.f_blocks * st.f_frsize and inodes == st.f_files, (cap, st.f_blocks * st.f_frsize, inodes, st.f_files))
    t = kubelet_metrics()
    count = metric(t, "csi_operations_seconds_count", driver_name="fsx.csi.aws.com",
                   method_name="/csi.v1.Node/NodeGetVolumeStats")
    check(f"{install}: the kubelet called NodeGetVolumeStats", count and count > 0, count)


def figures_from_kubelet(install):
    t = kubelet_metrics()
    for method in ("NodeStageVolume", "NodePublishVolume"):
        name = f"/csi.v1.Node/{method}"
        total = metric(t, "csi_operations_seconds_sum", driver_name="fsx.csi.aws.com", method_name=name, grpc_status_code="OK")
        count = metric(t, "csi_operations_seconds_count", driver_name="fsx.csi.aws.com", method_name=name, grpc_status_code="OK")
        if count:
            figures.append(f"{install}: {method} as the kubelet sees it: mean {1000 * total / count:.1f} ms over {int(count)} calls")
    res = kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource", check_rc=False)
    ws = metric(res, "container_memory_working_set_bytes", container="fsx-plugin", namespace="kube-system")
    if ws:
        figures.append(f"{install}: the node plugin's memory as a pod (cgroup working set): {ws / 2**20:.1f} MiB")


def fs_group(install):
    """9. fsGroup with the install's fsGroupPolicy (None): the kubelet changes nothing on the
    volume; a non-root pod with an fsGroup cannot write to a root-owned volume root, as with
    the Go driver's RWX volumes."""
    policy = (get("csidriver", "fsx.csi.aws.com") or {}).get("spec", {}).get("fsGroupPolicy")
    check(f"{install}: the CSIDriver's fsGroupPolicy is None", policy == "None", policy)
    ns = f"fsgroup-{install}"
    namespace(ns)
    kubectl("-n", ns, "apply", "-f", os.path.join(EXAMPLES, "dynamic-provisioning", "storageclass.yaml"))
    kubectl("-n", ns, "apply", "-f", os.path.join(EXAMPLES, "dynamic-provisioning", "claim.yaml"))

    def secure(spec):
        spec["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1234}
    pod(ns, "app", "fsx-claim", "id; stat -c '%u:%g %a' /data; touch /data/x && echo wrote || echo refused; sleep 3600",
        extra=secure)
    if not check(f"{install}: a pod with runAsUser 1000 and fsGroup 1234 starts", running(ns, "app", 240)):
        return
    out = wait_for("the pod's output", lambda: (lambda o: o if ("wrote" in o or "refused" in o) else None)(
        kubectl("-n", ns, "logs", "app", check_rc=False)), 30) or ""
    ids = [l for l in out.splitlines() if l.startswith("uid=")]
    check(f"{install}: fsGroup 1234 is a supplementary group of the pod", ids and "1234" in ids[0], out)
    check(f"{install}: the volume root keeps its owner and mode (no recursive chown), so the write is refused",
          "0:0 755" in out and "refused" in out, out)
    kubectl("delete", "namespace", ns, "--wait=false")


def plugin_roll(install, ns, pv):
    """5. The node plugin's DaemonSet rolled to a new image tag while pods run: their mounts keep
    working, a new pod of the same claim starts on the new plugin, whose socket the old one's
    exit left alone."""
    ds = get("-n", "kube-system", "daemonset", "fsx-csi-node")
    image = next(c["image"] for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "fsx-plugin")
    old_pods = {p["metadata"]["name"] for p in get("-n", "kube-system", "pods", "-l", "app=fsx-csi-node")["items"]}
    lines_before = exec_in(ns, "fsx-app", "cat", "/data/out.txt")[1].count("\n")
    kubectl("-n", "kube-system", "set", "image", "daemonset/fsx-csi-node", f"fsx-plugin={image.rsplit(':', 1)[0]}:rolled")
    rolled = kubectl("-n", "kube-system", "rollout", "status", "daemonset/fsx-csi-node", "--timeout=180s", check_rc=False, timeout=200)
    # The rollout is done when the new pod is available; the old one may still be listed
    # (terminating) for a moment: wait for it to go, not for a number of seconds.
    def plugin_pods():
        return {p["metadata"]["name"] for p in get("-n", "kube-system", "pods", "-l", "app=fsx-csi-node")["items"]}
    new_pods = wait_for("the old plugin pod to go", lambda: (lambda now: now if now and not (now & old_pods) else None)(
        plugin_pods()), 120) or plugin_pods()
    if not check(f"{install}: the node plugin rolled to a new image tag", "successfully rolled out" in rolled and not (new_pods & old_pods),
                 f"{rolled}\nold pods: {sorted(old_pods)}; now: {sorted(new_pods)}"):
        return
    more = wait_for("lines written after the roll", lambda: exec_in(ns, "fsx-app", "cat", "/data/out.txt")[1].count("\n") > lines_before + 1, 30)
    check(f"{install}: the running pod keeps writing through its mount across the roll", more)
    pod(ns, "after-roll", "fsx-claim", "tail -n 1 /data/out.txt; sleep 3600")
    started = running(ns, "after-roll")
    check(f"{install}: a new pod of the same claim starts on the new plugin", started)
    said = wait_for("its output", lambda: kubectl("-n", ns, "logs", "after-roll", check_rc=False).startswith("hello from FSx"), 30)
    check(f"{install}: and reads the running pod's lines", said)
    check(f"{install}: the new plugin's socket is in place after the old one exited",
          os.path.exists(os.path.join(KUBELET, "plugins/fsx.csi.aws.com/csi.sock")))
    kubectl("-n", ns, "delete", "pod", "after-roll", "--wait=false")
    wait_for("after-roll gone", lambda: get("-n", ns, "pod", "after-roll") is None, 60)


def drain(install):
    """6. The node is drained while a pod uses FSx and the node plugin is stopped with it: the
    plugin's preStop hook holds it until the kubelet has unmounted the pod's volume (through
    that plugin), then the plugin goes; uncordoned, it comes back."""
    ns = f"drain-{install}"
    namespace(ns)
    kubectl("-n", ns, "apply", "-f", os.path.join(EXAMPLES, "dynamic-provisioning", "storageclass.yaml"))
    kubectl("-n", ns, "apply", "-f", os.path.join(EXAMPLES, "dynamic-provisioning", "claim.yaml"))
    pod(ns, "app", "fsx-claim", "sleep 3600")
    if not check(f"{install}: drain: a pod with an FSx volume runs", running(ns, "app", 240)):
        return
    pv = bound_pv(ns, "fsx-claim")["metadata"]["name"]
    plugin = get("-n", "kube-system", "pods", "-l", "app=fsx-csi-node")["items"][0]["metadata"]["name"]
    kubectl("cordon", NODE)
    try:
        # The plugin is stopped first (as a node going away stops it), then the pod is evicted.
        kubectl("-n", "kube-system", "delete", "pod", plugin, "--wait=false")
        time.sleep(1)
        kubectl("drain", NODE, "--pod-selector=app!=fsx-csi-node,app!=fsx-csi-controller", "--ignore-daemonsets",
                "--delete-emptydir-data", "--force", "--timeout=120s", check_rc=False, timeout=150)
        unmounted = plugin_gone = None
        end = time.time() + 90
        while time.time() < end and not (unmounted and plugin_gone):
            if not unmounted and not mounts_of(pv=pv):
                unmounted = time.time()
            if not plugin_gone and get("-n", "kube-system", "pod", plugin) is None:
                plugin_gone = time.time()
            time.sleep(0.1)
        check(f"{install}: drain: the evicted pod's volume is unmounted although the plugin was stopped first",
              unmounted, [m[4] for m in mounts_of(pv=pv)])
        check(f"{install}: drain: the plugin stayed until then (preStop), and then went",
              unmounted and plugin_gone and plugin_gone >= unmounted, (unmounted, plugin_gone))
        if unmounted and plugin_gone:
            figures.append(f"{install}: drain: the plugin went {plugin_gone - unmounted:.1f}s after the last unmount")
    finally:
        kubectl("uncordon", NODE)
    back = kubectl("-n", "kube-system", "rollout", "status", "daemonset/fsx-csi-node", "--timeout=120s",
                   check_rc=False, timeout=150)
    check(f"{install}: drain: uncordoned, the node plugin is back", "successfully rolled out" in back, back)
    kubectl("delete", "namespace", ns, "--wait=false")


def plugin_rss(install):
    """The node plugin's resident memory as the kernel counts it (this tier shares its PID
    namespace)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"/fsx-csi-driver") and b"--mode=node" in cmd:
            rss = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:"))
            figures.append(f"{install}: the node plugin's VmRSS as a pod, after the scenarios: {rss / 1024:.1f} MiB")
            return


def node_sh(function, *args):
    """Runs one of hack/lib/node.sh's functions on this node: the stood-in kernel files."""
    subprocess.run(["bash", "-c", f'source "{ROOT}/hack/lib/node.sh"; "$@"', "node.sh", function, *args],
                   check=True)


def node_events(reason):
    ev = get("-n", "default", "events", "--field-selector",
             f"involvedObject.kind=Node,involvedObject.name={NODE},reason={reason}")
    return (ev or {}).get("items") or []


def plugin_pod():
    pods = get("-n", "kube-system", "pods", "-l", "app=fsx-csi-node")
    live = [p for p in (pods or {}).get("items") or [] if not p["metadata"].get("deletionTimestamp")]
    return live[0] if live else None


def restart_plugin():
    """Deletes the node plugin's pod; returns the name of its replacement once it runs."""
    old = plugin_pod()["metadata"]["name"]
    kubectl("-n", "kube-system", "delete", "pod", old, "--wait=true", "--timeout=120s", timeout=150)

    def new():
        p = plugin_pod()
        return p["metadata"]["name"] if p and p["metadata"]["name"] != old and p["status"].get("phase") == "Running" \
            else None
    return wait_for("the node plugin's new pod Running", new, 120)


def efa(install):
    """An efaEnabled file system on a node whose LNet has no @efa interface: the pod runs (over
    TCP) and the Node gets a Warning naming the volume; with an @efa interface, no Warning."""
    ns = f"efa-{install}"
    namespace(ns)
    sc = json.loads(kubectl("create", "--dry-run=client", "-o", "json", "-f",
                            os.path.join(EXAMPLES, "dynamic-provisioning", "storageclass.yaml")))
    sc["metadata"] = {"name": f"fsx-efa-{install}"}
    sc["parameters"].update({"deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": "125",
                             "efaEnabled": "true", "metadataConfigurationMode": "AUTOMATIC"})
    apply(json.dumps(sc))
    try:
        handles = []
        for i, nids in enumerate([("0@lo", "10.88.0.1@tcp"), ("0@lo", "10.88.0.1@tcp", "10.88.0.1@efa")]):
            node_sh("node_lnet_nids", *nids)
            claim = f"efa-{i}"
            apply(json.dumps({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sc["metadata"]["name"],
                         "resources": {"requests": {"storage": "1200Gi"}}}}))
            pod(ns, f"app-{i}", claim, "echo efa > /data/f; sleep 3600")
            ok = running(ns, f"app-{i}", 240)
            check(f"{install}: efa: an efaEnabled claim's pod runs ({', '.join(nids)})", ok)
            pv = bound_pv(ns, claim)
            attrs = pv["spec"]["csi"].get("volumeAttributes") or {} if pv else {}
            check(f"{install}: efa: the PV's volume attributes say efaEnabled", attrs.get("efaEnabled") == "true", attrs)
            handles.append(pv["spec"]["csi"]["volumeHandle"] if pv else "?")

        def warned(handle):
            return [e for e in node_events("FsxEfaNotConfigured") if handle in e.get("message", "")]
        got = wait_for("the FsxEfaNotConfigured event", lambda: warned(handles[0]), 60)
        check(f"{install}: efa: without an @efa interface, a Warning on the Node names the volume and the NIDs",
              got and got[0]["type"] == "Warning" and "10.88.0.1@tcp" in got[0]["message"],
              got and got[0].get("message"))
        log = node_plugin_log()
        decided = any(handles[1] in line and "LNet has EFA interfaces" in line for line in log.splitlines())
        check(f"{install}: efa: with an @efa interface the plugin says so, and gives no Warning",
              decided and not warned(handles[1]), log[-600:])
    finally:
        node_sh("node_lnet_nids", "0@lo", "10.88.0.1@tcp")
        kubectl("delete", "namespace", ns, "--wait=false")


def lustre_client_missing(install):
    """A node without the Lustre client module: the plugin keeps the readiness taint, says why
    (a log line and a Warning on the Node), and pods that do not tolerate the taint wait; once
    the module is installed (and the plugin restarted) the taint goes and they run."""
    taint = "fsx.csi.aws.com/agent-not-ready"
    ns = f"noclient-{install}"
    namespace(ns)
    before = len(node_events("FsxLustreClientMissing"))
    node_sh("node_lustre_module", "missing")
    kubectl("taint", "node", NODE, f"{taint}=:NoSchedule")
    try:
        plugin = restart_plugin()
        if not check(f"{install}: no client: the node plugin restarts", plugin):
            return
        log = wait_for("the plugin's log line about the module",
                       lambda: (l := kubectl("-n", "kube-system", "logs", plugin, "-c", "fsx-plugin", check_rc=False))
                       and "keeping the taint" in l and l, 60) or ""
        check(f"{install}: no client: the plugin logs that the module is missing and keeps the taint",
              "Lustre client kernel module is not installed" in log and "keeping the taint" in log, log[-800:])
        ev = wait_for("the FsxLustreClientMissing event", lambda: len(node_events("FsxLustreClientMissing")) > before, 60)
        check(f"{install}: no client: a Warning on the Node says so", ev)
        registered = wait_for("the new plugin registered", lambda: "the kubelet says Registered" in kubectl(
            "-n", "kube-system", "logs", plugin, "-c", "node-driver-registrar", check_rc=False), 60)
        taints = [t["key"] for t in get("node", NODE)["spec"].get("taints") or []]
        check(f"{install}: no client: registered with the kubelet, and still tainted", registered and taint in taints,
              taints)
        apply(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits", "namespace": ns},
                          "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                              {"name": "app", "image": APP_IMAGE, "command": ["sleep", "3600"]}]}}))

        seen = {}

        def unschedulable():
            # The scheduler's wording varies by version ("untolerated taint {key: }" or
            # "untolerated taint(s)"): Unschedulable, and the node being tainted, is the event.
            p = get("-n", ns, "pod", "waits")
            conds = [c for c in (p or {}).get("status", {}).get("conditions") or [] if c["type"] == "PodScheduled"]
            seen["pod"] = {"nodeName": (p or {}).get("spec", {}).get("nodeName"), "conditions": conds}
            return conds and conds[0].get("reason") == "Unschedulable" and "taint" in conds[0].get("message", "")
        check(f"{install}: no client: a pod that tolerates nothing waits for the taint", wait_for(
            "the pod Unschedulable for the taint", unschedulable, 60), seen)
        node_sh("node_lustre_module", "installed")
        check(f"{install}: no client: module installed, the restarted plugin removes the taint",
              restart_plugin() and wait_for("the taint gone", lambda: taint not in [
                  t["key"] for t in get("node", NODE)["spec"].get("taints") or []], 90))
        check(f"{install}: no client: and the waiting pod runs", running(ns, "waits", 120))
    finally:
        node_sh("node_lustre_module", "installed")
        kubectl("taint", "node", NODE, f"{taint}-", check_rc=False)
        kubectl("delete", "namespace", ns, "--wait=false")


def subdirectories(install):
    """5. Many claims on one file system (deploy/examples/subdirectory, its placeholder id
    replaced by a file system an ordinary claim made, as the README tells users): two claims
    bind to directories of it; their pods, as uid 1000, each see and write only their own
    directory; the node mounts the file system once for both (one stand-in "Lustre" mount below
    the plugin's lustre/ directory, each staging path a bind of its directory); the last pod
    gone, that mount goes too."""
    ns = f"dirs-{install}"
    namespace(ns)
    apply(json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": f"dirs-fs-{install}"},
        "provisioner": "fsx.csi.aws.com", "reclaimPolicy": "Delete",
        "parameters": {"subnetId": "subnet-0123456789abcdef0", "deploymentType": "SCRATCH_2",
                       "fileSystemTypeVersion": "2.15"},
    }))
    apply(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "whole", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": f"dirs-fs-{install}",
                 "resources": {"requests": {"storage": "1200Gi"}}},
    }))
    whole = bound_pv(ns, "whole")
    if not check(f"{install}: subdirectories: a file system for them binds", whole):
        return
    fs = whole["spec"]["csi"]["volumeHandle"]
    example = os.path.join(EXAMPLES, "subdirectory")
    with open(os.path.join(example, "storageclass.yaml")) as f:
        sc = f.read().replace("fs-0123456789abcdef0", fs)
    # A StorageClass's parameters cannot change: the other install path's class goes first.
    kubectl("delete", "storageclass", "fsx-team-dirs", "--ignore-not-found")
    kubectl("apply", "-f", "-", input=sc)
    kubectl("-n", ns, "apply", "-f", os.path.join(example, "claims.yaml"))
    start = time.time()
    pvs = {c: bound_pv(ns, c, 60) for c in ("team-a", "team-b")}
    took = time.time() - start
    if not check(f"{install}: subdirectories: the example's two claims bind to directories of {fs}",
                 all(pv and pv["spec"]["csi"]["volumeHandle"].startswith(fs + "/subdir/") for pv in pvs.values()),
                 {c: pv and pv["spec"]["csi"] for c, pv in pvs.items()}):
        return
    figures.append(f"{install}: two subdirectory claims bound in {took:.1f}s")
    with open(os.path.join(example, "pod.yaml")) as f:
        text = f.read()
    kubectl("-n", ns, "apply", "-f", "-", input=text)
    kubectl("-n", ns, "apply", "-f", "-", input=text.replace("team-a", "team-b").replace("team a", "team b"))
    up = all(running(ns, p) for p in ("team-a-app", "team-b-app"))
    if not check(f"{install}: subdirectories: the example's pod runs on each claim (as uid 1000)", up):
        return
    alone = wait_for("each pod's file", lambda: all(
        exec_in(ns, p, "ls", "-A", "/data")[1].split() == ["out.txt"] for p in ("team-a-app", "team-b-app")), 30)
    _, a = exec_in(ns, "team-a-app", "cat", "/data/out.txt")
    _, b = exec_in(ns, "team-b-app", "cat", "/data/out.txt")
    check(f"{install}: subdirectories: each pod sees only its own directory and writes there",
          alone and "hello from team a" in a and "team b" not in a and "hello from team b" in b and "team a" not in b,
          (a[-200:], b[-200:]))
    rc, out = exec_in(ns, "team-a-app", "stat", "-c", "%u:%g %a", "/data")
    check(f"{install}: subdirectories: the pod's /data is the class's 1000:1000 0770", out.strip() == "1000:1000 770",
          out)
    shared = [m for m in mounts() if m[4].startswith(f"{KUBELET}/plugins/fsx.csi.aws.com/lustre/")]
    staged = {c: mounts_of(volume_handle_hash=staging_hash(pv["spec"]["csi"]["volumeHandle"])) for c, pv in pvs.items()}
    check(f"{install}: subdirectories: the node mounts the file system once for both claims, each staged as a bind of its directory",
          len(shared) == 1 and all(len(v) == 1 and v[0][3].endswith(pvs[c]["spec"]["csi"]["volumeAttributes"]["subdirectory"])
                                   for c, v in staged.items()),
          {"shared": [m[3:5] for m in shared], "staged": {c: [m[3:5] for m in v] for c, v in staged.items()}})
    figures.append(f"{install}: the node's file-system mounts for two subdirectory volumes of one file system: {len(shared)}")
    kubectl("-n", ns, "delete", "pod", "team-a-app", "team-b-app", "--wait=false")
    check(f"{install}: subdirectories: the last pod gone, the file system's mount on the node goes too",
          wait_for("the shared mount gone", lambda: not [
              m for m in mounts() if m[4].startswith(f"{KUBELET}/plugins/fsx.csi.aws.com/lustre/")], 90))
    kubectl("delete", "namespace", ns, "--wait=false")
    kubectl("delete", "storageclass", "fsx-team-dirs", "--ignore-not-found")


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
        taint_and_registration(install)
        seeded = seed_walkthrough(install)
        if seeded:
            volume_stats(install, seeded[0], "fsx-claim")
        read_only(install)
        sharing(install)
        fs_group(install)
        subdirectories(install)
        figures_from_kubelet(install)
        if seeded:
            plugin_roll(install, *seeded)
            cleanup(install, *seeded)
        efa(install)
        plugin_rss(install)
        drain(install)
        lustre_client_missing(install)
    except Exception as e:  # noqa: BLE001 - a crash is one failed check, and the count still prints
        check(f"{install}: the scenarios ran to the end", False, repr(e))
    for f in figures:
        print(f"figure: {f}")
    print(f"{install}: scenarios took {time.time() - started:.0f}s")
    p = sum(1 for _, ok in results if ok)
    print(f"node: {p} passed, {len(results) - p} failed")


if __name__ == "__main__":
    main()
