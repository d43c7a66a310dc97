"""Upload statements and contributor sets: canonical form and every check a member makes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from crypto.committee import (
    CommitteeError,
    RefusalError,
    SelfCertifyingVerifier,
    build_contributor_set,
    build_upload_statement,
    credential_of,
    sign_upload_statement,
    verify_contributor_set,
    verify_upload_statement,
)
from crypto.committee.errors import BAD_CONTRIBUTION, BAD_SIGNATURE, MALFORMED
from crypto.signing import SigningKey
from hefl.v1 import common_pb2
from tests.crypto.test_committee_world import World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, workers=4)


def check(world: World, signed: common_pb2.SignedRoundDescriptor, contributor_set: bytes) -> int:
    with pytest.raises(RefusalError) as caught:
        verify_contributor_set(
            contributor_set,
            descriptor=world.verified(signed),
            enrollment_verifier=SelfCertifyingVerifier(),
        )
    return caught.value.code


def test_a_statement_verifies_with_its_workers_key_only(world: World) -> None:
    signed = world.prepare_round(1)
    worker = world.workers[0]
    statement, _ = world.upload(worker, signed)
    parsed = verify_upload_statement(statement, worker.public_bytes, world.verified(signed))
    assert parsed.worker_id == worker.worker_id
    with pytest.raises(RefusalError) as caught:
        verify_upload_statement(statement, world.workers[1].public_bytes, world.verified(signed))
    assert caught.value.code == BAD_SIGNATURE


def test_a_worker_cannot_sign_a_statement_in_another_workers_name(world: World) -> None:
    signed = world.prepare_round(1)
    statement = build_upload_statement(
        descriptor=world.verified(signed),
        worker_id=world.workers[1].worker_id,
        payload_format_version=1,
        payload_size_bytes=1,
        payload_sha256=bytes(32),
        sealed_shares_sha256=bytes(32),
    )
    with pytest.raises(CommitteeError):
        sign_upload_statement(world.workers[0], statement)


def test_the_set_is_canonical_whatever_order_uploads_arrived_in(world: World) -> None:
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    forward = world.contributor_set(signed, uploads)
    backward = world.contributor_set(signed, list(reversed(uploads)))
    assert forward == backward
    verified = verify_contributor_set(
        forward, descriptor=world.verified(signed), enrollment_verifier=SelfCertifyingVerifier()
    )
    assert list(verified.worker_ids) == sorted(worker.worker_id for worker in world.workers)
    assert verified.sha256 == hashlib.sha256(forward).digest()
    assert [c.worker_id for c in verified.message.credentials] == list(verified.worker_ids)


def test_a_set_naming_another_round_or_descriptor_is_malformed(world: World) -> None:
    signed = world.prepare_round(1)
    proposed = build_contributor_set(
        descriptor=world.verified(signed),
        contributions=[world.upload(worker, signed) for worker in world.workers],
    )
    proposed.round_number = 2
    assert check(world, signed, proposed.SerializeToString()) == MALFORMED
    proposed.round_number = 1
    proposed.descriptor_sha256 = bytes(32)
    assert check(world, signed, proposed.SerializeToString()) == MALFORMED
    proposed.descriptor_sha256 = world.verified(signed).sha256
    proposed.aggregate_sha256 = bytes(32)  # oneshot opens no coordinator-made aggregate
    assert check(world, signed, proposed.SerializeToString()) == MALFORMED
    assert check(world, signed, b"\xff\xff") == MALFORMED


def test_unsorted_contributions_are_malformed(world: World) -> None:
    signed = world.prepare_round(1)
    proposed = build_contributor_set(
        descriptor=world.verified(signed),
        contributions=[world.upload(worker, signed) for worker in world.workers],
    )
    contributions = list(proposed.contributions)
    credentials = list(proposed.credentials)
    del proposed.contributions[:]
    del proposed.credentials[:]
    proposed.contributions.extend(reversed(contributions))
    proposed.credentials.extend(reversed(credentials))
    assert check(world, signed, proposed.SerializeToString()) == MALFORMED


def test_credentials_must_match_contributions_one_to_one(world: World) -> None:
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers]
    proposed = build_contributor_set(descriptor=world.verified(signed), contributions=uploads)
    outsider = SigningKey.generate()
    proposed.credentials[0].CopyFrom(credential_of(outsider.public_bytes))
    assert check(world, signed, proposed.SerializeToString()) == BAD_CONTRIBUTION


def test_one_payload_under_two_workers_is_refused(world: World) -> None:
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers[:3]]
    copier = world.workers[3]
    copied = verify_upload_statement(
        uploads[0][0], world.workers[0].public_bytes, world.verified(signed)
    )
    copied.worker_id = copier.worker_id
    uploads.append((sign_upload_statement(copier, copied), credential_of(copier.public_bytes)))
    assert check(world, signed, world.contributor_set(signed, uploads)) == BAD_CONTRIBUTION


def test_a_oneshot_statement_without_sealed_shares_is_refused(world: World) -> None:
    signed = world.prepare_round(1)
    uploads = [world.upload(worker, signed) for worker in world.workers[:3]]
    worker = world.workers[3]
    statement = build_upload_statement(
        descriptor=world.verified(signed),
        worker_id=worker.worker_id,
        payload_format_version=1,
        payload_size_bytes=1,
        payload_sha256=hashlib.sha256(b"x").digest(),
    )
    uploads.append((sign_upload_statement(worker, statement), credential_of(worker.public_bytes)))
    assert check(world, signed, world.contributor_set(signed, uploads)) == BAD_CONTRIBUTION
