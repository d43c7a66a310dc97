"""Pure Rényi-DP maths: Skellam and Gaussian curves, Poisson subsampling, conversion to (ε, δ)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import special

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
RdpCurve = Callable[[IntArray], FloatArray]

DEFAULT_ORDERS: tuple[int, ...] = (*range(2, 129), 256)
"""Integer RDP orders of the DDG/Skellam reference code; integer because both the Skellam bound
and Zhu-Wang Theorem 5 are stated for integer orders."""


def validate_orders(orders: Sequence[int] | IntArray) -> IntArray:
    """Returns ``orders`` as an integer array after checking they are integers >= 2.

    Raises:
        ValueError: If an order is not an integer or is below 2, or none are given.
    """
    if len(orders) == 0:
        raise ValueError("at least one RDP order is needed")
    array = np.asarray(orders, dtype=np.float64)
    if np.any(array != np.floor(array)) or np.any(array < 2):
        raise ValueError("RDP orders must be integers >= 2 (the Skellam and Zhu-Wang bounds)")
    return array.astype(np.int64)


def skellam_rdp(
    orders: Sequence[int] | IntArray,
    l2_sensitivity: float,
    l1_sensitivity: float,
    variance: float,
) -> FloatArray:
    """RDP of the multi-dimensional Skellam mechanism, one release, no sampling.

    ε(α) = αΔ₂²/(2μ) + min(((2α−1)Δ₂² + 6Δ₁)/(4μ²), 3Δ₁/(2μ)) (Agarwal, Kairouz, Liu,
    NeurIPS 2021; the same expression as ``_skellam_rdp`` in google-research/federated
    ``distributed_dp/accounting_utils.py`` once its unscaled arguments are rescaled).

    Args:
        orders: Integer RDP orders α >= 2.
        l2_sensitivity: Δ₂ in the scaled integer domain (after rounding inflation).
        l1_sensitivity: Δ₁ in the scaled integer domain.
        variance: μ, the variance per coordinate of the total Skellam noise in the released sum
            (integer units), i.e. the sum of the contributors' local variances.

    Returns:
        ε(α) for each order.
    """
    if variance <= 0:
        raise ValueError(f"Skellam variance must be positive, got {variance}")
    if l2_sensitivity < 0 or l1_sensitivity < 0:
        raise ValueError("sensitivities must be non-negative")
    alpha = np.asarray(orders, dtype=np.float64)
    d2sq, d1, mu = l2_sensitivity**2, l1_sensitivity, variance
    leading = alpha * d2sq / (2.0 * mu)
    correction = np.minimum(((2.0 * alpha - 1.0) * d2sq + 6.0 * d1) / (4.0 * mu**2), 1.5 * d1 / mu)
    result: FloatArray = leading + correction
    return result


def gaussian_rdp(
    orders: Sequence[float] | FloatArray | IntArray, noise_multiplier: float
) -> FloatArray:
    """RDP α/(2z²) of the Gaussian mechanism with noise multiplier z = σ/Δ₂ (Mironov 2017)."""
    if noise_multiplier <= 0:
        raise ValueError(f"noise multiplier must be positive, got {noise_multiplier}")
    result: FloatArray = np.asarray(orders, dtype=np.float64) / (2.0 * noise_multiplier**2)
    return result


def poisson_subsampled_rdp(
    orders: Sequence[int] | IntArray, sampling_rate: float, base: RdpCurve
) -> FloatArray:
    """Upper bound on the RDP of a mechanism applied to a Poisson-subsampled population.

    Zhu & Wang, "Poisson Subsampled Rényi Differential Privacy", ICML 2019, Theorem 5 (general
    upper bound, any mechanism, integer α >= 2)::

        ε'(α) <= 1/(α−1) · log( (1−q)^(α−1)(αq−q+1) + C(α,2) q² (1−q)^(α−2) e^{ε(2)}
                                + 3 Σ_{l=3..α} C(α,l) q^l (1−q)^(α−l) e^{(l−1)ε(l)} )

    and, since subsampling never hurts, min(ε'(α), ε(α)), as in the DDG/Skellam reference code.

    Args:
        orders: Integer orders α >= 2.
        sampling_rate: Poisson inclusion probability q in (0, 1].
        base: The base mechanism's RDP curve, evaluated at integer orders.

    Returns:
        The amplified RDP at each order.
    """
    alphas = validate_orders(orders)
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling rate must be in (0, 1], got {sampling_rate}")
    base_at_orders = base(alphas)
    if sampling_rate == 1.0:
        return base_at_orders
    q = sampling_rate
    top = int(alphas.max())
    ls = np.arange(2, top + 1, dtype=np.int64)
    eps_l = base(ls)  # eps_l[i] = ε(ls[i])
    a = alphas.astype(np.float64)[:, None]
    lf = ls.astype(np.float64)[None, :]
    log_comb = special.gammaln(a + 1) - special.gammaln(lf + 1) - special.gammaln(a - lf + 1)
    # The l = 2 term has coefficient 1 and exponent ε(2); l >= 3 have 3 and (l−1)ε(l).
    weight = np.where(lf == 2, 0.0, math.log(3.0))
    exponent = np.where(lf == 2, eps_l[None, :], (lf - 1.0) * eps_l[None, :])
    terms = weight + log_comb + lf * math.log(q) + (a - lf) * math.log1p(-q) + exponent
    terms = np.where(lf <= a, terms, -np.inf)
    first = (a[:, 0] - 1.0) * math.log1p(-q) + np.log(a[:, 0] * q - q + 1.0)
    total = special.logsumexp(np.concatenate([first[:, None], terms], axis=1), axis=1)
    # Round-off can push a vanishing bound a few ulps below zero; RDP is non-negative.
    amplified: FloatArray = np.clip(total / (a[:, 0] - 1.0), 0.0, base_at_orders)
    return amplified


def rdp_to_epsilon(
    orders: Sequence[float] | FloatArray | IntArray, rdp: Sequence[float] | FloatArray, delta: float
) -> tuple[float, float]:
    """Converts an RDP curve to (ε, δ)-DP with dp-accounting's ``compute_epsilon``.

    That function uses the improved conversion of Canonne, Kamath, Steinke (2020), Prop. 12 /
    Asoodeh et al. (2020).

    Returns:
        (ε, the order that attains it).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    eps, order = rdp_privacy_accountant.compute_epsilon(
        [float(o) for o in orders], [float(r) for r in rdp], delta
    )
    return float(eps), float(order)
