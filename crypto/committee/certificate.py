"""Quorum certificates on contributor sets.

A member certifies a set by signing (tag CONTRIBUTOR_SET) the 32-byte SHA-256 of the serialized
ContributorSet bytes it was shown. A certificate is that digest with at least the roster's
``certificate_quorum`` distinct valid member signatures; since q > (k + c) / 2, at most one set
per round can ever hold one (see :mod:`crypto.committee.roster`).
"""

from __future__ import annotations

from collections.abc import Iterable

from crypto.committee.errors import NO_QUORUM, RefusalError
from crypto.committee.roster import Roster
from crypto.committee.signatures import keep_valid, sign_as_member, valid_signers
from crypto.signing import SignatureTag, SigningKey
from hefl.v1 import common_pb2


def sign_contributor_set(
    signing_key: SigningKey, member_index: int, contributor_set_sha256: bytes
) -> common_pb2.MemberSignature:
    """Signs a set digest; members call this only through their policy's checks."""
    return sign_as_member(
        signing_key, member_index, SignatureTag.CONTRIBUTOR_SET, contributor_set_sha256
    )


def build_certificate(
    roster: Roster,
    contributor_set_sha256: bytes,
    signatures: Iterable[common_pb2.MemberSignature],
) -> common_pb2.QuorumCertificate:
    """Coordinator side: a certificate of the valid signatures, one per member, by index.

    Raises:
        RefusalError: NO_QUORUM if fewer than ``certificate_quorum`` signatures are valid.
    """
    kept = keep_valid(
        roster.signing_keys, SignatureTag.CONTRIBUTOR_SET, contributor_set_sha256, signatures
    )
    if len(kept) < roster.certificate_quorum:
        raise RefusalError(
            NO_QUORUM, f"{len(kept)} valid set signatures, quorum {roster.certificate_quorum}"
        )
    return common_pb2.QuorumCertificate(
        contributor_set_sha256=contributor_set_sha256, signatures=kept
    )


def verify_certificate(
    certificate: common_pb2.QuorumCertificate,
    *,
    contributor_set_sha256: bytes,
    roster: Roster,
) -> frozenset[int]:
    """Checks that a certificate carries a quorum of signatures on exactly this set.

    Args:
        certificate: The certificate to check.
        contributor_set_sha256: Digest of the set bytes the verifier was given.
        roster: The verifier's own roster of the epoch.

    Returns:
        The indices of the members whose signatures are valid.

    Raises:
        RefusalError: NO_QUORUM if the certificate is for another set or has too few
            distinct valid signatures.
    """
    if certificate.contributor_set_sha256 != contributor_set_sha256:
        raise RefusalError(NO_QUORUM, "the certificate is for another set")
    signers = valid_signers(
        roster.signing_keys,
        SignatureTag.CONTRIBUTOR_SET,
        contributor_set_sha256,
        certificate.signatures,
    )
    if len(signers) < roster.certificate_quorum:
        raise RefusalError(
            NO_QUORUM, f"{len(signers)} valid set signatures, quorum {roster.certificate_quorum}"
        )
    return signers
