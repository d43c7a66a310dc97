"""Clipping, (conditional) stochastic rounding and the map between integers and b-bit fields."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto.codec.config import CodecConfig, SumMode
from crypto.csprng import Csprng

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
FieldArray = npt.NDArray[np.uint16]


def clip_l2(values: FloatArray, clip_norm: float) -> tuple[FloatArray, float, bool]:
    """Scales ``values`` down to L2 norm ``clip_norm`` if it is longer.

    Args:
        values: The update, float64.
        clip_norm: Clipping norm c > 0.

    Returns:
        The clipped vector (a new array), the norm before clipping, and whether it was clipped.
    """
    norm = float(np.linalg.norm(values))
    if norm > clip_norm:
        return values * (clip_norm / norm), norm, True
    return values.copy(), norm, False


def rounding_norm_bound(norm: float, dim: int, beta: float) -> float:
    """Upper bound on the L2 norm of a stochastically rounded vector of L2 norm ``norm``.

    Without conditioning (beta = 0) every coordinate moves by less than 1, so
    ||round(x)|| < ||x|| + sqrt(d). With conditioning, DDG Theorem 1 gives the bound that holds
    with probability at least 1 - beta per draw,
    ||round(x)||^2 <= ||x||^2 + d/4 + sqrt(2 ln(1/beta)) (||x|| + sqrt(d)/2),
    and the smaller of the two applies.

    Args:
        norm: L2 norm of the real vector x (scaled units).
        dim: Number of coordinates d.
        beta: Conditioning parameter in [0, 1).

    Returns:
        The bound, in the same units as ``norm``.
    """
    unconditional = norm + math.sqrt(dim)
    if beta == 0:
        return unconditional
    slack = math.sqrt(2.0 * math.log(1.0 / beta))
    conditional = math.sqrt(norm * norm + dim / 4.0 + slack * (norm + math.sqrt(dim) / 2.0))
    return min(unconditional, conditional)


def inflated_norm_bound(config: CodecConfig) -> float:
    """L2 sensitivity Delta_2 of one encoded update, in integer units, before noise.

    This is :func:`rounding_norm_bound` at the scaled clip norm c*s over the P padded
    coordinates; the encoder refuses to emit an update whose rounded norm exceeds it.
    """
    return rounding_norm_bound(
        config.clip_norm * config.scale, config.padded_length, config.conditional_rounding_beta
    )


def stochastic_round(values: FloatArray, rng: Csprng) -> IntArray:
    """Rounds each value up with probability equal to its fractional part, else down."""
    floor = np.floor(values)
    round_up = rng.uniform(values.size) < (values - floor)
    rounded: IntArray = (floor + round_up).astype(np.int64)
    return rounded


@dataclass(frozen=True)
class RoundingResult:
    """Output of :func:`conditional_round`."""

    values: IntArray
    """The rounded integers."""
    attempts: int
    """Stochastic rounding draws made (1 when the first one was accepted)."""
    fell_back: bool
    """True if no draw met the bound and the values were rounded toward zero instead."""


def conditional_round(
    values: FloatArray,
    beta: float,
    rng: Csprng,
    max_attempts: int,
    *,
    norm: float | None = None,
) -> RoundingResult:
    """Stochastic rounding, redrawn until the DDG Theorem 1 norm bound holds.

    With ``beta = 0`` a single unconditional draw is returned. Otherwise each draw is accepted
    with probability at least 1 - beta; after ``max_attempts`` rejected draws the values are
    rounded toward zero, which can only shrink the norm and so always meets the bound.

    Args:
        values: Scaled real vector x.
        beta: Conditioning parameter in [0, 1).
        rng: Source of the rounding randomness (fresh, secret).
        max_attempts: Draws before the fallback, at least 1.
        norm: ||x|| to put in the bound; defaults to the computed norm. Any value at least
            ||x|| keeps the guarantee, and the scaled clip norm ties the bound to the sensitivity.

    Returns:
        The rounded vector with how it was obtained.
    """
    if beta == 0:
        return RoundingResult(stochastic_round(values, rng), attempts=1, fell_back=False)
    if norm is None:
        norm = float(np.linalg.norm(values))
    bound = rounding_norm_bound(norm, values.size, beta)
    for attempt in range(1, max_attempts + 1):
        rounded = stochastic_round(values, rng)
        if integer_norm(rounded) <= bound:
            return RoundingResult(rounded, attempts=attempt, fell_back=False)
    return RoundingResult(np.trunc(values).astype(np.int64), attempts=max_attempts, fell_back=True)


def integer_norm(values: IntArray) -> float:
    """L2 norm of an integer vector, via float64 (exact while the squared norm is below 2^53)."""
    as_float = values.astype(np.float64)
    return math.sqrt(float(np.dot(as_float, as_float)))


def to_fields(values: IntArray, bits: int, sum_mode: SumMode) -> tuple[FieldArray, int]:
    """Maps signed integers to unsigned b-bit fields.

    ``"mod"``: v mod 2^b (two's complement), so field sums mod 2^b equal integer sums mod 2^b.
    ``"exact"``: clamp to [-2^(b-1), 2^(b-1) - 1], then add 2^(b-1).

    Args:
        values: Signed integers.
        bits: Field width b.
        sum_mode: ``"mod"`` or ``"exact"``.

    Returns:
        The fields (uint16) and how many values lay outside [-2^(b-1), 2^(b-1) - 1]: clamped in
        exact mode, wrapped in mod mode.
    """
    half = 1 << (bits - 1)
    outside = int(np.count_nonzero((values < -half) | (values >= half)))
    if sum_mode == "mod":
        return (values & ((1 << bits) - 1)).astype(np.uint16), outside
    return (np.clip(values, -half, half - 1) + half).astype(np.uint16), outside


def centre_sums(field_sums: IntArray, bits: int, sum_mode: SumMode, summands: int) -> IntArray:
    """Turns sums of fields back into sums of the signed integers they encode.

    ``"mod"``: the sum is only known mod 2^b; return the representative in [-2^(b-1), 2^(b-1)).
    ``"exact"``: subtract the ``summands`` offsets of 2^(b-1).

    Args:
        field_sums: Sums of fields (any representative mod 2^b in mod mode).
        bits: Field width b.
        sum_mode: ``"mod"`` or ``"exact"``.
        summands: Number of updates summed (used in exact mode).

    Returns:
        Signed integer sums.
    """
    half = 1 << (bits - 1)
    if sum_mode == "mod":
        reduced = field_sums & ((1 << bits) - 1)
        return np.where(reduced >= half, reduced - (1 << bits), reduced).astype(np.int64)
    return (field_sums - summands * half).astype(np.int64)
