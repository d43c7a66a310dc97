"""Seed commit-reveal: commitments, seed derivation and transcript verification."""

from __future__ import annotations

import pytest

from crypto.committee import (
    RefusalError,
    commitment_for,
    derive_seed,
    make_commitment,
    new_contribution,
    verify_transcript,
)
from crypto.committee.errors import BAD_TRANSCRIPT
from hefl.v1 import common_pb2

FEDERATION = "fed"
ROUND = 11
MEMBERS = (1, 2, 3, 4, 5)


def transcript(
    indices: tuple[int, ...] = MEMBERS,
) -> tuple[list[common_pb2.SeedCommitment], list[common_pb2.SeedReveal]]:
    contributions = {index: new_contribution() for index in indices}
    commitments = [make_commitment(FEDERATION, ROUND, i, c) for i, c in contributions.items()]
    reveals = [
        common_pb2.SeedReveal(member_index=i, contribution=c) for i, c in contributions.items()
    ]
    return commitments, reveals


def descriptor_of(
    commitments: list[common_pb2.SeedCommitment], reveals: list[common_pb2.SeedReveal]
) -> common_pb2.RoundDescriptor:
    return common_pb2.RoundDescriptor(
        federation_id=FEDERATION,
        round_number=ROUND,
        seed=derive_seed(FEDERATION, ROUND, reveals),
        seed_commitments=commitments,
        seed_reveals=reveals,
    )


def refusal(descriptor: common_pb2.RoundDescriptor, threshold: int = 3) -> RefusalError:
    with pytest.raises(RefusalError) as caught:
        verify_transcript(descriptor, MEMBERS, threshold)
    assert caught.value.code == BAD_TRANSCRIPT
    return caught.value


def test_contributions_are_fresh_32_byte_values() -> None:
    drawn = {new_contribution() for _ in range(50)}
    assert len(drawn) == 50
    assert all(len(contribution) == 32 for contribution in drawn)


def test_a_commitment_binds_federation_round_member_and_contribution() -> None:
    contribution = new_contribution()
    base = commitment_for("fed", 1, 2, contribution)
    assert base != commitment_for("feD", 1, 2, contribution)
    assert base != commitment_for("fed", 2, 2, contribution)
    assert base != commitment_for("fed", 1, 3, contribution)
    assert base != commitment_for("fed", 1, 2, new_contribution())


def test_the_seed_ignores_reveal_order_but_depends_on_every_reveal() -> None:
    _, reveals = transcript()
    seed = derive_seed(FEDERATION, ROUND, reveals)
    assert derive_seed(FEDERATION, ROUND, list(reversed(reveals))) == seed
    assert derive_seed(FEDERATION, ROUND + 1, reveals) != seed
    for position in range(len(reveals)):
        changed = list(reveals)
        changed[position] = common_pb2.SeedReveal(
            member_index=reveals[position].member_index, contribution=new_contribution()
        )
        assert derive_seed(FEDERATION, ROUND, changed) != seed


def test_a_complete_transcript_verifies() -> None:
    verify_transcript(descriptor_of(*transcript()), MEMBERS, threshold=3)
    verify_transcript(descriptor_of(*transcript((1, 3, 5))), MEMBERS, threshold=3)


def test_a_seed_not_derived_from_the_reveals_is_refused() -> None:
    descriptor = descriptor_of(*transcript())
    descriptor.seed = bytes(32)
    assert "not derived" in refusal(descriptor).detail


def test_a_reveal_that_does_not_match_its_commitment_is_refused() -> None:
    commitments, reveals = transcript()
    reveals[2] = common_pb2.SeedReveal(member_index=3, contribution=new_contribution())
    assert "does not match" in refusal(descriptor_of(commitments, reveals)).detail


def test_dropping_a_reveal_while_keeping_its_commitment_is_refused() -> None:
    commitments, reveals = transcript()
    assert "one to one" in refusal(descriptor_of(commitments, reveals[:-1])).detail


def test_too_few_members_are_refused() -> None:
    refusal(descriptor_of(*transcript((1, 2))))


def test_non_members_and_repeated_members_are_refused() -> None:
    refusal(descriptor_of(*transcript((1, 2, 9))))
    commitments, reveals = transcript((1, 2, 3))
    refusal(descriptor_of(commitments + commitments[:1], reveals + reveals[:1]))


def test_commitments_replayed_from_another_round_are_refused() -> None:
    contributions = {index: new_contribution() for index in MEMBERS}
    old = [make_commitment(FEDERATION, ROUND - 1, i, c) for i, c in contributions.items()]
    reveals = [
        common_pb2.SeedReveal(member_index=i, contribution=c) for i, c in contributions.items()
    ]
    refusal(descriptor_of(old, reveals))
