"""Byte formats of model downloads: full models, compact corrections and correction chains.

All integers are little-endian. docs/protocol.md repeats these layouts for other languages.

Full model (format 1)::

    magic b"HEFLMODL" | u32 format | u64 version | u64 count | count x f32

Correction from version v-1 to v (format 1): a quantized difference, applied as
``model += scale * q`` where q are signed ``bits``-bit integers stored in int8 (bits <= 8) or
int16 (bits <= 16)::

    magic b"HEFLCORR" | u32 format | u64 from_version | u64 to_version | u64 count
    | u32 bits | f64 scale | 32-byte SHA-256 of the resulting full-model payload | count x q

Chain (format 1)::

    magic b"HEFLCHAN" | u32 format | u32 links | links x (u64 length | correction bytes)

A device applies a correction only when its from_version equals the version it holds, and checks
the resulting model against the embedded digest, so corrections cannot be applied out of order
or to the wrong base.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
_MODEL_MAGIC = b"HEFLMODL"
_CORRECTION_MAGIC = b"HEFLCORR"
_CHAIN_MAGIC = b"HEFLCHAN"
_MODEL_HEADER = struct.Struct("<8sIQQ")
_CORRECTION_HEADER = struct.Struct("<8sIQQQId32s")
_CHAIN_HEADER = struct.Struct("<8sII")
_LINK_LENGTH = struct.Struct("<Q")

FloatVector = npt.NDArray[np.float32]


class PayloadError(ValueError):
    """A payload is malformed, of an unknown format, or does not fit the model it targets."""


@dataclass(frozen=True)
class ModelPayload:
    """A decoded full model."""

    version: int
    values: FloatVector


@dataclass(frozen=True)
class Correction:
    """A decoded correction."""

    from_version: int
    to_version: int
    bits: int
    scale: float
    result_sha256: bytes
    quantized: npt.NDArray[np.int16]


def encode_model(version: int, values: npt.NDArray[np.floating]) -> bytes:
    """Serialises a full model at ``version``."""
    flat = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    return _MODEL_HEADER.pack(_MODEL_MAGIC, FORMAT_VERSION, version, flat.size) + flat.tobytes()


def decode_model(data: bytes) -> ModelPayload:
    """Parses a full model, checking magic, format and length."""
    if len(data) < _MODEL_HEADER.size:
        raise PayloadError("model payload shorter than its header")
    magic, fmt, version, count = _MODEL_HEADER.unpack_from(data)
    if magic != _MODEL_MAGIC:
        raise PayloadError("not a model payload (bad magic)")
    if fmt != FORMAT_VERSION:
        raise PayloadError(f"unsupported model format {fmt}")
    if len(data) != _MODEL_HEADER.size + 4 * count:
        raise PayloadError(f"model payload length does not match its {count} parameters")
    values = np.frombuffer(data, dtype="<f4", offset=_MODEL_HEADER.size).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise PayloadError("model payload holds non-finite values")
    return ModelPayload(version, values)


def model_sha256(version: int, values: npt.NDArray[np.floating]) -> bytes:
    """SHA-256 of the full-model payload of ``values`` at ``version``."""
    return hashlib.sha256(encode_model(version, values)).digest()


def quantize_difference(
    difference: npt.NDArray[np.floating], bits: int
) -> tuple[float, npt.NDArray[np.int16]]:
    """Rounds a difference to signed ``bits``-bit integers with one scale for the vector."""
    if not 2 <= bits <= 16:
        raise PayloadError(f"correction bits must be 2..16, got {bits}")
    limit = 2 ** (bits - 1) - 1
    peak = float(np.max(np.abs(difference))) if difference.size else 0.0
    scale = peak / limit if peak > 0 else 1.0
    # In place on one scratch array: a coordinator quantizes whole models every round.
    scaled = np.divide(difference, scale, dtype=np.float64)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -limit, limit, out=scaled)
    return scale, scaled.astype(np.int16)


def encode_correction(correction: Correction) -> bytes:
    """Serialises a correction."""
    storage = "<i1" if correction.bits <= 8 else "<i2"
    header = _CORRECTION_HEADER.pack(
        _CORRECTION_MAGIC,
        FORMAT_VERSION,
        correction.from_version,
        correction.to_version,
        correction.quantized.size,
        correction.bits,
        correction.scale,
        correction.result_sha256,
    )
    return header + correction.quantized.astype(storage).tobytes()


def decode_correction(data: bytes) -> Correction:
    """Parses a correction, checking magic, format, bits, range and length."""
    if len(data) < _CORRECTION_HEADER.size:
        raise PayloadError("correction shorter than its header")
    magic, fmt, from_version, to_version, count, bits, scale, digest = (
        _CORRECTION_HEADER.unpack_from(data)
    )
    if magic != _CORRECTION_MAGIC or fmt != FORMAT_VERSION:
        raise PayloadError("not a correction of a supported format")
    if not 2 <= bits <= 16 or not np.isfinite(scale) or scale <= 0:
        raise PayloadError(f"bad correction parameters: bits={bits} scale={scale}")
    if to_version != from_version + 1:
        raise PayloadError(f"correction must span one version, got {from_version}->{to_version}")
    width = 1 if bits <= 8 else 2
    if len(data) != _CORRECTION_HEADER.size + width * count:
        raise PayloadError("correction length does not match its parameter count")
    storage = "<i1" if bits <= 8 else "<i2"
    quantized = np.frombuffer(data, dtype=storage, offset=_CORRECTION_HEADER.size)
    limit = 2 ** (bits - 1) - 1
    if quantized.size and int(np.max(np.abs(quantized.astype(np.int32)))) > limit:
        raise PayloadError("correction value outside its bit range")
    return Correction(from_version, to_version, bits, scale, digest, quantized.astype(np.int16))


def apply_correction(version: int, values: FloatVector, correction: Correction) -> FloatVector:
    """Applies a correction to the model a device holds.

    Raises:
        PayloadError: if the correction does not start at ``version``, has another size, or
            the result does not match the digest the coordinator published.
    """
    if correction.from_version != version:
        raise PayloadError(
            f"correction {correction.from_version}->{correction.to_version} does not apply to"
            f" version {version}"
        )
    if correction.quantized.size != values.size:
        raise PayloadError("correction size differs from the model")
    updated = values + np.float32(correction.scale) * correction.quantized.astype(np.float32)
    updated = updated.astype(np.float32)
    if model_sha256(correction.to_version, updated) != correction.result_sha256:
        raise PayloadError(f"model after correction {correction.to_version} fails its digest")
    return updated


def encode_chain(corrections: list[bytes]) -> bytes:
    """Concatenates serialized corrections into a chain payload."""
    parts = [_CHAIN_HEADER.pack(_CHAIN_MAGIC, FORMAT_VERSION, len(corrections))]
    for link in corrections:
        parts.append(_LINK_LENGTH.pack(len(link)))
        parts.append(link)
    return b"".join(parts)


def decode_chain(data: bytes) -> list[Correction]:
    """Parses a chain payload into corrections, in order."""
    if len(data) < _CHAIN_HEADER.size:
        raise PayloadError("chain shorter than its header")
    magic, fmt, links = _CHAIN_HEADER.unpack_from(data)
    if magic != _CHAIN_MAGIC or fmt != FORMAT_VERSION:
        raise PayloadError("not a correction chain of a supported format")
    offset = _CHAIN_HEADER.size
    corrections = []
    for _ in range(links):
        if offset + _LINK_LENGTH.size > len(data):
            raise PayloadError("chain truncated")
        (length,) = _LINK_LENGTH.unpack_from(data, offset)
        offset += _LINK_LENGTH.size
        if offset + length > len(data):
            raise PayloadError("chain link truncated")
        corrections.append(decode_correction(data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise PayloadError("trailing bytes after the chain")
    for previous, following in zip(corrections, corrections[1:], strict=False):
        if following.from_version != previous.to_version:
            raise PayloadError("chain links are not consecutive")
    return corrections


def chain_size(correction_sizes: list[int]) -> int:
    """Size of the chain payload made of corrections of these sizes."""
    return _CHAIN_HEADER.size + sum(_LINK_LENGTH.size + size for size in correction_sizes)


def model_size(count: int) -> int:
    """Size of a full-model payload of ``count`` parameters."""
    return _MODEL_HEADER.size + 4 * count
