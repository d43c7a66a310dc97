"""Whole rounds: clients mask, the coordinator adds, members open S, the sum decodes bit-exact."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.oneshot import (
    MaskingError,
    MaskingSession,
    OneshotParams,
    RoundBinding,
    SumMode,
    UsedRounds,
)
from tests.crypto.test_oneshot_fixtures import (
    Committee,
    Upload,
    client_upload,
    make_descriptor,
    open_round,
    random_fields,
)

CLIENTS = 100
PARAMETERS = 50_000


def run_round(
    mode: SumMode, clients: int, parameters: int, seed: int, *, bits: int = 16
) -> tuple[OneshotParams, list[Upload], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    params = OneshotParams.create(mode, bits, clients)
    binding = RoundBinding(make_descriptor(params, parameters))
    committee = Committee.generate()
    rng = np.random.default_rng(seed)
    uploads = [
        client_upload(binding, params, committee, f"w{i:03d}", random_fields(rng, bits, parameters))
        for i in range(clients)
    ]
    opened = open_round(binding, params, committee, uploads, uploads)
    expected: npt.NDArray[np.uint64] = np.sum([u.fields for u in uploads], axis=0, dtype=np.uint64)
    return params, uploads, opened, expected


@pytest.mark.parametrize("mode", [SumMode.MOD, SumMode.EXACT])
def test_100_clients_sum_is_bit_exact(mode: SumMode) -> None:
    params, _, opened, expected = run_round(mode, CLIENTS, PARAMETERS, seed=int(mode))
    if mode is SumMode.MOD:
        np.testing.assert_array_equal(opened, expected % np.uint64(1 << 16))
    else:
        # The integer sum itself: 100 fields of 16 bits reach 2^22.6, no wrap.
        assert int(expected.max()) >= 1 << 16
        np.testing.assert_array_equal(opened, expected)


def test_worst_case_fields_decode_exactly() -> None:
    # Every client at the top of its range: the exact sum is n_max (2^b - 1).
    params = OneshotParams.create(SumMode.EXACT, 16, 20)
    binding = RoundBinding(make_descriptor(params, 3000))
    committee = Committee.generate()
    top = np.full(3000, (1 << 16) - 1, dtype=np.uint64)
    uploads = [client_upload(binding, params, committee, f"w{i}", top) for i in range(20)]
    opened = open_round(binding, params, committee, uploads, uploads)
    np.testing.assert_array_equal(opened, top * np.uint64(20))


def test_a_client_that_drops_after_uploading_needs_no_extra_round() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 10)
    binding = RoundBinding(make_descriptor(params, 5000))
    committee = Committee.generate()
    rng = np.random.default_rng(3)
    uploads = [
        client_upload(binding, params, committee, f"w{i}", random_fields(rng, 16, 5000))
        for i in range(8)
    ]
    # w7 uploaded (payload and sealed shares) and then went offline: the members open its
    # shares like everyone else's; nobody needs anything more from it.
    opened = open_round(binding, params, committee, uploads, uploads)
    expected = np.sum([u.fields for u in uploads], axis=0, dtype=np.uint64) % np.uint64(1 << 16)
    np.testing.assert_array_equal(opened, expected)


def test_a_client_that_never_uploads_is_simply_not_in_the_set() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 10)
    binding = RoundBinding(make_descriptor(params, 5000))
    committee = Committee.generate()
    rng = np.random.default_rng(4)
    uploads = [
        client_upload(binding, params, committee, f"w{i}", random_fields(rng, 16, 5000))
        for i in range(6)
    ]
    arrived = uploads[:5]
    opened = open_round(binding, params, committee, arrived, arrived, members=(2, 4, 5))
    expected = np.sum([u.fields for u in arrived], axis=0, dtype=np.uint64) % np.uint64(1 << 16)
    np.testing.assert_array_equal(opened, expected)


def test_approx_mode_is_within_a_few_lsb() -> None:
    params = OneshotParams.create(SumMode.APPROX, 16, 50, allow_approx=True)
    binding = RoundBinding(make_descriptor(params, 4096))
    committee = Committee.generate()
    rng = np.random.default_rng(5)
    uploads = [
        client_upload(binding, params, committee, f"w{i}", random_fields(rng, 16, 4096))
        for i in range(50)
    ]
    opened = open_round(binding, params, committee, uploads, uploads)
    expected = np.sum([u.fields for u in uploads], axis=0, dtype=np.int64) % (1 << 16)
    error = (opened.astype(np.int64) - expected + (1 << 15)) % (1 << 16) - (1 << 15)
    # Rounding noise sum has std sqrt(50/12) = 2 q'-units, Delta' = 4: about 0.5 LSB.
    assert np.abs(error).max() <= 6
    assert 0.2 < error.std() < 1.0


@settings(max_examples=12, deadline=None)
@given(
    mode=st.sampled_from([SumMode.MOD, SumMode.EXACT]),
    bits=st.integers(1, 16),
    clients=st.integers(1, 24),
    parameters=st.integers(1, 2500),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_default_shift_decodes_a_full_aggregate_exactly(
    mode: SumMode, bits: int, clients: int, parameters: int, seed: int
) -> None:
    # n_max = clients: the aggregate is as full as the parameters allow, so the noise is at
    # its bound d = ceil(log2(n_max + 4)).
    params, uploads, opened, expected = run_round(mode, clients, parameters, seed, bits=bits)
    assert params.max_summands == clients
    np.testing.assert_array_equal(opened, expected % np.uint64(1 << params.sum_bits))


def test_streaming_in_any_batch_size_gives_the_same_bytes_shape() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 10)
    binding = RoundBinding(make_descriptor(params, 9000))
    fields = random_fields(np.random.default_rng(6), 16, 9000)
    for batch in (1, 2, 5):
        session = MaskingSession(binding, params, 9000, UsedRounds())
        pieces = list(session.iter_payload(fields, batch_blocks=batch))
        assert len(pieces) == 1 + -(-5 // batch)
        assert sum(map(len, pieces)) == session.layout.size


def test_session_rejects_out_of_order_and_out_of_range_input() -> None:
    params = OneshotParams.create(SumMode.MOD, 8, 10)
    binding = RoundBinding(make_descriptor(params, 5000))
    session = MaskingSession(binding, params, 5000, UsedRounds())
    fields = np.zeros(5000, dtype=np.uint16)
    with pytest.raises(MaskingError, match="after the header"):
        session.mask_blocks(0, fields[:2048])
    session.header()
    with pytest.raises(MaskingError, match="expected block 0"):
        session.mask_blocks(1, fields[2048:4096])
    with pytest.raises(MaskingError, match=r"\[0, 2\^8\)"):
        session.mask_blocks(0, np.full(2048, 256, dtype=np.uint16))
    with pytest.raises(MaskingError, match="fill"):
        session.mask_blocks(0, fields[:100])
    with pytest.raises(MaskingError, match="not complete"):
        session.seal_key_shares(members=Committee.generate().members, threshold=3, worker_id="w")


@pytest.mark.slow
@pytest.mark.parametrize("mode", [SumMode.MOD, SumMode.EXACT])
def test_100_clients_one_million_parameters(mode: SumMode) -> None:
    started = time.perf_counter()
    params, uploads, opened, expected = run_round(mode, CLIENTS, 1_000_000, seed=11)
    np.testing.assert_array_equal(opened, expected % np.uint64(1 << params.sum_bits))
    masked = uploads[0].masked
    shares = sum(
        len(s.sealed.ephemeral_public_key) + len(s.sealed.nonce) + len(s.sealed.ciphertext) + 4
        for s in masked.sealed_shares
    )
    per_param = (len(masked.payload) + shares) / 1_000_000
    print(
        f"\n{mode.name}: {len(masked.payload)} B payload + {shares} B sealed shares = "
        f"{per_param:.3f} B/param ({time.perf_counter() - started:.1f} s for the round)"
    )
    if mode is SumMode.MOD:
        assert per_param <= 3.05
