#!/usr/bin/env python3
"""The users' scenarios, end to end, against a real control plane (hack/cluster.sh): the real
external-provisioner and external-resizer, driven by the PV, StatefulSet and Deployment
controllers of a real kube-controller-manager, call this driver, which talks to the FSx
emulator. Every check is counted; the run ends with "cluster: N passed, M failed".

usage: scenarios.py [--only kustomize|helm]
Environment: CLUSTER_DIR (as hack/cluster.sh), with the cluster up and an install applied.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_DIR = os.environ.get("CLUSTER_DIR", "/tmp/fsx-csi-cluster")
BIN = open(os.path.join(CLUSTER_DIR, "bin-dir")).read().strip()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
EMULATOR = "http://127.0.0.1:" + open(os.path.join(CLUSTER_DIR, "ports", "emulator")).read().strip()
SUBNET = "subnet-0123456789abcdef0"
SG = "sg-0123456789abcdef0"
IS_ROOT = os.geteuid() == 0

from kube import apply, check, figures, get, kubectl, results, wait_for  # noqa: E402,F401


def emulator(path, body=None):
    req = urllib.request.Request(EMULATOR + path, data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else None


def fsx(operation, body):
    """A raw FSx API call to the emulator (AWS JSON 1.1), as a user's own tooling would make."""
    req = urllib.request.Request(EMULATOR + "/", data=json.dumps(body).encode())
    req.add_header("content-type", "application/x-amz-json-1.1")
    req.add_header("x-amz-target", f"AWSSimbaAPIService_v20180301.{operation}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def calls(op):
    return emulator("/_emulator/stats")["calls"].get(op, 0)


def file_systems():
    return emulator("/_emulator/file-systems")["FileSystems"]


def tags(fs):
    return {t["Key"]: t["Value"] for t in fs.get("Tags", [])}


def by_volume_name(name):
    return [fs for fs in file_systems() if tags(fs).get("CSIVolumeName") == name]


def set_emulator(**changes):
    config = emulator("/_emulator/stats")["config"]
    config.update(changes)
    emulator("/_emulator/config", config)


def namespace(ns):
    apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")


def storage_class(name, params, reclaim="Delete", mount_options=None):
    lines = [
        "apiVersion: storage.k8s.io/v1",
        "kind: StorageClass",
        f"metadata: {{name: {name}}}",
        "provisioner: fsx.csi.aws.com",
        f"reclaimPolicy: {reclaim}",
        "allowVolumeExpansion: true",
        "parameters:",
    ]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in params.items()]
    if mount_options:
        lines.append("mountOptions: [" + ", ".join(mount_options) + "]")
    apply("\n".join(lines) + "\n")


def claim(ns, name, sc, size):
    apply(
        f"""apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: {ns}}}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: {sc}
  resources: {{requests: {{storage: {size}}}}}
"""
    )


def bound(ns, name, timeout=90):
    """The PV of a claim once it is Bound."""

    def pv():
        c = get("pvc", "-n", ns, name)
        if c and c["status"].get("phase") == "Bound":
            return get("pv", c["spec"]["volumeName"])
        return None

    return wait_for(f"{ns}/{name} to bind", pv, timeout)


def events(ns, name):
    e = get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return e["items"] if e else []


def pv_fs(pv):
    return pv["spec"]["csi"]["volumeHandle"] if pv else ""


# ---------------------------------------------------------------------------------------------


def seed_walkthrough(prefix):
    """1. A StorageClass with subnetId and securityGroupIds; RWX claims of 3600Gi and 3000Gi."""
    ns = f"{prefix}-seed"
    namespace(ns)
    storage_class(f"{prefix}-fsx", {"subnetId": SUBNET, "securityGroupIds": SG}, mount_options=["flock"])
    before = calls("CreateFileSystem")
    start = time.time()
    claim(ns, "data", f"{prefix}-fsx", "3600Gi")
    claim(ns, "small", f"{prefix}-fsx", "3000Gi")
    pv = bound(ns, "data")
    took = time.time() - start
    if not check(f"{prefix}: an RWX claim of 3600Gi binds", pv):
        return None
    figures.append(f"{prefix}: claim applied → Bound in {took:.1f}s (emulator creation delay 2s)")
    attrs = pv["spec"]["csi"].get("volumeAttributes", {})
    check(
        f"{prefix}: the PV has volumeHandle fs-…, dnsname, mountname and 3600Gi",
        pv_fs(pv).startswith("fs-") and attrs.get("dnsname") and attrs.get("mountname")
        and pv["spec"]["capacity"]["storage"] == "3600Gi",
        json.dumps(pv["spec"]),
    )
    small = bound(ns, "small")
    check(f"{prefix}: a 3000Gi claim gets a 3600Gi PV", small and small["spec"]["capacity"]["storage"] == "3600Gi",
          small and small["spec"]["capacity"])
    fs = [f for f in file_systems() if f["FileSystemId"] == pv_fs(pv)]
    t = tags(fs[0]) if fs else {}
    check(
        f"{prefix}: the file system carries CSIVolumeName and the kubernetes.io/created-for tags",
        t.get("CSIVolumeName") == pv["metadata"]["name"]
        and t.get("kubernetes.io/created-for/pvc/name") == "data"
        and t.get("kubernetes.io/created-for/pvc/namespace") == ns
        and t.get("kubernetes.io/created-for/pv/name") == pv["metadata"]["name"],
        t,
    )
    check(f"{prefix}: the StorageClass's mountOptions reach the PV", pv["spec"].get("mountOptions") == ["flock"],
          pv["spec"].get("mountOptions"))
    n = calls("CreateFileSystem") - before
    check(f"{prefix}: one CreateFileSystem per volume", n == 2, f"{n} calls for 2 volumes")
    return pv


def shared_access():
    """2. A StatefulSet with volumeClaimTemplates (2 replicas); a Deployment sharing one claim."""
    ns = "shared"
    namespace(ns)
    storage_class("shared-fsx", {"subnetId": SUBNET})
    apply(
        f"""apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {ns}}}
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - {{name: app, image: busybox, command: [sleep, infinity], volumeMounts: [{{name: data, mountPath: /data}}]}}
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec:
        accessModes: [ReadWriteMany]
        storageClassName: shared-fsx
        resources: {{requests: {{storage: 1200Gi}}}}
"""
    )
    pvs = [bound(ns, f"data-web-{i}") for i in range(2)]
    ids = {pv_fs(p) for p in pvs if p}
    check("StatefulSet: the controller's two claims bind to two file systems", all(pvs) and len(ids) == 2, ids)
    claim(ns, "shared", "shared-fsx", "1200Gi")
    apply(
        f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: readers, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: readers}}}}
  template:
    metadata: {{labels: {{app: readers}}}}
    spec:
      containers:
        - {{name: app, image: busybox, command: [sleep, infinity], volumeMounts: [{{name: data, mountPath: /data}}]}}
      volumes:
        - {{name: data, persistentVolumeClaim: {{claimName: shared}}}}
