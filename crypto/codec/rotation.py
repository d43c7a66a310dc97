"""Seeded blockwise randomized Hadamard rotation, invertible by anyone who knows the seed."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from crypto.csprng import Csprng

DEFAULT_MAX_BLOCK_SIZE = 4096
ROTATION_PURPOSE = "rotation"

FloatArray = npt.NDArray[np.float64]


def padded_length(dim: int, block_size: int) -> int:
    """Returns ``dim`` rounded up to a whole number of blocks."""
    return -(-dim // block_size) * block_size


def choose_block_size(dim: int, max_block_size: int = DEFAULT_MAX_BLOCK_SIZE) -> int:
    """Picks the Hadamard block size for a vector of ``dim`` coordinates.

    The largest power of two not above ``max_block_size`` whose zero padding is at most
    ``max(dim / 32, 16)`` coordinates: big blocks mix better, but a block that barely fits would
    nearly double a small model.

    Args:
        dim: Number of coordinates d (at least 1).
        max_block_size: Upper limit, a power of two.

    Returns:
        A power of two B with ``padded_length(dim, B) - dim <= max(dim / 32, 16)``.
    """
    if dim < 1:
        raise ValueError(f"dimension must be at least 1, got {dim}")
    _check_block_size(max_block_size)
    allowed_padding = max(dim / 32, 16)
    block = max_block_size
    while block > 1 and padded_length(dim, block) - dim > allowed_padding:
        block //= 2
    return block


def _check_block_size(block_size: int) -> None:
    if block_size < 1 or block_size & (block_size - 1):
        raise ValueError(f"block size must be a power of two, got {block_size}")


def hadamard_blocks(blocks: FloatArray) -> FloatArray:
    """Applies the normalized Walsh-Hadamard transform to every row of ``blocks``, in place.

    The normalized transform H/√B is symmetric and orthogonal, hence its own inverse.

    Args:
        blocks: C-contiguous float64 array of shape (m, B), B a power of two; overwritten.

    Returns:
        ``blocks``, transformed.
    """
    if not blocks.flags.c_contiguous:
        # The butterflies work on reshaped views; a copy would silently drop the writes.
        raise ValueError("hadamard_blocks needs a C-contiguous array")
    rows, size = blocks.shape
    _check_block_size(size)
    half = 1
    while half < size:
        # Butterfly on pairs (a, b) that are `half` apart: a <- a + b, b <- a - b.
        view = blocks.reshape(rows, size // (2 * half), 2, half)
        difference = view[:, :, 0, :] - view[:, :, 1, :]
        view[:, :, 0, :] += view[:, :, 1, :]
        view[:, :, 1, :] = difference
        half *= 2
    blocks *= 1.0 / math.sqrt(size)
    return blocks


class Rotation:
    """x -> H_blocks · diag(signs) · pad(x[permutation]), an orthogonal map from R^d to R^P.

    Every part is derived from a public seed, so the coordinator can build the same object and
    invert the rotation on the aggregate.
    """

    dim: int
    """Number of input coordinates d."""
    block_size: int
    """Hadamard block size B."""
    padded_length: int
    """Number of output coordinates P (d rounded up to a multiple of B)."""

    def __init__(
        self, permutation: npt.NDArray[np.int64], signs: npt.NDArray[np.int8], block_size: int
    ) -> None:
        """Builds a rotation from its parts; prefer :meth:`from_seed`.

        Args:
            permutation: A permutation of ``range(d)``; rotated input is ``x[permutation]``.
            signs: ±1 per padded coordinate, length a multiple of ``block_size``.
            block_size: Hadamard block size B, a power of two.
        """
        _check_block_size(block_size)
        if signs.size != padded_length(permutation.size, block_size):
            raise ValueError(
                f"{signs.size} signs do not match {permutation.size} coordinates in blocks "
                f"of {block_size}"
            )
        self._permutation = permutation
        self._signs = signs.astype(np.float64)
        self.dim = int(permutation.size)
        self.block_size = block_size
        self.padded_length = int(signs.size)

    @classmethod
    def from_seed(cls, seed: bytes, dim: int, block_size: int) -> Rotation:
        """Derives the rotation for ``dim`` coordinates from a public round seed.

        The stream ``Csprng.from_seed(seed, "rotation")`` first yields the permutation
        (``Csprng.permutation(dim)``), then the signs (``Csprng.signs(P)``).

        Args:
            seed: Public per-round seed.
            dim: Number of coordinates d.
            block_size: Hadamard block size B, a power of two.
        """
        if dim < 1:
            raise ValueError(f"dimension must be at least 1, got {dim}")
        _check_block_size(block_size)
        stream = Csprng.from_seed(seed, ROTATION_PURPOSE)
        permutation = stream.permutation(dim)
        signs = stream.signs(padded_length(dim, block_size))
        return cls(permutation, signs, block_size)

    def forward(self, values: npt.NDArray[np.floating]) -> FloatArray:
        """Rotates a vector of length d into a new float64 vector of length P."""
        if values.shape != (self.dim,):
            raise ValueError(f"expected shape ({self.dim},), got {values.shape}")
        rotated = np.zeros(self.padded_length, dtype=np.float64)
        rotated[: self.dim] = values[self._permutation]
        rotated *= self._signs
        return hadamard_blocks(rotated.reshape(-1, self.block_size)).reshape(-1)

    def inverse(self, rotated: npt.NDArray[np.floating]) -> FloatArray:
        """Maps a vector of length P back to length d, dropping the padding coordinates."""
        if rotated.shape != (self.padded_length,):
            raise ValueError(f"expected shape ({self.padded_length},), got {rotated.shape}")
        work = np.array(rotated, dtype=np.float64)
        work = hadamard_blocks(work.reshape(-1, self.block_size)).reshape(-1)
        work *= self._signs
        result = np.empty(self.dim, dtype=np.float64)
        result[self._permutation] = work[: self.dim]
        return result
