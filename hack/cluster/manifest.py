#!/usr/bin/env python3
"""Reads what the cluster tier needs from the rendered manifests, so the processes it starts
run exactly as the StatefulSet would run them.

  manifest.py service-account RENDERED.yaml
      the controller's service account
  manifest.py args RENDERED.yaml CONTAINER SOCKET [--override NAME=VALUE ...]
      the container's args, one per line, with $(VAR) expanded from its env (fieldRef
      metadata.namespace is the workload's namespace), the CSI socket (--endpoint /
      --csi-address) pointed at SOCKET, and each --NAME replaced by --NAME=VALUE
"""
import re
import sys

import yaml


def controller(path):
    """The controller workload: the StatefulSet or Deployment running fsx-plugin --mode=controller."""
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") not in ("StatefulSet", "Deployment"):
                continue
            containers = doc["spec"]["template"]["spec"]["containers"]
            for c in containers:
                if c["name"] == "fsx-plugin" and "--mode=controller" in c.get("args", []):
                    return doc
    sys.exit(f"no controller StatefulSet or Deployment in {path}")


def args(path, name, socket, overrides):
    doc = controller(path)
    namespace = doc["metadata"].get("namespace", "kube-system")
    containers = {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}
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
        print(doc["spec"]["template"]["spec"].get("serviceAccountName", "default"))
    elif len(argv) >= 4 and argv[0] == "args":
        overrides = [v for i, v in enumerate(argv[4:]) if i % 2 == 1 and argv[4 + i - 1] == "--override"]
        args(argv[1], argv[2], argv[3], overrides)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
