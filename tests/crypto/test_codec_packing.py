"""Positional packing of b-bit fields into plaintext slots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.codec import fields_per_slot, pack_fields, packing_radix, slots_needed, unpack_slots

FAST_T = 1073479681  # the "fast" BGV profile's plaintext modulus (~2^30)
BFV_T = (1 << 50) - (1 << 17) + 1  # an arbitrary large modulus near the 2-tower BFV limit

layouts = st.tuples(
    st.integers(4, 16),
    st.integers(1, 2000),
    st.sampled_from([65537, 786433, FAST_T, BFV_T, (1 << 62) - 57]),
).filter(lambda layout: packing_radix(layout[0], layout[1]) <= layout[2])


def test_fields_per_slot_matches_the_study_table() -> None:
    # notes/openfhe-study.md section 4.2: b = 8, 100 clients, t ~ 2^30 gives 2 fields per slot.
    assert packing_radix(8, 100) == 25501
    assert fields_per_slot(8, 100, FAST_T) == 2
    assert fields_per_slot(4, 100, FAST_T) == 2
    assert fields_per_slot(16, 100, FAST_T) == 1
    assert fields_per_slot(8, 100, BFV_T) == 3
    assert slots_needed(0, 2) == 0 and slots_needed(5, 2) == 3 and slots_needed(6, 3) == 2


def test_too_small_a_modulus_is_rejected() -> None:
    with pytest.raises(ValueError, match="radix"):
        fields_per_slot(16, 100, 65537)
    with pytest.raises(ValueError, match="plaintext modulus"):
        fields_per_slot(8, 1, 1 << 63)


@settings(max_examples=80, deadline=None)
@given(layout=layouts, data=st.data())
def test_unpack_inverts_pack(layout: tuple[int, int, int], data: st.DataObject) -> None:
    bits, n_max, t = layout
    count = data.draw(st.integers(0, 50))
    fields = np.array(
        data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=count, max_size=count)),
        dtype=np.uint16,
    )
    slots = pack_fields(fields, bits=bits, max_summands=n_max, plaintext_modulus=t)
    per_slot = fields_per_slot(bits, n_max, t)
    assert slots.dtype == np.int64
    assert slots.shape == (slots_needed(count, per_slot),)
    assert np.all((slots >= 0) & (slots < t))
    back = unpack_slots(slots, num_fields=count, bits=bits, max_summands=n_max, plaintext_modulus=t)
    assert np.array_equal(back, fields.astype(np.int64))


@settings(max_examples=80, deadline=None)
@given(layout=layouts, data=st.data())
def test_sums_of_up_to_n_max_packed_vectors_never_carry(
    layout: tuple[int, int, int], data: st.DataObject
) -> None:
    bits, n_max, t = layout
    per_slot = fields_per_slot(bits, n_max, t)
    count = 3 * per_slot + 1
    top = (1 << bits) - 1
    # Maximal fields everywhere except a few random ones, summed as the scheme would: mod t,
    # decoded to centred representatives (as OpenFHE returns them).
    fields = np.full(count, top, dtype=np.int64)
    fields[data.draw(st.integers(0, count - 1))] = data.draw(st.integers(0, top))
    summands = data.draw(st.integers(1, n_max))
    slots = pack_fields(fields, bits=bits, max_summands=n_max, plaintext_modulus=t)
    total = np.array([int(slot) * summands % t for slot in slots], dtype=np.int64)
    centred = np.where(total > t // 2, total - t, total)
    sums = unpack_slots(
        centred, num_fields=count, bits=bits, max_summands=n_max, plaintext_modulus=t
    )
    assert np.array_equal(sums, fields * summands)


def test_distinct_client_vectors_sum_field_by_field() -> None:
    rng = np.random.default_rng(0)
    clients = rng.integers(0, 256, size=(100, 1001))
    packed = [
        pack_fields(row, bits=8, max_summands=100, plaintext_modulus=FAST_T) for row in clients
    ]
    total = np.sum(packed, axis=0) % FAST_T
    sums = unpack_slots(total, num_fields=1001, bits=8, max_summands=100, plaintext_modulus=FAST_T)
    assert np.array_equal(sums, clients.sum(axis=0))


def test_out_of_range_fields_and_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="fields must lie"):
        pack_fields(np.array([256]), bits=8, max_summands=2, plaintext_modulus=FAST_T)
    with pytest.raises(ValueError, match="fields must lie"):
        pack_fields(np.array([-1]), bits=8, max_summands=2, plaintext_modulus=FAST_T)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_slots(
            np.zeros(2, dtype=np.int64),
            num_fields=100,
            bits=8,
            max_summands=2,
            plaintext_modulus=FAST_T,
        )
