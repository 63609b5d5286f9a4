#!/usr/bin/env python3
"""The one reader of rendered manifests (kustomize or helm output) for every hack/ script: a
module the deployment checks import, and a command line for the shell scripts.

  manifests.py service-account RENDERED.yaml
      the controller's service account
  manifests.py args RENDERED.yaml CONTAINER SOCKET [--override NAME=VALUE ...]
      the container's args, one per line, with $(VAR) expanded from its env (fieldRef
      metadata.namespace is the workload's namespace), the CSI socket (--endpoint /
      --csi-address) pointed at SOCKET, and each --NAME replaced by --NAME=VALUE; the
      control-plane tier starts the driver and the sidecars with them, so they run exactly as
      the StatefulSet would run them
  manifests.py core-docs FILE OUT
      FILE without the documents the strict validator cannot know (VolumeSnapshot CRD objects,
      VolumeAttributesClass), written to OUT
"""
import re
import socket
import sys
import time

import yaml


def docs(source):
    """The non-empty documents of a path, or of YAML text (with a newline in it)."""
    if "\n" in source:
        return [d for d in yaml.safe_load_all(source) if d]
    with open(source) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def objects(source):
    """{(kind, name): object}."""
    return {(d["kind"], d["metadata"]["name"]): d for d in docs(source)}


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def plugin_containers(source):
    """(workload name, the fsx-plugin container, the pod spec) of every StatefulSet and DaemonSet."""
    for doc in docs(source):
        if doc["kind"] in ("StatefulSet", "DaemonSet"):
            for c in pod_spec(doc)["containers"]:
                if c["name"] == "fsx-plugin":
                    yield doc["metadata"]["name"], c, pod_spec(doc)


def controller(path):
    """The controller workload: the StatefulSet or Deployment running fsx-plugin --mode=controller."""
    for doc in docs(path):
        if doc.get("kind") not in ("StatefulSet", "Deployment"):
            continue
        for c in pod_spec(doc)["containers"]:
            if c["name"] == "fsx-plugin" and "--mode=controller" in c.get("args", []):
                return doc
    sys.exit(f"no controller StatefulSet or Deployment in {path}")


def wait_socket(path, proc, timeout=20):
    """True once the unix socket at path accepts connections, False if proc exits or time is up."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def core_docs(path, out):
    keep = [d for d in docs(path)
            if not d.get("apiVersion", "").startswith("snapshot.storage.k8s.io/") and d.get("kind") != "VolumeAttributesClass"]
    with open(out, "w") as f:
        f.write(yaml.safe_dump_all(keep) if keep else "")


def args(path, name, socket, overrides):
    doc = controller(path)
    namespace = doc["metadata"].get("namespace", "kube-system")
    containers = {c["name"]: c for c in pod_spec(doc)["containers"]}
    if name not in containers:
        sys.exit(f"no container {name} in the controller; it has {sorted(containers)}")
    c = containers[name]
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[e["name"]] = namespace
    out = []
    for a in c.get("args", []):
        a = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
        flag = a.split("=", 1)[0]
        if flag in ("--endpoint", "--csi-address"):
            a = f"{flag}=unix://{socket}" if flag == "--endpoint" else f"{flag}={socket}"
        out.append(a)
    for o in overrides:
        key, value = o.split("=", 1)
        flag = f"--{key}"
        out = [a for a in out if a.split("=", 1)[0] != flag]
        out.append(f"{flag}={value}")
    print("\n".join(out))


def main(argv):
    if len(argv) >= 2 and argv[0] == "service-account":
        doc = controller(argv[1])
        print(pod_spec(doc).get("serviceAccountName", "default"))
    elif len(argv) == 3 and argv[0] == "core-docs":
        core_docs(argv[1], argv[2])
    elif len(argv) >= 4 and argv[0] == "args":
        overrides = [v for i, v in enumerate(argv[4:]) if i % 2 == 1 and argv[4 + i - 1] == "--override"]
        args(argv[1], argv[2], argv[3], overrides)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
