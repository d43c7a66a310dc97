"""The discrete Gaussian samplers: exact table, statistics, tail, and fresh randomness."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import poisson

from crypto.csprng import Csprng
from crypto.oneshot.params import ERROR_STDDEV, SECRET_STDDEV
from crypto.oneshot.sampling import DiscreteGaussian, discrete_gaussian

SAMPLES = 400_000


def true_pmf(stddev: float, tail: int) -> npt.NDArray[np.float64]:
    support = np.arange(-tail, tail + 1)
    weights = np.exp(-(support.astype(float) ** 2) / (2 * stddev**2))
    result: npt.NDArray[np.float64] = weights / weights.sum()
    return result


@pytest.mark.parametrize("stddev", [SECRET_STDDEV, ERROR_STDDEV])
def test_table_matches_the_discrete_gaussian(stddev: float) -> None:
    sampler = discrete_gaussian(stddev)
    assert sampler.tail_bound >= 13 * stddev
    table = np.array(sampler.probabilities())
    np.testing.assert_allclose(table, true_pmf(stddev, sampler.tail_bound), rtol=0, atol=1e-15)
    assert sampler.statistical_distance < 2.0**-120


@pytest.mark.parametrize("stddev", [SECRET_STDDEV, ERROR_STDDEV])
def test_sample_mean_std_and_tail(stddev: float) -> None:
    sampler = discrete_gaussian(stddev)
    values = sampler.sample(Csprng(), SAMPLES)
    assert values.dtype == np.int64
    # Standard errors: stddev / sqrt(N) for the mean, about stddev / sqrt(2N) for the std.
    assert abs(values.mean()) < 6 * stddev / math.sqrt(SAMPLES)
    assert values.std() == pytest.approx(stddev, rel=6 / math.sqrt(2 * SAMPLES))
    assert np.abs(values).max() <= sampler.tail_bound
    # The tail beyond 4 sigma holds the discrete Gaussian's exact mass there: the count is
    # Poisson, and either side of it is at least one in a million likely.
    support = np.arange(-sampler.tail_bound, sampler.tail_bound + 1)
    expected = SAMPLES * true_pmf(stddev, sampler.tail_bound)[np.abs(support) > 4 * stddev].sum()
    beyond = np.count_nonzero(np.abs(values) > 4 * stddev)
    assert poisson.cdf(beyond, expected) > 1e-6, (beyond, expected)
    assert poisson.sf(beyond - 1, expected) > 1e-6, (beyond, expected)


def test_frequencies_pass_a_chi_square_test() -> None:
    sampler = discrete_gaussian(SECRET_STDDEV)
    values = sampler.sample(Csprng(), SAMPLES)
    tail = sampler.tail_bound
    pmf = true_pmf(SECRET_STDDEV, tail)
    observed = np.bincount(values + tail, minlength=2 * tail + 1)
    expected = pmf * SAMPLES
    central = expected > 20
    chi2 = float((((observed - expected) ** 2 / expected)[central]).sum())
    dof = int(central.sum()) - 1
    # Far in the tail of chi-square(dof): a false alarm is below 1e-9.
    assert chi2 < dof + 12 * math.sqrt(2 * dof)


def test_samples_are_driven_only_by_the_generator() -> None:
    sampler = DiscreteGaussian(SECRET_STDDEV)
    first = sampler.sample(Csprng.from_seed(b"test", "dg"), 5000)
    again = sampler.sample(Csprng.from_seed(b"test", "dg"), 5000)
    np.testing.assert_array_equal(first, again)
    fresh = sampler.sample(Csprng(), 5000)
    assert np.count_nonzero(fresh == first) < 1000


def test_stddev_outside_the_supported_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="stddev"):
        DiscreteGaussian(0.1)
