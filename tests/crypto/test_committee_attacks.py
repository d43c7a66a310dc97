"""Attack regressions: a malicious coordinator never gets an individual update opened.

Each test plays one attack of notes/oneshot-masking.md section 5 against real members (keys,
SQLite logs, signatures) and checks that the committee refuses with the right RefusalCode.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from itertools import combinations, product
from pathlib import Path

import pytest

from crypto.committee import (
    RefusalError,
    Roster,
    VerifiedContributorSet,
    X509EnrollmentVerifier,
    check_descriptor,
    check_roster,
    credential_of,
    make_commitment,
    sign_contributor_set,
    sign_upload_statement,
    verify_certificate,
    verify_signed_descriptor,
    verify_upload_statement,
)
from crypto.committee.errors import (
    BAD_CONTRIBUTION,
    BAD_SIGNATURE,
    BAD_TRANSCRIPT,
    CONFLICT,
    MALFORMED,
    TOO_FEW_CONTRIBUTORS,
)
from crypto.signing import SignatureTag
from hefl.v1 import common_pb2
from tests.crypto.test_committee_enrollment import NOW, Authority
from tests.crypto.test_committee_world import FEDERATION, World, dp_params, opening


def never(verified: VerifiedContributorSet) -> bytes:
    raise AssertionError("the committee computed an opening it should have refused")


def refusal_code(call: Callable[..., object], *args: object) -> int:
    with pytest.raises(RefusalError) as caught:
        call(*args)
    return caught.value.code


def certificate_from_keys(
    world: World, contributor_set: bytes, indices: tuple[int, ...]
) -> common_pb2.QuorumCertificate:
    """A certificate signed directly with member keys, as corrupt members would sign anything."""
    digest = hashlib.sha256(contributor_set).digest()
    return common_pb2.QuorumCertificate(
        contributor_set_sha256=digest,
        signatures=[sign_contributor_set(world.members[i].key, i, digest) for i in indices],
    )


def set_of(world: World, signed: common_pb2.SignedRoundDescriptor, count: int) -> bytes:
    return world.contributor_set(signed, [world.upload(w, signed) for w in world.workers[:count]])


# A1: open a subset of size one.


def test_a1_a_single_contribution_is_refused_at_certify_and_at_open(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    for size in (1, 2):
        target = set_of(world, signed, size)
        for index in world.members:
            policy = world.policy(index)
            code = refusal_code(policy.certify, target, signed)
            assert code == TOO_FEW_CONTRIBUTORS
        digest = hashlib.sha256(target).digest()
        forged = common_pb2.QuorumCertificate(
            contributor_set_sha256=digest,
            signatures=[
                common_pb2.MemberSignature(member_index=i, signature=os.urandom(64))
                for i in world.members
            ],
        )
        partial = certificate_from_keys(world, target, (4, 5))
        everyone = certificate_from_keys(world, target, (1, 2, 3, 4, 5))
        for certificate in (forged, partial, everyone):
            for index in world.members:
                policy = world.policy(index)
                code = refusal_code(policy.open, target, certificate, signed, never)
                assert code == TOO_FEW_CONTRIBUTORS
    for member in world.members.values():
        assert all(record.committed_set() is None for record in member.log.records(FEDERATION))


def test_a1_a_descriptor_lowering_min_contributors_gets_no_signature(tmp_path: Path) -> None:
    world = World(tmp_path, floor=3)
    descriptor = world.descriptor(1, min_contributors=2, dp=dp_params(calibrated_contributors=2))
    serialized = descriptor.SerializeToString()
    for index in world.members:
        policy = world.policy(index)
        assert refusal_code(policy.sign_descriptor, serialized) == BAD_TRANSCRIPT
    unsigned = common_pb2.SignedRoundDescriptor(descriptor=serialized)
    assert refusal_code(verify_signed_descriptor, unsigned, world.roster) == BAD_SIGNATURE


# A2: two openings in one round (all, and all minus one).


def test_a2_a_second_set_in_a_round_is_refused_also_after_restart(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    everyone = world.contributor_set(signed, uploads)
    all_but_one = world.contributor_set(signed, uploads[1:])
    certificate = world.certify(everyone, signed)
    for index in (1, 2, 3):
        world.policy(index).open(everyone, certificate, signed, opening(index))

    forged = certificate_from_keys(world, all_but_one, (1, 2, 3, 4, 5))
    for index in world.members:
        for restart in (False, True):
            policy = world.restart(index) if restart else world.policy(index)
            assert refusal_code(policy.certify, all_but_one, signed) == CONFLICT
            code = refusal_code(policy.open, all_but_one, forged, signed, never)
            assert code == CONFLICT


def test_a2_different_sets_for_different_members_never_both_certify(tmp_path: Path) -> None:
    """k = 5, t = 3, c = 2, q = 4: every split of members between two sets, with up to c of
    them corrupt and signing both, leaves at most one set with a valid certificate."""
    world = World(tmp_path)
    roster = world.roster
    assert (len(world.members), roster.threshold, roster.certificate_quorum) == (5, 3, 4)
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    sets = {
        "A": world.contributor_set(signed, uploads),
        "B": world.contributor_set(signed, uploads[1:]),
    }
    digests = {name: hashlib.sha256(data).digest() for name, data in sets.items()}
    other = {"A": "B", "B": "A"}

    # What an honest member signs depends only on what it was shown first; real policies, each
    # on a copy of the member's log, record it. The coordinator always asks for the other set too.
    honest: dict[tuple[int, str], dict[str, common_pb2.MemberSignature]] = {}
    for index in world.members:
        honest[(index, "none")] = {}
        for first in ("A", "B"):
            policy = world.clone_member(index, f"{index}-{first}")
            honest[(index, first)] = {first: policy.certify(sets[first], signed)}
            second = sets[other[first]]
            assert refusal_code(policy.certify, second, signed) == CONFLICT
    corrupt_signs = {
        (index, name): sign_contributor_set(world.members[index].key, index, digests[name])
        for index in world.members
        for name in sets
    }

    def certified(name: str, signatures: list[common_pb2.MemberSignature]) -> bool:
        certificate = common_pb2.QuorumCertificate(
            contributor_set_sha256=digests[name], signatures=signatures
        )
        try:
            verify_certificate(
                certificate, contributor_set_sha256=digests[name], roster=world.roster
            )
        except RefusalError:
            return False
        return True

    outcomes: Counter[tuple[bool, bool]] = Counter()
    for corrupt_count in range(3):
        for corrupt in combinations(world.members, corrupt_count):
            honest_members = [i for i in world.members if i not in corrupt]
            for views in product(("A", "B", "none"), repeat=len(honest_members)):
                gathered: dict[str, list[common_pb2.MemberSignature]] = {"A": [], "B": []}
                for index, view in zip(honest_members, views, strict=True):
                    for name, signature in honest[(index, view)].items():
                        gathered[name].append(signature)
                for index in corrupt:
                    for name in sets:
                        gathered[name].append(corrupt_signs[(index, name)])
                # The coordinator pads each certificate with everything it holds.
                a = certified("A", gathered["A"] + gathered["B"] + gathered["A"])
                b = certified("B", gathered["B"] + gathered["A"] + gathered["B"])
                assert not (a and b), (corrupt, views)
                outcomes[(a, b)] += 1
    assert sum(outcomes.values()) == 3**5 + 5 * 3**4 + 10 * 3**3
    assert outcomes[(True, False)] > 0 and outcomes[(False, True)] > 0


def test_a2_a_bare_majority_quorum_would_certify_two_sets(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    first = world.contributor_set(signed, uploads)
    second = world.contributor_set(signed, uploads[1:])
    weak_message = common_pb2.CommitteeRoster()
    weak_message.CopyFrom(world.roster.message)
    weak_message.certificate_quorum = 3
    weak = Roster(weak_message, weak_message.SerializeToString(), b"")
    # Members 4 and 5 are corrupt; honest member 1 sees the first set, honest member 2 the second.
    for contributor_set, honest in ((first, 1), (second, 2)):
        certificate = certificate_from_keys(world, contributor_set, (honest, 4, 5))
        digest = hashlib.sha256(contributor_set).digest()
        verify_certificate(certificate, contributor_set_sha256=digest, roster=weak)
        with pytest.raises(RefusalError):
            verify_certificate(certificate, contributor_set_sha256=digest, roster=world.roster)
    assert refusal_code(check_roster, weak_message) == MALFORMED


# A5: a seed (hence public polynomials) chosen by the coordinator.


def test_a5_a_seed_not_derived_from_the_reveals_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    descriptor = world.descriptor(1)
    descriptor.seed = hashlib.sha256(b"the coordinator's favourite seed").digest()
    serialized = descriptor.SerializeToString()
    for index in world.members:
        policy = world.policy(index)
        assert refusal_code(policy.sign_descriptor, serialized) == BAD_TRANSCRIPT
    # Clients check the transcript themselves, even if enough members were corrupt to sign it.
    forced = common_pb2.SignedRoundDescriptor(
        descriptor=serialized,
        signatures=[
            common_pb2.MemberSignature(
                member_index=i,
                signature=world.members[i].key.sign(SignatureTag.ROUND_DESCRIPTOR, serialized),
            )
            for i in world.members
        ],
    )
    assert refusal_code(verify_signed_descriptor, forced, world.roster) == BAD_TRANSCRIPT


def test_a5_reveals_that_do_not_match_their_commitments_are_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    commitments, reveals = world.seed_transcript(1)
    reveals[1] = common_pb2.SeedReveal(member_index=2, contribution=os.urandom(32))
    serialized = world.descriptor(1, transcript=(commitments, reveals)).SerializeToString()
    for index in world.members:
        policy = world.policy(index)
        assert refusal_code(policy.sign_descriptor, serialized) == BAD_TRANSCRIPT


def test_a5_leaving_out_or_replacing_a_members_reveal_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    commitments, reveals = world.seed_transcript(1)
    # A consistent transcript of members 2..5 only: valid on its face, so clients would accept it.
    without_one = world.descriptor(1, transcript=(commitments[1:], reveals[1:]))
    check_descriptor(without_one.SerializeToString(), world.roster)
    # Member 1's slot filled with a contribution the coordinator chose and committed to itself.
    own = os.urandom(32)
    substituted = [make_commitment(FEDERATION, 1, 1, own), *commitments[1:]]
    replaced = world.descriptor(
        1,
        transcript=(
            substituted,
            [common_pb2.SeedReveal(member_index=1, contribution=own), *reveals[1:]],
        ),
    )
    for descriptor in (without_one, replaced):
        serialized = descriptor.SerializeToString()
        for index in world.members:
            policy = world.policy(index)
            assert refusal_code(policy.sign_descriptor, serialized) == BAD_TRANSCRIPT


def test_a5_asking_for_reveals_against_a_second_commitment_set_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    commitments = [world.policy(i).commit_seed(1) for i in world.members]
    for index in world.members:
        world.policy(index).reveal_seed(1, commitments)
    for index in world.members:
        policy = world.restart(index)
        code = refusal_code(policy.reveal_seed, 1, commitments[:4])
        assert code == (CONFLICT if index != 5 else BAD_TRANSCRIPT)


def test_a_second_descriptor_for_a_signed_round_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    transcript = world.seed_transcript(1)
    world.sign(world.descriptor(1, transcript=transcript))
    other = world.descriptor(1, transcript=transcript, global_version=99).SerializeToString()
    for index in world.members:
        for restart in (False, True):
            policy = world.restart(index) if restart else world.policy(index)
            assert refusal_code(policy.sign_descriptor, other) == CONFLICT


# Replays: contributions from another round or for another descriptor.


def test_a_contribution_replayed_from_an_earlier_round_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    earlier = world.prepare_round(1)
    old = world.upload(world.workers[0], earlier)
    signed = world.prepare_round(2)
    uploads = [world.upload(worker, signed) for worker in world.workers[1:]] + [old]
    replayed = world.contributor_set(signed, uploads)
    for index in world.members:
        policy = world.policy(index)
        assert refusal_code(policy.certify, replayed, signed) == BAD_CONTRIBUTION


def test_a_statement_signed_for_another_descriptor_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    worker = world.workers[0]
    honest, credential = world.upload(worker, signed)
    statement = verify_upload_statement(honest, worker.public_bytes, world.verified(signed))
    statement.descriptor_sha256 = hashlib.sha256(b"a descriptor the coordinator made").digest()
    uploads = [(sign_upload_statement(worker, statement), credential)]
    uploads += [world.upload(other, signed) for other in world.workers[1:]]
    mixed = world.contributor_set(signed, uploads)
    for index in world.members:
        policy = world.policy(index)
        assert refusal_code(policy.certify, mixed, signed) == BAD_CONTRIBUTION


# Forgeries, unenrolled or mismatched credentials, duplicates.


def test_a_forged_statement_signature_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    statement, credential = uploads[0]
    forged = common_pb2.SignedUploadStatement(
        statement=statement.statement,
        signature=world.workers[1].sign(SignatureTag.UPLOAD_STATEMENT, statement.statement),
    )
    uploads[0] = (forged, credential)
    contributor_set = world.contributor_set(signed, uploads)
    assert refusal_code(world.policy(1).certify, contributor_set, signed) == BAD_SIGNATURE


def test_a_credential_binding_a_worker_id_to_another_key_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    victim = world.workers[0]
    impostor = world.workers[1]
    statement = verify_upload_statement(uploads[0][0], victim.public_bytes, world.verified(signed))
    mismatched = credential_of(impostor.public_bytes)
    mismatched.worker_id = victim.worker_id
    signature = impostor.sign(SignatureTag.UPLOAD_STATEMENT, statement.SerializeToString())
    uploads[0] = (
        common_pb2.SignedUploadStatement(
            statement=statement.SerializeToString(), signature=signature
        ),
        mismatched,
    )
    contributor_set = world.contributor_set(signed, uploads)
    assert refusal_code(world.policy(1).certify, contributor_set, signed) == BAD_SIGNATURE


def test_workers_without_an_enrolment_certificate_are_refused(tmp_path: Path) -> None:
    authority = Authority()
    world = World(
        tmp_path, verifier=X509EnrollmentVerifier(authority.certificate, clock=lambda: NOW)
    )
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    unenrolled = world.contributor_set(signed, uploads)
    assert refusal_code(world.policy(1).certify, unenrolled, signed) == BAD_SIGNATURE
    enrolled = [
        (statement, credential_of(worker.public_bytes, authority.issue(worker)))
        for (statement, _), worker in zip(uploads, world.workers, strict=True)
    ]
    world.policy(1).certify(world.contributor_set(signed, enrolled), signed)


def test_duplicate_contributions_are_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers[:2]]
    padded = world.contributor_set(signed, uploads + uploads[:1])
    for index in world.members:
        policy = world.policy(index)
        assert refusal_code(policy.certify, padded, signed) == BAD_CONTRIBUTION
