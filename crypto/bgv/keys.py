"""Key epochs: star key generation from the seeded CRS and Shamir t-of-k sharing of key shares.

Message flow (docs/crypto-bgv.md has it message by message): every member derives the CRS from
the committee seed, generates its key share, sends a commitment and then its public-key share;
the coordinator sums the shares into the joint key, and every member re-derives that sum from
the revealed shares. Each member then Shamir-shares its secret key share, sealing share j to
member j; the coordinator only relays sealed boxes.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crypto import sealing
from crypto.bgv import native
from crypto.bgv.context import HeContext
from crypto.bgv.crs import a_polynomial, derive_crs
from crypto.bgv.errors import KeyCeremonyError, PayloadError
from crypto.bgv.native import Native
from crypto.bgv.payload import encode_payload, parse_frames
from crypto.bgv.shares import ShareCodec

_STATE_MAGIC = b"HEFLBGVM\x01"
_SHARE_AD = b"hefl.v1/bgv-key-share\x00"
_COMMIT_DOMAIN = b"hefl.v1/bgv-pk-share-commitment\x00"


@dataclass(frozen=True)
class Committee:
    """A key committee of ``size`` members (indices 1..size); any ``threshold`` can decrypt."""

    size: int
    threshold: int

    def __post_init__(self) -> None:
        """Refuses committees OpenFHE's Shamir sharing cannot serve."""
        if not 2 <= self.size <= 255:
            raise KeyCeremonyError(f"committee size {self.size} outside [2, 255]")
        if not self.size < 2 * self.threshold <= 2 * self.size:
            raise KeyCeremonyError(
                f"threshold {self.threshold} of {self.size} must be a majority "
                "(OpenFHE requires it)"
            )

    @property
    def members(self) -> tuple[int, ...]:
        """The member indices, 1-based as in OpenFHE's ShareKeys."""
        return tuple(range(1, self.size + 1))

    def check_member(self, index: int) -> None:
        """Raises KeyCeremonyError unless ``index`` is a member."""
        if index not in self.members:
            raise KeyCeremonyError(f"member index {index} not in 1..{self.size}")


@dataclass(frozen=True)
class PublicKeyShare:
    """Member -> coordinator: a member's public-key share ``(b_i, a)``."""

    member: int
    key: bytes

    def commitment(self) -> bytes:
        """SHA-256 commitment sent before the share itself (defeats rogue-key choices)."""
        return hashlib.sha256(_COMMIT_DOMAIN + struct.pack("<I", self.member) + self.key).digest()


def _share_associated_data(epoch: bytes, sender: int, recipient: int) -> bytes:
    return _SHARE_AD + struct.pack("<II", sender, recipient) + epoch


def _check_shares_against_crs(
    ctx: HeContext,
    committee: Committee,
    crs_blob: bytes,
    shares: Mapping[int, PublicKeyShare],
    commitments: Mapping[int, bytes] | None,
) -> None:
    if sorted(shares) != list(committee.members):
        raise KeyCeremonyError(f"need one public-key share per member, got {sorted(shares)}")
    crs_a = a_polynomial(ctx, crs_blob)
    for index, share in shares.items():
        if share.member != index:
            raise KeyCeremonyError(f"share filed under {index} claims member {share.member}")
        if a_polynomial(ctx, share.key) != crs_a:
            raise KeyCeremonyError(f"member {index}'s public-key share does not use the CRS")
        if commitments is not None and commitments.get(index) != share.commitment():
            raise KeyCeremonyError(f"member {index}'s share does not match its commitment")


