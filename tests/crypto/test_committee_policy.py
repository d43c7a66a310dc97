"""The member policy: idempotent answers, one set per round, results that never change."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.committee import (
    CommitteeError,
    MemberLog,
    MemberPolicy,
    RefusalError,
    SelfCertifyingVerifier,
    VerifiedContributorSet,
)
from crypto.committee.errors import (
    AGGREGATE_MISMATCH,
    BAD_TRANSCRIPT,
    CONFLICT,
    MALFORMED,
    NO_QUORUM,
)
from crypto.signing import SigningKey
from hefl.v1 import committee_service_pb2, common_pb2
from tests.crypto.test_committee_world import FEDERATION, World, opening


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def full_set(world: World, round_number: int = 1) -> tuple[common_pb2.SignedRoundDescriptor, bytes]:
    signed = world.prepare_round(round_number)
    contributions = [world.upload(worker, signed) for worker in world.workers]
    return signed, world.contributor_set(signed, contributions)


def test_opening_twice_returns_the_recorded_result_even_after_a_restart(world: World) -> None:
    signed, contributor_set = full_set(world)
    certificate = world.certify(contributor_set, signed)
    calls: list[bytes] = []
    fresh = opening(1)

    def compute(verified: VerifiedContributorSet) -> bytes:
        calls.append(verified.sha256)
        return fresh(verified)

    first = world.policy(1).open(contributor_set, certificate, signed, compute)
    again = world.policy(1).open(contributor_set, certificate, signed, compute)
    after_restart = world.restart(1).open(contributor_set, certificate, signed, opening(1))
    assert first == again == after_restart
    assert len(calls) == 1
    record = world.members[1].log.records(FEDERATION)[0]
    assert record.result == first
    assert record.opened_set_sha256 == record.certified_set_sha256 == calls[0]


def test_certifying_the_same_set_again_gives_the_same_signature(world: World) -> None:
    signed, contributor_set = full_set(world)
    first = world.policy(2).certify(contributor_set, signed)
    assert world.policy(2).certify(contributor_set, signed) == first
    assert world.restart(2).certify(contributor_set, signed) == first


def test_a_failed_computation_records_nothing(world: World) -> None:
    signed, contributor_set = full_set(world)
    certificate = world.certify(contributor_set, signed)

    def mismatch(verified: VerifiedContributorSet) -> bytes:
        raise RefusalError(AGGREGATE_MISMATCH, "the input is not the certified aggregate")

    with pytest.raises(RefusalError) as caught:
        world.policy(3).open(contributor_set, certificate, signed, mismatch)
    assert caught.value.code == AGGREGATE_MISMATCH
    assert world.members[3].log.records(FEDERATION)[0].result is None
    assert world.policy(3).open(contributor_set, certificate, signed, opening(3))


def test_a_member_that_missed_certification_opens_and_is_then_bound(world: World) -> None:
    signed, contributor_set = full_set(world)
    certificate = world.certify(contributor_set, signed, [1, 2, 3, 4])
    world.policy(5).open(contributor_set, certificate, signed, opening(5))
    smaller = world.contributor_set(signed, [world.upload(w, signed) for w in world.workers[:4]])
    with pytest.raises(RefusalError) as caught:
        world.policy(5).certify(smaller, signed)
    assert caught.value.code == CONFLICT


def test_a_member_certifies_only_under_a_descriptor_it_signed(world: World) -> None:
    signed = world.sign(world.descriptor(1), [1, 2, 3])
    contributor_set = world.contributor_set(
        signed, [world.upload(w, signed) for w in world.workers]
    )
    with pytest.raises(RefusalError) as caught:
        world.policy(4).certify(contributor_set, signed)
    assert caught.value.code == MALFORMED


def test_a_certificate_for_another_set_or_below_quorum_opens_nothing(world: World) -> None:
    signed, contributor_set = full_set(world)
    partial = world.certify(contributor_set, signed, [1, 2, 3, 4])
    del partial.signatures[3]
    with pytest.raises(RefusalError) as caught:
        world.policy(1).open(contributor_set, partial, signed, opening(1))
    assert caught.value.code == NO_QUORUM
    certificate = world.certify(contributor_set, signed)
    certificate.contributor_set_sha256 = bytes(32)
    with pytest.raises(RefusalError) as caught:
        world.policy(1).open(contributor_set, certificate, signed, opening(1))
    assert caught.value.code == NO_QUORUM


def test_commitments_are_stable_and_reveals_bound_to_one_set(world: World) -> None:
    commitments = [world.policy(i).commit_seed(1) for i in (1, 2, 3, 4)]
    assert world.restart(1).commit_seed(1) == commitments[0]
    world.policy(1).reveal_seed(1, commitments)
    assert world.policy(1).reveal_seed(1, commitments) == world.restart(1).reveal_seed(
        1, commitments
    )
    with pytest.raises(RefusalError) as caught:
        world.policy(1).reveal_seed(1, commitments[:3])
    assert caught.value.code == CONFLICT


def test_a_member_reveals_only_with_its_own_commitment_in_the_set(world: World) -> None:
    commitments = [world.policy(i).commit_seed(1) for i in (1, 2, 3, 4)]
    with pytest.raises(RefusalError) as caught:
        world.policy(1).reveal_seed(1, commitments[1:])
    assert caught.value.code == BAD_TRANSCRIPT
    altered = list(commitments)
    altered[0] = common_pb2.SeedCommitment(member_index=1, commitment=bytes(32))
    with pytest.raises(RefusalError):
        world.policy(1).reveal_seed(1, altered)
    with pytest.raises(RefusalError) as caught:
        world.policy(5).reveal_seed(1, commitments)
    assert caught.value.code == BAD_TRANSCRIPT


def test_a_refusal_travels_as_its_wire_message(world: World) -> None:
    with pytest.raises(RefusalError) as caught:
        world.policy(1).commit_seed(0)
    refusal = caught.value.to_proto()
    assert refusal.code == committee_service_pb2.REFUSAL_CODE_MALFORMED
    assert "round number 0" in refusal.detail


def test_a_policy_needs_a_member_key_and_a_floor_of_two(world: World, tmp_path: Path) -> None:
    log = MemberLog(tmp_path / "outsider.sqlite")
    with pytest.raises(CommitteeError):
        MemberPolicy(
            log=log,
            signing_key=SigningKey.generate(),
            roster=world.roster,
            enrollment_verifier=SelfCertifyingVerifier(),
            min_contributors_floor=3,
        )
    with pytest.raises(CommitteeError):
        MemberPolicy(
            log=log,
            signing_key=world.members[1].key,
            roster=world.roster,
            enrollment_verifier=SelfCertifyingVerifier(),
            min_contributors_floor=1,
        )
    log.close()
