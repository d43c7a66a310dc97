"""Shamir key shares as bytes, and Lagrange-weighted keys built from them.

``DCRTPoly`` has no Python serialization, so a share travels inside a ciphertext container: a
public encryption of zero under the CRS key whose elements are replaced by the share alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crypto.bgv import native
from crypto.bgv.context import HeContext
from crypto.bgv.errors import KeyCeremonyError
from crypto.bgv.layout import BlobShape
from crypto.bgv.native import Native


@dataclass(frozen=True, eq=False)
class ShareCodec:
    """Wraps and unwraps key-share polynomials for one context and CRS."""

    ctx: HeContext
    template: Native
    zero: Native
    shape: BlobShape

    @classmethod
    def create(cls, ctx: HeContext, crs_blob: bytes) -> ShareCodec:
        """Builds the container template from the (public) CRS key.

        The reference shape comes from a share of a throwaway key, so it has the share's
        representation (coefficient format); the zero polynomial is that reference with its
        coefficients cleared, hence in the same representation.
        """
        crs = native.load_public_key(crs_blob)
        template = ctx.native.Encrypt(crs, ctx.native.MakePackedPlaintext([0]))
        throwaway = ctx.native.KeyGen().secretKey
        sample = ctx.native.ShareKeys(throwaway, 3, 2, 1, "shamir")[2]
        reference = bytearray(cls._wrap(template, sample))
        shape = BlobShape.of("key share", bytes(reference), ctx.ring_dimension)
        for tower in shape.towers:
            reference[tower.offset : tower.offset + 8 * ctx.ring_dimension] = bytes(
                8 * ctx.ring_dimension
            )
        zero = native.load_ciphertext(bytes(reference)).GetElements()[0]
        return cls(ctx, template, zero, shape)

    @staticmethod
    def _wrap(template: Native, poly: Native) -> bytes:
        container = template.Clone()
        container.SetElements([poly])
        return native.canonical_ciphertext(container)

    def wrap(self, poly: Native) -> bytes:
        """Serializes one share polynomial (canonical bytes, coefficients reduced mod q).

        OpenFHE 1.6.1's ``ShareKeys("shamir")`` sums the terms of f(i) without reducing them,
        so coefficients reach [0, (t-1)q) and their size depends on the secret: with t = 3 a
        coefficient >= q occurs only where the dealer's secret coefficient is -1 (measured:
        about half of the -1 coefficients show up that way in every share). Reducing mod q
        makes each share uniform again, as Shamir sharing requires.
        """
        blob = bytearray(self._wrap(self.template, poly))
        if len(blob) != len(self.shape.reference):
            raise KeyCeremonyError(f"share container of {len(blob)} bytes, unexpected layout")
        n = self.ctx.ring_dimension
        for tower in self.shape.towers:
            values = np.frombuffer(blob, dtype="<u8", count=n, offset=tower.offset)
            reduced = values % np.uint64(tower.modulus)
            blob[tower.offset : tower.offset + 8 * n] = reduced.astype("<u8").tobytes()
        out = bytes(blob)
        self.shape.check(out)
        return out

    def unwrap(self, blob: bytes) -> Native:
        """Parses a share produced by :meth:`wrap`, refusing any other shape.

        Raises:
            KeyCeremonyError: if the bytes are not a share of this context.
        """
        try:
            self.shape.check(blob)
        except Exception as error:
            raise KeyCeremonyError(f"malformed key share: {error}") from error
        return native.load_ciphertext(blob).GetElements()[0]

    def weighted_key(
        self, share: Native, holder: int, points: tuple[int, ...], committee_size: int
    ) -> Native:
        """The private key lambda_holder * share, lambda the Lagrange weight at 0 over ``points``.

        OpenFHE's ``RecoverSharedKey`` interpolates at 0; giving it this holder's share and zero
        polynomials for the other points yields this holder's term of the interpolation only,
        so no one ever holds the recovered key (study §1.4, "distributed Lagrange").
        """
        if holder not in points:
            raise KeyCeremonyError(f"member {holder} is not an interpolation point {points}")
        key = native.empty_private_key(self.ctx.native)
        polys = {point: (share if point == holder else self.zero) for point in points}
        self.ctx.native.RecoverSharedKey(key, polys, committee_size, len(points), "shamir")
        return key

    def zero_key(self, points: tuple[int, ...], committee_size: int) -> Native:
        """A private key equal to zero: its partial decryption is pure decryption noise."""
        key = native.empty_private_key(self.ctx.native)
        polys = dict.fromkeys(points, self.zero)
        self.ctx.native.RecoverSharedKey(key, polys, committee_size, len(points), "shamir")
        return key
