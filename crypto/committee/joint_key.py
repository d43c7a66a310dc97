"""Member signatures over the joint public key of a BGV key epoch.

A member signs ``joint_public_key_message(federation, epoch, joint_public_key)`` (tag
JOINT_PUBLIC_KEY) once it has checked that the joint key includes its own public-key share.
Workers encrypt only under a joint key that every member (by default) signed.
"""

from __future__ import annotations

from collections.abc import Iterable

from crypto.committee.digests import joint_public_key_message
from crypto.committee.errors import BAD_SIGNATURE, CommitteeError, RefusalError
from crypto.committee.roster import Roster
from crypto.committee.signatures import sign_as_member, valid_signers
from crypto.signing import SignatureTag, SigningKey
from hefl.v1 import common_pb2


def sign_joint_public_key(
    signing_key: SigningKey, roster: Roster, joint_public_key: bytes
) -> common_pb2.MemberSignature:
    """Member side: signs the joint key of the roster's epoch.

    Raises:
        CommitteeError: if the key is not a member of the roster.
    """
    index = roster.index_of(signing_key.public_bytes)
    if index is None:
        raise CommitteeError("this key is not a member of the roster")
    message = joint_public_key_message(roster.federation_id, roster.epoch, joint_public_key)
    return sign_as_member(signing_key, index, SignatureTag.JOINT_PUBLIC_KEY, message)


def verify_joint_public_key(
    roster: Roster,
    joint_public_key: bytes,
    signatures: Iterable[common_pb2.MemberSignature],
    *,
    min_signatures: int | None = None,
) -> None:
    """Checks the members' signatures on a joint key (KeyEpochMaterial).

    Args:
        roster: The verified roster of the epoch.
        joint_public_key: The serialized joint public key.
        signatures: The members' JOINT_PUBLIC_KEY signatures.
        min_signatures: Required distinct valid signatures; every member by default.

    Raises:
        RefusalError: BAD_SIGNATURE if too few signatures verify.
    """
    size = len(roster.message.members)
    required = size if min_signatures is None else min_signatures
    if not roster.threshold <= required <= size:
        raise CommitteeError(f"min_signatures {required} is outside [threshold, committee size]")
    message = joint_public_key_message(roster.federation_id, roster.epoch, joint_public_key)
    signers = valid_signers(roster.signing_keys, SignatureTag.JOINT_PUBLIC_KEY, message, signatures)
    if len(signers) < required:
        raise RefusalError(
            BAD_SIGNATURE, f"{len(signers)} valid joint-key signatures, {required} required"
        )
