"""Vectorised Shamir secret sharing over the prime field F_p, p = 2^31 - 1.

Used for the oneshot profile's mask secrets: a vector of small signed integers is shared
coefficient-wise among k committee members so that any t of them can rebuild it (or, more
usefully, the sum of many such vectors: shares are additive). Fewer than t shares reveal nothing
about the secret: each coefficient's shares are uniformly distributed.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

FIELD_MODULUS = 2**31 - 1
ShareVector = npt.NDArray[np.int64]


class ShamirError(Exception):
    """Shares are inconsistent, too few, or badly indexed."""


def _random_field_elements(count: int) -> ShareVector:
    # 64 CSPRNG bits reduced mod p: statistical distance from uniform is below 2^-33.
    raw = np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64)
    return (raw % np.uint64(FIELD_MODULUS)).astype(np.int64)


def to_field(values: npt.NDArray[np.integer]) -> ShareVector:
    """Maps signed integers into [0, p)."""
    return np.mod(values.astype(np.int64), FIELD_MODULUS)


def from_field(values: ShareVector) -> ShareVector:
    """Maps field elements back to signed integers in (-p/2, p/2]."""
    centred = values.astype(np.int64)
    return np.where(centred > FIELD_MODULUS // 2, centred - FIELD_MODULUS, centred)


def split(
    secret: npt.NDArray[np.integer], *, shares: int, threshold: int
) -> dict[int, ShareVector]:
    """Splits a vector into ``shares`` Shamir shares, any ``threshold`` of which rebuild it.

    Args:
        secret: Signed integers with magnitude below p/2.
        shares: Number of shares k; share i is the polynomial evaluated at x = i (1-based).
        threshold: Shares t needed to rebuild; 1 <= t <= k.

    Returns:
        Mapping from evaluation point to share vector (values in [0, p)).
    """
    if not 1 <= threshold <= shares < FIELD_MODULUS:
        raise ShamirError(f"need 1 <= threshold <= shares, got t={threshold} k={shares}")
    constant = to_field(np.asarray(secret))
    coefficients = [_random_field_elements(constant.size) for _ in range(threshold - 1)]
    result: dict[int, ShareVector] = {}
    for x in range(1, shares + 1):
        # Horner's rule from the highest coefficient; int64 is safe: values < 2^31, x < 2^31.
        acc = np.zeros_like(constant)
        for coefficient in reversed(coefficients):
            acc = (acc + coefficient) % FIELD_MODULUS
            acc = (acc * x) % FIELD_MODULUS
        result[x] = (acc + constant) % FIELD_MODULUS
    return result


def lagrange_at_zero(points: list[int]) -> dict[int, int]:
    """Lagrange coefficients that interpolate the value at x = 0 from ``points``."""
    if len(set(points)) != len(points) or any(not 0 < x < FIELD_MODULUS for x in points):
        raise ShamirError(f"evaluation points must be distinct and non-zero: {points}")
    coefficients: dict[int, int] = {}
    for x_i in points:
        numerator, denominator = 1, 1
        for x_j in points:
            if x_j != x_i:
                numerator = numerator * x_j % FIELD_MODULUS
                denominator = denominator * (x_j - x_i) % FIELD_MODULUS
        coefficients[x_i] = numerator * pow(denominator, -1, FIELD_MODULUS) % FIELD_MODULUS
    return coefficients


def combine(shares: Mapping[int, ShareVector], *, threshold: int) -> ShareVector:
    """Rebuilds the shared vector (or sum of shared vectors) from at least ``threshold`` shares.

    Only the first ``threshold`` points (in ascending order) are used.

    Returns:
        The secret as signed integers.

    Raises:
        ShamirError: with fewer than ``threshold`` shares or vectors of different lengths.
    """
    if len(shares) < threshold:
        raise ShamirError(f"{len(shares)} shares cannot rebuild a {threshold}-of-k secret")
    points = sorted(shares)[:threshold]
    sizes = {shares[x].size for x in points}
    if len(sizes) != 1:
        raise ShamirError(f"share vectors differ in length: {sorted(sizes)}")
    total: ShareVector = np.zeros(sizes.pop(), dtype=np.int64)
    for x, weight in lagrange_at_zero(points).items():
        total = (total + (shares[x].astype(np.int64) % FIELD_MODULUS) * weight) % FIELD_MODULUS
    return from_field(total)


def add_shares(left: ShareVector, right: ShareVector) -> ShareVector:
    """Adds two shares held at the same point: a share of the sum of the secrets."""
    return (left.astype(np.int64) + right.astype(np.int64)) % FIELD_MODULUS


def encode_share(share: ShareVector) -> bytes:
    """Serialises a share as little-endian uint32 values (the wire format)."""
    return np.asarray(share, dtype="<u4").tobytes()


def decode_share(data: bytes, *, length: int) -> ShareVector:
    """Parses :func:`encode_share` output, checking its length and range."""
    if len(data) != 4 * length:
        raise ShamirError(f"share has {len(data)} bytes, expected {4 * length}")
    values = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if np.any(values >= FIELD_MODULUS):
        raise ShamirError("share value outside the field")
    return values
