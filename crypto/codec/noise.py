"""Exact discrete noise from the CSPRNG: vectorised Poisson sampling and symmetric Skellam noise.

Only :class:`~crypto.csprng.Csprng` uniforms are used: numpy's generators are predictable from
their outputs, which DP noise must not be.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.csprng import Csprng

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Below this rate, inversion of a precomputed CDF is cheap and exact; above, the CDF table would
# grow with lambda, and PTRS (valid for lambda >= 10) needs 1.1 to 1.3 proposals per draw.
PTRS_MIN_LAMBDA = 10.0
MAX_LAMBDA = float(1 << 50)
# P(Poisson(10) > 127) is about 1e-92, far below the 2^-53 resolution of the uniforms.
_INVERSION_SUPPORT = 128
_STIRLING_MIN = 64
_LOG_FACTORIAL_TABLE = np.array([math.lgamma(k + 1.0) for k in range(_STIRLING_MIN)])
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
# Samples drawn per pass: keeps the sampler's float temporaries to a few MB (a device's peak
# memory) and in cache, whatever the model size.
_CHUNK = 1 << 16


def log_factorial(k: FloatArray) -> FloatArray:
    """log(k!) for non-negative integer-valued floats, to about one ulp.

    A table below 64; above, the Stirling series of log Gamma(k + 1) to the 1/x^7 term, whose
    first omitted term is below 1e-19 there.
    """
    small = k < _STIRLING_MIN
    table_index = np.where(small, k, 0).astype(np.int64)
    x = np.where(small, float(_STIRLING_MIN), k + 1.0)
    inv = 1.0 / x
    inv2 = inv * inv
    series = inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))
    stirling = (x - 0.5) * np.log(x) - x + _HALF_LOG_TWO_PI + series
    result: FloatArray = np.where(small, _LOG_FACTORIAL_TABLE[table_index], stirling)
    return result


def poisson(lam: float, count: int, rng: Csprng) -> IntArray:
    """Draws ``count`` independent Poisson(``lam``) integers.

    Inversion for lam < 10, Hormann's transformed rejection with squeeze (PTRS, 1993) for
    lam >= 10. Both are exact algorithms, evaluated in double precision on 53-bit uniforms.

    Args:
        lam: Rate lambda, 0 <= lam <= 2^50.
        count: Number of samples.
        rng: Source of randomness.

    Returns:
        int64 samples.
    """
    if not 0 <= lam <= MAX_LAMBDA:
        raise ValueError(f"Poisson rate must be in [0, 2^50], got {lam}")
    if count < 0:
        raise ValueError(f"sample count must be non-negative, got {count}")
    if lam == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    sampler = _poisson_inversion if lam < PTRS_MIN_LAMBDA else _poisson_ptrs
    result = np.empty(count, dtype=np.int64)
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        result[start:stop] = sampler(lam, stop - start, rng)
    return result


def skellam(variance: float, count: int, rng: Csprng) -> IntArray:
    """Draws ``count`` symmetric Skellam integers Poisson(lam) - Poisson(lam), lam = variance/2.

    Args:
        variance: Variance 2*lam of each sample (integer units); 0 gives zeros.
        count: Number of samples.
        rng: Source of randomness (fresh and secret for DP noise).

    Returns:
        int64 samples with mean 0 and the requested variance.
    """
    lam = variance / 2.0
    noise = poisson(lam, count, rng)
    noise -= poisson(lam, count, rng)
    return noise


def _poisson_inversion(lam: float, count: int, rng: Csprng) -> IntArray:
    support = np.arange(_INVERSION_SUPPORT, dtype=np.float64)
    cdf = np.cumsum(np.exp(support * math.log(lam) - lam - log_factorial(support)))
    # X = min{k : u < F(k)}; the clamp only matters if rounding left F(127) below the largest u.
    index = np.searchsorted(cdf, rng.uniform(count), side="right")
    return np.minimum(index, _INVERSION_SUPPORT - 1).astype(np.int64)


def _poisson_ptrs(lam: float, count: int, rng: Csprng) -> IntArray:
    # Constants of W. Hormann, "The transformed rejection method for generating Poisson random
    # variables", Insurance: Mathematics and Economics 12 (1993), algorithm PTRS.
    log_lam = math.log(lam)
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    result = np.empty(count, dtype=np.int64)
    pending: npt.NDArray[np.signedinteger[Any]] = np.arange(count)
    while pending.size:
        u = rng.uniform(pending.size) - 0.5
        v = rng.uniform_open(pending.size)
        us = 0.5 - np.abs(u)
        # u = -0.5 (probability 2^-53) is the one point where the hat is undefined; redraw it.
        degenerate = us <= 0.0
        us = np.where(degenerate, 0.5, us)
        k = np.floor((2.0 * a / us + b) * u + lam + 0.43)
        quick = (us >= 0.07) & (v <= v_r)
        reject = degenerate | (k < 0) | ((us < 0.013) & (v > us))
        slow = ~quick & ~reject
        k_slow = k[slow]
        accepted = quick.copy()
        accepted[slow] = np.log(v[slow]) + log_inv_alpha - np.log(a / us[slow] ** 2 + b) <= (
            -lam + k_slow * log_lam - log_factorial(k_slow)
        )
        result[pending[accepted]] = k[accepted].astype(np.int64)
        pending = pending[~accepted]
    return result
