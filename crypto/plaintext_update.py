"""Byte format of a plaintext update (the comparison profile; no privacy).

Layout (little-endian): ``b"HEFLPLNU" | u32 format | u64 count | count x f32`` holding the
device's model delta (local minus global).
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
_MAGIC = b"HEFLPLNU"
_HEADER = struct.Struct("<8sIQ")


class PlaintextUpdateError(ValueError):
    """The payload is not a well-formed plaintext update of the expected size."""


def encode(delta: npt.NDArray[np.floating]) -> bytes:
    """Serialises a model delta."""
    flat = np.ascontiguousarray(delta, dtype="<f4").reshape(-1)
    return _HEADER.pack(_MAGIC, FORMAT_VERSION, flat.size) + flat.tobytes()


def decode(data: bytes, expected_count: int) -> npt.NDArray[np.float32]:
    """Parses a plaintext update, checking its header, size and values."""
    if len(data) < _HEADER.size:
        raise PlaintextUpdateError("payload shorter than its header")
    magic, fmt, count = _HEADER.unpack_from(data)
    if magic != _MAGIC or fmt != FORMAT_VERSION:
        raise PlaintextUpdateError("not a plaintext update of a supported format")
    if count != expected_count:
        raise PlaintextUpdateError(f"update has {count} parameters, the model {expected_count}")
    if len(data) != _HEADER.size + 4 * count:
        raise PlaintextUpdateError("payload length does not match its parameter count")
    values = np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise PlaintextUpdateError("update holds non-finite values")
    return values


def encoded_size(count: int) -> int:
    """Payload size for ``count`` parameters."""
    return _HEADER.size + 4 * count