"""
    )
    pv = bound(ns, "shared")
    pods = wait_for("the Deployment's 2 pods", lambda: len((get("pods", "-n", ns, "-l", "app=readers") or {"items": []})["items"]) == 2)
    check("Deployment: 2 replicas share one RWX claim and one file system",
          pv and pods and len(by_volume_name(pv["metadata"]["name"])) == 1)


def s3_links():
    """3. SCRATCH_2 linked to S3 through LustreConfiguration; PERSISTENT_2 through one
    association, bound only once it is AVAILABLE."""
    ns = "s3"
    namespace(ns)
    storage_class("s3-scratch2", {
        "subnetId": SUBNET, "deploymentType": "SCRATCH_2", "s3ImportPath": "s3://ml-data/train",
        "s3ExportPath": "s3://ml-data/export", "autoImportPolicy": "NEW_CHANGED",
    })
    claim(ns, "scratch2", "s3-scratch2", "1200Gi")
    pv = bound(ns, "scratch2")
    fs = [f for f in file_systems() if pv and f["FileSystemId"] == pv_fs(pv)]
    repo = fs[0]["LustreConfiguration"].get("DataRepositoryConfiguration", {}) if fs else {}
    check("S3: SCRATCH_2 binds with its import path, export path and auto-import policy",
          repo.get("ImportPath") == "s3://ml-data/train" and repo.get("AutoImportPolicy") == "NEW_CHANGED"
          and repo.get("ExportPath", "").startswith("s3://ml-data/export"), repo)

    set_emulator(association_delay_ms=3000)
    storage_class("s3-persistent2", {
        "subnetId": SUBNET, "deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": "125",
        "s3ImportPath": "s3://ml-data/train", "autoImportPolicy": "NEW_CHANGED_DELETED",
    })
    claim(ns, "persistent2", "s3-persistent2", "1200Gi")
    pv = bound(ns, "persistent2")
    fs = [f for f in file_systems() if pv and f["FileSystemId"] == pv_fs(pv)]
    assocs = fs[0]["Associations"] if fs else []
    ok = pv and len(assocs) == 1 and assocs[0]["Lifecycle"] == "AVAILABLE"
    created = time.mktime(time.strptime(pv["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone if pv else 0
    check("S3: PERSISTENT_2 binds only once its one data repository association is AVAILABLE",
          ok and created >= int(assocs[0]["AvailableAtUnix"]), assocs)
    set_emulator(association_delay_ms=1000)


def lustre_options():
    """3b. Today's FSx options through the real sidecars: a PERSISTENT_2 claim linked to two S3
    paths (dataRepositoryAssociations, with event subsets) binds once both associations are
    AVAILABLE; an Intelligent-Tiering claim binds with its own size, no StorageCapacity sent, and
    grows with no FSx call."""
    ns = "options"
    namespace(ns)
    set_emulator(association_delay_ms=2000)
    links = [
        {"fileSystemPath": "/datasets", "dataRepositoryPath": "s3://ml-data/datasets", "autoImportEvents": ["DELETED"]},
        {"fileSystemPath": "/checkpoints", "dataRepositoryPath": "s3://ml-checkpoints/run-1",
         "autoExportEvents": ["NEW", "CHANGED"]},
    ]
    storage_class("two-links", {
        "subnetId": SUBNET, "deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": "125",
        "dataRepositoryAssociations": json.dumps(links),
    })
    claim(ns, "two-links", "two-links", "1200Gi")
    pv = bound(ns, "two-links")
    fs = [f for f in file_systems() if pv and f["FileSystemId"] == pv_fs(pv)]
    assocs = fs[0]["Associations"] if fs else []
    created = time.mktime(time.strptime(pv["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone if pv else 0
    paths = sorted(a.get("FileSystemPath", "") for a in assocs)
    check("options: a PERSISTENT_2 claim with two S3 links binds once both associations are AVAILABLE",
          pv and paths == ["/checkpoints", "/datasets"] and all(a["Lifecycle"] == "AVAILABLE" for a in assocs)
          and all(created >= int(a["AvailableAtUnix"]) for a in assocs), assocs)
    events = {a.get("FileSystemPath"): a.get("S3", {}) for a in assocs}
    check("options: each association carries its own S3 event subset",
          events.get("/datasets", {}).get("AutoImportPolicy", {}).get("Events") == ["DELETED"]
          and events.get("/checkpoints", {}).get("AutoExportPolicy", {}).get("Events") == ["NEW", "CHANGED"], events)
    set_emulator(association_delay_ms=1000)

    storage_class("tiering", {
        "subnetId": SUBNET, "deploymentType": "PERSISTENT_2", "storageType": "INTELLIGENT_TIERING",
        "throughputCapacity": "4000", "dataReadCacheSizingMode": "PROPORTIONAL_TO_THROUGHPUT_CAPACITY",
        "metadataConfigurationMode": "USER_PROVISIONED", "metadataIops": "6000",
    })
    claim(ns, "elastic", "tiering", "500Gi")
    pv = bound(ns, "elastic")
    fs = [f for f in file_systems() if pv and f["FileSystemId"] == pv_fs(pv)]
    check("options: an Intelligent-Tiering claim binds with its own size and no StorageCapacity sent",
          pv and pv["spec"]["capacity"]["storage"] == "500Gi" and fs and fs[0]["StorageType"] == "INTELLIGENT_TIERING"
          and "StorageCapacity" not in fs[0] and fs[0]["LustreConfiguration"].get("ThroughputCapacity") == 4000,
          fs[0] if fs else pv)
    updates = calls("UpdateFileSystem")
    kubectl("-n", ns, "patch", "pvc", "elastic", "--type", "merge", "-p", '{"spec":{"resources":{"requests":{"storage":"700Gi"}}}}')
    grown = wait_for("the Intelligent-Tiering claim to grow", lambda: get(
        "pvc", "-n", ns, "elastic")["status"].get("capacity", {}).get("storage") == "700Gi", 120)
    check("options: an Intelligent-Tiering claim grows through the resizer with no FSx call",
          grown and calls("UpdateFileSystem") == updates, calls("UpdateFileSystem") - updates)


def driver_events(ns, name):
    """The events the driver's controller posted on object ns/name, by reason."""
    out = {}
    for e in events(ns, name):
        if (e.get("source") or {}).get("component") == "fsx-csi-controller":
            out.setdefault(e["reason"], []).append(e)
    return out


def claim_events(prefix):
    """The controller's events on a claim while FSx works (the driver runs with
    --progress-event-interval=2s): a slow creation shows its start, progress aggregated into one
    series whose count grows, and AVAILABLE, all on the claim `kubectl describe pvc` shows; a
    FAILED creation shows a Warning with FSx's reason and what the driver did."""
    ns = f"{prefix}-events"
    namespace(ns)
    storage_class(f"{prefix}-events", {"subnetId": SUBNET, "deploymentType": "SCRATCH_2"})
    set_emulator(create_delay_ms=10000)
    try:
        claim(ns, "slow", f"{prefix}-events", "1200Gi")
        mid = wait_for("a progress event on the claim", lambda: driver_events(ns, "slow").get("FileSystemProgress"), 60)
        pv = bound(ns, "slow", 120)
    finally:
        set_emulator(create_delay_ms=2000)
    seen = wait_for("the AVAILABLE event", lambda: (lambda d: d if "FileSystemAvailable" in d else None)(
        driver_events(ns, "slow")), 30) or driver_events(ns, "slow")
    progress = seen.get("FileSystemProgress", [])
    creating = seen.get("FileSystemCreating", [])
    fs = pv_fs(pv)
    check(f"{prefix}: the claim's events say which file system is created where, and how long FSx takes",
          len(creating) == 1 and fs in creating[0]["message"] and SUBNET in creating[0]["message"]
          and "SCRATCH_2" in creating[0]["message"], [e["message"] for e in creating])
    counts = [e.get("count", 1) for e in progress]
    check(f"{prefix}: progress during a slow creation is one aggregated event whose count grows",
          len(progress) == 1 and mid and counts[0] > mid[0].get("count", 1) >= 1 and "CREATING" in mid[0]["message"],
          [(e.get("count"), e["message"]) for e in progress])
    available = seen.get("FileSystemAvailable", [])
    check(f"{prefix}: the claim's events say when the file system is AVAILABLE",
          len(available) == 1 and fs in available[0]["message"], [e["message"] for e in available])
    claim_uid = (get("pvc", "-n", ns, "slow") or {}).get("metadata", {}).get("uid")
    described = kubectl("-n", ns, "describe", "pvc", "slow", check_rc=False)
    check(f"{prefix}: kubectl describe pvc shows them (the events carry the claim's uid)",
          all(e["involvedObject"].get("uid") == claim_uid for r in seen.values() for e in r)
          and "FileSystemProgress" in described and "FileSystemAvailable" in described, described[-1500:])
    if progress:
        figures.append(f"{prefix}: a 10 s creation → {counts[0]} progress events in one series "
                       f"(every 2 s); {sum(len(v) for v in seen.values())} event objects on the claim")

    emulator("/_emulator/fail-next-creates", {"count": 1, "message": "The subnet has no free IP addresses"})
    claim(ns, "unlucky", f"{prefix}-events", "1200Gi")
    pv = bound(ns, "unlucky", 120)
    seen = driver_events(ns, "unlucky")
    failed = seen.get("FileSystemFailed", [])
    check(f"{prefix}: a FAILED creation is a Warning with FSx's reason and what the driver did, then the claim binds",
          pv and len(failed) == 1 and failed[0]["type"] == "Warning" and "no free IP" in failed[0]["message"]
          and "deleted it" in failed[0]["message"] and len(seen.get("FileSystemCreating", [])) == 1
          and seen["FileSystemCreating"][0].get("count") == 2,
          {r: [(e.get("count"), e["message"]) for e in v] for r, v in seen.items()})


