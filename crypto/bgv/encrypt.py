"""Worker side: slot vectors to serialized ciphertexts under the joint public key, streamed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from crypto.bgv import native
from crypto.bgv.context import HeContext
from crypto.bgv.layout import BlobShape


def ciphertext_count(ctx: HeContext, slot_count: int) -> int:
    """Ciphertexts needed for ``slot_count`` slots (N slots each, the last zero-padded)."""
    return max(1, -(-slot_count // ctx.ring_dimension))


def upload_shape(ctx: HeContext, joint_public_key: bytes) -> BlobShape:
    """The exact shape of every upload (and aggregate) ciphertext under this joint key."""
    key = native.load_public_key(joint_public_key)
    probe = ctx.compress(ctx.native.Encrypt(key, ctx.native.MakePackedPlaintext([0])))
    return BlobShape.of("ciphertext", native.canonical_ciphertext(probe), ctx.ring_dimension)


class Encryptor:
    """Encrypts packed slot vectors for one context and joint public key."""

    def __init__(self, ctx: HeContext, joint_public_key: bytes) -> None:
        """Loads the joint public key (BINARY, as the coordinator distributes it)."""
        self.ctx = ctx
        self._key = native.load_public_key(joint_public_key)

    def encrypt(self, slots: npt.NDArray[np.int64]) -> Iterator[bytes]:
        """Yields one BINARY ciphertext per N slots, lazily, in slot order.

        Args:
            slots: 1-D integers in [0, t), typically positionally packed fields.

        Raises:
            ValueError: if ``slots`` is empty, not 1-D, or has a value outside [0, t).
        """
        values = np.asarray(slots)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"slots must be a 1-D integer array, got {values.dtype}{values.shape}")
        if values.size == 0:
            raise ValueError("nothing to encrypt")
        if values.min() < 0 or values.max() >= self.ctx.plaintext_modulus:
            raise ValueError(f"slot values must lie in [0, {self.ctx.plaintext_modulus})")
        return self._stream(values.astype(np.int64, copy=False))

    def _stream(self, values: npt.NDArray[np.int64]) -> Iterator[bytes]:
        n = self.ctx.ring_dimension
        cc = self.ctx.native
        for start in range(0, values.size, n):
            plaintext = cc.MakePackedPlaintext(values[start : start + n].tolist())
            yield native.serialize(self.ctx.compress(cc.Encrypt(self._key, plaintext)))
