# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""A minimal CRI client: one gRPC call over containerd's unix socket, standard library only.

crictl is not available on the test bed (no registry here carries it), so the tests send the
CRI requests themselves: HTTP/2 with the request headers in HPACK literals (no Huffman coding
needed to send), a gRPC-framed protobuf body, and the response DATA frames read back.

Runs on a node: ``python3 cri_call.py SOCKET version`` prints the VersionResponse as JSON;
``python3 cri_call.py SOCKET pull IMAGE`` sends a PullImage request and prints what came back
(the test looks for the request at the mirror rather than decoding the error).
"""

import json
import socket
import struct
import sys

DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x7, 0x8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """Literal header field without indexing, new name (RFC 7541 6.2.2), no Huffman coding."""
    name, value = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def proto_string(field, text):
    data = text.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def proto_fields(data):
    """Length-delimited fields of a protobuf message: {field number: [bytes, ...]}."""
    fields, i = {}, 0
    while i < len(data):
        key, shift = 0, 0
        while True:
            byte = data[i]
            i += 1
            key |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        number, wire = key >> 3, key & 7
        if wire == 0:
            while data[i] & 0x80:
                i += 1
            i += 1
        elif wire == 2:
            length, shift = 0, 0
            while True:
                byte = data[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            fields.setdefault(number, []).append(data[i:i + length])
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unexpected wire type %d" % wire)
    return fields


def read_exact(sock, size):
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise EOFError("connection closed by containerd")
        buf += chunk
    return buf


def call(path, method, body, timeout=20):
    """One unary gRPC call; returns (response message bytes or None, whether the stream ended)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    headers = b"".join(hpack_literal(n, v) for n, v in (
        (":method", "POST"), (":scheme", "http"), (":path", method), (":authority", "localhost"),
        ("content-type", "application/grpc"), ("te", "trailers")))
    message = b"\x00" + struct.pack(">I", len(body)) + body
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0)
                 + frame(HEADERS, END_HEADERS, 1, headers) + frame(DATA, END_STREAM, 1, message))
    received = b""
    ended = False
    while not ended:
        head = read_exact(sock, 9)
        length = struct.unpack(">I", b"\x00" + head[:3])[0]
        kind, flags, stream = head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
        payload = read_exact(sock, length)
        if kind == SETTINGS and not flags & ACK:
            sock.sendall(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            sock.sendall(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            break
        elif stream == 1 and kind == DATA:
            received += payload
            if flags & END_STREAM:
                ended = True
        elif stream == 1 and kind == HEADERS and flags & END_STREAM:
            ended = True
    sock.close()
    if len(received) >= 5:
        size = struct.unpack(">I", received[1:5])[0]
        return received[5:5 + size], ended
    return None, ended


def main():
    path, what = sys.argv[1], sys.argv[2]
    if what == "version":
        reply, _ended = call(path, "/runtime.v1.RuntimeService/Version", b"")
        if reply is None:
            print(json.dumps({"error": "no VersionResponse"}))
            return 1
        fields = proto_fields(reply)
        names = {1: "version", 2: "runtime_name", 3: "runtime_version", 4: "runtime_api_version"}
        print(json.dumps({name: fields[number][0].decode() for number, name in names.items() if number in fields}))
        return 0
    if what == "pull":
        image_spec = proto_string(1, sys.argv[3])
        request = varint(1 << 3 | 2) + varint(len(image_spec)) + image_spec
        reply, ended = call(path, "/runtime.v1.ImageService/PullImage", request)
        print(json.dumps({"pulled": reply is not None, "ended": ended}))
        return 0
    raise SystemExit("usage: cri_call.py SOCKET version | pull IMAGE")


if __name__ == "__main__":
    sys.exit(main())