def expansion(seed_pv):
    """4. Growth through the resizer; SCRATCH_1 cannot grow and the PVC's events say why."""
    ns = "grow"
    namespace(ns)
    storage_class("grow-scratch2", {"subnetId": SUBNET, "deploymentType": "SCRATCH_2"})
    claim(ns, "data", "grow-scratch2", "2400Gi")
    if not bound(ns, "data"):
        check("expansion: a SCRATCH_2 claim of 2400Gi binds", False)
        return
    kubectl("-n", ns, "patch", "pvc", "data", "--type", "merge", "-p", '{"spec":{"resources":{"requests":{"storage":"4000Gi"}}}}')
    start = time.time()

    def grown():
        c = get("pvc", "-n", ns, "data")
        pv = get("pv", c["spec"]["volumeName"])
        return c["status"].get("capacity", {}).get("storage") == "4800Gi" and pv["spec"]["capacity"]["storage"] == "4800Gi"

    ok = wait_for("the claim to grow", grown, 120)
    check("expansion: 4000Gi on SCRATCH_2 gives 4800Gi in the PV and the claim's status", ok)
    told = wait_for("the growth's events on the claim", lambda: (lambda d: d if "FileSystemGrown" in d else None)(
        driver_events(ns, "data")), 30) or driver_events(ns, "data")
    check("expansion: the claim's events say the file system grows from 2400 to 4800 GiB, and when it has",
          "from 2400 to 4800 GiB" in told.get("FileSystemGrowing", [{}])[0].get("message", "")
          and "4800 GiB" in told.get("FileSystemGrown", [{}])[0].get("message", ""),
          {r: [e["message"] for e in v] for r, v in told.items()})
    if ok:
        figures.append(f"expansion: patch → 4800Gi in the claim's status in {time.time() - start:.1f}s")
    if seed_pv is None:
        return
    c = seed_pv["spec"]["claimRef"]
    kubectl("-n", c["namespace"], "patch", "pvc", c["name"], "--type", "merge", "-p", '{"spec":{"resources":{"requests":{"storage":"7200Gi"}}}}')
    why = wait_for("a resize event naming SCRATCH_1", lambda: [e for e in events(c["namespace"], c["name"])
                                                              if "SCRATCH_1" in e.get("message", "")], 60)
    check("expansion: growing a SCRATCH_1 volume shows the driver's reason in the claim's events", why,
          [e.get("message") for e in events(c["namespace"], c["name"])])


def reclaim_policies():
    """5. Delete removes the file system; Retain keeps it and the PV is Released."""
    ns = "reclaim"
    namespace(ns)
    storage_class("reclaim-delete", {"subnetId": SUBNET})
    storage_class("reclaim-retain", {"subnetId": SUBNET}, reclaim="Retain")
    claim(ns, "gone", "reclaim-delete", "1200Gi")
    claim(ns, "kept", "reclaim-retain", "1200Gi")
    gone, kept = bound(ns, "gone"), bound(ns, "kept")
    if not (gone and kept):
        check("reclaim: both claims bind", False)
        return
    kubectl("-n", ns, "delete", "pvc", "gone", "kept", "--wait=false")
    deleted = wait_for("the Delete volume's file system to go", lambda: all(
        f["Lifecycle"] == "DELETING" for f in file_systems() if f["FileSystemId"] == pv_fs(gone)), 90)
    pv_gone = wait_for("the Delete PV to go", lambda: get("pv", gone["metadata"]["name"]) is None, 60)
    check("reclaim: Delete removes the PV and deletes the file system", deleted and pv_gone)
    released = wait_for("the Retain PV to be Released",
                        lambda: (get("pv", kept["metadata"]["name"]) or {}).get("status", {}).get("phase") == "Released", 60)
    still = [f for f in file_systems() if f["FileSystemId"] == pv_fs(kept)]
    check("reclaim: Retain keeps the file system and the PV is Released",
          released and still and still[0]["Lifecycle"] == "AVAILABLE")


def static_provisioning():
    """6. A PV naming an existing file system binds to its claim with no FSx create."""
    ns = "static"
    namespace(ns)
    created = fsx("CreateFileSystem", {
        "FileSystemType": "LUSTRE", "StorageCapacity": 1200, "SubnetIds": [SUBNET],
        "LustreConfiguration": {"DeploymentType": "SCRATCH_2"},
    })["FileSystem"]
    fs_id = created["FileSystemId"]
    available = wait_for("the pre-existing file system", lambda: [
        f for f in file_systems() if f["FileSystemId"] == fs_id and f["Lifecycle"] == "AVAILABLE"], 60)
    if not available:
        check("static: a PV naming an existing fs-… binds to its claim with no FSx create", False)
        return
    fs = available[0]
    before = calls("CreateFileSystem")
    apply(f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: static-{fs_id}}}
spec:
  capacity: {{storage: 1200Gi}}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  mountOptions: [flock]
  csi:
    driver: fsx.csi.aws.com
    volumeHandle: {fs_id}
    volumeAttributes: {{dnsname: {fs["DNSName"]}, mountname: {fs["LustreConfiguration"]["MountName"]}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: existing, namespace: {ns}}}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: static-{fs_id}
  resources: {{requests: {{storage: 1200Gi}}}}
""")
    pv = bound(ns, "existing", 60)
    check("static: a PV naming an existing fs-… binds to its claim with no FSx create",
          pv and pv_fs(pv) == fs_id and calls("CreateFileSystem") == before)


def bad_input():
    """7. A StorageClass with an unknown key or a bad value: the claim stays Pending with a
    ProvisioningFailed event naming the key, and FSx is not called."""
    ns = "bad"
    namespace(ns)
    before = calls("CreateFileSystem")
    for sc, params, key in [
        ("bad-key", {"subnetId": SUBNET, "throughput": "200"}, "throughput"),
        ("bad-value", {"subnetId": SUBNET, "deploymentType": "SCRATCH_3"}, "deploymentType"),
    ]:
        storage_class(sc, params)
        claim(ns, sc, sc, "1200Gi")
        failed = wait_for(f"a ProvisioningFailed event for {sc}", lambda: [
            e for e in events(ns, sc) if e.get("reason") == "ProvisioningFailed" and key in e.get("message", "")], 60)
        phase = get("pvc", "-n", ns, sc)["status"].get("phase")
        check(f"bad input: {key} leaves the claim Pending with a ProvisioningFailed event naming it",
              failed and phase == "Pending", [e.get("message") for e in events(ns, sc)])
    check("bad input: no FSx call was made", calls("CreateFileSystem") == before)


def acquired(sidecar, replica):
    """True once the sidecar of a replica logged that it acquired its leader lease."""
    try:
        with open(os.path.join(CLUSTER_DIR, "logs", f"{sidecar}-{replica}.log")) as f:
            return any("successfully acquired lease" in line.lower() for line in f)
    except OSError:
        return False


def leader_change():
    """8. Two controller replicas with leader election; the leader is killed mid-creation; the
    other takes over; exactly one file system, claim bound."""
    if not IS_ROOT:
        print("skip leader change: the two replicas need their own hostnames (UTS namespaces), which needs root; CI runs as root")
        return
    ns = "leader"
    namespace(ns)
    storage_class("leader-fsx", {"subnetId": SUBNET})
    set_emulator(create_delay_ms=10000)
    before = calls("CreateFileSystem")
    claim(ns, "data", "leader-fsx", "1200Gi")
    started = wait_for("CreateFileSystem", lambda: calls("CreateFileSystem") > before, 60)
    # The provisioner's lease holder is a random identity; its log says which replica it is.
    leaders = [i for i in ("0", "1") if acquired("csi-provisioner", i)]
    if not check("leader change: one replica's provisioner leads when creation starts", started and len(leaders) == 1,
                 leaders):
        set_emulator(create_delay_ms=2000)
        return
    leader = leaders[0]
    other = "1" if leader == "0" else "0"
    killed = time.time()
    subprocess.run(["bash", os.path.join(ROOT, "hack", "cluster.sh"), "replica", leader, "kill"], check=True)
    took_over = wait_for("the other replica to take the lease", lambda: acquired("csi-provisioner", other), 60)
    takeover = time.time() - killed
    pv = bound(ns, "data", 90)
    bound_after = time.time() - killed
    same = by_volume_name(pv["metadata"]["name"]) if pv else []
    claims = [f for f in file_systems() if tags(f).get("kubernetes.io/created-for/pvc/name") == "data"
              and tags(f).get("kubernetes.io/created-for/pvc/namespace") == ns]
    check("leader change: the other replica takes over and the claim binds", took_over and pv)
    check("leader change: exactly one file system for the claim", len(same) == 1 and len(claims) == 1,
          [f["FileSystemId"] for f in claims])
    figures.append(f"leader change: leader fsx-csi-controller-{leader} SIGKILLed mid-creation; lease taken over in "
                   f"{takeover:.1f}s, claim bound {bound_after:.1f}s after the kill; "
                   f"{len(claims)} file system, {calls('CreateFileSystem') - before} CreateFileSystem calls")
    set_emulator(create_delay_ms=2000)
    subprocess.run(["bash", os.path.join(ROOT, "hack", "cluster.sh"), "replica", leader, "start"], check=True)


DRAIN_NODE = "fsx-drain-node"

# Runs the hook in a private mount namespace with two tmpfs mounts standing in for Lustre
# targets (one of this driver, one of another driver); prints "waiting-seen" once the hook logs
# that it waits (or "exited" if it ended first), then reads an action from stdin ("umount" or
# "keep"), and prints the hook's exit code.
HOOK_SCRIPT = r"""
set -eu
K=$1; LOG=$2; shift 2
mount -t tmpfs fsx "$K/pods/uid-1/volumes/kubernetes.io~csi/pv-drain/mount"
mount -t tmpfs ebs "$K/pods/uid-2/volumes/kubernetes.io~csi/pv-other/mount"
# Emptied here, not by the background job's redirection: the loop below must never read the
# previous run's log (it could before the job's shell had opened the file).
: >"$LOG"
"$@" >>"$LOG" 2>&1 &
pid=$!
i=0
while ! grep -q "waiting for unmounts" "$LOG"; do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  i=$((i + 1)); [ "$i" -lt 1200 ] || { echo "never-waited"; exit 3; }
  sleep 0.05
