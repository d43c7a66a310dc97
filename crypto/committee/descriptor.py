"""Round descriptors: building them, the member's checks before signing, and client verification.

A descriptor is signed as the exact serialized RoundDescriptor bytes (tag ROUND_DESCRIPTOR); its
digest, named ``descriptor_sha256`` everywhere, is SHA-256 of those bytes. Clients accept it with
at least ``threshold`` distinct valid member signatures and a valid seed transcript, so the
coordinator can neither pick the seed nor pass off parameters no honest majority saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from crypto.committee.digests import DIGEST_BYTES, sha256
from crypto.committee.errors import (
    BAD_SIGNATURE,
    BAD_TRANSCRIPT,
    CONFLICT,
    MALFORMED,
    RefusalError,
)
from crypto.committee.roster import Roster
from crypto.committee.signatures import sign_as_member, valid_signers
from crypto.committee.transcript import commitments_sha256, derive_seed, verify_transcript
from crypto.signing import SignatureTag, SigningKey
from hefl.v1 import common_pb2

MAX_ROUND_NUMBER = 2**63 - 1
MIN_BITS, MAX_BITS = 4, 16
# Fewer than two contributors is an individual update, whatever a descriptor says.
MIN_CONTRIBUTORS_FLOOR = 2

_PARAMS_OF_PROFILE: dict[int, str | None] = {
    common_pb2.CRYPTO_PROFILE_PLAINTEXT: None,
    common_pb2.CRYPTO_PROFILE_FAST: "bgv",
    common_pb2.CRYPTO_PROFILE_PROVABLE: "bgv",
    common_pb2.CRYPTO_PROFILE_ONESHOT: "oneshot",
}


@dataclass(frozen=True)
class VerifiedDescriptor:
    """A descriptor whose content checked out, with the bytes it was signed as and their digest."""

    message: common_pb2.RoundDescriptor
    serialized: bytes
    sha256: bytes


def build_descriptor(
    *,
    roster: Roster,
    round_number: int,
    codec: common_pb2.CodecParams,
    dp: common_pb2.DpParams,
    global_version: int,
    global_model_sha256: bytes,
    min_contributors: int,
    commitments: Sequence[common_pb2.SeedCommitment],
    reveals: Sequence[common_pb2.SeedReveal],
) -> common_pb2.RoundDescriptor:
    """Coordinator side: assembles a descriptor whose seed is derived from the reveals.

    The transcript is sorted by member index; nothing is checked here, since members and clients
    run :func:`check_descriptor` on what they receive.
    """
    return common_pb2.RoundDescriptor(
        federation_id=roster.federation_id,
        round_number=round_number,
        seed=derive_seed(roster.federation_id, round_number, reveals),
        committee_epoch=roster.epoch,
        profile=roster.profile,
        codec=codec,
        dp=dp,
        global_version=global_version,
        global_model_sha256=global_model_sha256,
        min_contributors=min_contributors,
        seed_commitments=sorted(commitments, key=lambda c: c.member_index),
        seed_reveals=sorted(reveals, key=lambda r: r.member_index),
        roster_sha256=roster.sha256,
    )


def check_descriptor(descriptor_bytes: bytes, roster: Roster) -> VerifiedDescriptor:
    """Parses a descriptor and checks it against the roster of its epoch.

    Checks: federation, epoch and roster digest are the roster's; the profile is the epoch's and
    the codec carries that profile's parameters; bits, sum mode, ``min_contributors`` (at least
    2, within ``max_summands``, at least the DP calibration) are consistent; the seed transcript
    is valid.

    Raises:
        RefusalError: MALFORMED for another federation or epoch or unparseable bytes,
            BAD_TRANSCRIPT for inconsistent parameters or a bad seed transcript.
    """
    try:
        descriptor = common_pb2.RoundDescriptor.FromString(descriptor_bytes)
    except DecodeError as error:
        raise RefusalError(MALFORMED, f"descriptor does not parse: {error}") from error
    _check_context(descriptor, roster)
    _check_parameters(descriptor)
    verify_transcript(descriptor, roster.signing_keys.keys(), roster.threshold)
    return VerifiedDescriptor(
        message=descriptor, serialized=bytes(descriptor_bytes), sha256=sha256(descriptor_bytes)
    )


def _check_context(descriptor: common_pb2.RoundDescriptor, roster: Roster) -> None:
    if descriptor.federation_id != roster.federation_id:
        raise RefusalError(MALFORMED, "the descriptor is for another federation")
    if descriptor.committee_epoch != roster.epoch:
        raise RefusalError(MALFORMED, f"the descriptor is for epoch {descriptor.committee_epoch}")
    if descriptor.roster_sha256 != roster.sha256:
        raise RefusalError(MALFORMED, "the descriptor names another roster")
    if not 1 <= descriptor.round_number <= MAX_ROUND_NUMBER:
        raise RefusalError(MALFORMED, f"round number {descriptor.round_number} is out of range")
    if descriptor.profile != roster.profile:
        raise RefusalError(BAD_TRANSCRIPT, "the descriptor's profile is not the epoch's")


def _check_parameters(descriptor: common_pb2.RoundDescriptor) -> None:
    codec = descriptor.codec
    profile = descriptor.profile
    if profile not in _PARAMS_OF_PROFILE:
        raise RefusalError(BAD_TRANSCRIPT, f"unknown crypto profile {profile}")
    if codec.WhichOneof("profile_params") != _PARAMS_OF_PROFILE[profile]:
        raise RefusalError(BAD_TRANSCRIPT, "the codec parameters do not fit the profile")
    if not MIN_BITS <= codec.bits <= MAX_BITS:
        raise RefusalError(BAD_TRANSCRIPT, f"codec width {codec.bits} bits is out of range")
    if codec.sum_mode == common_pb2.SUM_MODE_UNSPECIFIED:
        raise RefusalError(BAD_TRANSCRIPT, "the codec has no sum mode")
    if (
        codec.sum_mode == common_pb2.SUM_MODE_APPROX
        and profile != common_pb2.CRYPTO_PROFILE_ONESHOT
    ):
        raise RefusalError(BAD_TRANSCRIPT, "approximate sums exist in the oneshot profile only")
    minimum = descriptor.min_contributors
    if minimum < MIN_CONTRIBUTORS_FLOOR:
        raise RefusalError(BAD_TRANSCRIPT, f"min_contributors {minimum} would open one update")
    if codec.max_summands < minimum:
        raise RefusalError(BAD_TRANSCRIPT, "max_summands is below min_contributors")
    # Noise calibrated for more contributors than will be opened would under-noise the aggregate.
    if descriptor.dp.enabled and not 1 <= descriptor.dp.calibrated_contributors <= minimum:
        raise RefusalError(
            BAD_TRANSCRIPT, "the DP noise is calibrated for more contributors than min_contributors"
        )
    if len(descriptor.seed) != DIGEST_BYTES or len(descriptor.global_model_sha256) != DIGEST_BYTES:
        raise RefusalError(MALFORMED, "the seed or the model digest is not 32 bytes")


def check_descriptor_for_member(
    descriptor: VerifiedDescriptor,
    *,
    member_index: int,
    own_contribution: bytes,
    revealed_commitments_sha256: bytes,
    min_contributors_floor: int,
) -> None:
    """The member's own checks before it signs, beyond :func:`check_descriptor`.

    The transcript holds the member's reveal with the contribution it drew, over exactly the
    commitment set it revealed against (so nobody chose which reveals to keep after seeing
    them), and ``min_contributors`` is at least the member's configured floor.

    Raises:
        RefusalError: BAD_TRANSCRIPT if a check fails.
    """
    message = descriptor.message
    own = [r for r in message.seed_reveals if r.member_index == member_index]
    if len(own) != 1 or own[0].contribution != own_contribution:
        raise RefusalError(BAD_TRANSCRIPT, "the seed transcript lacks this member's reveal")
    if commitments_sha256(list(message.seed_commitments)) != revealed_commitments_sha256:
        raise RefusalError(
            BAD_TRANSCRIPT, "the commitments are not the set this member revealed against"
        )
    if message.min_contributors < min_contributors_floor:
        raise RefusalError(
            BAD_TRANSCRIPT,
            f"min_contributors {message.min_contributors} is below this member's floor "
            f"{min_contributors_floor}",
        )


def check_signing_order(
    descriptor: VerifiedDescriptor,
    *,
    highest_signed_round: int | None,
    digest_signed_for_round: bytes | None,
) -> None:
    """A member signs one descriptor per round, for rounds above any it signed before.

    Re-signing the identical bytes is allowed (an idempotent retry after a lost answer).

    Args:
        descriptor: The descriptor to sign.
        highest_signed_round: Highest round of this federation the member signed, if any.
        digest_signed_for_round: Digest the member signed for this round, if any.

    Raises:
        RefusalError: CONFLICT if the member signed other bytes for this or a later round.
    """
    if digest_signed_for_round is not None:
        if digest_signed_for_round != descriptor.sha256:
            raise RefusalError(CONFLICT, "another descriptor was signed for this round")
        return
    round_number = descriptor.message.round_number
    if highest_signed_round is not None and round_number <= highest_signed_round:
        raise RefusalError(
            CONFLICT, f"round {round_number} is not above signed round {highest_signed_round}"
        )


def sign_descriptor(
    signing_key: SigningKey, member_index: int, descriptor: VerifiedDescriptor
) -> common_pb2.MemberSignature:
    """Signs the descriptor bytes (ROUND_DESCRIPTOR); call only after the member's checks."""
    return sign_as_member(
        signing_key, member_index, SignatureTag.ROUND_DESCRIPTOR, descriptor.serialized
    )


def verify_signed_descriptor(
    signed: common_pb2.SignedRoundDescriptor, roster: Roster
) -> VerifiedDescriptor:
    """Client side: returns the parsed descriptor once it is signed by a threshold of members.

    Args:
        signed: The descriptor bytes and member signatures.
        roster: The verified roster of the epoch the client holds.

    Raises:
        RefusalError: BAD_SIGNATURE with fewer than ``threshold`` distinct valid signatures,
            or as :func:`check_descriptor`.
    """
    descriptor = check_descriptor(signed.descriptor, roster)
    signers = valid_signers(
        roster.signing_keys, SignatureTag.ROUND_DESCRIPTOR, signed.descriptor, signed.signatures
    )
    if len(signers) < roster.threshold:
        raise RefusalError(
            BAD_SIGNATURE,
            f"{len(signers)} valid descriptor signatures, the threshold is {roster.threshold}",
        )
    return descriptor
