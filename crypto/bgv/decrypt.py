"""Threshold decryption with dropout recovery by distributed Lagrange partials (no key rebuilt).

With participants P (|P| >= t) and dropped members D, the first t members of P are the
interpolation points. Every participant sends its own partial (the lowest-indexed one a *lead*
partial, which carries c0; the others *main* partials). Each interpolation point i also sends, for
every dropped j, a main partial under lambda_i * f_j(i), its Lagrange-weighted Shamir share of
j's key. Partial decryptions are linear in the key, so the fusion of all of them equals the
fusion with every member present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto.bgv import native
from crypto.bgv.context import HeContext, disable_crt_precompute
from crypto.bgv.encrypt import upload_shape
from crypto.bgv.errors import CiphertextRejectedError, DecryptionError
from crypto.bgv.keys import Committee, MemberSecrets
from crypto.bgv.layout import BlobShape
from crypto.bgv.payload import payload_digest
from crypto.bgv.shares import ShareCodec


@dataclass(frozen=True)
class DecryptionPlan:
    """Who decrypts: the participating members; the others are recovered by Lagrange partials."""

    committee: Committee
    participants: tuple[int, ...]

    def __post_init__(self) -> None:
        """Refuses plans that cannot (or must not) decrypt."""
        members = set(self.committee.members)
        if len(set(self.participants)) != len(self.participants):
            raise DecryptionError(f"participants repeat: {self.participants}")
        if not set(self.participants) <= members:
            raise DecryptionError(f"participants {self.participants} not all committee members")
        if len(self.participants) < self.committee.threshold:
            raise DecryptionError(
                f"{len(self.participants)} participants cannot decrypt: threshold is "
                f"{self.committee.threshold} of {self.committee.size}"
            )

    @classmethod
    def make(cls, committee: Committee, participants: Iterable[int]) -> DecryptionPlan:
        """A plan with participants sorted (so every party derives the same lead and points)."""
        return cls(committee, tuple(sorted(participants)))

    @property
    def dropped(self) -> tuple[int, ...]:
        """Members whose key share is recovered through Lagrange partials."""
        return tuple(m for m in self.committee.members if m not in self.participants)

    @property
    def lead(self) -> int:
        """The participant whose own partial is the lead partial."""
        return min(self.participants)

    @property
    def points(self) -> tuple[int, ...]:
        """The t interpolation points: the lowest-indexed participants."""
        return tuple(sorted(self.participants)[: self.committee.threshold])

    def recovers(self, member: int) -> tuple[int, ...]:
        """The dropped members ``member`` must send Lagrange partials for."""
        return self.dropped if member in self.points else ()


@dataclass(frozen=True)
class MemberPartials:
    """Member -> coordinator: one member's partial decryptions of an aggregate.

    Attributes:
        member: The sender's index.
        own: One partial per aggregate ciphertext under the member's own key share.
        recovered: For each dropped member j, one partial per ciphertext under the sender's
            Lagrange-weighted share of j's key.
    """

    member: int
    own: tuple[bytes, ...]
    recovered: Mapping[int, tuple[bytes, ...]] = field(default_factory=dict)

    def blobs(self) -> tuple[bytes, ...]:
        """Every byte string this message carries (for transport and audits)."""
        return self.own + tuple(b for j in sorted(self.recovered) for b in self.recovered[j])


def _check_aggregate(shape: BlobShape, aggregate: Sequence[bytes], digest: bytes | None) -> None:
    if not aggregate:
        raise DecryptionError("empty aggregate")
    if digest is not None and payload_digest(aggregate) != digest:
        raise DecryptionError("aggregate does not match its digest")
    for position, blob in enumerate(aggregate):
        try:
            shape.check(blob)
        except CiphertextRejectedError as error:
            raise DecryptionError(f"aggregate ciphertext {position}: {error}") from error


def partial_decrypt(
    member: MemberSecrets,
    plan: DecryptionPlan,
    aggregate: Sequence[bytes],
    digest: bytes | None = None,
) -> MemberPartials:
    """Member side: this member's partial decryptions of ``aggregate`` under ``plan``.

    The caller must already have decided that this aggregate may be opened (contributor-set
    quorum certificate, round id, minimum contributors): this function only checks its form.

    Raises:
        DecryptionError: if the member is not a participant, has not accepted the joint key,
            or the aggregate does not match ``digest`` or the expected ciphertext shape.
    """
    if member.index not in plan.participants:
        raise DecryptionError(f"member {member.index} is not a participant of this plan")
    if plan.committee != member.committee:
        raise DecryptionError("plan is for another committee")
    if member.joint_public_key is None:
        raise DecryptionError("member has not accepted a joint public key")
    _check_aggregate(upload_shape(member.ctx, member.joint_public_key), aggregate, digest)
    # Members deserialize every aggregate ciphertext and canonicalize every partial.
    disable_crt_precompute()
    cc = member.ctx.native
    ciphertexts = [native.load_ciphertext(b) for b in aggregate]
    if member.index == plan.lead:
        own = cc.MultipartyDecryptLead(ciphertexts, member.secret_key)
    else:
        own = cc.MultipartyDecryptMain(ciphertexts, member.secret_key)
    recovered: dict[int, tuple[bytes, ...]] = {}
    for dropped in plan.recovers(member.index):
        key = member.weighted_key_for(dropped, plan.points)
        parts = cc.MultipartyDecryptMain(ciphertexts, key)
        recovered[dropped] = tuple(native.canonical_ciphertext(p) for p in parts)
    return MemberPartials(
        member.index, tuple(native.canonical_ciphertext(p) for p in own), recovered
    )


def fuse_partials(
    ctx: HeContext, per_ciphertext: Sequence[Sequence[bytes]]
) -> npt.NDArray[np.int64]:
    """Fuses already-validated partials, lead first, one list per ciphertext; no plan checks.

    Returns:
        The decrypted slots mod t, N per ciphertext.
    """
    cc = ctx.native
    out: list[npt.NDArray[np.int64]] = []
    for blobs in per_ciphertext:
        plaintext = cc.MultipartyDecryptFusion([native.load_ciphertext(b) for b in blobs])
        plaintext.SetLength(ctx.ring_dimension)
        values = np.asarray(plaintext.GetPackedValueArray(), dtype=np.int64)
        out.append(np.mod(values, ctx.plaintext_modulus))
    return np.concatenate(out)


class Fuser:
    """Coordinator side: checks a plan's partials are complete and well formed, then fuses."""

    def __init__(self, ctx: HeContext, crs_blob: bytes, aggregate: Sequence[bytes]) -> None:
        """Prepares fusion of one aggregate (public inputs only).

        The expected partial shape comes from a partial made under a zero key, which carries
        decryption noise only and needs no secret.
        """
        if not aggregate:
            raise DecryptionError("empty aggregate")
        self.ctx = ctx
        self.aggregate = tuple(aggregate)
        codec = ShareCodec.create(ctx, crs_blob)
        zero = codec.zero_key((1, 2), 3)
        probe = ctx.native.MultipartyDecryptMain([native.load_ciphertext(aggregate[0])], zero)[0]
        self.partial_shape = BlobShape.of(
            "partial decryption", native.canonical_ciphertext(probe), ctx.ring_dimension
        )

    def _checked(self, sender: int, blobs: tuple[bytes, ...]) -> tuple[bytes, ...]:
        if len(blobs) != len(self.aggregate):
            raise DecryptionError(
                f"member {sender} sent {len(blobs)} partials for {len(self.aggregate)} ciphertexts"
            )
        for blob in blobs:
            try:
                self.partial_shape.check(blob)
            except CiphertextRejectedError as error:
                raise DecryptionError(f"member {sender}: {error}") from error
        return blobs

    def fuse(
        self, plan: DecryptionPlan, partials: Mapping[int, MemberPartials]
    ) -> npt.NDArray[np.int64]:
        """The decrypted aggregate slots mod t (N per ciphertext, padding included).

        Raises:
            DecryptionError: if a participant's partials are missing, surplus or malformed.
        """
        if sorted(partials) != sorted(plan.participants):
            raise DecryptionError(
                f"need partials from exactly {plan.participants}, got {sorted(partials)}"
            )
        columns: list[tuple[bytes, ...]] = []
        order = [plan.lead] + [m for m in plan.participants if m != plan.lead]
        for member in order:
            message = partials[member]
            if message.member != member:
                raise DecryptionError(f"partials filed under {member} claim {message.member}")
            columns.append(self._checked(member, message.own))
            if sorted(message.recovered) != sorted(plan.recovers(member)):
                raise DecryptionError(
                    f"member {member} must recover {plan.recovers(member)}, "
                    f"sent {sorted(message.recovered)}"
                )
            for dropped in plan.recovers(member):
                columns.append(self._checked(member, message.recovered[dropped]))
        per_ciphertext = [tuple(col[i] for col in columns) for i in range(len(self.aggregate))]
        return fuse_partials(self.ctx, per_ciphertext)