done
if kill -0 "$pid" 2>/dev/null; then echo waiting-seen; else echo exited; fi
read -r action
[ "$action" = umount ] && umount "$K/pods/uid-1/volumes/kubernetes.io~csi/pv-drain/mount"
rc=0; wait "$pid" || rc=$?
echo "hook-rc=$rc"
"""


def node_drain(path):
    """10. The node plugin's preStop hook, run as the rendered DaemonSet runs it (its command,
    env, service account and RBAC) against the real apiserver: it returns at once on a node
    that is not drained, waits on a cordoned node until this driver's volume is unmounted
    (not another driver's), stops waiting when the node is uncordoned, gives up at its
    timeout naming the volume, and says which permission is missing when RBAC refuses it."""
    import yaml
    if not IS_ROOT:
        print("skip node drain: the hook's mounts need a private mount namespace, which needs root; CI runs as root")
        return
    with open(os.path.join(CLUSTER_DIR, "rendered.yaml")) as f:
        ds = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    plugin = next(c for c in pod["containers"] if c["name"] == "fsx-plugin")
    hook = plugin.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    mounts = [m["name"] for m in plugin.get("volumeMounts", []) if m["mountPath"] == token_dir]
    sources = [v for v in pod.get("volumes", []) if mounts and v["name"] == mounts[0]]
    projected = json.dumps(sources)
    check(f"{path}: node drain: fsx-plugin alone has the API token and the cluster CA, for its preStop hook",
          hook[:1] == ["/fsx-csi-driver"] and "pre-stop" in hook and "serviceAccountToken" in projected
          and "ca.crt" in projected and pod.get("automountServiceAccountToken") is False
          and all(token_dir not in json.dumps(c.get("volumeMounts", [])) for c in pod["containers"] if c is not plugin),
          hook)
    namespace_ = ds["metadata"].get("namespace", "kube-system")
    apply(json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": DRAIN_NODE}}))
    kubectl("uncordon", DRAIN_NODE)
    work = os.path.join(CLUSTER_DIR, f"drain-{path}")
    kubelet = os.path.join(work, "kubelet")
    for pv, driver in (("pv-drain", "fsx.csi.aws.com"), ("pv-other", "ebs.csi.aws.com")):
        d = os.path.join(kubelet, "pods", "uid-1" if pv == "pv-drain" else "uid-2", "volumes", "kubernetes.io~csi", pv)
        os.makedirs(os.path.join(d, "mount"), exist_ok=True)
        with open(os.path.join(d, "vol_data.json"), "w") as f:
            json.dump({"driverName": driver, "specVolID": pv, "volumeHandle": "fs-0123456789abcdef0"}, f)

    def token_for(sa, ns):
        token = kubectl("-n", ns, "create", "token", sa, "--duration", "1h").strip()
        file = os.path.join(work, f"token-{sa}")
        with open(file, "w") as f:
            f.write(token)
        return file

    own_token = token_for(pod["serviceAccountName"], namespace_)
    env = dict(os.environ)
    for e in plugin.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[e["name"]] = DRAIN_NODE
    env.update(KUBERNETES_SERVICE_HOST="127.0.0.1",
               KUBERNETES_SERVICE_PORT=open(os.path.join(CLUSTER_DIR, "ports", "apiserver")).read().strip(),
               KUBE_CA_FILE=os.path.join(CLUSTER_DIR, "pki", "ca.crt"))

    def run(action, extra=(), token=own_token, between=None):
        """Runs the hook; returns (seen, rc, log)."""
        args = [driver_binary()]
        for a in hook[1:]:
            args.append(f"--kubelet-dir={kubelet}" if a.startswith("--kubelet-dir=") else a)
        for a in extra:
            args = [x for x in args if x.split("=", 1)[0] != a.split("=", 1)[0]] + [a]
        log = os.path.join(work, "hook.log")
        p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", HOOK_SCRIPT, "sh", kubelet, log,
                              *args], env=dict(env, KUBE_TOKEN_FILE=token), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        seen = p.stdout.readline().strip()
        if between and seen == "waiting-seen":
            between()
        try:
            out, _ = p.communicate(action + "\n", timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            out = "hook-rc=hung"
        rc = out.strip().rsplit("hook-rc=", 1)[-1]
        return seen, rc, open(log).read() if os.path.exists(log) else ""

    seen, rc, log = run("umount")
    check(f"{path}: node drain: on a node that is not drained the hook returns at once, leaving the mounts",
          seen == "exited" and rc == "0" and "not being drained" in log, (seen, rc, log[-500:]))

    kubectl("cordon", DRAIN_NODE)
    started = time.time()
    seen, rc, log = run("umount")
    took = time.time() - started
    check(f"{path}: node drain: on a cordoned node the hook waits for this driver's volume (not another driver's) "
          "and returns once it is unmounted", seen == "waiting-seen" and rc == "0" and "pv-drain" in log
          and "pv-other" not in log and "no FSx volume is mounted" in log, (seen, rc, log[-800:]))
    figures.append(f"{path}: preStop on a cordoned node: waited for pv-drain, returned after its unmount; "
                   f"{took:.1f}s for the whole run (namespace, mounts, two API reads)")

    seen, rc, log = run("keep", ["--recheck-interval=500ms"], between=lambda: kubectl("uncordon", DRAIN_NODE))
    check(f"{path}: node drain: uncordoning the node ends the wait", seen == "waiting-seen" and rc == "0"
          and "no longer being drained" in log, (seen, rc, log[-800:]))

    kubectl("taint", "node", DRAIN_NODE, "karpenter.sh/disrupted:NoSchedule", "--overwrite")
    seen, rc, log = run("keep", ["--timeout=2s"])
    check(f"{path}: node drain: Karpenter's taint counts as a drain, and at --timeout the hook fails naming the "
          "volume still mounted", seen == "waiting-seen" and rc == "1" and "karpenter.sh/disrupted" in log
          and "still mounted" in log and "pv-drain" in log, (seen, rc, log[-800:]))
    kubectl("taint", "node", DRAIN_NODE, "karpenter.sh/disrupted:NoSchedule-")

    kubectl("-n", "default", "create", "serviceaccount", "fsx-drain-nobody", check_rc=False)
    seen, rc, log = run("umount", token=token_for("fsx-drain-nobody", "default"))
    check(f"{path}: node drain: without the node role the hook fails at once, naming get nodes and the ClusterRole",
          seen == "exited" and rc == "1" and "403" in log and "get on nodes" in log, (seen, rc, log[-800:]))


TAINT_NODE = "fsx-taint-node"


def driver_binary():
    """The driver binary the node scenarios run: the debug build, or FSX_CSI_DRIVER_BIN (the
    benchmark runs the release build to measure its memory)."""
    return os.environ.get("FSX_CSI_DRIVER_BIN") or os.path.join(ROOT, "target", "debug", "fsx-csi-driver")


def rss(pid):
    """A process's resident memory, as "R MiB (anon A, file F)": file pages are the binary's
    and libraries' code, shared with the page cache."""
    with open(f"/proc/{pid}/status") as f:
        kib = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "RssAnon", "RssFile")}
    return f"{kib['VmRSS'] / 1024:.1f} MiB (anon {kib['RssAnon'] / 1024:.1f}, file {kib['RssFile'] / 1024:.1f})"


