"""Round descriptors: client verification, parameter checks, and the member's signing rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.committee import RefusalError, check_descriptor, verify_signed_descriptor
from crypto.committee.errors import BAD_SIGNATURE, BAD_TRANSCRIPT, CONFLICT, MALFORMED
from crypto.signing import SignatureTag, SigningKey
from hefl.v1 import common_pb2
from tests.crypto.test_committee_world import World, dp_params, oneshot_codec


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def code_of(error: pytest.ExceptionInfo[RefusalError]) -> int:
    return error.value.code


def test_a_client_gets_back_exactly_the_descriptor_the_members_signed(world: World) -> None:
    descriptor = world.descriptor(4)
    signed = world.sign(descriptor, [1, 2, 3])
    verified = verify_signed_descriptor(signed, world.roster)
    assert verified.message == descriptor
    assert verified.serialized == signed.descriptor
    assert verified.message.roster_sha256 == world.roster.sha256


def test_fewer_than_threshold_distinct_signatures_are_refused(world: World) -> None:
    signed = world.sign(world.descriptor(4), [1, 2])
    with pytest.raises(RefusalError) as caught:
        verify_signed_descriptor(signed, world.roster)
    assert code_of(caught) == BAD_SIGNATURE
    signed.signatures.append(signed.signatures[0])
    outsider = SigningKey.generate().sign(SignatureTag.ROUND_DESCRIPTOR, signed.descriptor)
    signed.signatures.append(common_pb2.MemberSignature(member_index=3, signature=outsider))
    with pytest.raises(RefusalError):
        verify_signed_descriptor(signed, world.roster)


def test_a_signature_made_for_another_purpose_does_not_count(world: World) -> None:
    signed = world.sign(world.descriptor(4), [1, 2])
    member = world.members[3].key
    other_tag = member.sign(SignatureTag.ROSTER, signed.descriptor)
    signed.signatures.append(common_pb2.MemberSignature(member_index=3, signature=other_tag))
    with pytest.raises(RefusalError):
        verify_signed_descriptor(signed, world.roster)


def test_a_descriptor_for_another_epoch_or_roster_is_malformed(world: World) -> None:
    descriptor = world.descriptor(4)
    descriptor.committee_epoch += 1
    with pytest.raises(RefusalError) as caught:
        check_descriptor(descriptor.SerializeToString(), world.roster)
    assert code_of(caught) == MALFORMED
    descriptor = world.descriptor(5)
    descriptor.roster_sha256 = bytes(32)
    with pytest.raises(RefusalError) as caught:
        check_descriptor(descriptor.SerializeToString(), world.roster)
    assert code_of(caught) == MALFORMED


def bad_parameters() -> list[tuple[str, common_pb2.CodecParams, common_pb2.DpParams, int]]:
    bgv = oneshot_codec()
    bgv.bgv.ring_dimension = 8192
    narrow = oneshot_codec()
    narrow.bits = 2
    approx_missing = oneshot_codec()
    approx_missing.sum_mode = common_pb2.SUM_MODE_UNSPECIFIED
    return [
        ("codec of another profile", bgv, dp_params(), 3),
        ("codec width", narrow, dp_params(), 3),
        ("no sum mode", approx_missing, dp_params(), 3),
        ("one contributor", oneshot_codec(), dp_params(1), 1),
        ("max_summands below min", oneshot_codec(max_summands=2), dp_params(), 3),
        ("noise calibrated above min", oneshot_codec(), dp_params(5), 3),
    ]


@pytest.mark.parametrize(("why", "codec", "dp", "minimum"), bad_parameters())
def test_inconsistent_parameters_are_refused_by_members_and_clients(
    world: World, why: str, codec: common_pb2.CodecParams, dp: common_pb2.DpParams, minimum: int
) -> None:
    descriptor = world.descriptor(4, codec=codec, dp=dp, min_contributors=minimum)
    serialized = descriptor.SerializeToString()
    with pytest.raises(RefusalError) as caught:
        check_descriptor(serialized, world.roster)
    assert code_of(caught) == BAD_TRANSCRIPT, why
    with pytest.raises(RefusalError):
        world.policy(1).sign_descriptor(serialized)


def test_a_profile_other_than_the_epochs_is_refused(world: World) -> None:
    descriptor = world.descriptor(4)
    descriptor.profile = common_pb2.CRYPTO_PROFILE_FAST
    with pytest.raises(RefusalError) as caught:
        check_descriptor(descriptor.SerializeToString(), world.roster)
    assert code_of(caught) == BAD_TRANSCRIPT


def test_re_signing_identical_bytes_returns_the_same_signature(world: World) -> None:
    serialized = world.descriptor(4).SerializeToString()
    first = world.policy(2).sign_descriptor(serialized)
    again = world.restart(2).sign_descriptor(serialized)
    assert first == again


def test_a_member_signs_one_descriptor_per_round_in_increasing_order(world: World) -> None:
    transcript = world.seed_transcript(4)
    world.sign(world.descriptor(4, transcript=transcript))
    other = world.descriptor(4, transcript=transcript, global_version=8).SerializeToString()
    with pytest.raises(RefusalError) as caught:
        world.policy(1).sign_descriptor(other)
    assert code_of(caught) == CONFLICT

    late = world.descriptor(5).SerializeToString()
    world.prepare_round(6)
    with pytest.raises(RefusalError) as caught:
        world.policy(1).sign_descriptor(late)
    assert code_of(caught) == CONFLICT
    with pytest.raises(RefusalError) as caught:
        world.restart(1).commit_seed(3)
    assert code_of(caught) == CONFLICT


def test_a_descriptor_below_the_members_floor_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path, floor=4)
    serialized = world.descriptor(1, min_contributors=3).SerializeToString()
    check_descriptor(serialized, world.roster)
    with pytest.raises(RefusalError) as caught:
        world.policy(1).sign_descriptor(serialized)
    assert code_of(caught) == BAD_TRANSCRIPT
    assert "floor" in caught.value.detail
