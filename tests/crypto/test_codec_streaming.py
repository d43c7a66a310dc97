"""Chunked views over a field array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.codec import iter_chunks


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 500), chunk_size=st.integers(1, 64))
def test_chunks_cover_the_array_in_order_without_copying(size: int, chunk_size: int) -> None:
    fields = np.arange(size, dtype=np.uint16)
    chunks = list(iter_chunks(fields, chunk_size))
    assert [offset for offset, _ in chunks] == list(range(0, size, chunk_size))
    assert all(chunk.size == chunk_size for _, chunk in chunks[:-1])
    joined = np.concatenate([chunk for _, chunk in chunks]) if chunks else fields[:0]
    assert np.array_equal(joined, fields)
    assert all(np.shares_memory(chunk, fields) for _, chunk in chunks)


def test_bad_chunking_is_rejected() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        list(iter_chunks(np.zeros(3, dtype=np.uint16), 0))
    with pytest.raises(ValueError, match="one-dimensional"):
        list(iter_chunks(np.zeros((2, 2), dtype=np.uint16), 1))