NOT_READY = "fsx.csi.aws.com/agent-not-ready"


def not_ready_taint(path):
    """12. The node plugin, started with the rendered DaemonSet's args, env and service
    account, leaves the agent-not-ready taint while its CSINode does not list the driver, and
    removes it (only it) within seconds once it does."""
    import signal
    import yaml
    with open(os.path.join(CLUSTER_DIR, "rendered.yaml")) as f:
        ds = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    plugin = next(c for c in pod["containers"] if c["name"] == "fsx-plugin")
    work = os.path.join(CLUSTER_DIR, f"taint-{path}")
    os.makedirs(os.path.join(work, "kubelet"), exist_ok=True)
    kubectl("delete", "node", TAINT_NODE, "--ignore-not-found")
    kubectl("delete", "csinode", TAINT_NODE, "--ignore-not-found")
    apply(json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": TAINT_NODE},
                      "spec": {"taints": [{"key": NOT_READY, "effect": "NoExecute"},
                                          {"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]}}))
    apply(json.dumps({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": TAINT_NODE},
                      "spec": {"drivers": [{"name": "other.csi.example.com", "nodeID": TAINT_NODE}]}}))
    # As the kubelet issues it for the pod: bound to the node, so the token carries its name.
    token = kubectl("-n", ds["metadata"].get("namespace", "kube-system"), "create", "token", pod["serviceAccountName"],
                    "--bound-object-kind", "Node", "--bound-object-name", TAINT_NODE, "--duration", "1h").strip()
    with open(os.path.join(work, "token"), "w") as f:
        f.write(token)
    env = dict(os.environ, CSI_NODE_NAME=TAINT_NODE, KUBERNETES_SERVICE_HOST="127.0.0.1",
               KUBERNETES_SERVICE_PORT=open(os.path.join(CLUSTER_DIR, "ports", "apiserver")).read().strip(),
               KUBE_TOKEN_FILE=os.path.join(work, "token"), KUBE_CA_FILE=os.path.join(CLUSTER_DIR, "pki", "ca.crt"))
    socket = os.path.join(work, "csi.sock")
    args = []
    for a in plugin["args"]:
        flag = a.split("=", 1)[0]
        if flag == "--endpoint":
            a = f"--endpoint=unix://{socket}"
        elif flag == "--kubelet-dir":
            a = f"--kubelet-dir={os.path.join(work, 'kubelet')}"
        elif flag == "--metrics-address":
            a = "--metrics-address=127.0.0.1:0"
        args.append(a)
    log_path = os.path.join(work, "node.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([driver_binary(), *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)

    def taints():
        return {t["key"]: t for t in (get("node", TAINT_NODE) or {}).get("spec", {}).get("taints", [])}

    def logged(text):
        return text in open(log_path).read()
    try:
        waiting = wait_for("the plugin to wait for its registration",
                           lambda: logged("waiting for the kubelet to register the plugin"), 30)
        check(f"{path}: not-ready taint: the rendered node args ask for it, and the socket serves at once",
              "--remove-not-ready-taint" in plugin["args"] and os.path.exists(socket) and waiting,
              open(log_path).read()[-800:])
        check(f"{path}: not-ready taint: kept while the CSINode does not list the driver",
              NOT_READY in taints() and "dedicated" in taints(), taints())
        rss_watching = rss(proc.pid)
        registered = time.time()
        kubectl("patch", "csinode", TAINT_NODE, "--type", "json", "-p", json.dumps([
            {"op": "add", "path": "/spec/drivers/-", "value": {"name": "fsx.csi.aws.com", "nodeID": TAINT_NODE}}]))
        gone = wait_for("the taint to be removed", lambda: NOT_READY not in taints(), 30)
        took = time.time() - registered
        left = taints()
        check(f"{path}: not-ready taint: removed within seconds of the registration, the other taint untouched",
              gone and left.get("dedicated", {}).get("value") == "ml" and left["dedicated"].get("effect") == "NoSchedule"
              and logged("taint removed"), (left, open(log_path).read()[-800:]))
        figures.append(f"{path}: not-ready taint removed {took:.1f}s after the CSINode listed the driver; node plugin "
                       f"RSS {rss_watching} while watching its CSINode, {rss(proc.pid)} after")
        own_node_only(path, work, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def own_node_only(path, work, token):
    """19. The node plugin's RBAC may patch every Node; the shipped ValidatingAdmissionPolicy
    holds its service account's token to the Node it was issued for, and there to removing the
    agent-not-ready taint."""
    port = open(os.path.join(CLUSTER_DIR, "ports", "apiserver")).read().strip()
    config = os.path.join(work, "plugin.kubeconfig")
    with open(config, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}", certificate-authority: "{os.path.join(CLUSTER_DIR, 'pki', 'ca.crt')}"}}}}]
users: [{{name: plugin, user: {{token: "{token}"}}}}]
contexts: [{{name: c, context: {{cluster: c, user: plugin}}}}]
current-context: c
""")

    def as_plugin(*args):
        cmd = [os.path.join(BIN, "kubectl"), "--kubeconfig", config, *args]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.returncode, (r.stdout + r.stderr).strip()
    other = "fsx-other-node"
    kubectl("delete", "node", other, "--ignore-not-found")
    apply(json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": other},
                      "spec": {"taints": [{"key": NOT_READY, "effect": "NoExecute"}]}}))
    remove = json.dumps([{"op": "remove", "path": "/spec/taints/0"}])
    rc, out = as_plugin("patch", "node", other, "--type", "json", "-p", remove)
    taints = (get("node", other) or {}).get("spec", {}).get("taints", [])
    check(f"{path}: admission policy: the node plugin's token cannot untaint another node",
          rc != 0 and "may change only the Node it runs on" in out and any(t["key"] == NOT_READY for t in taints),
          out)
    rc, out = as_plugin("label", "node", TAINT_NODE, "fsx-test=1")
    check(f"{path}: admission policy: nor label its own node", rc != 0 and "labels, annotations" in out, out)
    kubectl("patch", "node", TAINT_NODE, "--type", "json", "-p",
            json.dumps([{"op": "add", "path": "/spec/taints/-", "value": {"key": "dedicated2", "effect": "NoSchedule"}}]))
    rc, out = as_plugin("patch", "node", TAINT_NODE, "--type", "json", "-p",
                        json.dumps([{"op": "remove", "path": "/spec/taints/1"}]))
    check(f"{path}: admission policy: nor remove another taint from its own node",
          rc != 0 and "agent-not-ready" in out, out)
    kubectl("delete", "node", other, "--ignore-not-found")


def snapshots_and_attributes(path):
    """13. A VolumeSnapshot of a PERSISTENT_2 claim (the snapshot example's class) becomes an FSx
    backup and ready; a claim restored from it binds to a new file system; deleting the
    VolumeSnapshot deletes the backup. A VolumeAttributesClass on a bound claim reaches FSx as
    one UpdateFileSystem, and a class with a key FSx cannot change makes no call."""
    ns = f"{path}-snap"
    namespace(ns)
    sc = f"{path}-p2"
    storage_class(sc, {"subnetId": SUBNET, "deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": "125"})
    claim(ns, "data", sc, "1200Gi")
    pv = bound(ns, "data")
    source = pv_fs(pv)
    with open(os.path.join(ROOT, "deploy/examples/snapshots/volumesnapshotclass.yaml")) as f:
        apply(f.read())
    backups_before, creates_before = calls("CreateBackup"), calls("CreateFileSystemFromBackup")
    started = time.time()
    apply(f"""apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {{name: snap, namespace: {ns}}}
spec:
  volumeSnapshotClassName: fsx-backup
  source: {{persistentVolumeClaimName: data}}
""")

    def ready():
        vs = get("volumesnapshot", "-n", ns, "snap")
        return vs if vs and (vs.get("status") or {}).get("readyToUse") else None
    vs = wait_for("the VolumeSnapshot to be ready", ready, 90)
    took_ready = time.time() - started
    content = get("volumesnapshotcontent", vs["status"]["boundVolumeSnapshotContentName"]) if vs else None
    handle = ((content or {}).get("status") or {}).get("snapshotHandle", "")
    check(f"{path}: a VolumeSnapshot of a PERSISTENT_2 claim becomes one FSx backup and ready to use",
          vs is not None and handle.startswith("backup-") and calls("CreateBackup") - backups_before == 1
          and emulator("/_emulator/stats")["backups"] >= 1, (vs or {}).get("status"))
    told = wait_for("the backup's events on the VolumeSnapshot", lambda: (lambda d: d if "BackupAvailable" in d else None)(
        driver_events(ns, "snap")), 30) or driver_events(ns, "snap")
    check(f"{path}: the VolumeSnapshot's events say which backup is taken, and when it is AVAILABLE",
          handle and all(handle in told.get(r, [{}])[0].get("message", "") for r in ("BackupCreating", "BackupAvailable")),
          {r: [e["message"] for e in v] for r, v in told.items()})
    apply(f"""apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: restored, namespace: {ns}}}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: {sc}
  dataSource: {{apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}}
  resources: {{requests: {{storage: 1200Gi}}}}
""")
    started = time.time()
    restored = bound(ns, "restored", 120)
    took_restore = time.time() - started
    check(f"{path}: a claim restored from the snapshot binds to a new file system (CreateFileSystemFromBackup)",
          restored is not None and pv_fs(restored) not in ("", source)
          and calls("CreateFileSystemFromBackup") - creates_before == 1, pv_fs(restored))
    kubectl("-n", ns, "delete", "volumesnapshot", "snap", "--wait=false")
    gone = wait_for("the backup to be deleted", lambda: emulator("/_emulator/stats")["backups"] == 0, 60)
    check(f"{path}: deleting the VolumeSnapshot deletes the FSx backup", gone, emulator("/_emulator/stats")["backups"])

    # VolumeAttributesClass: throughput 125 -> 500 on the bound claim, as one UpdateFileSystem.
    updates_before = calls("UpdateFileSystem")
    with open(os.path.join(ROOT, "deploy/examples/volume-attributes-class/volumeattributesclass.yaml")) as f:
        apply(f.read())
    kubectl("-n", ns, "patch", "pvc", "data", "--type", "merge", "-p", '{"spec":{"volumeAttributesClassName":"fsx-faster"}}')

    def modified():
        c = get("pvc", "-n", ns, "data")
        return c if (c.get("status") or {}).get("currentVolumeAttributesClassName") == "fsx-faster" else None
    started = time.time()
    done = wait_for("the claim's attributes class to apply", modified, 90)
    figures.append(f"{path}: VolumeSnapshot ready {took_ready:.1f}s after it was made (backup delay 1.5s), restored "
                   f"claim bound in {took_restore:.1f}s, attributes class in effect {time.time() - started:.1f}s after the patch "
                   f"(update delay 2s)")
    fs = next((f for f in file_systems() if f["FileSystemId"] == source), {})
    throughput = fs.get("LustreConfiguration", {}).get("PerUnitStorageThroughput")
    check(f"{path}: a VolumeAttributesClass on a bound claim reaches FSx as one UpdateFileSystem (throughput 125 -> 500)",
          done is not None and throughput == 500 and calls("UpdateFileSystem") - updates_before == 1,
          (throughput, (get("pvc", "-n", ns, "data") or {}).get("status")))
    apply("""apiVersion: storage.k8s.io/v1
kind: VolumeAttributesClass
metadata: {name: fsx-immutable}
driverName: fsx.csi.aws.com
parameters: {deploymentType: PERSISTENT_1}
""")
    updates_before = calls("UpdateFileSystem")
    kubectl("-n", ns, "patch", "pvc", "data", "--type", "merge", "-p", '{"spec":{"volumeAttributesClassName":"fsx-immutable"}}')

    def refused():
        c = get("pvc", "-n", ns, "data") or {}
        status = (c.get("status") or {}).get("modifyVolumeStatus") or {}
        said = " ".join(e.get("message", "") for e in events(ns, "data"))
        return status if "deploymentType" in said or status.get("status") == "Infeasible" else None
    seen = wait_for("the immutable key to be refused", refused, 60)
    said = " ".join(e.get("message", "") for e in events(ns, "data"))
    check(f"{path}: a VolumeAttributesClass with a key FSx cannot change is refused naming it, with no update",
          seen is not None and "deploymentType" in said and calls("UpdateFileSystem") == updates_before, (seen, said[-300:]))
    kubectl("-n", ns, "patch", "pvc", "data", "--type", "merge", "-p", '{"spec":{"volumeAttributesClassName":"fsx-faster"}}')


def replica_metrics():
    """Each running replica's /metrics text, found from the address its driver logged (the
    replicas serve on free ports: two share this host)."""
    import re
    texts = []
    for name in sorted(os.listdir(os.path.join(CLUSTER_DIR, "logs"))):
        if not name.startswith("driver-"):
            continue
        with open(os.path.join(CLUSTER_DIR, "logs", name)) as f:
            ports = re.findall(r"serving metrics at /metrics.*?127\.0\.0\.1:(\d+)", f.read())
        if not ports:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[-1]}/metrics", timeout=5) as r:
                texts.append(r.read().decode())
        except OSError:
            pass  # a replica that was stopped
    return texts


def metric_sums(texts, name):
    """name{labels} value lines summed over the replicas, by label text."""
    out = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith(name + "{"):
                labels, value = line[len(name):].rsplit(" ", 1)
                out[labels.strip("{}")] = out.get(labels.strip("{}"), 0) + float(value)
    return out


def api_counts():
    """(the replicas' fsx_csi_api_requests_total, the emulator's answers), both by
    'operation="X",outcome="Y"', read while nothing is in flight."""
    for _ in range(20):
        a = metric_sums(replica_metrics(), "fsx_csi_api_requests_total")
        emu = {f'operation="{op}",outcome="{o}"': float(n)
               for op, outcomes in emulator("/_emulator/stats")["outcomes"].items() for o, n in outcomes.items()}
        b = metric_sums(replica_metrics(), "fsx_csi_api_requests_total")
        if a == b:
            return a, emu
        time.sleep(0.5)
    return a, emu


def metrics_agree(path, start):
    """11. The replicas' metrics (the chart's --metrics-address, on a free port here) count
    every FSx request of this run exactly as the emulator answered it, and the CSI calls the
    real sidecars made."""
    ours, emu = api_counts()
    d_ours = {k: v - start[0].get(k, 0) for k, v in ours.items() if v - start[0].get(k, 0)}
    d_emu = {k: v - start[1].get(k, 0) for k, v in emu.items() if v - start[1].get(k, 0)}
    check(f"{path}: metrics: FSx requests by operation and outcome match the emulator's answers exactly",
          d_ours == d_emu and d_ours, (d_ours, d_emu))
    texts = replica_metrics()
    grpc = metric_sums(texts, "fsx_csi_grpc_requests_total")
    created = sum(v for k, v in grpc.items() if k == 'method="CreateVolume",code="OK"')
    check(f"{path}: metrics: the sidecars' CreateVolume calls are counted by method and code",
          created >= 1 and all("code=" in k for k in grpc), grpc)
    check(f"{path}: metrics: creation times and in-flight gauges are served",
          metric_sums(texts, "fsx_csi_file_system_creation_seconds_count") is not None
          and any("fsx_csi_file_system_creation_seconds_count" in t for t in texts)
          and all(v == 0 for v in metric_sums(texts, "fsx_csi_file_systems_in_flight").values()),
          [l for t in texts for l in t.splitlines() if "in_flight{" in l])
    figures.append(f"{path}: metrics: {int(sum(d_ours.values()))} FSx requests counted "
                   f"({int(sum(v for k, v in d_ours.items() if 'throttled' in k))} throttled), "
                   f"{int(sum(grpc.values()))} CSI calls")


def sidecar_problems():
    """Lines of the sidecars' logs that show a refused API call or a flag they do not take."""
    problems = []
    for name in sorted(os.listdir(os.path.join(CLUSTER_DIR, "logs"))):
        if name.startswith(("csi-provisioner-", "csi-resizer-", "csi-snapshotter-")):
            with open(os.path.join(CLUSTER_DIR, "logs", name)) as f:
                problems += [f"{name}: {line.strip()}" for line in f
                             if "forbidden" in line.lower() or "flag provided but not defined" in line
                             or "unknown flag" in line.lower()]
    return problems


def sidecar_logs_clean(path):
    problems = sidecar_problems()
    check(f"{path}: after every scenario, no sidecar was refused an API call", not problems, problems[:3])


ZONE_KEY = "topology.kubernetes.io/zone"
# The emulator's subnets: zone us-east-1a, b or c by the last hex digit.
ZONE_SUBNETS = {"us-east-1a": "subnet-0123456789abcdef0", "us-east-1b": "subnet-0123456789abcdef1",
                "us-east-1c": "subnet-0123456789abcdef2"}


def zone_node(name, zone):
    """A Node in `zone` that the scheduler can place pods on, with the CSINode its node plugin
    would have made (the driver, the zone key), as a kubelet on EKS registers them."""
    apply(json.dumps({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": name, "labels": {ZONE_KEY: zone, "kubernetes.io/hostname": name}}}))
    status = {"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in",
                        "lastHeartbeatTime": None, "lastTransitionTime": None}],
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "20"},
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "20"}}}
    kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    # The taint the API server puts on a new Node, which the node lifecycle controller (not run
    # here) lifts once the Node is Ready.
    kubectl("taint", "node", name, "node.kubernetes.io/not-ready:NoSchedule-", check_rc=False)
    apply(json.dumps({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": name},
                      "spec": {"drivers": [{"name": "fsx.csi.aws.com", "nodeID": name, "topologyKeys": [ZONE_KEY]}]}}))


def zones(prefix):
    """15. One StorageClass over three zones (subnetIds), WaitForFirstConsumer: a claim of a pod
    pinned to each zone's node gets its file system in that zone's subnet, and its PV node
    affinity to that zone (kube-scheduler places the pods, the external-provisioner passes the
    chosen node's zone); a pod pinned to a zone with no subnet gets a ProvisioningFailed event
    naming its zone and the class's, and no file system."""
    ns = f"{prefix}-zones"
    namespace(ns)
    nodes = {zone: f"fsx-zone-{zone[-1]}" for zone in [*ZONE_SUBNETS, "us-east-1d"]}
    for zone, node in nodes.items():
        zone_node(node, zone)
    sc = f"{prefix}-zones"
    apply(json.dumps({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
                      "provisioner": "fsx.csi.aws.com", "reclaimPolicy": "Delete",
                      "volumeBindingMode": "WaitForFirstConsumer",
                      "parameters": {"subnetIds": ",".join(ZONE_SUBNETS.values()), "deploymentType": "SCRATCH_2"}}))
    subnet_calls = calls("DescribeSubnets")
    for zone, node in nodes.items():
        claim(ns, f"data-{zone[-1]}", sc, "1200Gi")
        apply(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"app-{zone[-1]}", "namespace": ns},
                          "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 0,
                                   "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"],
                                                   "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                                   "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": f"data-{zone[-1]}"}}]}}))
    wrong = {}
    for zone, subnet in ZONE_SUBNETS.items():
        pv = bound(ns, f"data-{zone[-1]}", timeout=120)
        if not pv:
            wrong[zone] = "not bound"
            continue
        terms = pv["spec"].get("nodeAffinity", {}).get("required", {}).get("nodeSelectorTerms", [])
        affinity = [(e["key"], e.get("values")) for t in terms for e in t.get("matchExpressions", [])]
        fs = [f for f in file_systems() if f["FileSystemId"] == pv_fs(pv)]
        got = fs[0].get("SubnetIds", [None])[0] if fs else None
        if affinity != [(ZONE_KEY, [zone])] or got != subnet:
            wrong[zone] = {"affinity": affinity, "subnet": got}
    check(f"{prefix}: a WaitForFirstConsumer claim of a pod in each zone gets that zone's subnet and node affinity",
          not wrong, wrong)
    placed = wait_for("the pods placed", lambda: all(
        (get("pod", "-n", ns, f"app-{z[-1]}") or {}).get("spec", {}).get("nodeName") == n
        for z, n in nodes.items() if z in ZONE_SUBNETS), 60)
    check(f"{prefix}: and kube-scheduler places each pod on its zone's node", placed)
    n = calls("DescribeSubnets") - subnet_calls
    check(f"{prefix}: one DescribeSubnets for the class's three subnets", n == 1, f"{n} calls")

    def refused():
        for e in events(ns, "data-d"):
            if e.get("reason") == "ProvisioningFailed" and "us-east-1d" in e.get("message", ""):
                return e["message"]
        return None

    message = wait_for("the zone-d claim's ProvisioningFailed event", refused, 90)
    check(f"{prefix}: a pod in a zone without a subnet: ProvisioningFailed naming its zone and the class's zones",
          message and "us-east-1a, us-east-1b, us-east-1c" in message, message)
    pending = get("pvc", "-n", ns, "data-d") or {}
    check(f"{prefix}: and no file system for it, the claim Pending",
          not by_volume_name("pvc-" + pending.get("metadata", {}).get("uid", "none"))
          and pending.get("status", {}).get("phase") == "Pending", pending.get("status"))
    # Nodes without kubelets cannot confirm a pod's end: force-delete, then the rest.
    kubectl("-n", ns, "delete", "pod", "--all", "--force", "--grace-period=0", check_rc=False)
    kubectl("delete", "namespace", ns, "--wait=false")
    for node in nodes.values():
        kubectl("delete", "node", node, "--ignore-not-found", check_rc=False)
        kubectl("delete", "csinode", node, "--ignore-not-found", check_rc=False)


