"""Poisson and Skellam samplers driven by the CSPRNG.

Every statistical test uses a seeded Csprng, so the suite is deterministic; the tolerances are
still chosen so that a correct sampler would fail them with negligible probability on any seed
(about 6 standard errors, i.e. < 1e-8 each for Gaussian-like statistics).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from crypto.codec import poisson, skellam
from crypto.codec.noise import log_factorial
from crypto.csprng import Csprng

SAMPLES = 200_000


def _rng(label: str) -> Csprng:
    return Csprng.from_seed(b"codec-noise-tests", label)


def _poisson_pmf(lam: float, k: int) -> float:
    return math.exp(k * math.log(lam) - lam - math.lgamma(k + 1))


def _chi_square(observed: dict[int, int], pmf: dict[int, float], total: int) -> tuple[float, int]:
    """Pearson statistic over cells with >= 20 expected counts, the tails pooled into one cell."""
    stat = 0.0
    cells = 0
    pooled_observed = total
    pooled_expected = float(total)
    for k, p in pmf.items():
        expected = p * total
        if expected < 20:
            continue
        stat += (observed.get(k, 0) - expected) ** 2 / expected
        cells += 1
        pooled_observed -= observed.get(k, 0)
        pooled_expected -= expected
    stat += (pooled_observed - pooled_expected) ** 2 / max(pooled_expected, 1e-9)
    return stat, cells  # cells + 1 terms, one constraint: `cells` degrees of freedom


def _counts(samples: npt.NDArray[np.int64]) -> dict[int, int]:
    values, counts = np.unique(samples, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_log_factorial_matches_lgamma_across_the_table_and_stirling_ranges() -> None:
    k = np.concatenate([np.arange(0, 200), np.array([1e3, 12345, 1e6, 1e9, 1e12])])
    expected = np.array([math.lgamma(value + 1) for value in k])
    assert np.allclose(log_factorial(k.astype(np.float64)), expected, rtol=4e-16, atol=1e-13)


@pytest.mark.parametrize("lam", [0.01, 0.5, 3.0, 9.99, 10.0, 37.5, 1000.0, 1e6])
def test_poisson_mean_and_variance_match_lambda(lam: float) -> None:
    samples = poisson(lam, SAMPLES, _rng(f"moments-{lam}"))
    assert samples.dtype == np.int64
    assert samples.min() >= 0
    # Standard errors: mean sqrt(lam/N); sample variance sqrt((mu4 - sigma^4)/N) with the
    # Poisson fourth central moment mu4 = lam + 3 lam^2.
    assert abs(samples.mean() - lam) < 6 * math.sqrt(lam / SAMPLES)
    assert abs(samples.var() - lam) < 6 * math.sqrt((lam + 2 * lam**2) / SAMPLES)


@pytest.mark.parametrize("lam", [0.7, 4.0, 10.0, 25.0, 400.0])
def test_poisson_histogram_fits_the_pmf(lam: float) -> None:
    samples = poisson(lam, SAMPLES, _rng(f"histogram-{lam}"))
    support = range(0, int(lam + 12 * math.sqrt(lam) + 12))
    stat, dof = _chi_square(_counts(samples), {k: _poisson_pmf(lam, k) for k in support}, SAMPLES)
    # Chi-square with dof degrees of freedom: mean dof, std sqrt(2 dof); 6 std above the mean
    # has tail probability below 1e-5 for every dof used here (it is heavier than Gaussian).
    assert stat < dof + 6 * math.sqrt(2 * dof)


def test_poisson_edge_cases() -> None:
    assert np.array_equal(poisson(0.0, 5, _rng("zero")), np.zeros(5, dtype=np.int64))
    assert poisson(3.0, 0, _rng("empty")).shape == (0,)
    with pytest.raises(ValueError, match="rate"):
        poisson(-1.0, 5, _rng("negative"))
    with pytest.raises(ValueError, match="rate"):
        poisson(float("nan"), 5, _rng("nan"))


def test_poisson_is_reproducible_for_a_seeded_stream_and_fresh_otherwise() -> None:
    assert np.array_equal(poisson(50.0, 100, _rng("same")), poisson(50.0, 100, _rng("same")))
    assert not np.array_equal(poisson(50.0, 100, Csprng()), poisson(50.0, 100, Csprng()))


@pytest.mark.parametrize("variance", [0.5, 20.0, 2000.0])
def test_skellam_has_the_calibrated_variance_and_zero_mean(variance: float) -> None:
    samples = skellam(variance, SAMPLES, _rng(f"skellam-{variance}"))
    # Skellam(lam, lam) has cumulants k2 = k4 = 2 lam = variance, so mu4 = variance + 3
    # variance^2 and the sample variance has standard error sqrt((variance + 2 variance^2)/N).
    assert abs(samples.mean()) < 6 * math.sqrt(variance / SAMPLES)
    assert abs(samples.var() - variance) < 6 * math.sqrt((variance + 2 * variance**2) / SAMPLES)


def test_skellam_is_symmetric_and_fits_its_pmf() -> None:
    variance = 20.0  # lam = 10: the PTRS branch at its lower edge
    samples = skellam(variance, SAMPLES, _rng("skellam-shape"))
    counts = _counts(samples)
    for k in range(1, 15):
        plus, minus = counts.get(k, 0), counts.get(-k, 0)
        # Given plus + minus, plus is Binomial(plus + minus, 1/2) under symmetry.
        assert abs(plus - minus) < 6 * math.sqrt(plus + minus), k
    lam = variance / 2
    poisson_pmf = [_poisson_pmf(lam, j) for j in range(80)]
    skellam_pmf = {
        k: sum(poisson_pmf[j + k] * poisson_pmf[j] for j in range(80) if 0 <= j + k < 80)
        for k in range(-40, 41)
    }
    stat, dof = _chi_square(counts, skellam_pmf, SAMPLES)
    assert stat < dof + 6 * math.sqrt(2 * dof)


def test_skellam_of_zero_variance_is_zero() -> None:
    assert np.array_equal(skellam(0.0, 4, _rng("none")), np.zeros(4, dtype=np.int64))


@pytest.mark.parametrize("lam", [4.0, 200.0])
def test_poisson_draws_past_one_pass_are_fresh_and_fit_the_pmf(lam: float) -> None:
    # The sampler works in passes of _CHUNK draws (bounded memory); each pass must draw new
    # randomness, not repeat the previous one.
    from crypto.codec.noise import _CHUNK

    samples = poisson(lam, 2 * _CHUNK + 7, Csprng())
    assert samples.shape == (2 * _CHUNK + 7,)
    first, second = samples[:_CHUNK], samples[_CHUNK : 2 * _CHUNK]
    assert not np.array_equal(first, second)
    for part in (first, second, samples[2 * _CHUNK :]):
        assert part.min() >= 0
    assert abs(float(samples.mean()) - lam) < 6 * math.sqrt(lam / samples.size)
    assert abs(float(second.var()) / lam - 1.0) < 0.05
