r"""Key transport: the mask secret s as Shamir shares sealed to each committee member.

A client splits s into t-of-k Shamir shares over F_p, p = 2^31 - 1 (member i holds the
evaluation at x = i), and seals share i to member i's X25519 key. Shares are additive, so a
member that opens the boxes of a certified contributor set and adds them holds a share of
S = sum s_i; any t members' sums rebuild S and nothing else.

Associated data of the box for member i (integers little-endian, strings UTF-8)::

    b"hefl.v1/oneshot/key-share\x00"    26 bytes, domain separator
    u16 length || federation_id
    u64 round_number
    u16 length || worker_id             the contributing worker
    descriptor_sha256                   32 bytes, SHA-256 of the signed RoundDescriptor bytes
    payload_sha256                      32 bytes, SHA-256 of the masked upload (wire v1)
    u32 member_index                    i, also the Shamir evaluation point

Plaintext: the share, n little-endian uint32 values in [0, p). A box moved to another round,
worker, upload or member, or altered in any byte, fails to open (ChaCha20-Poly1305), which is
what stops a colluding client from submitting negated copies of other clients' keys (A4).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto import sealing, shamir
from crypto.oneshot.binding import RoundBinding
from crypto.oneshot.params import OneshotParams
from crypto.oneshot.sampling import discrete_gaussian

DOMAIN = b"hefl.v1/oneshot/key-share\x00"
DIGEST_BYTES = 32


class KeyShareError(Exception):
    """Key shares cannot be made, opened or combined."""


class ShareOpenError(KeyShareError):
    """Some sealed shares did not open; the member refuses to answer for the set.

    Attributes:
        failed: ``(worker_id, reason)`` for every contribution that failed, in input order.
    """

    def __init__(self, failed: Sequence[tuple[str, str]]) -> None:
        """Records the failures."""
        self.failed = tuple(failed)
        names = ", ".join(f"{worker} ({reason})" for worker, reason in self.failed)
        super().__init__(f"{len(self.failed)} sealed key share(s) failed to open: {names}")


@dataclass(frozen=True)
class MemberKey:
    """A committee member's public sealing key for the epoch."""

    index: int
    sealing_public_key: bytes


@dataclass(frozen=True)
class ShareContext:
    """What a sealed share is bound to."""

    federation_id: str
    round_number: int
    worker_id: str
    descriptor_sha256: bytes
    payload_sha256: bytes

    @classmethod
    def for_upload(
        cls, binding: RoundBinding, worker_id: str, payload_sha256: bytes
    ) -> ShareContext:
        """The context of one worker's upload in the round of ``binding``."""
        return cls(
            binding.federation_id,
            binding.round_number,
            worker_id,
            binding.descriptor_sha256,
            payload_sha256,
        )

    def associated_data(self, member_index: int) -> bytes:
        """The AEAD associated data for the box sealed to ``member_index`` (layout above).

        Raises:
            KeyShareError: on over-long strings, digests that are not 32 bytes, or out-of-range
                integers.
        """
        federation = self.federation_id.encode()
        worker = self.worker_id.encode()
        if max(len(federation), len(worker)) > 0xFFFF:
            raise KeyShareError("federation or worker id longer than 65535 bytes")
        if len(self.descriptor_sha256) != DIGEST_BYTES or len(self.payload_sha256) != DIGEST_BYTES:
            raise KeyShareError("descriptor and payload digests must be 32 bytes")
        if not 0 <= self.round_number < 2**64 or not 0 < member_index < 2**32:
            raise KeyShareError("round number or member index out of range")
        return b"".join(
            (
                DOMAIN,
                struct.pack("<H", len(federation)),
                federation,
                struct.pack("<Q", self.round_number),
                struct.pack("<H", len(worker)),
                worker,
                self.descriptor_sha256,
                self.payload_sha256,
                struct.pack("<I", member_index),
            )
        )


@dataclass(frozen=True)
class SealedShare:
    """One member's sealed share of one client's secret."""

    member_index: int
    sealed: sealing.SealedMessage


@dataclass(frozen=True)
class Contribution:
    """One certified upload as a member sees it: who sent it, its digest, the member's box."""

    worker_id: str
    payload_sha256: bytes
    sealed: sealing.SealedMessage


def seal_secret_shares(
    secret: npt.NDArray[np.int64],
    *,
    members: Sequence[MemberKey],
    threshold: int,
    context: ShareContext,
) -> tuple[SealedShare, ...]:
    """Shares ``secret`` t-of-k and seals share i to member i.

    Args:
        secret: The mask secret s (small signed integers).
        members: Every member of the epoch; their indices must be exactly 1..k.
        threshold: t, the shares needed to rebuild.
        context: The upload the shares belong to.

    Returns:
        The sealed shares in member order.
    """
    indices = [m.index for m in members]
    if sorted(indices) != list(range(1, len(members) + 1)):
        raise KeyShareError(f"member indices must be 1..k, got {indices}")
    try:
        shares = shamir.split(secret, shares=len(members), threshold=threshold)
    except shamir.ShamirError as error:
        raise KeyShareError(str(error)) from error
    sealed = []
    for member in sorted(members, key=lambda m: m.index):
        box = sealing.seal(
            member.sealing_public_key,
            shamir.encode_share(shares[member.index]),
            context.associated_data(member.index),
        )
        sealed.append(SealedShare(member.index, box))
    return tuple(sealed)