STAND_IN_STORE = os.path.join(CLUSTER_DIR, "lustre", "plugins", "fsx.csi.aws.com", "fsx-lustre-stand-in")


def subdirectory_claims(prefix):
    """14. provisioningMode: subdirectory (README, "Many claims on one file system"): ten claims
    of one class on a file system made by an ordinary claim bind with one DescribeFileSystems
    of it and no CreateFileSystem, each a directory of its own with the class's owner and mode,
    its project id and its quota (the controller runs with the Lustre stand-in: the file
    system is a directory of $CLUSTER_DIR/lustre, project ids and limits extended attributes);
    a claim grows by its quota alone; deleted claims leave nothing behind."""
    if not IS_ROOT:
        print("skip subdirectory claims: the controller mounts its file systems in a mount namespace, which needs root; CI runs as root")
        return
    ns = f"{prefix}-dirs"
    namespace(ns)
    storage_class(f"{prefix}-dirs-fs", {"subnetId": SUBNET, "deploymentType": "SCRATCH_2", "fileSystemTypeVersion": "2.15"})
    claim(ns, "whole", f"{prefix}-dirs-fs", "1200Gi")
    whole = bound(ns, "whole")
    if not check(f"{prefix}: a file system for subdirectory claims binds", whole):
        return
    fs = pv_fs(whole)
    mount_name = whole["spec"]["csi"]["volumeAttributes"]["mountname"]
    storage_class(f"{prefix}-dirs", {
        "provisioningMode": "subdirectory", "fileSystemId": fs, "basePath": "/k8s",
        "subPathPattern": "${.PVC.namespace}/${.PVC.name}", "uid": "1000", "gid": "1000",
    })
    stats = emulator("/_emulator/stats")
    described, created = stats["described"].get(fs, 0), stats["calls"].get("CreateFileSystem", 0)
    updates = stats["calls"].get("UpdateFileSystem", 0)
    sizes = {f"team-{i}": f"{i + 1}Gi" for i in range(10)}
    start = time.time()
    for name, size in sizes.items():
        claim(ns, name, f"{prefix}-dirs", size)
    pvs, took = {}, []
    for name in sizes:
        pvs[name] = bound(ns, name, timeout=60)
        took.append(time.time() - start)
    if not check(f"{prefix}: ten claims of a subdirectory class bind", all(pvs.values()),
                 [n for n, pv in pvs.items() if not pv]):
        return
    stats = emulator("/_emulator/stats")
    n_described = stats["described"].get(fs, 0) - described
    check(f"{prefix}: ten subdirectory claims cost one DescribeFileSystems of the file system and no CreateFileSystem",
          n_described == 1 and stats["calls"].get("CreateFileSystem", 0) == created,
          f"{n_described} DescribeFileSystems of {fs}, {stats['calls'].get('CreateFileSystem', 0) - created} creations")
    figures.append(f"{prefix}: ten subdirectory claims applied → all Bound in {took[-1]:.1f}s "
                   f"(first {took[0]:.1f}s); {n_described} DescribeFileSystems for the ten")
    root = os.path.join(STAND_IN_STORE, mount_name)
    wrong = []
    for name, pv in pvs.items():
        attrs = pv["spec"]["csi"].get("volumeAttributes", {})
        handle = pv_fs(pv)
        sub = attrs.get("subdirectory", "")
        if not (handle.startswith(fs + "/subdir/") and attrs.get("dnsname") == whole["spec"]["csi"]["volumeAttributes"]["dnsname"]
                and attrs.get("mountname") == mount_name and sub.startswith(f"/k8s/{ns}/{name}-")
                and pv["spec"]["capacity"]["storage"] == sizes[name]):
            wrong.append((name, handle, attrs, pv["spec"]["capacity"]))
            continue
        d = os.path.join(root, sub.lstrip("/"))
        try:
            st = os.stat(d)
            project = os.getxattr(d, "user.fsx-csi-driver.project").decode()
            limit = os.getxattr(root, f"user.fsx-csi-driver.limit.{project}").decode()
        except OSError as e:
            wrong.append((name, d, str(e)))
            continue
        want_limit = str(int(sizes[name][:-2]) << 30)
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (1000, 1000, 0o770) or handle != f"{fs}/subdir/{project}" \
                or limit != want_limit:
            wrong.append((name, d, st.st_uid, st.st_gid, oct(st.st_mode), project, limit))
    check(f"{prefix}: each claim is its own directory (/k8s/<namespace>/<claim>-<suffix>, 1000:1000, 0770), "
          "its project id in the volume id, its quota its size, its PV the claim's size", not wrong, wrong[:3])
    dirs = sorted(os.listdir(os.path.join(root, "k8s", ns))) if os.path.isdir(os.path.join(root, "k8s", ns)) else []
    check(f"{prefix}: exactly one directory per claim", len(dirs) == 10, dirs)
    # Growth: the quota only.
    kubectl("-n", ns, "patch", "pvc", "team-0", "--type", "merge", "-p", '{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}')
    grown = wait_for("team-0 to grow", lambda: (get("pvc", "-n", ns, "team-0") or {}).get("status", {}).get(
        "capacity", {}).get("storage") == "3Gi", 60)
    project0 = pv_fs(pvs["team-0"]).rsplit("/", 1)[-1]
    try:
        limit0 = os.getxattr(root, f"user.fsx-csi-driver.limit.{project0}").decode()
    except OSError as e:
        limit0 = str(e)
    check(f"{prefix}: a subdirectory claim grows by its quota (3Gi), with no FSx update",
          grown and limit0 == str(3 << 30) and emulator("/_emulator/stats")["calls"].get("UpdateFileSystem", 0) == updates,
          limit0)
    # Deletion: the directories leave the tree, then the trash; the quotas and ids go with them.
    for name in sizes:
        kubectl("-n", ns, "delete", "pvc", name, "--wait=false")
    names = {pv["metadata"]["name"] for pv in pvs.values()}
    gone = wait_for("the ten PVs to go", lambda: not names & {p["metadata"]["name"] for p in get("pv")["items"]}, 120)
    state = os.path.join(root, ".fsx-csi-driver")

    def emptied():
        left = os.listdir(os.path.join(root, "k8s", ns))
        trash = os.listdir(os.path.join(state, "trash")) if os.path.isdir(os.path.join(state, "trash")) else []
        projects = os.listdir(os.path.join(state, "projects")) if os.path.isdir(os.path.join(state, "projects")) else []
        limits = [a for a in os.listxattr(root) if a.startswith("user.fsx-csi-driver.limit.")]
        return (left, trash, projects, limits) if (left or trash or projects or limits) else None

    wait_for("the directories, their ids and quotas to go", lambda: emptied() is None, 60)
    check(f"{prefix}: deleted subdirectory claims leave no directory, trash, project id or quota",
          gone and emptied() is None, emptied())
    kubectl("-n", ns, "delete", "pvc", "whole", "--wait=false")


