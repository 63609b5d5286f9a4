"""Drives the driver's socket with Python's grpcio (gRPC C-core), a non-Go client.

C-core sends the socket path, percent-encoded, as the HTTP/2 `:authority`; the driver must
accept it (issue 9, finding 6). No generated stubs: requests are hand-encoded protobuf, which
keeps the test free of protoc.

Usage: python_grpcio.py /path/to/csi.sock
Prints "python grpcio: N passed, M failed".
"""

import sys

import grpc


def field_strings(message: bytes) -> dict:
    """Length-delimited fields of a protobuf message, by field number (first occurrence)."""
    out, i = {}, 0
    while i < len(message):
        key, i = varint(message, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, i = varint(message, i)
            out.setdefault(number, message[i : i + length])
            i += length
        elif wire == 0:
            _, i = varint(message, i)
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def varint(data: bytes, i: int):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def string_field(number: int, text: str) -> bytes:
    raw = text.encode()
    return bytes([number << 3 | 2, len(raw)]) + raw


def main() -> int:
    socket = sys.argv[1]
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name} {detail}")

    # grpcio's default authority for a unix: target is the percent-encoded path.
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        call = lambda method: channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            info = field_strings(call("/csi.v1.Identity/GetPluginInfo")(b"", timeout=10))
            check("GetPluginInfo", info.get(1) == b"fsx.csi.aws.com", repr(info))
        except grpc.RpcError as e:
            check("GetPluginInfo", False, f"{e.code()}: {e.details()}")
        try:
            caps = call("/csi.v1.Node/NodeGetCapabilities")(b"", timeout=10)
            check("NodeGetCapabilities", len(caps) > 0, repr(caps))
        except grpc.RpcError as e:
            check("NodeGetCapabilities", False, f"{e.code()}: {e.details()}")
        # A refusal travels back as a status, not a reset stream.
        try:
            request = string_field(1, "fs-0123456789abcdef0") + string_field(2, "/etc/passwd")
            call("/csi.v1.Node/NodeUnpublishVolume")(request, timeout=10)
            check("NodeUnpublishVolume outside the kubelet dir is refused", False, "answered OK")
        except grpc.RpcError as e:
            check(
                "NodeUnpublishVolume outside the kubelet dir is refused",
                e.code() == grpc.StatusCode.INVALID_ARGUMENT and "kubelet" in (e.details() or ""),
                f"{e.code()}: {e.details()}",
            )

    print(f"python grpcio: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
