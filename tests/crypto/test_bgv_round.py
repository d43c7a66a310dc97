"""A full round: 100 clients, a 3-of-5 committee, exact against the plaintext integer sum."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from crypto.bgv import (
    FAST,
    PROVABLE,
    Aggregator,
    BgvProfile,
    Committee,
    DecryptionPlan,
    Encryptor,
    Fuser,
    ciphertext_count,
    encode_frames,
    open_context,
    pack_fields,
    partial_decrypt,
    unpack_fields,
)
from crypto.bgv.measure import measure_round
from tests.crypto.test_bgv_ceremony import run_ceremony

CLIENTS = 100
BITS = 8


@pytest.mark.parametrize("profile", [FAST, PROVABLE], ids=lambda p: p.name)
def test_hundred_clients_sum_exactly_through_a_three_of_five_committee(
    profile: BgvProfile,
) -> None:
    ctx = open_context(profile)
    ceremony = run_ceremony(ctx, Committee(5, 3))
    radix = profile.radix(BITS, CLIENTS)
    fields = profile.fields_per_slot(BITS, CLIENTS)
    # Slightly more than one ciphertext's worth, so padding of the last one is exercised.
    parameters = fields * ctx.ring_dimension + 1000
    per_upload = ciphertext_count(ctx, -(-parameters // fields))
    rng = np.random.default_rng(int.from_bytes(ceremony.seed[:4], "little"))
    updates = rng.integers(0, 1 << BITS, size=(CLIENTS, parameters), dtype=np.int64)
    updates[0] = (1 << BITS) - 1  # one client at the maximum of every field

    encryptor = Encryptor(ctx, ceremony.joint)
    payloads = [
        b"".join(encode_frames(encryptor.encrypt(pack_fields(u, radix, fields)))) for u in updates
    ]

    # Two threads, each adding into its own lane, merged by finish().
    aggregator = Aggregator(ctx, ceremony.joint, ciphertexts_per_upload=per_upload)
    errors: list[BaseException] = []

    def add(lane_payloads: list[tuple[int, bytes]]) -> None:
        lane = aggregator.lane()
        try:
            for client, payload in lane_payloads:
                lane.add_payload(f"client-{client}", payload)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    indexed = list(enumerate(payloads))
    threads = [threading.Thread(target=add, args=(indexed[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    result = aggregator.finish()
    assert result.count == CLIENTS

    plan = DecryptionPlan.make(ceremony.committee, [1, 2, 3, 4, 5])
    partials = {
        i: partial_decrypt(ceremony.members[i], plan, result.ciphertexts, result.digest)
        for i in plan.participants
    }
    slots = Fuser(ctx, ceremony.members[1].crs_blob, result.ciphertexts).fuse(plan, partials)
    expected = updates.sum(axis=0)
    assert np.array_equal(slots[: -(-parameters // fields)], pack_fields(expected, radix, fields))
    assert np.array_equal(unpack_fields(slots, radix, fields, parameters), expected)


def test_the_measurement_helper_runs_a_small_exact_round() -> None:
    costs = measure_round(open_context(FAST), parameters=20_000, uploads=2, dropped=2, repeats=1)
    assert costs.exact
    assert costs.ciphertexts_per_upload == 2
    assert costs.bytes_per_parameter == costs.upload_bytes / 20_000
    # One 60-bit tower: two polynomials of 8-byte words per slot, plus ~0.7 KB per ciphertext.
    assert 16 < costs.upload_bytes / (2 * 8192) < 16.2
