"""Negacyclic products in Z_q[x]/(x^n + 1), q = 2^k, by a float64 FFT with an exactness guard.

One operand is uniform mod 2^k (the public polynomials a_j), the other is short (a secret s or a
key sum S). The uniform operand is cut into limbs of L bits, each limb is centred to
[-2^(L-1), 2^(L-1)], and each limb times the short operand is computed exactly by a complex FFT
of length n/2 (the fold/twist trick: x^(n/2) = i folds the two halves of a polynomial into one
complex vector, and the twist by zeta^k, zeta = exp(i pi / n), turns the product mod
x^(n/2) - i into a cyclic convolution). The limb results are rounded to integers and recombined
mod 2^k.

Exactness: for a cyclic convolution of length N = 2^m computed with radix-2 FFTs in binary64,
Percival (Math. Comp. 72, 2003, Thm. 5.1) bounds the error of every output coefficient by
||x||_2 ||y||_2 ((1+eps)^(3m) (1+sqrt5 eps)^(3m+1) (1+beta)^(3m) - 1), eps = 2^-53, beta the
error of the twiddle factors. The twist of both inputs and the untwist of the output add three
more twiddle multiplications. If that bound is below 1/2, rounding gives the exact integer. The
guard computes ||y||_2 exactly, bounds ||x||_2 by sqrt(n) 2^(L-1), and picks the fewest limbs
that satisfy it (one 32-bit limb for a client secret of sigma 4.5, two 16-bit limbs for the key
sum of 100 clients).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

UINT64_MASK = (1 << 64) - 1
_EPS = 2.0**-53
# Twiddle factors from libm's sin/cos (our twist) and pocketfft's tables are within 2 ulp.
_TWIDDLE_ERROR = 2.0 * _EPS
EXACTNESS_LIMIT = 0.5


class RingError(ValueError):
    """An operand has the wrong shape or the product cannot be made exact."""


def fft_error_factor(ring_dimension: int) -> float:
    """The relative error delta of the folded negacyclic FFT product (Percival's bound).

    Returns:
        delta such that every output coefficient is within delta * ||x||_2 * ||y||_2 of the
        exact product.
    """
    levels = int(math.log2(ring_dimension // 2))
    additions = (1 + _EPS) ** (3 * levels)
    # 3 transforms of `levels` twiddle stages, the pointwise product, and 3 twists.
    products = (1 + math.sqrt(5) * _EPS) ** (3 * levels + 4)
    twiddles = (1 + _TWIDDLE_ERROR) ** (3 * levels + 3)
    return additions * products * twiddles - 1


def product_error_bound(ring_dimension: int, limb_bits: int, short_norm: float) -> float:
    """Worst-case |computed - exact| for a centred ``limb_bits`` limb times the short operand."""
    limb_norm = math.sqrt(ring_dimension) * 2.0 ** (limb_bits - 1)
    return fft_error_factor(ring_dimension) * limb_norm * short_norm


def choose_limbs(
    modulus_bits: int, ring_dimension: int, short_norm: float, short_max: int
) -> tuple[int, int]:
    """Fewest limbs, and their width, that keep every limb product exact.

    Args:
        modulus_bits: k, the width of the uniform operand.
        ring_dimension: n.
        short_norm: Exact Euclidean norm of the short operand.
        short_max: Largest |coefficient| of the short operand.

    Returns:
        (limb count, limb width in bits).

    Raises:
        RingError: if even 1-bit limbs are not exact (the short operand is far too long).
    """
    for count in range(1, modulus_bits + 1):
        width = -(-modulus_bits // count)
        exact_magnitude = ring_dimension * 2.0 ** (width - 1) * short_max
        bound = product_error_bound(ring_dimension, width, short_norm)
        if bound < EXACTNESS_LIMIT and exact_magnitude < 2.0**52:
            return count, width
    raise RingError(f"short operand of norm {short_norm:.3g} is too long for an exact FFT product")


class NegacyclicMultiplier:
    """Computes a * y mod (x^n + 1, 2^k) for many uniform a and one fixed short y."""

    def __init__(self, short: npt.NDArray[np.int64], modulus_bits: int) -> None:
        """Precomputes the spectrum of ``short`` and the limb split that keeps products exact.

        Args:
            short: The short operand (length n, a power of two), signed integers.
            modulus_bits: k, with 1 <= k <= 64.
        """
        short = np.asarray(short, dtype=np.int64)
        n = short.shape[0]
        if short.ndim != 1 or n < 4 or n & (n - 1):
            raise RingError(f"short operand must be a vector of power-of-two length, got {n}")
        if not 1 <= modulus_bits <= 64:
            raise RingError(f"modulus bits must be in 1..64, got {modulus_bits}")
        self.ring_dimension = n
        self.modulus_bits = modulus_bits
        self._mask = np.uint64((1 << modulus_bits) - 1)
        short_norm = math.sqrt(int(np.dot(short, short)))
        short_max = int(np.max(np.abs(short)))
        self.limb_count, self.limb_bits = choose_limbs(modulus_bits, n, short_norm, short_max)
        self.error_bound = product_error_bound(n, self.limb_bits, short_norm)
        # The guard is the reason products are exact; fail loudly if a change breaks it.
        assert self.error_bound < EXACTNESS_LIMIT
        half = n // 2
        self._twist = np.exp(1j * np.pi * np.arange(half) / n)
        self._untwist = np.conj(self._twist)
        self._spectrum = np.fft.fft(self._fold(short[None, :].astype(np.float64)), axis=1)[0]
        self._widths = [
            min(self.limb_bits, modulus_bits - i * self.limb_bits) for i in range(self.limb_count)
        ]
        self._correction = self._centring_correction(short)

    def _fold(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.complex128]:
        half = self.ring_dimension // 2
        folded = np.empty((values.shape[0], half), dtype=np.complex128)
        folded.real = values[:, :half]
        folded.imag = values[:, half:]
        folded *= self._twist
        return folded

    def _centring_correction(self, short: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        # Limb i is fed as x_i - 2^(w_i - 1); the dropped part is sum_i 2^(offset_i + w_i - 1)
        # times the all-ones polynomial, whose negacyclic product with y is 2 prefix(y) - sum(y).
        offset, constant = 0, 0
        for width in self._widths:
            constant += 1 << (offset + width - 1)
            offset += width
        ones_times_short = 2 * np.cumsum(short) - int(short.sum())
        scaled = ones_times_short.view(np.uint64) * np.uint64(constant & UINT64_MASK)
        return scaled & self._mask

    def wipe(self) -> None:
        """Overwrites the stored spectrum and correction (they determine a secret operand)."""
        self._spectrum[:] = 0
        self._correction[:] = 0

    def multiply(self, uniform: npt.NDArray[np.unsignedinteger]) -> npt.NDArray[np.uint64]:
        """Products of each row of ``uniform`` (values in [0, 2^k)) with the short operand.

        Args:
            uniform: Shape (blocks, n), unsigned integers below 2^k.

        Returns:
            Shape (blocks, n), the negacyclic products mod 2^k as uint64.
        """
        if uniform.ndim != 2 or uniform.shape[1] != self.ring_dimension:
            raise RingError(f"expected shape (blocks, {self.ring_dimension}), got {uniform.shape}")
        half = self.ring_dimension // 2
        total = np.broadcast_to(self._correction, uniform.shape).copy()
        offset = 0
        for width in self._widths:
            if self.limb_count == 1:
                limb = uniform.astype(np.float64)
            else:
                digits = (uniform.astype(np.uint64) >> np.uint64(offset)) & np.uint64(
                    (1 << width) - 1
                )
                limb = digits.astype(np.float64)
            limb -= float(1 << (width - 1))
            product = np.fft.ifft(np.fft.fft(self._fold(limb), axis=1) * self._spectrum, axis=1)
            product *= self._untwist
            exact = np.empty(uniform.shape, dtype=np.int64)
            exact[:, :half] = np.rint(product.real)
            exact[:, half:] = np.rint(product.imag)
            total += exact.view(np.uint64) << np.uint64(offset)
            offset += width
        total &= self._mask
        return total
