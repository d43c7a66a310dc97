"""Upload statements and contributor sets: what a round's aggregate is made of.

A worker signs the serialized UploadStatement bytes (tag UPLOAD_STATEMENT); the statement names
the federation, round, descriptor digest and profile, so it cannot be replayed into another round
or under another descriptor. The coordinator proposes a ContributorSet with the contributions and
credentials sorted by worker id; members sign its SHA-256 (see :mod:`crypto.committee.certificate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from crypto.committee.descriptor import VerifiedDescriptor
from crypto.committee.digests import DIGEST_BYTES, sealed_shares_sha256, sha256
from crypto.committee.enrollment import EnrollmentVerifier
from crypto.committee.errors import (
    BAD_CONTRIBUTION,
    BAD_SIGNATURE,
    MALFORMED,
    TOO_FEW_CONTRIBUTORS,
    CommitteeError,
    RefusalError,
)
from crypto.signing import SignatureTag, SigningKey, verify, worker_id_for
from hefl.v1 import common_pb2

_BGV_PROFILES = (common_pb2.CRYPTO_PROFILE_FAST, common_pb2.CRYPTO_PROFILE_PROVABLE)


@dataclass(frozen=True)
class VerifiedContributorSet:
    """A contributor set that passed every check, with its bytes, digest and parsed statements."""

    message: common_pb2.ContributorSet
    serialized: bytes
    sha256: bytes
    statements: tuple[common_pb2.UploadStatement, ...]

    @property
    def worker_ids(self) -> tuple[str, ...]:
        """The contributors, sorted."""
        return tuple(statement.worker_id for statement in self.statements)


def build_upload_statement(
    *,
    descriptor: VerifiedDescriptor,
    worker_id: str,
    payload_format_version: int,
    payload_size_bytes: int,
    payload_sha256: bytes,
    sealed_shares_sha256: bytes = b"",
) -> common_pb2.UploadStatement:
    """Worker side: the statement for an update made for ``descriptor``."""
    message = descriptor.message
    return common_pb2.UploadStatement(
        federation_id=message.federation_id,
        round_number=message.round_number,
        worker_id=worker_id,
        descriptor_sha256=descriptor.sha256,
        profile=message.profile,
        payload_format_version=payload_format_version,
        payload_size_bytes=payload_size_bytes,
        payload_sha256=payload_sha256,
        sealed_shares_sha256=sealed_shares_sha256,
    )


def sign_upload_statement(
    signing_key: SigningKey, statement: common_pb2.UploadStatement
) -> common_pb2.SignedUploadStatement:
    """Worker side: serializes the statement and signs those bytes.

    Raises:
        CommitteeError: if the statement names another worker than the key's.
    """
    if statement.worker_id != signing_key.worker_id:
        raise CommitteeError("the statement names another worker than the signing key's")
    serialized = statement.SerializeToString()
    return common_pb2.SignedUploadStatement(
        statement=serialized, signature=signing_key.sign(SignatureTag.UPLOAD_STATEMENT, serialized)
    )


def _parse_statement(signed: common_pb2.SignedUploadStatement) -> common_pb2.UploadStatement:
    try:
        return common_pb2.UploadStatement.FromString(signed.statement)
    except DecodeError as error:
        raise RefusalError(BAD_CONTRIBUTION, f"a statement does not parse: {error}") from error


def verify_upload_statement(
    signed: common_pb2.SignedUploadStatement,
    signing_public_key: bytes,
    descriptor: VerifiedDescriptor,
) -> common_pb2.UploadStatement:
    """Checks a worker's signed statement against its key and the round's descriptor.

    Raises:
        RefusalError: BAD_SIGNATURE if the signature does not verify, BAD_CONTRIBUTION if the
            statement names another worker, federation, round, descriptor or profile, or its
            digests are malformed.
    """
    if not verify(
        signing_public_key, SignatureTag.UPLOAD_STATEMENT, signed.statement, signed.signature
    ):
        raise RefusalError(BAD_SIGNATURE, "an upload statement signature does not verify")
    statement = _parse_statement(signed)
    message = descriptor.message
    who = statement.worker_id
    if who != worker_id_for(signing_public_key):
        raise RefusalError(BAD_CONTRIBUTION, f"statement of {who} signed by another key")
    if (statement.federation_id, statement.round_number) != (
        message.federation_id,
        message.round_number,
    ):
        raise RefusalError(BAD_CONTRIBUTION, f"statement of {who} is for another round")
    if statement.descriptor_sha256 != descriptor.sha256:
        raise RefusalError(BAD_CONTRIBUTION, f"statement of {who} is for another descriptor")
    if statement.profile != message.profile:
        raise RefusalError(BAD_CONTRIBUTION, f"statement of {who} is for another profile")
    shares_expected = DIGEST_BYTES if message.profile == common_pb2.CRYPTO_PROFILE_ONESHOT else 0
    if (
        len(statement.payload_sha256) != DIGEST_BYTES
        or len(statement.sealed_shares_sha256) != shares_expected
    ):
        raise RefusalError(BAD_CONTRIBUTION, f"statement of {who} has malformed digests")
    return statement


def build_contributor_set(
    *,
    descriptor: VerifiedDescriptor,
    contributions: Iterable[tuple[common_pb2.SignedUploadStatement, common_pb2.WorkerCredential]],
    aggregate_sha256: bytes = b"",
) -> common_pb2.ContributorSet:
    """Coordinator side: the canonical set, contributions and credentials sorted by worker id.

    Args:
        descriptor: The round's descriptor.
        contributions: Each signed statement with its worker's credential.
        aggregate_sha256: Digest of the aggregate to open (BGV profiles; empty for oneshot).
    """
    pairs = sorted(contributions, key=lambda pair: pair[1].worker_id)
    message = descriptor.message
    return common_pb2.ContributorSet(
        federation_id=message.federation_id,
        round_number=message.round_number,
        descriptor_sha256=descriptor.sha256,
        committee_epoch=message.committee_epoch,
        contributions=[statement for statement, _ in pairs],
        aggregate_sha256=aggregate_sha256,
        credentials=[credential for _, credential in pairs],
    )


def verify_contributor_set(
    contributor_set: bytes,
    *,
    descriptor: VerifiedDescriptor,
    enrollment_verifier: EnrollmentVerifier,
    min_contributors: int | None = None,
) -> VerifiedContributorSet:
    """Checks a proposed contributor set for the round of ``descriptor``.

    Checks, in order: the set is for this federation, round, descriptor and epoch; no worker
    appears twice; at least ``min_contributors`` (the descriptor's by default) distinct workers;
    credentials and contributions match one to one in worker-id order; every credential passes
    ``enrollment_verifier``; every statement is signed by its worker's key for this round,
    descriptor and profile; no payload appears under two workers.

    Raises:
        RefusalError: MALFORMED, BAD_CONTRIBUTION, TOO_FEW_CONTRIBUTORS or BAD_SIGNATURE.
    """
    try:
        proposed = common_pb2.ContributorSet.FromString(contributor_set)
    except DecodeError as error:
        raise RefusalError(MALFORMED, f"contributor set does not parse: {error}") from error
    _check_context(proposed, descriptor)
    statements = [_parse_statement(signed) for signed in proposed.contributions]
    workers = [statement.worker_id for statement in statements]
    credentials = list(proposed.credentials)
    credential_ids = [credential.worker_id for credential in credentials]
    if len(set(workers)) != len(workers) or len(set(credential_ids)) != len(credential_ids):
        raise RefusalError(BAD_CONTRIBUTION, "a worker appears twice in the set")
    required = descriptor.message.min_contributors if min_contributors is None else min_contributors
    if len(workers) < required:
        raise RefusalError(
            TOO_FEW_CONTRIBUTORS, f"{len(workers)} distinct contributors, {required} required"
        )
    if workers != credential_ids:
        raise RefusalError(BAD_CONTRIBUTION, "credentials and contributions do not match")
    if workers != sorted(workers):
        raise RefusalError(MALFORMED, "contributions are not sorted by worker id")
    for credential in credentials:
        if not enrollment_verifier.verify(credential):
            raise RefusalError(BAD_SIGNATURE, f"worker {credential.worker_id} is not enrolled")
    checked = tuple(
        verify_upload_statement(signed, credential.signing_public_key, descriptor)
        for signed, credential in zip(proposed.contributions, credentials, strict=True)
    )
    # A copy of another worker's payload or sealed shares under a second identity would count
    # one update twice; the digests are collision resistant, so equal digests mean a copy.
    digests = [s.payload_sha256 for s in checked]
    digests += [s.sealed_shares_sha256 for s in checked if s.sealed_shares_sha256]
    if len(set(digests)) != len(digests):
        raise RefusalError(BAD_CONTRIBUTION, "one payload appears under two workers")
    return VerifiedContributorSet(
        message=proposed,
        serialized=bytes(contributor_set),
        sha256=sha256(contributor_set),
        statements=checked,
    )


def _check_context(proposed: common_pb2.ContributorSet, descriptor: VerifiedDescriptor) -> None:
    message = descriptor.message
    if (proposed.federation_id, proposed.round_number, proposed.committee_epoch) != (
        message.federation_id,
        message.round_number,
        message.committee_epoch,
    ):
        raise RefusalError(MALFORMED, "the set is for another federation, round or epoch")
    if proposed.descriptor_sha256 != descriptor.sha256:
        raise RefusalError(MALFORMED, "the set names another descriptor")
    expected = DIGEST_BYTES if message.profile in _BGV_PROFILES else 0
    if len(proposed.aggregate_sha256) != expected:
        raise RefusalError(MALFORMED, "the aggregate digest does not fit the profile")


def sealed_boxes_sha256(boxes: Sequence[common_pb2.SealedBox]) -> bytes:
    """``UploadStatement.sealed_shares_sha256`` of an upload's sealed shares (empty: none)."""
    return sealed_shares_sha256(
        [(b.recipient_index, b.ephemeral_public_key, b.nonce, b.ciphertext) for b in boxes]
    )
