"""Wire formats the coordinator and members share in the BGV profiles.

The CRS seed of an epoch, and a member's bulk output: its partial decryptions for a plan.
"""

from __future__ import annotations

import struct

from crypto.bgv.decrypt import DecryptionPlan, MemberPartials
from crypto.bgv.errors import PayloadError
from crypto.bgv.payload import encode_payload, parse_frames
from crypto.committee.digests import tagged_sha256
from crypto.committee.roster import Roster

_PARTIALS_MAGIC = b"HEFLBGVP\x01"
_U32 = struct.Struct("<I")


def crs_seed_for(roster: Roster) -> bytes:
    """The epoch's CRS seed: a hash of the roster every member signed, so nobody picks it.

    The roster holds each member's fresh sealing key for the epoch, so the seed also carries
    member randomness; the coordinator could only grind it by changing the membership, and a
    SHAKE-expanded ``a`` has no weak values to grind for.
    """
    return tagged_sha256("bgv-crs-seed", roster.federation_id, roster.epoch, roster.sha256)


class PartialsFormatError(ValueError):
    """A member's output does not hold well-formed partials for the plan."""


def encode_partials(plan: DecryptionPlan, partials: MemberPartials) -> bytes:
    """A member's bulk output: its plan, then its partials as payload-v1 frames.

    ``"HEFLBGVP" 0x01 || u32 member || u32 P || P x u32 participants || frames``; the frames are
    the own partials (one per aggregate ciphertext), then for each member the plan makes it
    recover, in ascending order, one partial per ciphertext.
    """
    header = _PARTIALS_MAGIC + _U32.pack(partials.member) + _U32.pack(len(plan.participants))
    header += b"".join(_U32.pack(p) for p in plan.participants)
    return header + encode_payload(partials.blobs())


def partials_plan(blob: bytes) -> tuple[int, tuple[int, ...], int]:
    """(member, participants, offset of the frames) of an output made by :func:`encode_partials`.

    Raises:
        PartialsFormatError: if the header is malformed.
    """
    fixed = len(_PARTIALS_MAGIC) + 2 * _U32.size
    if not blob.startswith(_PARTIALS_MAGIC) or len(blob) < fixed:
        raise PartialsFormatError("not a hefl BGV partial-decryption output")
    member, count = struct.unpack_from("<II", blob, len(_PARTIALS_MAGIC))
    end = fixed + count * _U32.size
    if count > 255 or len(blob) < end:
        raise PartialsFormatError("truncated partial-decryption header")
    participants = struct.unpack_from(f"<{count}I", blob, fixed)
    return member, tuple(participants), end


def decode_partials(
    blob: bytes, plan: DecryptionPlan, ciphertexts: int, max_frame_bytes: int
) -> MemberPartials:
    """Parses one member's output for ``plan`` over an aggregate of ``ciphertexts``.

    Raises:
        PartialsFormatError: if the output is for another plan or has the wrong frame count.
    """
    member, participants, offset = partials_plan(blob)
    if participants != plan.participants or member not in plan.participants:
        raise PartialsFormatError(f"member {member}'s partials are for plan {participants}")
    recovers = plan.recovers(member)
    expected = ciphertexts * (1 + len(recovers))
    try:
        frames = list(
            parse_frames([blob[offset:]], max_frame_bytes=max_frame_bytes, max_frames=expected)
        )
    except PayloadError as error:
        raise PartialsFormatError(f"member {member}'s partials: {error}") from error
    if len(frames) != expected:
        raise PartialsFormatError(f"member {member} sent {len(frames)} partials, need {expected}")
    own = tuple(frames[:ciphertexts])
    recovered = {
        dropped: tuple(frames[(k + 1) * ciphertexts : (k + 2) * ciphertexts])
        for k, dropped in enumerate(recovers)
    }
    return MemberPartials(member, own, recovered)
