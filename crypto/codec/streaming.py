"""Chunked views of a field array, so masking or encryption holds one chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import numpy.typing as npt

ScalarT = TypeVar("ScalarT", bound=np.generic)


def iter_chunks(
    fields: npt.NDArray[ScalarT], chunk_size: int
) -> Iterator[tuple[int, npt.NDArray[ScalarT]]]:
    """Yields ``(offset, fields[offset:offset + chunk_size])`` views in order.

    The views share memory with ``fields`` (no copies), so a consumer that encrypts or masks
    chunk by chunk keeps only one chunk's worth of crypto state alive. For the packed BGV
    profiles pick ``chunk_size = slots_per_ciphertext * fields_per_slot`` so each chunk fills
    exactly one ciphertext; the last chunk may be shorter.

    Args:
        fields: A one-dimensional array (typically ``EncodedUpdate.fields``).
        chunk_size: Elements per chunk, at least 1.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if fields.ndim != 1:
        raise ValueError(f"expected a one-dimensional array, got shape {fields.shape}")
    for offset in range(0, fields.size, chunk_size):
        yield offset, fields[offset : offset + chunk_size]
