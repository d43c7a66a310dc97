"""Dropout recovery by distributed Lagrange partials, and what fewer than t members get."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from crypto.bgv import (
    FAST,
    PROVABLE,
    BgvProfile,
    Committee,
    DecryptionError,
    DecryptionPlan,
    Encryptor,
    Fuser,
    MemberPartials,
    fuse_partials,
    open_context,
    partial_decrypt,
)
from tests.crypto.test_bgv_ceremony import Ceremony, run_ceremony


@pytest.fixture(scope="module", params=[FAST, PROVABLE], ids=lambda p: p.name)
def ceremony(request: pytest.FixtureRequest) -> Ceremony:
    profile: BgvProfile = request.param
    return run_ceremony(open_context(profile), Committee(5, 3))


def _aggregate(ceremony: Ceremony, slots: npt.NDArray[np.int64]) -> list[bytes]:
    return list(Encryptor(ceremony.ctx, ceremony.joint).encrypt(slots))


def _secret_slots(ceremony: Ceremony) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(5)
    t = ceremony.ctx.plaintext_modulus
    return rng.integers(0, t, size=ceremony.ctx.ring_dimension, dtype=np.int64)


def test_every_dropout_of_up_to_two_of_five_still_decrypts_exactly(ceremony: Ceremony) -> None:
    slots = _secret_slots(ceremony)
    aggregate = _aggregate(ceremony, slots)
    fuser = Fuser(ceremony.ctx, ceremony.members[1].crs_blob, aggregate)
    patterns = [
        dropped
        for size in range(3)
        for dropped in itertools.combinations(ceremony.committee.members, size)
    ]
    assert len(patterns) == 16
    for dropped in patterns:
        alive = [m for m in ceremony.committee.members if m not in dropped]
        plan = DecryptionPlan.make(ceremony.committee, alive)
        assert plan.dropped == dropped
        partials = {i: partial_decrypt(ceremony.members[i], plan, aggregate) for i in alive}
        out = fuser.fuse(plan, partials)
        assert np.array_equal(out, slots), f"dropped {dropped}"


def test_two_of_five_cannot_plan_a_decryption_and_their_partials_fuse_to_garbage(
    ceremony: Ceremony,
) -> None:
    slots = _secret_slots(ceremony)
    aggregate = _aggregate(ceremony, slots)
    with pytest.raises(DecryptionError, match="threshold is 3 of 5"):
        DecryptionPlan.make(ceremony.committee, [1, 2])
    # Members 1 and 2 partially decrypt under a legitimate plan (3, 4, 5 would complete it);
    # their own partials alone, without any Lagrange help, reveal nothing of the slots.
    plan = DecryptionPlan.make(ceremony.committee, [1, 2, 4])
    partials = {i: partial_decrypt(ceremony.members[i], plan, aggregate) for i in (1, 2)}
    out = fuse_partials(ceremony.ctx, [(partials[1].own[0], partials[2].own[0])])
    assert np.count_nonzero(out == slots) < 10
    fuser = Fuser(ceremony.ctx, ceremony.members[1].crs_blob, aggregate)
    with pytest.raises(DecryptionError, match="need partials from exactly"):
        fuser.fuse(plan, partials)


def test_fusion_refuses_missing_or_malformed_partials(ceremony: Ceremony) -> None:
    slots = _secret_slots(ceremony)
    aggregate = _aggregate(ceremony, slots)
    plan = DecryptionPlan.make(ceremony.committee, [1, 2, 3])
    partials = {i: partial_decrypt(ceremony.members[i], plan, aggregate) for i in (1, 2, 3)}
    fuser = Fuser(ceremony.ctx, ceremony.members[1].crs_blob, aggregate)
    without_recovery = MemberPartials(2, partials[2].own, {})
    with pytest.raises(DecryptionError, match="must recover"):
        fuser.fuse(plan, {**partials, 2: without_recovery})
    garbled = bytearray(partials[3].own[0])
    garbled[40] ^= 0xFF
    with pytest.raises(DecryptionError, match="member 3"):
        fuser.fuse(
            plan, {**partials, 3: MemberPartials(3, (bytes(garbled),), partials[3].recovered)}
        )
    assert np.array_equal(fuser.fuse(plan, partials), slots)


def test_members_refuse_an_aggregate_that_does_not_match_its_digest(ceremony: Ceremony) -> None:
    aggregate = _aggregate(ceremony, _secret_slots(ceremony))
    plan = DecryptionPlan.make(ceremony.committee, [1, 2, 3])
    with pytest.raises(DecryptionError, match="digest"):
        partial_decrypt(ceremony.members[1], plan, aggregate, digest=bytes(32))
    with pytest.raises(DecryptionError, match="not a participant"):
        partial_decrypt(ceremony.members[5], plan, aggregate)
    with pytest.raises(DecryptionError, match="aggregate ciphertext 0"):
        partial_decrypt(ceremony.members[1], plan, [aggregate[0][:-1]])


def test_a_four_of_seven_committee_recovers_three_dropped_members() -> None:
    ctx = open_context(FAST)
    ceremony = run_ceremony(ctx, Committee(7, 4))
    slots = np.arange(ctx.ring_dimension, dtype=np.int64) * 1000
    aggregate = _aggregate(ceremony, slots)
    plan = DecryptionPlan.make(ceremony.committee, [2, 4, 5, 7])
    partials = {i: partial_decrypt(ceremony.members[i], plan, aggregate) for i in plan.participants}
    out = Fuser(ctx, ceremony.members[1].crs_blob, aggregate).fuse(plan, partials)
    assert np.array_equal(out, slots)