def install_path_checks(path):
    """9. The install path applied with --authorization-mode Node,RBAC: every object accepted,
    and the sidecars run with the controller's token and the rendered args."""
    rendered = open(os.path.join(CLUSTER_DIR, "rendered.yaml")).read()
    kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "StatefulSet", "DaemonSet", "CSIDriver"]
    ok = all(f"kind: {k}" in rendered for k in kinds)
    ds = (get("daemonset", "-n", "kube-system") or {"items": []})["items"]
    sts = (get("statefulset", "-n", "kube-system") or {"items": []})["items"]
    privileged = any(c.get("securityContext", {}).get("privileged") for d in ds
                     for c in d["spec"]["template"]["spec"]["containers"])
    check(f"{path}: every object applies with Node,RBAC authorization (the privileged node DaemonSet included)",
          ok and get("csidriver", "fsx.csi.aws.com") and sts and privileged)
    problems = sidecar_problems()
    check(f"{path}: the sidecars start with the rendered args and the controller's RBAC (no forbidden, no unknown flag)",
          not problems, problems[:3])


def main(argv):
    only = argv[argv.index("--only") + 1] if "--only" in argv else "kustomize"
    path = open(os.path.join(CLUSTER_DIR, "install-path")).read().strip()
    start = time.time()
    calls_before = calls("CreateFileSystem")
    api_start = api_counts()
    if only == "taint":
        # hack/bench.sh taint: only the node plugin's taint removal, for its figures.
        not_ready_taint(path)
    elif only == "kustomize":
        install_path_checks(path)
        pv = seed_walkthrough("seed")
        shared_access()
        s3_links()
        lustre_options()
        expansion(pv)
        reclaim_policies()
        static_provisioning()
        bad_input()
        claim_events("events")
        node_drain(path)
        not_ready_taint(path)
        snapshots_and_attributes(path)
        subdirectory_claims("dirs")
        zones("zones")
        leader_change()
    else:
        install_path_checks(path)
        pv = seed_walkthrough(path)
        ns = f"{path}-grow"
        namespace(ns)
        storage_class(f"{path}-grow", {"subnetId": SUBNET, "deploymentType": "SCRATCH_2"})
        claim(ns, "data", f"{path}-grow", "1200Gi")
        if bound(ns, "data"):
            kubectl("-n", ns, "patch", "pvc", "data", "--type", "merge", "-p", '{"spec":{"resources":{"requests":{"storage":"2400Gi"}}}}')
            check(f"{path}: a claim grows through the resizer with the chart's RBAC", wait_for("growth", lambda: get(
                "pvc", "-n", ns, "data")["status"].get("capacity", {}).get("storage") == "2400Gi", 120))
        claim_events(path)
        node_drain(path)
        not_ready_taint(path)
        snapshots_and_attributes(path)
        subdirectory_claims(path)
        zones(path)
        metrics_agree(path, api_start)
    if only != "taint":
        sidecar_logs_clean(path)
    volumes = len(file_systems())
    figures.append(f"{path}: {calls('CreateFileSystem') - calls_before} CreateFileSystem calls, "
                   f"{volumes} file systems now, in {time.time() - start:.0f}s")
    print("figures:")
    for f in figures:
        print(f"  {f}")
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"cluster: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
