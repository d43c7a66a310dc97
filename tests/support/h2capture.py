"""Recovers the gRPC messages a client sent from raw HTTP/2 bytes (plaintext h2c on loopback)."""

from __future__ import annotations

from collections import defaultdict

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _PADDED = 0x0, 0x8


def grpc_messages(raw: bytes) -> list[bytes]:
    """Every length-prefixed gRPC message in a client-to-server HTTP/2 byte stream."""
    offset = len(_PREFACE) if raw.startswith(_PREFACE) else 0
    streams: defaultdict[int, bytearray] = defaultdict(bytearray)
    while offset + 9 <= len(raw):
        length = int.from_bytes(raw[offset : offset + 3], "big")
        kind, flags = raw[offset + 3], raw[offset + 4]
        stream = int.from_bytes(raw[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
        payload = raw[offset + 9 : offset + 9 + length]
        offset += 9 + length
        if kind != _DATA:
            continue
        if flags & _PADDED and payload:
            pad = payload[0]
            payload = payload[1 : len(payload) - pad]
        streams[stream].extend(payload)
    messages = []
    for data in streams.values():
        position = 0
        while position + 5 <= len(data):
            size = int.from_bytes(data[position + 1 : position + 5], "big")
            messages.append(bytes(data[position + 5 : position + 5 + size]))
            position += 5 + size
    return messages
