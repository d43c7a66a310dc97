"""Positional packing of b-bit fields into slots: slot = sum_j q_j * R^j with R^fields <= t."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _powers(radix: int, fields: int) -> npt.NDArray[np.int64]:
    if radix < 2 or fields < 1 or radix**fields >= 1 << 63:
        raise ValueError(f"radix {radix} with {fields} fields does not fit in int64")
    return np.array([radix**j for j in range(fields)], dtype=np.int64)


def pack_fields(values: npt.NDArray[np.integer], radix: int, fields: int) -> npt.NDArray[np.int64]:
    """Packs consecutive groups of ``fields`` values (each in [0, radix)) into one slot each.

    The input is zero-padded to a multiple of ``fields``.
    """
    flat = np.asarray(values, dtype=np.int64).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= radix):
        raise ValueError(f"field values must lie in [0, {radix})")
    padded = np.zeros(-(-flat.size // fields) * fields, dtype=np.int64)
    padded[: flat.size] = flat
    return padded.reshape(-1, fields) @ _powers(radix, fields)


def unpack_fields(
    slots: npt.NDArray[np.int64], radix: int, fields: int, count: int
) -> npt.NDArray[np.int64]:
    """Inverse of :func:`pack_fields` for slots whose fields did not overflow: first ``count``."""
    powers = _powers(radix, fields)
    digits = (np.asarray(slots, dtype=np.int64)[:, None] // powers[None, :]) % radix
    return digits.ravel()[:count]
