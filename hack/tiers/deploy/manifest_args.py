#!/usr/bin/env python3
"""Starts the real fsx-csi-driver binary with the container args and env of the rendered
manifests (controller and node), proving the binary's own CLI parser accepts them and the
driver comes up: socket created, then a clean exit on SIGTERM. Paths the manifests point at
host locations (the socket, the kubelet dir) are moved into a temp dir; the controller talks
to the FSx emulator. The node plugin's preStop command is run too: it must name the image's
binary, parse, and fail only for want of a Kubernetes API (outside a pod), with a --timeout
below the pod's terminationGracePeriodSeconds.

usage: manifest_args.py DRIVER_BIN EMULATOR_BIN MANIFEST.yaml...
"""
import re
import shutil
import signal
import subprocess
import tempfile

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import manifests  # noqa: E402  (hack/lib/manifests.py: the one reader of rendered manifests)

plugin_containers = manifests.plugin_containers
wait_socket = manifests.wait_socket


def pre_stop(driver, hook, env, kubelet, pod, manifest, workload):
    name = f"{os.path.basename(manifest)} {workload} preStop"
    if not hook or hook[0] != "/fsx-csi-driver":
        print(f"FAIL {name}: the command {hook} does not run the image's /fsx-csi-driver")
        return False
    args = [f"--kubelet-dir={kubelet}" if a.startswith("--kubelet-dir=") else a for a in hook[1:]]
    timeout = next((a.split("=", 1)[1] for a in args if a.startswith("--timeout=")), "50s")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not timeout.endswith("s") or int(timeout[:-1]) + 5 > grace:
        print(f"FAIL {name}: --timeout={timeout} leaves under 5s of terminationGracePeriodSeconds={grace}")
        return False
    env = {k: v for k, v in env.items() if not k.startswith("KUBERNETES_")}
    r = subprocess.run([driver] + args, env=env, capture_output=True, text=True, timeout=30)
    ok = r.returncode == 1 and "KUBERNETES_SERVICE_HOST" in r.stderr
    print(f"{'ok  ' if ok else 'FAIL'} {name}: fsx-csi-driver {' '.join(args)} (exit {r.returncode}; "
          f"outside a pod it must ask for the API, grace {grace}s)")
    if not ok:
        print(r.stderr[-2000:])
    return ok


def main(driver, emulator, manifests):
    tmp = tempfile.mkdtemp(prefix="fsx-args.")
    emu = subprocess.Popen([emulator, "--create-delay-ms", "100"], stdout=subprocess.PIPE, text=True)
    endpoint = emu.stdout.readline().strip().removeprefix("listening on ")
    failures, runs = 0, 0
    try:
        for manifest in manifests:
            for workload, c, pod in plugin_containers(manifest):
                runs += 1
                env = {"PATH": os.environ.get("PATH", ""), "AWS_ENDPOINT_URL_FSX": endpoint, "AWS_ENDPOINT_URL_EC2": endpoint, "AWS_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true"}
                sock = os.path.join(tmp, f"{runs}.sock")
                for e in c.get("env", []):
                    if "value" in e:
                        env[e["name"]] = e["value"]
                    elif "valueFrom" in e:
                        env[e["name"]] = "node-from-downward-api"
                env["CSI_ENDPOINT"] = f"unix://{sock}"
                kubelet = os.path.join(tmp, f"kubelet{runs}")
                os.makedirs(kubelet, exist_ok=True)
                args = []
                for a in c.get("args", []):
                    a = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
                    if a.startswith("--kubelet-dir="):
                        a = f"--kubelet-dir={kubelet}"
                    args.append(a)
                proc = subprocess.Popen([driver] + args, env=env, stderr=subprocess.PIPE, text=True)
                up = wait_socket(sock, proc)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = "hung"
                err = proc.stderr.read()
                ok = up and rc == 0
                print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(manifest)} {workload}: fsx-csi-driver {' '.join(args)}"
                      f" (socket {'up' if up else 'never up'}, exit {rc})")
                if not ok:
                    failures += 1
                    print(err[-2000:])
                hook = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
                if workload == "fsx-csi-node" or hook:
                    runs += 1
                    failures += 0 if pre_stop(driver, hook, env, kubelet, pod, manifest, workload) else 1
    finally:
        emu.terminate()
        emu.wait()
        # The kubelet directories and sockets of the runs (nothing is mounted there).
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"manifest args: {runs - failures} started, {failures} failed")
    return 1 if failures or runs == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
