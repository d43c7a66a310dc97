"""The committee roster of a key epoch: building it, checking it, and its signatures.

Quorum sizes, for k members of which at most c are assumed corrupt:

- threshold t = floor(k / 2) + 1 shares open an aggregate (a majority);
- certificate quorum q = floor((k + c) / 2) + 1 member signatures certify a contributor set,
  with c = t - 1 by default (t corrupt members break privacy anyway).

Why q > (k + c) / 2: an honest member signs at most one set per round. Two different sets
certified in one round would need q signatures each, so at least 2q - k members signed both, and
all of those are corrupt. 2q - k > c makes that impossible. For k = 5, t = 3, c = 2: q = 4.
The price is liveness: a certificate needs q cooperating members, more than the t that open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from crypto.committee.digests import sealing_key_message, sha256
from crypto.committee.enrollment import EnrollmentVerifier, SelfCertifyingVerifier
from crypto.committee.errors import BAD_SIGNATURE, MALFORMED, CommitteeError, RefusalError
from crypto.committee.signatures import sign_as_member, valid_signers
from crypto.signing import PUBLIC_KEY_BYTES, SignatureTag, SigningKey, verify, worker_id_for
from hefl.v1 import committee_service_pb2, common_pb2


def majority(committee_size: int) -> int:
    """The default threshold: floor(k / 2) + 1."""
    return committee_size // 2 + 1


def certificate_quorum(committee_size: int, assumed_corrupt: int) -> int:
    """The signatures a contributor-set certificate needs: floor((k + c) / 2) + 1.

    Raises:
        CommitteeError: if c is negative or the quorum would exceed the committee.
    """
    if assumed_corrupt < 0:
        raise CommitteeError("the number of corrupt members cannot be negative")
    quorum = (committee_size + assumed_corrupt) // 2 + 1
    if quorum > committee_size:
        raise CommitteeError(
            f"{committee_size} members cannot certify with {assumed_corrupt} assumed corrupt"
        )
    return quorum


@dataclass(frozen=True)
class Roster:
    """A roster whose content was checked, with the exact bytes it travelled as."""

    message: common_pb2.CommitteeRoster
    serialized: bytes
    sha256: bytes

    @property
    def federation_id(self) -> str:
        """Federation the committee serves."""
        return self.message.federation_id

    @property
    def epoch(self) -> int:
        """Key epoch of the roster."""
        return self.message.epoch

    @property
    def threshold(self) -> int:
        """Shares needed to open an aggregate."""
        return self.message.threshold

    @property
    def certificate_quorum(self) -> int:
        """Member signatures a contributor-set certificate needs."""
        return self.message.certificate_quorum

    @property
    def profile(self) -> common_pb2.CryptoProfile.ValueType:
        """Crypto profile of the epoch."""
        return self.message.profile

    @property
    def signing_keys(self) -> dict[int, bytes]:
        """Signing public key of every member, by member index."""
        return {m.member_index: m.signing_public_key for m in self.message.members}

    def index_of(self, signing_public_key: bytes) -> int | None:
        """Returns the index of the member with this signing key, or None."""
        for member in self.message.members:
            if member.signing_public_key == signing_public_key:
                return member.member_index
        return None


def join_epoch(
    signing_key: SigningKey, sealing_public_key: bytes, federation_id: str, epoch: int
) -> committee_service_pb2.EpochJoin:
    """Member side: answers JoinEpochTask with the sealing key signed for this epoch."""
    message = sealing_key_message(federation_id, epoch, sealing_public_key)
    return committee_service_pb2.EpochJoin(
        sealing_public_key=sealing_public_key,
        sealing_key_signature=signing_key.sign(SignatureTag.SEALING_KEY, message),
    )


def member_entry(
    member_index: int,
    credential: common_pb2.WorkerCredential,
    join: committee_service_pb2.EpochJoin,
) -> common_pb2.CommitteeMember:
    """Coordinator side: the roster entry of a member from its credential and its EpochJoin."""
    return common_pb2.CommitteeMember(
        member_index=member_index,
        worker_id=credential.worker_id,
        signing_public_key=credential.signing_public_key,
        sealing_public_key=join.sealing_public_key,
        sealing_key_signature=join.sealing_key_signature,
        enrollment_certificate=credential.enrollment_certificate,
    )


def build_roster(
    *,
    federation_id: str,
    epoch: int,
    profile: common_pb2.CryptoProfile.ValueType,
    members: Iterable[common_pb2.CommitteeMember],
    threshold: int | None = None,
    assumed_corrupt: int | None = None,
) -> common_pb2.CommitteeRoster:
    """Builds a roster with members sorted by index and the quorum sizes filled in.

    Args:
        federation_id: Federation the committee serves.
        epoch: Key epoch number.
        profile: Crypto profile of the epoch.
        members: The members' entries (see :func:`member_entry`).
        threshold: Shares needed to open; a majority by default.
        assumed_corrupt: Corrupt members the certificate quorum tolerates; threshold - 1 by
            default, and never fewer: t - 1 corrupt members must not be able to certify two
            sets, or the certificate would be weaker than the threshold it protects.

    Raises:
        CommitteeError: if the result would not pass :func:`check_roster`.
    """
    ordered = sorted(members, key=lambda member: member.member_index)
    size = len(ordered)
    threshold = majority(size) if threshold is None else threshold
    corrupt = threshold - 1 if assumed_corrupt is None else assumed_corrupt
    roster = common_pb2.CommitteeRoster(
        federation_id=federation_id,
        epoch=epoch,
        threshold=threshold,
        certificate_quorum=certificate_quorum(size, corrupt),
        members=ordered,
        profile=profile,
    )
    try:
        check_roster(roster)
    except RefusalError as refusal:
        raise CommitteeError(f"cannot build roster: {refusal.detail}") from refusal
    return roster


def check_roster(
    roster: common_pb2.CommitteeRoster, enrollment_verifier: EnrollmentVerifier | None = None
) -> None:
    """Checks the content of a roster (not the members' signatures on it).

    Members are sorted by distinct positive index, with distinct worker ids and keys; the
    threshold is a majority; the certificate quorum tolerates threshold - 1 corrupt members; every
    worker id is derived from its signing key, every credential passes ``enrollment_verifier``
    (self-certifying by default), and every sealing key is signed for this federation and epoch.

    Raises:
        RefusalError: MALFORMED for a structural fault, BAD_SIGNATURE for a bad binding.
    """
    _check_structure(roster)
    verifier = enrollment_verifier or SelfCertifyingVerifier()
    for member in roster.members:
        _check_member(roster, member, verifier)


def _check_structure(roster: common_pb2.CommitteeRoster) -> None:
    members = list(roster.members)
    size = len(members)
    if not roster.federation_id:
        raise RefusalError(MALFORMED, "the roster names no federation")
    if roster.profile == common_pb2.CRYPTO_PROFILE_UNSPECIFIED:
        raise RefusalError(MALFORMED, "the roster has no crypto profile")
    if size == 0:
        raise RefusalError(MALFORMED, "the roster has no members")
    indices = [m.member_index for m in members]
    if indices[0] < 1 or any(a >= b for a, b in zip(indices, indices[1:], strict=False)):
        raise RefusalError(MALFORMED, "member indices are not distinct, positive and sorted")
    for field in ("worker_id", "signing_public_key", "sealing_public_key"):
        if len({getattr(m, field) for m in members}) != size:
            raise RefusalError(MALFORMED, f"two members share a {field}")
    if not majority(size) <= roster.threshold <= size:
        raise RefusalError(MALFORMED, f"threshold {roster.threshold} is not a majority")
    minimum = certificate_quorum(size, roster.threshold - 1)
    if not minimum <= roster.certificate_quorum <= size:
        raise RefusalError(
            MALFORMED,
            f"certificate quorum {roster.certificate_quorum} is outside [{minimum}, {size}]",
        )


def _check_member(
    roster: common_pb2.CommitteeRoster,
    member: common_pb2.CommitteeMember,
    verifier: EnrollmentVerifier,
) -> None:
    index = member.member_index
    if len(member.sealing_public_key) != PUBLIC_KEY_BYTES:
        raise RefusalError(MALFORMED, f"member {index}'s sealing key is not 32 bytes")
    if member.worker_id != worker_id_for(member.signing_public_key):
        raise RefusalError(BAD_SIGNATURE, f"member {index}'s worker id is not its key's")
    credential = common_pb2.WorkerCredential(
        worker_id=member.worker_id,
        signing_public_key=member.signing_public_key,
        enrollment_certificate=member.enrollment_certificate,
    )
    if not verifier.verify(credential):
        raise RefusalError(BAD_SIGNATURE, f"member {index} is not enrolled")
    message = sealing_key_message(roster.federation_id, roster.epoch, member.sealing_public_key)
    if not verify(
        member.signing_public_key,
        SignatureTag.SEALING_KEY,
        message,
        member.sealing_key_signature,
    ):
        raise RefusalError(BAD_SIGNATURE, f"member {index}'s sealing key signature is invalid")


def load_roster(
    roster_bytes: bytes, enrollment_verifier: EnrollmentVerifier | None = None
) -> Roster:
    """Parses serialized CommitteeRoster bytes and checks their content (see :func:`check_roster`).

    Raises:
        RefusalError: MALFORMED if the bytes do not parse or a check fails, BAD_SIGNATURE for
            a bad binding.
    """
    try:
        roster = common_pb2.CommitteeRoster.FromString(roster_bytes)
    except DecodeError as error:
        raise RefusalError(MALFORMED, f"roster does not parse: {error}") from error
    check_roster(roster, enrollment_verifier)
    return Roster(message=roster, serialized=bytes(roster_bytes), sha256=sha256(roster_bytes))


def sign_roster(
    signing_key: SigningKey,
    roster_bytes: bytes,
    *,
    sealing_public_key: bytes,
    enrollment_verifier: EnrollmentVerifier | None = None,
) -> common_pb2.MemberSignature:
    """Member side: checks a roster it is asked to sign (SignRosterTask) and signs its bytes.

    Args:
        signing_key: The member's signing key.
        roster_bytes: Serialized CommitteeRoster from the task.
        sealing_public_key: The sealing key the member published for this epoch.
        enrollment_verifier: Checks the other members' credentials.

    Raises:
        RefusalError: if the roster is invalid, or does not list this member with its key.
    """
    roster = load_roster(roster_bytes, enrollment_verifier)
    index = roster.index_of(signing_key.public_bytes)
    if index is None:
        raise RefusalError(MALFORMED, "the roster does not list this member")
    entry = next(m for m in roster.message.members if m.member_index == index)
    if entry.sealing_public_key != sealing_public_key:
        raise RefusalError(MALFORMED, "the roster lists another sealing key for this member")
    return sign_as_member(signing_key, index, SignatureTag.ROSTER, roster.serialized)


def verify_signed_roster(
    signed: common_pb2.SignedCommitteeRoster,
    *,
    min_signatures: int | None = None,
    enrollment_verifier: EnrollmentVerifier | None = None,
) -> Roster:
    """Checks a signed roster: its content and enough distinct valid member signatures.

    Args:
        signed: The roster bytes and the members' ROSTER signatures over them.
        min_signatures: Signatures required; every member by default. Must be at least the
            roster's threshold, or a coordinator holding fewer members could vouch for it.
        enrollment_verifier: Checks the members' credentials.

    Raises:
        RefusalError: BAD_SIGNATURE if too few members signed, or as :func:`load_roster`.
    """
    roster = load_roster(signed.roster, enrollment_verifier)
    size = len(roster.message.members)
    required = size if min_signatures is None else min_signatures
    if not roster.threshold <= required <= size:
        raise CommitteeError(f"min_signatures {required} is outside [threshold, committee size]")
    signers = valid_signers(
        roster.signing_keys, SignatureTag.ROSTER, signed.roster, signed.signatures
    )
    if len(signers) < required:
        raise RefusalError(
            BAD_SIGNATURE, f"{len(signers)} valid roster signatures, {required} required"
        )
    return roster