def combine_public_shares(
    ctx: HeContext,
    committee: Committee,
    crs_blob: bytes,
    shares: Mapping[int, PublicKeyShare],
    commitments: Mapping[int, bytes] | None = None,
) -> bytes:
    """Coordinator: the joint public key, the sum of every member's ``b_i`` over the CRS ``a``.

    Args:
        ctx: The epoch's context.
        committee: The committee.
        crs_blob: The CRS derived from the committee seed.
        shares: Every member's public-key share.
        commitments: The commitments received before the shares were revealed, if any.

    Returns:
        The canonical BINARY joint public key.

    Raises:
        KeyCeremonyError: if a share is missing, uses another ``a`` or breaks its commitment.
    """
    _check_shares_against_crs(ctx, committee, crs_blob, shares, commitments)
    ordered = [native.load_public_key(shares[i].key) for i in committee.members]
    joint = ordered[0]
    for key in ordered[1:]:
        joint = ctx.native.MultiAddPubKeys(joint, key)
    return native.serialize(native.load_public_key(native.serialize(joint)))


class MemberSecrets:
    """A committee member's key material for one epoch; never leaves the member unsealed."""

    def __init__(
        self,
        ctx: HeContext,
        committee: Committee,
        index: int,
        crs_blob: bytes,
        secret_key: Native,
        public_share: PublicKeyShare,
    ) -> None:
        """Use :meth:`generate` or :meth:`from_bytes`; this only assembles the parts."""
        committee.check_member(index)
        self.ctx = ctx
        self.committee = committee
        self.index = index
        self.crs_blob = crs_blob
        self.public_share = public_share
        self.joint_public_key: bytes | None = None
        self._secret_key = secret_key
        self._codec = ShareCodec.create(ctx, crs_blob)
        self._received: dict[int, bytes] = {}

    @classmethod
    def generate(
        cls, ctx: HeContext, committee: Committee, index: int, crs_seed: bytes
    ) -> MemberSecrets:
        """Derives the CRS from the public seed and generates this member's key share."""
        crs_blob = derive_crs(ctx, crs_seed)
        pair = ctx.native.MultipartyKeyGen(native.load_public_key(crs_blob), False, True)
        share = PublicKeyShare(index, native.serialize(pair.publicKey))
        # Keep the key in its deserialized form so its bytes are the same before and after a
        # restart (the in-memory form encodes shared parameters differently).
        secret = native.load_private_key(native.serialize(pair.secretKey))
        return cls(ctx, committee, index, crs_blob, secret, share)

    @property
    def secret_key(self) -> Native:
        """This member's own secret key share (native object, member-local)."""
        return self._secret_key

    def secret_key_bytes(self) -> bytes:
        """BINARY secret key share, for this member's own disk only."""
        return native.serialize(self._secret_key)

    def accept_joint_key(
        self,
        shares: Mapping[int, PublicKeyShare],
        joint_public_key: bytes,
        commitments: Mapping[int, bytes] | None = None,
    ) -> None:
        """Checks the coordinator's joint key by recomputing it from the revealed shares.

        Raises:
            KeyCeremonyError: if this member's own share was altered, a share does not use the
                CRS or its commitment, or the joint key is not the sum of the shares.
        """
        if shares.get(self.index) != self.public_share:
            raise KeyCeremonyError(f"member {self.index}'s own share was altered or left out")
        expected = combine_public_shares(
            self.ctx, self.committee, self.crs_blob, shares, commitments
        )
        if expected != joint_public_key:
            raise KeyCeremonyError("joint public key is not the sum of the revealed shares")
        self.joint_public_key = joint_public_key

    def seal_shares(
        self, recipients: Mapping[int, bytes], epoch: bytes
    ) -> dict[int, sealing.SealedMessage]:
        """Shamir-shares this member's secret key and seals share j to member j.

        Args:
            recipients: Every other member's X25519 sealing public key.
            epoch: Bytes naming the key epoch (bound into each box).

        Returns:
            One sealed box per other member; the coordinator relays them unopened.
        """
        others = [m for m in self.committee.members if m != self.index]
        if sorted(recipients) != others:
            raise KeyCeremonyError(f"need sealing keys for members {others}")
        polys = self.ctx.native.ShareKeys(
            self._secret_key, self.committee.size, self.committee.threshold, self.index, "shamir"
        )
        return {
            member: sealing.seal(
                recipients[member],
                self._codec.wrap(polys[member]),
                _share_associated_data(epoch, self.index, member),
            )
            for member in others
        }

    def receive_share(
        self, sender: int, sealed: sealing.SealedMessage, key: sealing.SealingKey, epoch: bytes
    ) -> None:
        """Opens and stores the share of ``sender``'s secret key that is addressed to us.

        Raises:
            KeyCeremonyError: if the box does not open for this epoch and pair, or is not a
                well-formed share.
        """
        self.committee.check_member(sender)
        if sender == self.index:
            raise KeyCeremonyError("a member holds no share of its own key")
        try:
            blob = sealing.open_sealed(
                key, sealed, _share_associated_data(epoch, sender, self.index)
            )
        except sealing.SealingError as error:
            raise KeyCeremonyError(f"share from member {sender}: {error}") from error
        self._codec.unwrap(blob)
        self._received[sender] = blob

    def has_share_from(self, sender: int) -> bool:
        """Whether this member holds a share of ``sender``'s key."""
        return sender in self._received

    def weighted_key_for(self, dropped: int, points: tuple[int, ...]) -> Native:
        """lambda_self * f_dropped(self): this member's term of the dropped member's key."""
        if dropped not in self._received:
            raise KeyCeremonyError(f"member {self.index} holds no share of member {dropped}")
        share = self._codec.unwrap(self._received[dropped])
        return self._codec.weighted_key(share, self.index, points, self.committee.size)

    def to_bytes(self) -> bytes:
        """Everything needed to resume after a restart; secret, for the member's disk only."""
        header = _STATE_MAGIC + struct.pack(
            "<III", self.index, self.committee.size, self.committee.threshold
        )
        senders = sorted(self._received)
        index = struct.pack(f"<I{len(senders)}I", len(senders), *senders)
        frames = [
            self.ctx.profile.name.encode(),
            self.secret_key_bytes(),
            self.crs_blob,
            self.public_share.key,
            # Frames cannot be empty: a presence byte precedes the (possibly absent) joint key.
            b"\x01" + self.joint_public_key if self.joint_public_key else b"\x00",
            index,
            *(self._received[s] for s in senders),
        ]
        return header + encode_payload(frames)

    @classmethod
    def from_bytes(cls, ctx: HeContext, blob: bytes) -> MemberSecrets:
        """Restores state written by :meth:`to_bytes`.

        Raises:
            KeyCeremonyError: if the bytes are corrupt or belong to another profile.
        """
        if not blob.startswith(_STATE_MAGIC) or len(blob) < len(_STATE_MAGIC) + 12:
            raise KeyCeremonyError("not a hefl BGV member state")
        cursor = len(_STATE_MAGIC)
        index, size, threshold = struct.unpack_from("<III", blob, cursor)
        try:
            frames = list(parse_frames([blob[cursor + 12 :]], max_frame_bytes=1 << 26))
        except PayloadError as error:
            raise KeyCeremonyError(f"corrupt member state: {error}") from error
        if len(frames) < 6 or frames[0] != ctx.profile.name.encode():
            raise KeyCeremonyError("member state is for another profile or truncated")
        _, secret, crs_blob, public, joint, senders_raw, *shares = frames
        (count,) = struct.unpack_from("<I", senders_raw)
        senders = struct.unpack_from(f"<{count}I", senders_raw, 4)
        if len(shares) != count:
            raise KeyCeremonyError("member state share count mismatch")
        state = cls(
            ctx,
            Committee(size, threshold),
            index,
            crs_blob,
            native.load_private_key(secret),
            PublicKeyShare(index, public),
        )
        if joint[:1] not in (b"\x00", b"\x01") or (joint[:1] == b"\x00" and len(joint) != 1):
            raise KeyCeremonyError("corrupt joint-key field in member state")
        state.joint_public_key = joint[1:] or None
        for sender, share in zip(senders, shares, strict=True):
            state._codec.unwrap(share)
            state._received[sender] = share
        return state

    def save(self, path: Path) -> None:
        """Writes the state atomically to ``path``, readable by the owner only."""
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.to_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, ctx: HeContext, path: Path) -> MemberSecrets:
        """Reads state written by :meth:`save`."""
        return cls.from_bytes(ctx, path.read_bytes())