def open_share_sum(
    key: sealing.SealingKey,
    member_index: int,
    binding: RoundBinding,
    contributions: Sequence[Contribution],
    *,
    ring_dimension: int,
) -> shamir.ShareVector:
    """Opens this member's boxes of a certified set and adds them: its share of S.

    Args:
        key: The member's sealing key for the epoch.
        member_index: The member's index (its Shamir point).
        binding: The round being opened (from the verified descriptor).
        contributions: The certified contributions, each with this member's box.
        ring_dimension: n, the share length.

    Returns:
        The summed share, values in [0, p).

    Raises:
        ShareOpenError: if any box fails to open or holds a malformed share, or a worker
            appears twice; every failing contribution is listed.
    """
    total = np.zeros(ring_dimension, dtype=np.int64)
    failed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for contribution in contributions:
        worker = contribution.worker_id
        if worker in seen:
            failed.append((worker, "duplicate contribution"))
            continue
        seen.add(worker)
        context = ShareContext.for_upload(binding, worker, contribution.payload_sha256)
        try:
            plaintext = sealing.open_sealed(
                key, contribution.sealed, context.associated_data(member_index)
            )
            share = shamir.decode_share(plaintext, length=ring_dimension)
        except (sealing.SealingError, shamir.ShamirError, KeyShareError) as error:
            failed.append((worker, str(error)))
            continue
        # Values stay below 2^31 per share; int64 holds 2^32 sums before a reduction.
        total += share
    if failed:
        raise ShareOpenError(failed)
    return total % shamir.FIELD_MODULUS


def encode_share_sum(share: shamir.ShareVector) -> bytes:
    """Serializes a member's summed share: n little-endian uint32 values."""
    return shamir.encode_share(share)


def decode_share_sum(data: bytes, *, ring_dimension: int) -> shamir.ShareVector:
    """Parses :func:`encode_share_sum` output, checking length and field range."""
    try:
        return shamir.decode_share(data, length=ring_dimension)
    except shamir.ShamirError as error:
        raise KeyShareError(str(error)) from error


def key_sum_bound(params: OneshotParams, contributors: int) -> int:
    """Largest |coefficient| of S = sum of ``contributors`` secrets (the sampler's tail cut)."""
    return contributors * discrete_gaussian(params.secret_stddev).tail_bound


def combine_key_sum(
    openings: Mapping[int, shamir.ShareVector],
    *,
    threshold: int,
    contributors: int,
    params: OneshotParams,
) -> npt.NDArray[np.int64]:
    """Rebuilds S from at least t members' summed shares.

    Shares beyond the first t are checked against the polynomial the first t define, so a
    member that sends a wrong share is detected when there is a spare. S is also checked to be
    within the range ``contributors`` secrets can reach.

    Raises:
        KeyShareError: with fewer than t shares, inconsistent shares, or an out-of-range S.
    """
    if len(openings) < threshold:
        raise KeyShareError(f"{len(openings)} member shares cannot open a {threshold}-of-k key sum")
    for index, share in openings.items():
        if share.shape != (params.ring_dimension,):
            raise KeyShareError(f"share of member {index} has shape {share.shape}")
    try:
        key_sum = shamir.combine(openings, threshold=threshold)
    except shamir.ShamirError as error:
        raise KeyShareError(str(error)) from error
    points = sorted(openings)
    base, extra = points[:threshold], points[threshold:]
    for x in extra:
        predicted: npt.NDArray[np.int64] = np.zeros(params.ring_dimension, dtype=np.int64)
        for x_i, weight in _lagrange_at(base, x).items():
            predicted = (
                predicted + openings[x_i] % shamir.FIELD_MODULUS * weight
            ) % shamir.FIELD_MODULUS
        if not np.array_equal(predicted, openings[x] % shamir.FIELD_MODULUS):
            raise KeyShareError(f"member shares are inconsistent (checked at member {x})")
    bound = key_sum_bound(params, contributors)
    if int(np.max(np.abs(key_sum))) > bound:
        raise KeyShareError(
            f"opened key sum exceeds {bound}, the most {contributors} secrets can reach: "
            "a share or the contributor count is wrong"
        )
    return key_sum


def _lagrange_at(points: list[int], x: int) -> dict[int, int]:
    p = shamir.FIELD_MODULUS
    weights: dict[int, int] = {}
    for x_i in points:
        numerator, denominator = 1, 1
        for x_j in points:
            if x_j != x_i:
                numerator = numerator * (x - x_j) % p
                denominator = denominator * (x_i - x_j) % p
        weights[x_i] = numerator * pow(denominator, -1, p) % p
    return weights
