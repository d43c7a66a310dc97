"""Pure RDP maths: rounding-inflated sensitivities, the Skellam bound and Zhu-Wang subsampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from crypto.privacy import (
    DEFAULT_ORDERS,
    gaussian_rdp,
    poisson_subsampled_rdp,
    rdp_to_epsilon,
    rounded_l1_sensitivity,
    rounded_l2_sensitivity,
    skellam_rdp,
)
from crypto.privacy.rdp import FloatArray, IntArray


def test_unconditional_rounding_adds_root_d() -> None:
    assert rounded_l2_sensitivity(2.0, 100.0, 2**16, 0.0) == pytest.approx(200.0 + 256.0)


def test_conditional_rounding_bound_matches_ddg_theorem_1() -> None:
    c, s, d, beta = 1.0, 300.0, 2**20, math.exp(-0.5)
    norm = c * s
    expected_sq = norm**2 + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (norm + math.sqrt(d) / 2)
    assert rounded_l2_sensitivity(c, s, d, beta) == pytest.approx(math.sqrt(expected_sq))
    # Conditioning only ever helps: the unconditional bound is the cap.
    assert rounded_l2_sensitivity(c, s, d, beta) < norm + math.sqrt(d)
    tiny_d = rounded_l2_sensitivity(1.0, 1000.0, 1, 1e-300)
    assert tiny_d == pytest.approx(1001.0)


def test_l1_bound_is_the_smaller_of_cauchy_schwarz_and_integrality() -> None:
    assert rounded_l1_sensitivity(10.0, 10_000) == pytest.approx(100.0)  # Δ₂² < √d·Δ₂
    assert rounded_l1_sensitivity(1000.0, 16) == pytest.approx(4000.0)  # √d·Δ₂ < Δ₂²


def test_skellam_curve_is_the_published_formula_and_scale_invariant_like_the_reference() -> None:
    orders = np.array(DEFAULT_ORDERS)
    d2, d1, mu = 450.0, 9_000.0, 3.0e5
    expected = [
        a * d2**2 / (2 * mu) + min(((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 3 * d1 / (2 * mu))
        for a in DEFAULT_ORDERS
    ]
    np.testing.assert_allclose(skellam_rdp(orders, d2, d1, mu), expected, rtol=1e-14)
    # The reference code writes the bound in model units with the scale s explicit; the same
    # numbers come out of the integer-domain form.
    s = 37.0
    l2, l1, var = d2 / s, d1 / s, mu / s**2
    reference = [
        a / (2 * var) * l2**2
        + min(((2 * a - 1) * s * l2**2 + 6 * l1) / (4 * s**3 * var**2), 3 * l1 / (2 * s * var))
        for a in DEFAULT_ORDERS
    ]
    np.testing.assert_allclose(skellam_rdp(orders, d2, d1, mu), reference, rtol=1e-12)


def _skellam_logpmf(k: IntArray, variance: float) -> FloatArray:
    # Symmetric Skellam(λ, λ): P(k) = e^{-2λ} I_|k|(2λ) = ive(|k|, 2λ); scipy.stats.skellam's
    # tails are too inaccurate for high Rényi orders.
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(special.ive(np.abs(k), variance)), dtype=np.float64)


def _exact_shifted_skellam_renyi(alpha: int, shift: int, variance: float) -> float:
    """D_α(Sk + shift ‖ Sk) for the 1-D symmetric Skellam of the given variance, by summation."""
    width = int(30 * math.sqrt(variance)) + 30
    support = np.arange(-width, width + 1)
    log_p = _skellam_logpmf(support - shift, variance)
    log_q = _skellam_logpmf(support, variance)
    # Far tails underflow to -inf; they carry no mass at this width.
    finite = np.isfinite(log_p) & np.isfinite(log_q)
    terms = alpha * log_p[finite] + (1 - alpha) * log_q[finite]
    return float(special.logsumexp(terms)) / (alpha - 1)


@pytest.mark.parametrize(
    ("shift", "variance"), [(1, 2.0), (1, 100.0), (3, 30.0), (5, 400.0), (10, 1e4), (300, 1e5)]
)
def test_skellam_bound_dominates_the_exact_renyi_divergence_in_one_dimension(
    shift: int, variance: float
) -> None:
    orders = [2, 3, 5, 8, 16, 32, 128]
    bound = skellam_rdp(orders, float(shift), float(shift), variance)
    exact = np.array([_exact_shifted_skellam_renyi(a, shift, variance) for a in orders])
    assert np.all(bound >= exact * (1 - 1e-9))
    # and is close to it at moderate orders when the noise is wide compared with the shift
    if variance >= 100 * shift**2:
        assert np.all(bound[:6] <= 1.05 * exact[:6])


def test_skellam_approaches_gaussian_when_noise_is_wide() -> None:
    z, d2 = 1.3, 1.0e6
    mu = (z * d2) ** 2
    np.testing.assert_allclose(
        skellam_rdp(DEFAULT_ORDERS, d2, d2**2, mu), gaussian_rdp(DEFAULT_ORDERS, z), rtol=1e-9
    )


def test_zhu_wang_without_subsampling_is_the_base_curve() -> None:
    curve = poisson_subsampled_rdp(DEFAULT_ORDERS, 1.0, lambda a: gaussian_rdp(a, 0.8))
    np.testing.assert_array_equal(curve, gaussian_rdp(DEFAULT_ORDERS, 0.8))


@pytest.mark.parametrize(("z", "q"), [(0.7, 0.01), (1.0, 100 / 3400), (2.0, 0.2), (0.5, 1e-3)])
def test_zhu_wang_upper_bounds_the_exact_subsampled_gaussian(z: float, q: float) -> None:
    orders = np.array(DEFAULT_ORDERS, dtype=float)
    exact = rdp_privacy_accountant._compute_rdp_poisson_subsampled_gaussian(q, z, orders)
    bound = poisson_subsampled_rdp(DEFAULT_ORDERS, q, lambda a: gaussian_rdp(a, z))
    assert np.all(bound >= exact * (1 - 1e-9))
    assert np.all(bound <= gaussian_rdp(DEFAULT_ORDERS, z))
    # Equal at α = 2; from α = 3 on, Theorem 5's factor 3 makes it looser.
    assert bound[0] == pytest.approx(exact[0], rel=1e-9)
    assert bound[1] > exact[1]


def test_zhu_wang_reproduces_the_notes_generic_bound_noise_multiplier() -> None:
    # notes/dp-quantized-secagg.md §1.3: with the generic Zhu-Wang bound, ε = 8 at
    # q = 100/3400, T = 1500, δ = 1e-5 needs z* = 1.0885 (1.0111 with the exact Gaussian RDP).
    curve = poisson_subsampled_rdp(DEFAULT_ORDERS, 100 / 3400, lambda a: gaussian_rdp(a, 1.0885))
    eps, _ = rdp_to_epsilon(DEFAULT_ORDERS, 1500 * curve, 1e-5)
    assert eps == pytest.approx(8.0, abs=2e-3)


@settings(max_examples=40, deadline=None)
@given(
    q=st.floats(1e-4, 0.9),
    var_low=st.floats(1e2, 1e6),
    factor=st.floats(1.01, 10.0),
)
def test_more_noise_never_costs_more_at_any_order(q: float, var_low: float, factor: float) -> None:
    d2, d1 = 100.0, 1000.0

    def curve(var: float) -> FloatArray:
        return poisson_subsampled_rdp(DEFAULT_ORDERS, q, lambda a: skellam_rdp(a, d2, d1, var))

    assert np.all(curve(var_low * factor) <= curve(var_low))


def test_orders_must_be_integers_of_at_least_two() -> None:
    with pytest.raises(ValueError, match="integers"):
        fractional: list[int] = [2, 1.5]  # type: ignore[list-item]
        poisson_subsampled_rdp(fractional, 0.1, lambda a: gaussian_rdp(a, 1.0))
    with pytest.raises(ValueError, match="integers"):
        poisson_subsampled_rdp([1], 0.1, lambda a: gaussian_rdp(a, 1.0))


def test_rdp_to_epsilon_is_dp_accountings_conversion() -> None:
    rdp = 200 * gaussian_rdp(DEFAULT_ORDERS, 3.0)
    expected = rdp_privacy_accountant.compute_epsilon(list(DEFAULT_ORDERS), list(rdp), 1e-6)
    assert rdp_to_epsilon(DEFAULT_ORDERS, rdp, 1e-6) == (expected[0], expected[1])
