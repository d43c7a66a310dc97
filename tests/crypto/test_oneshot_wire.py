"""The v1 payload codec: layout, round trips and strict rejection of malformed input."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.oneshot import (
    MaskedSum,
    OneshotParams,
    PayloadHeader,
    PayloadLayout,
    SumMode,
    WireError,
)
from crypto.oneshot.wire import HEADER_BYTES, MAGIC, pack_blocks, unpack_blocks

N = 2048


def payload_for(
    params: OneshotParams, values: npt.NDArray[np.uint64]
) -> tuple[PayloadLayout, bytes]:
    layout = PayloadLayout(params, values.size)
    return layout, layout.header + pack_blocks(layout, 0, values)


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(1, 32),
    count=st.one_of(st.integers(1, 3 * N + 17), st.sampled_from([N, 2 * N, N - 1, N + 1])),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_any_width_and_count(bits: int, count: int, seed: int) -> None:
    params = OneshotParams.create(SumMode.MOD, bits, 100)
    kp = params.rounded_modulus_bits
    values = np.random.default_rng(seed).integers(0, 1 << kp, size=count, dtype=np.uint64)
    layout, payload = payload_for(params, values)
    assert (
        len(payload)
        == layout.size
        == HEADER_BYTES
        + ((layout.block_count - 1) * (N * kp // 8) + -(-layout.last_block_values * kp // 8))
    )
    np.testing.assert_array_equal(unpack_blocks(layout, 0, payload[HEADER_BYTES:]), values)
    # Streaming: each block decodes on its own, from its own offset.
    for block in range(layout.block_count):
        start = layout.block_offset(block) - HEADER_BYTES
        size = layout.block_bytes(layout.block_values(block))
        piece = payload[HEADER_BYTES + start : HEADER_BYTES + start + size]
        np.testing.assert_array_equal(
            unpack_blocks(layout, block, piece),
            values[block * N : block * N + layout.block_values(block)],
        )


def test_layout_of_the_23_bit_mod_format_byte_by_byte() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 100)
    values = np.arange(9, dtype=np.uint64) * np.uint64(0x0ABCDE) % np.uint64(1 << 23)
    layout, payload = payload_for(params, values)
    assert payload[:4] == MAGIC == b"HFOS"
    assert struct.unpack_from("<BBBBQ", payload, 4) == (1, 1, 23, 11, 9)
    body = payload[HEADER_BYTES:]
    # Low 16 bits of each value as little-endian u16, then 7-bit tops packed LSB-first.
    np.testing.assert_array_equal(np.frombuffer(body[:18], "<u2"), values & np.uint64(0xFFFF))
    bits = int.from_bytes(body[18:], "little")
    assert len(body) == 18 + 8  # ceil(9 * 7 / 8)
    for i, value in enumerate(values):
        assert (bits >> (7 * i)) & 0x7F == int(value) >> 16
    assert bits >> 63 == 0


def test_a_full_million_parameter_payload_is_23_bits_each() -> None:
    layout = PayloadLayout(OneshotParams.create(SumMode.MOD, 16, 100), 1_000_000)
    assert layout.size == 16 + 1_000_000 * 23 // 8


def masked_sum_rejects(params: OneshotParams, payload: bytes, match: str) -> None:
    total = MaskedSum(params, 5000)
    with pytest.raises(WireError, match=match):
        total.add(payload)
    assert total.contributors == 0
    assert not total.total.any()


def test_truncated_oversized_and_garbled_payloads_are_rejected() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 100)
    values = np.random.default_rng(1).integers(0, 1 << 23, size=5000, dtype=np.uint64)
    layout, payload = payload_for(params, values)
    masked_sum_rejects(params, payload[:-1], "bytes, expected")
    masked_sum_rejects(params, payload + b"\x00", "bytes, expected")
    masked_sum_rejects(params, payload[:10], "bytes, expected")
    masked_sum_rejects(params, b"XXXX" + payload[4:], "magic")
    masked_sum_rejects(params, payload[:4] + b"\x02" + payload[5:], "version")
    masked_sum_rejects(params, payload[:5] + b"\x09" + payload[6:], "sum mode")
    masked_sum_rejects(params, payload[:5] + b"\x02" + payload[6:], "does not match")
    other_count = PayloadHeader(SumMode.MOD, 23, 11, 5001).encode()
    masked_sum_rejects(params, other_count + payload[16:], "does not match")
    # The last block holds 904 values: 904 * 7 = 6328 top bits fill whole bytes, so flip a
    # spare bit with a width that leaves some: 5001 values at 23 bits.
    odd = np.random.default_rng(2).integers(0, 1 << 23, size=5001, dtype=np.uint64)
    odd_layout, odd_payload = payload_for(params, odd)
    garbled = odd_payload[:-1] + bytes([odd_payload[-1] | 0x80])
    with pytest.raises(WireError, match="spare bits"):
        unpack_blocks(odd_layout, 0, garbled[HEADER_BYTES:])
    with pytest.raises(WireError, match="whole blocks"):
        unpack_blocks(layout, 0, payload[HEADER_BYTES:-3])
    with pytest.raises(WireError, match="whole blocks"):
        unpack_blocks(layout, 1, payload[HEADER_BYTES:])


def test_header_rejects_nonsense_sizes() -> None:
    with pytest.raises(WireError, match="header sizes"):
        PayloadHeader.decode(PayloadHeader(SumMode.MOD, 23, 11, 0).encode())
    with pytest.raises(WireError, match="header sizes"):
        PayloadHeader.decode(PayloadHeader(SumMode.MOD, 0, 11, 5).encode())
    with pytest.raises(WireError, match="shorter"):
        PayloadHeader.decode(b"HFOS")
