"""Rosters: quorum sizes, member bindings and roster signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.committee import (
    CommitteeError,
    RefusalError,
    Roster,
    build_roster,
    certificate_quorum,
    check_roster,
    credential_of,
    join_epoch,
    load_roster,
    majority,
    member_entry,
    sign_joint_public_key,
    sign_roster,
    verify_joint_public_key,
    verify_signed_roster,
)
from crypto.committee.errors import BAD_SIGNATURE, MALFORMED
from crypto.sealing import SealingKey
from crypto.signing import SignatureTag, SigningKey
from hefl.v1 import common_pb2

FEDERATION = "fed"
EPOCH = 2


class Committee:
    def __init__(self, size: int = 5) -> None:
        self.keys = [SigningKey.generate() for _ in range(size)]
        self.sealing = [SealingKey.generate().public_bytes for _ in range(size)]
        self.entries = [
            member_entry(
                index + 1,
                credential_of(key.public_bytes),
                join_epoch(key, self.sealing[index], FEDERATION, EPOCH),
            )
            for index, key in enumerate(self.keys)
        ]

    def roster(self, **options: int) -> common_pb2.CommitteeRoster:
        return build_roster(
            federation_id=FEDERATION,
            epoch=EPOCH,
            profile=common_pb2.CRYPTO_PROFILE_ONESHOT,
            members=reversed(self.entries),
            **options,
        )

    def signed(self, signers: range | list[int]) -> common_pb2.SignedCommitteeRoster:
        roster_bytes = self.roster().SerializeToString()
        return common_pb2.SignedCommitteeRoster(
            roster=roster_bytes,
            signatures=[
                sign_roster(self.keys[i], roster_bytes, sealing_public_key=self.sealing[i])
                for i in signers
            ],
        )


def refused(roster: common_pb2.CommitteeRoster) -> RefusalError:
    with pytest.raises(RefusalError) as caught:
        check_roster(roster)
    return caught.value


@pytest.mark.parametrize(
    ("size", "corrupt", "quorum"),
    [(1, 0, 1), (3, 1, 3), (4, 1, 3), (5, 2, 4), (7, 3, 6), (9, 4, 7)],
)
def test_certificate_quorum_is_floor_of_half_k_plus_c_plus_one(
    size: int, corrupt: int, quorum: int
) -> None:
    assert certificate_quorum(size, corrupt) == quorum


def test_the_quorum_is_the_smallest_that_keeps_two_certificates_apart() -> None:
    for size in range(1, 13):
        for corrupt in range(size):
            quorum = certificate_quorum(size, corrupt)
            # Two certified sets share at least 2q - k signers, who must all be corrupt.
            assert 2 * quorum - size > corrupt
            assert 2 * (quorum - 1) - size <= corrupt


def test_a_quorum_larger_than_the_committee_is_refused() -> None:
    with pytest.raises(CommitteeError):
        certificate_quorum(3, 3)
    with pytest.raises(CommitteeError):
        certificate_quorum(3, -1)


def test_build_roster_sorts_members_and_fills_quorum_sizes() -> None:
    roster = Committee(5).roster()
    assert [m.member_index for m in roster.members] == [1, 2, 3, 4, 5]
    assert (roster.threshold, roster.certificate_quorum) == (majority(5), 4)
    assert Committee(7).roster().certificate_quorum == 6
    assert Committee(7).roster(assumed_corrupt=5).certificate_quorum == 7


def test_build_roster_refuses_unsafe_sizes() -> None:
    with pytest.raises(CommitteeError):
        Committee(5).roster(threshold=2)
    # Fewer assumed corrupt members than t - 1 would let a sub-threshold coalition certify twice.
    with pytest.raises(CommitteeError):
        Committee(7).roster(assumed_corrupt=1)


def test_a_roster_whose_quorum_allows_two_certificates_is_refused() -> None:
    roster = Committee(5).roster()
    roster.certificate_quorum = 3
    assert refused(roster).code == MALFORMED


def test_a_sealing_key_signed_for_another_epoch_is_refused() -> None:
    committee = Committee(5)
    roster = committee.roster()
    stale = join_epoch(committee.keys[1], committee.sealing[1], FEDERATION, EPOCH - 1)
    roster.members[1].sealing_key_signature = stale.sealing_key_signature
    assert refused(roster).code == BAD_SIGNATURE


def test_a_sealing_key_substituted_by_the_coordinator_is_refused() -> None:
    roster = Committee(5).roster()
    roster.members[0].sealing_public_key = SealingKey.generate().public_bytes
    assert refused(roster).code == BAD_SIGNATURE


def test_a_worker_id_not_derived_from_the_key_is_refused() -> None:
    roster = Committee(5).roster()
    roster.members[2].worker_id = SigningKey.generate().worker_id
    assert refused(roster).code == BAD_SIGNATURE


def test_one_worker_in_two_seats_is_refused() -> None:
    committee = Committee(5)
    roster = committee.roster()
    roster.members[4].CopyFrom(roster.members[3])
    roster.members[4].member_index = 5
    assert refused(roster).code == MALFORMED


def test_unsorted_or_zero_indices_are_refused() -> None:
    roster = Committee(3).roster()
    roster.members[0].member_index = 0
    assert refused(roster).code == MALFORMED


def test_a_fully_signed_roster_verifies(tmp_path: Path) -> None:
    committee = Committee(5)
    roster = verify_signed_roster(committee.signed(range(5)))
    assert roster.epoch == EPOCH
    assert roster.index_of(committee.keys[3].public_bytes) == 4
    assert roster.index_of(SigningKey.generate().public_bytes) is None


def test_missing_signatures_fail_unless_fewer_are_allowed() -> None:
    committee = Committee(5)
    signed = committee.signed(range(4))
    with pytest.raises(RefusalError) as caught:
        verify_signed_roster(signed)
    assert caught.value.code == BAD_SIGNATURE
    verify_signed_roster(signed, min_signatures=4)
    with pytest.raises(CommitteeError):
        verify_signed_roster(signed, min_signatures=2)


def test_repeated_and_forged_roster_signatures_do_not_count() -> None:
    committee = Committee(5)
    signed = committee.signed(range(3))
    signed.signatures.append(signed.signatures[0])
    forged = committee.keys[0].sign(SignatureTag.ROSTER, signed.roster)
    signed.signatures.append(common_pb2.MemberSignature(member_index=5, signature=forged))
    with pytest.raises(RefusalError):
        verify_signed_roster(signed, min_signatures=4)


def test_a_member_signs_only_a_roster_that_lists_its_own_keys() -> None:
    committee = Committee(5)
    roster_bytes = committee.roster().SerializeToString()
    outsider = SigningKey.generate()
    with pytest.raises(RefusalError):
        sign_roster(outsider, roster_bytes, sealing_public_key=committee.sealing[0])
    with pytest.raises(RefusalError):
        sign_roster(
            committee.keys[0], roster_bytes, sealing_public_key=SealingKey.generate().public_bytes
        )


def test_garbage_roster_bytes_are_malformed() -> None:
    with pytest.raises(RefusalError) as caught:
        load_roster(b"\xff\xff\xff")
    assert caught.value.code == MALFORMED


def test_a_joint_key_needs_every_members_signature_for_this_epoch() -> None:
    committee = Committee(5)
    roster = verify_signed_roster(committee.signed(range(5)))
    joint_key = b"serialized joint public key"
    signatures = [sign_joint_public_key(key, roster, joint_key) for key in committee.keys]
    verify_joint_public_key(roster, joint_key, signatures)
    with pytest.raises(RefusalError):
        verify_joint_public_key(roster, joint_key, signatures[:4])
    verify_joint_public_key(roster, joint_key, signatures[:4], min_signatures=4)
    with pytest.raises(RefusalError):
        verify_joint_public_key(roster, b"another joint key", signatures)
    with pytest.raises(CommitteeError):
        sign_joint_public_key(SigningKey.generate(), roster, joint_key)


def test_a_joint_key_signed_in_an_earlier_epoch_does_not_verify_in_a_later_one() -> None:
    committee = Committee(5)
    earlier = verify_signed_roster(committee.signed(range(5)))
    joint_key = b"joint key of the earlier epoch"
    signatures = [sign_joint_public_key(key, earlier, joint_key) for key in committee.keys]
    later_message = common_pb2.CommitteeRoster()
    later_message.CopyFrom(earlier.message)
    later_message.epoch = EPOCH + 1
    later = Roster(later_message, later_message.SerializeToString(), b"")
    with pytest.raises(RefusalError):
        verify_joint_public_key(later, joint_key, signatures)
