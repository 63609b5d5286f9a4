#!/usr/bin/env python3
"""Forwards connections between a TCP address and a unix socket, both ways of the pair, so that a
server inside a private network namespace is reachable from the host's loopback: a unix socket
is a file, and files are shared between network namespaces.

  forward.py LISTEN TARGET      each one tcp:HOST:PORT or unix:PATH

The sandbox (hack/cluster.sh up, with a node) runs one on the host (tcp:127.0.0.1:P to the
socket) and one inside (the socket to the API server on the namespace's 127.0.0.1). A unix
socket it listens on is made 0600.
"""

import asyncio
import os
import sys


def parse(spec):
    kind, _, addr = spec.partition(":")
    if kind == "tcp":
        host, _, port = addr.rpartition(":")
        return kind, (host, int(port))
    if kind == "unix":
        return kind, addr
    sys.exit(f"forward.py: {spec}: want tcp:HOST:PORT or unix:PATH")


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(listen, target):
    async def handle(reader, writer):
        try:
            if target[0] == "tcp":
                r2, w2 = await asyncio.open_connection(*target[1])
            else:
                r2, w2 = await asyncio.open_unix_connection(target[1])
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, w2), pump(r2, writer))

    if listen[0] == "tcp":
        server = await asyncio.start_server(handle, *listen[1])
    else:
        if os.path.exists(listen[1]):
            os.unlink(listen[1])
        server = await asyncio.start_unix_server(handle, listen[1])
        os.chmod(listen[1], 0o600)
    print(f"forwarding {sys.argv[1]} to {sys.argv[2]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(main(parse(sys.argv[1]), parse(sys.argv[2])))
