"""The Skellam accountant against dp-accounting run independently in the test."""

from __future__ import annotations

import math
from dataclasses import replace

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from crypto.privacy import (
    DEFAULT_ORDERS,
    Sampling,
    SkellamAccountant,
    SkellamRound,
    composed_epsilon,
    round_rdp,
)

MECH = SkellamRound(
    clip=1.0,
    scale=400.0,
    dim=2**16,
    beta=math.exp(-0.5),
    local_noise_variance=2_500.0,
    calibrated_contributors=100,
    bits=16,
)


def _independent_skellam_curve(mech: SkellamRound) -> list[float]:
    """Transcription of the note's §1.2 formula, written out scalar by scalar."""
    c, s, d, beta = mech.clip, mech.scale, mech.dim, mech.beta
    d2_sq = min(
        (c * s) ** 2 + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (c * s + math.sqrt(d) / 2),
        (c * s + math.sqrt(d)) ** 2,
    )
    d2 = math.sqrt(d2_sq)
    d1 = min(math.sqrt(d) * d2, d2_sq)
    mu = mech.calibrated_contributors * mech.local_noise_variance
    return [
        a * d2_sq / (2 * mu) + min(((2 * a - 1) * d2_sq + 6 * d1) / (4 * mu**2), 3 * d1 / (2 * mu))
        for a in range(2, 257)
    ]


def _independent_zhu_wang(curve: list[float], alpha: int, q: float) -> float:
    """Zhu & Wang (ICML 2019) Theorem 5, one order at a time; curve[l - 2] = ε(l)."""
    logs = [(alpha - 1) * math.log(1 - q) + math.log(alpha * q - q + 1)]
    logs.append(
        math.log(math.comb(alpha, 2)) + 2 * math.log(q) + (alpha - 2) * math.log(1 - q) + curve[0]
    )
    for ell in range(3, alpha + 1):
        logs.append(
            math.log(3)
            + math.log(math.comb(alpha, ell))
            + ell * math.log(q)
            + (alpha - ell) * math.log(1 - q)
            + (ell - 1) * curve[ell - 2]
        )
    return min(float(special.logsumexp(logs)) / (alpha - 1), curve[alpha - 2])


def test_epsilon_equals_compute_epsilon_on_the_independently_computed_curve() -> None:
    full = _independent_skellam_curve(MECH)
    per_round = [full[a - 2] for a in DEFAULT_ORDERS]
    for rounds in (1, 10, 1000):
        expected, _ = rdp_privacy_accountant.compute_epsilon(
            list(DEFAULT_ORDERS), [rounds * r for r in per_round], 1e-5
        )
        assert composed_epsilon(MECH, rounds, 1e-5) == pytest.approx(expected, abs=1e-6)


def test_poisson_epsilon_equals_compute_epsilon_on_an_independent_zhu_wang() -> None:
    q = 0.03
    mech = replace(MECH, sampling=Sampling.poisson(q))
    full = _independent_skellam_curve(mech)
    per_round = [_independent_zhu_wang(full, a, q) for a in DEFAULT_ORDERS]
    np.testing.assert_allclose(round_rdp(mech), per_round, rtol=1e-10)
    expected, _ = rdp_privacy_accountant.compute_epsilon(
        list(DEFAULT_ORDERS), [500 * r for r in per_round], 1e-6
    )
    assert composed_epsilon(mech, 500, 1e-6) == pytest.approx(expected, abs=1e-6)


def test_wide_skellam_noise_gives_the_gaussian_rdp_accountants_epsilon() -> None:
    # Fine quantization: Δ₂ ≈ 1e6 so the Skellam correction terms vanish and the curve is the
    # Gaussian one; dp-accounting's RdpAccountant over the same orders must agree.
    mech = SkellamRound(
        clip=1.0,
        scale=1e6,
        dim=1024,
        beta=0.0,
        local_noise_variance=(1.2 * (1e6 + 32)) ** 2 / 10,
        calibrated_contributors=10,
        bits=32,
    )
    accountant = dp_accounting.rdp.RdpAccountant([float(a) for a in DEFAULT_ORDERS])
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.2), 300))
    assert mech.noise_multiplier == pytest.approx(1.2, rel=1e-12)
    assert composed_epsilon(mech, 300, 1e-5) == pytest.approx(
        accountant.get_epsilon(1e-5), abs=1e-6
    )


def test_composing_one_by_one_equals_composing_a_count_exactly() -> None:
    one_by_one, at_once = SkellamAccountant(), SkellamAccountant()
    for _ in range(7):
        one_by_one.compose(MECH)
    at_once.compose(MECH, 7)
    assert one_by_one.rounds == at_once.rounds == 7
    assert one_by_one.get_epsilon(1e-5) == at_once.get_epsilon(1e-5)


def test_bits_do_not_change_the_charge_and_rounds_that_differ_add_their_curves() -> None:
    wider = replace(MECH, bits=20)
    assert composed_epsilon(wider, 5, 1e-5) == composed_epsilon(MECH, 5, 1e-5)
    noisier = replace(MECH, local_noise_variance=5_000.0)
    mixed = SkellamAccountant()
    mixed.compose(MECH, 3)
    mixed.compose(noisier, 2)
    np.testing.assert_allclose(mixed.rdp(), 3 * round_rdp(MECH) + 2 * round_rdp(noisier))


def test_an_empty_accountant_has_spent_nothing() -> None:
    assert SkellamAccountant().get_epsilon(1e-5) == 0.0


@settings(max_examples=25, deadline=None)
@given(factor=st.floats(1.05, 20.0), rounds=st.integers(1, 2000))
def test_more_noise_means_less_epsilon_and_more_rounds_more(factor: float, rounds: int) -> None:
    noisier = replace(MECH, local_noise_variance=MECH.local_noise_variance * factor)
    assert composed_epsilon(noisier, rounds, 1e-5) < composed_epsilon(MECH, rounds, 1e-5)
    assert composed_epsilon(MECH, rounds + 1, 1e-5) > composed_epsilon(MECH, rounds, 1e-5)


@pytest.mark.parametrize("q", [0.5, 0.1, 0.01])
def test_poisson_sampling_only_ever_lowers_epsilon(q: float) -> None:
    sampled = replace(MECH, sampling=Sampling.poisson(q))
    assert composed_epsilon(sampled, 100, 1e-5) < composed_epsilon(MECH, 100, 1e-5)


def test_sampling_strings_round_trip_exactly() -> None:
    q = 100 / 3400
    assert Sampling.parse(str(Sampling.poisson(q))) == Sampling.poisson(q)
    assert str(Sampling.none()) == "none" and Sampling.parse("none") == Sampling()
    with pytest.raises(ValueError):
        Sampling.parse("uniform:0.1")
    with pytest.raises(ValueError):
        Sampling.poisson(0.0)
