#!/usr/bin/env python3
"""Container images without a registry or a daemon, for the node tier.

Writes an OCI image archive (oci-layout, index.json, blobs/sha256/...) with one uncompressed
layer, named by the `io.containerd.image.name` annotation, which `ctr -n k8s.io images import`
takes as the image's name. Files are added as given (a dynamically linked binary gets the
shared libraries `ldd` lists, so the sidecars built with cgo run FROM scratch); every entry is
owned by root with a fixed mtime, so the same inputs give the same digest.

  images.py build OUT.tar --name NAME [--entrypoint JSON] [--cmd JSON] [--user U]
            [--workdir DIR] [--env K=V] [--file SRC:DEST[:MODE]] [--dir DEST[:MODE]]
            [--link DEST:TARGET] [--libs-for DEST]
  images.py dockerfile Dockerfile      the final stage's binary, user and entrypoint, as JSON
  images.py config ARCHIVE             the image config of an archive, as JSON
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

MTIME = 0


def tar_add(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE, target=None):
    info = tarfile.TarInfo(name.lstrip("/"))
    info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
    info.type, info.mode = kind, mode
    if kind == tarfile.SYMTYPE:
        info.linkname = target
        tar.addfile(info)
    elif kind == tarfile.DIRTYPE:
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def shared_libraries(path):
    """The shared libraries a dynamically linked binary loads (ldd), with the loader."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout:
        return []
    libs = []
    for line in out.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def layer(args):
    """The layer's tar bytes."""
    buf = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def parents(dest):
            parts = dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tar_add(tar, d, mode=0o755, kind=tarfile.DIRTYPE)

        for spec in args.dir or []:
            dest, _, mode = spec.partition(":")
            parents(dest + "/x")
            if dest.strip("/") not in seen:
                seen.add(dest.strip("/"))
                tar_add(tar, dest, mode=int(mode or "755", 8), kind=tarfile.DIRTYPE)
        files = []
        for spec in args.file or []:
            src, dest, *mode = spec.split(":")
            files.append((src, dest, int(mode[0], 8) if mode else None))
        for dest in args.libs_for or []:
            src = next(s for s, d, _ in files if d == dest)
            for lib in shared_libraries(src):
                files.append((lib, lib, 0o755))
        done = set()
        for src, dest, mode in files:
            if dest in done:
                continue
            done.add(dest)
            parents(dest)
            with open(os.path.realpath(src), "rb") as f:
                data = f.read()
            if mode is None:
                mode = os.stat(src).st_mode & 0o7777
            tar_add(tar, dest, data, mode=mode)
        for spec in args.link or []:
            dest, target = spec.split(":", 1)
            parents(dest)
            tar_add(tar, dest, kind=tarfile.SYMTYPE, mode=0o777, target=target)
    return buf.getvalue()


def build(args):
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer_bytes = layer(args)
    layer_digest = blob(layer_bytes)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {k: v for k, v in {
            "Entrypoint": json.loads(args.entrypoint) if args.entrypoint else None,
            "Cmd": json.loads(args.cmd) if args.cmd else None,
            "User": args.user,
            "WorkingDir": args.workdir,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + (args.env or []),
        }.items() if v},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "hack/lib/images.py (the node tier)"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": len(layer_bytes)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = blob(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": len(manifest_bytes),
            "annotations": {"io.containerd.image.name": args.name,
                            "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[-1]},
        }],
    }
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        tar_add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        tar_add(tar, "index.json", json.dumps(index).encode())
        tar_add(tar, "blobs", mode=0o755, kind=tarfile.DIRTYPE)
        tar_add(tar, "blobs/sha256", mode=0o755, kind=tarfile.DIRTYPE)
        for digest, data in blobs.items():
            tar_add(tar, "blobs/sha256/" + digest.split(":")[1], data)
    os.replace(tmp, args.out)


def dockerfile(path):
    """The final stage of a Dockerfile: the binary it copies, its USER and its ENTRYPOINT."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = re.split(r"(?m)^FROM ", text)
    final = stages[-1]
    copies = re.findall(r"(?m)^COPY (?:--from=\S+ )?(\S+) (\S+)\s*$", final)
    users = re.findall(r"(?m)^USER (\S+)\s*$", final)
    entry = re.findall(r"(?m)^ENTRYPOINT (\[.*\])\s*$", final)
    return {
        "binary": copies[-1][1] if copies else None,
        "user": users[-1] if users else None,
        "entrypoint": json.loads(entry[-1]) if entry else None,
    }


def archive_config(path):
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile("blobs/sha256/" + digest))
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
        layer_digest = manifest["layers"][0]["digest"].split(":")[1]
        with tarfile.open(fileobj=tar.extractfile("blobs/sha256/" + layer_digest)) as layer_tar:
            files = sorted("/" + m.name for m in layer_tar.getmembers() if m.isfile())
    return {"name": index["manifests"][0]["annotations"]["io.containerd.image.name"],
            "config": config["config"], "files": files}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("--name", required=True)
    b.add_argument("--entrypoint")
    b.add_argument("--cmd")
    b.add_argument("--user")
    b.add_argument("--workdir")
    b.add_argument("--env", action="append")
    b.add_argument("--file", action="append")
    b.add_argument("--dir", action="append")
    b.add_argument("--link", action="append")
    b.add_argument("--libs-for", action="append")
    d = sub.add_parser("dockerfile")
    d.add_argument("path")
    c = sub.add_parser("config")
    c.add_argument("path")
    args = p.parse_args()
    if args.action == "build":
        build(args)
    elif args.action == "dockerfile":
        json.dump(dockerfile(args.path), sys.stdout)
        print()
    else:
        json.dump(archive_config(args.path), sys.stdout)
        print()


if __name__ == "__main__":
    main()
