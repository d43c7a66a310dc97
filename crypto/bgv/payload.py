"""Payload format v1: a sequence of frames ``[u32 little-endian length][BINARY ciphertext]``."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator

from crypto.bgv.errors import PayloadError

PAYLOAD_FORMAT_VERSION = 1
_HEADER = struct.Struct("<I")
HEADER_BYTES = _HEADER.size

__all__ = [
    "HEADER_BYTES",
    "PAYLOAD_FORMAT_VERSION",
    "FrameParser",
    "PayloadError",
    "encode_frame",
    "encode_frames",
    "encode_payload",
    "parse_frames",
    "payload_digest",
]


def encode_frame(body: bytes) -> bytes:
    """One frame: the body's length as u32 little-endian, then the body."""
    if not 0 < len(body) < 1 << 32:
        raise PayloadError(f"frame body of {len(body)} bytes cannot be framed")
    return _HEADER.pack(len(body)) + body


def encode_frames(bodies: Iterable[bytes]) -> Iterator[bytes]:
    """Streams frames one by one (one network message per ciphertext fits gRPC limits)."""
    for body in bodies:
        yield encode_frame(body)


def encode_payload(bodies: Iterable[bytes]) -> bytes:
    """The whole payload in memory."""
    return b"".join(encode_frames(bodies))


def payload_digest(bodies: Iterable[bytes]) -> bytes:
    """SHA-256 over the v1 encoding of ``bodies`` (without building it in memory)."""
    digest = hashlib.sha256()
    for body in bodies:
        digest.update(_HEADER.pack(len(body)))
        digest.update(body)
    return digest.digest()


class FrameParser:
    """Incremental parser: feed arbitrary chunks, get complete frame bodies back.

    Refuses a frame as soon as its header announces a length of zero or above
    ``max_frame_bytes`` (nothing of it is buffered), and more than ``max_frames`` frames.
    """

    def __init__(self, *, max_frame_bytes: int, max_frames: int | None = None) -> None:
        """Sets the limits; ``max_frame_bytes`` is normally the exact ciphertext size."""
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self._max_frame = max_frame_bytes
        self._max_frames = max_frames
        self._buffer = bytearray()
        self._offset = 0
        self._frames = 0
        self._consumed = 0

    @property
    def frames(self) -> int:
        """Complete frames returned so far."""
        return self._frames

    def feed(self, chunk: bytes) -> list[bytes]:
        """Adds bytes and returns every frame they complete.

        Raises:
            PayloadError: on a zero-length, oversized or surplus frame.
        """
        self._buffer += chunk
        out: list[bytes] = []
        while len(self._buffer) - self._offset >= HEADER_BYTES:
            (length,) = _HEADER.unpack_from(self._buffer, self._offset)
            position = self._consumed + self._offset
            if length == 0:
                raise PayloadError(f"empty frame at byte {position}")
            if length > self._max_frame:
                raise PayloadError(
                    f"frame at byte {position} announces {length} bytes, limit {self._max_frame}"
                )
            if self._max_frames is not None and self._frames >= self._max_frames:
                raise PayloadError(f"more than {self._max_frames} frames")
            end = self._offset + HEADER_BYTES + length
            if end > len(self._buffer):
                break
            out.append(bytes(self._buffer[self._offset + HEADER_BYTES : end]))
            self._offset = end
            self._frames += 1
        if self._offset:
            # Drop consumed bytes so memory stays bounded by one frame.
            del self._buffer[: self._offset]
            self._consumed += self._offset
            self._offset = 0
        return out

    def close(self) -> None:
        """Declares the end of input.

        Raises:
            PayloadError: if a frame (or a header) was cut off.
        """
        if self._buffer:
            raise PayloadError(
                f"payload truncated: {len(self._buffer)} bytes of an incomplete frame at byte "
                f"{self._consumed}"
            )


def parse_frames(
    chunks: Iterable[bytes], *, max_frame_bytes: int, max_frames: int | None = None
) -> Iterator[bytes]:
    """Streams the frame bodies of a v1 payload delivered in arbitrary chunks.

    Raises:
        PayloadError: as :class:`FrameParser`, and if the payload ends inside a frame.
    """
    parser = FrameParser(max_frame_bytes=max_frame_bytes, max_frames=max_frames)
    for chunk in chunks:
        yield from parser.feed(chunk)
    parser.close()
