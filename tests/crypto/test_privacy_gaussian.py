"""The Gaussian cross-check: the note's dp-accounting numbers and its relation to the guarantee."""

from __future__ import annotations

import math

import dp_accounting
import pytest

from crypto.privacy import (
    GaussianRun,
    Sampling,
    SkellamRound,
    composed_epsilon,
    gaussian_epsilon_rdp,
    gaussian_reference,
)


@pytest.mark.parametrize(
    ("z", "sampling", "rounds", "delta", "eps_rdp", "eps_pld"),
    [
        # notes/dp-quantized-secagg.md §3.2, dp-accounting columns
        (1.0, Sampling.poisson(100 / 3400), 1500, 1e-5, 8.159, 7.459),
        (1.0, Sampling.poisson(1e-3), 2000, 1e-6, 0.882, 0.252),
        (5.0, Sampling.none(), 100, 1e-5, 10.726, 9.997),
    ],
)
def test_reproduces_the_notes_gaussian_numbers(
    z: float, sampling: Sampling, rounds: int, delta: float, eps_rdp: float, eps_pld: float
) -> None:
    reference = gaussian_reference([GaussianRun(z, rounds, sampling)], delta)
    assert reference.epsilon_rdp == pytest.approx(eps_rdp, abs=1.5e-3)
    assert reference.epsilon_pld == pytest.approx(eps_pld, abs=1.5e-3)
    assert reference.epsilon_pld is not None and reference.epsilon_pld < reference.epsilon_rdp


def test_rdp_path_is_dp_accountings_rdp_accountant() -> None:
    runs = [GaussianRun(0.9, 40, Sampling.poisson(0.05)), GaussianRun(1.4, 60, Sampling.none())]
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(0.9)), 40
        )
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.4), 60))
    assert gaussian_epsilon_rdp(runs, 1e-6) == pytest.approx(accountant.get_epsilon(1e-6), abs=1e-6)


def test_gaussian_reference_is_optimistic_against_the_skellam_guarantee() -> None:
    mech = SkellamRound(
        clip=1.0,
        scale=200.0,
        dim=2**16,
        beta=math.exp(-0.5),
        local_noise_variance=15_000.0,
        calibrated_contributors=100,
        bits=16,
    )
    skellam = composed_epsilon(mech, 100, 1e-5)
    reference = gaussian_reference([GaussianRun(mech.noise_multiplier, 100)], 1e-5)
    assert reference.epsilon_pld is not None
    assert reference.epsilon_pld < reference.epsilon_rdp < skellam


def test_no_rounds_cost_nothing_and_pld_can_be_skipped() -> None:
    assert gaussian_reference([], 1e-5).epsilon_rdp == 0.0
    assert gaussian_reference([GaussianRun(1.0, 10)], 1e-5, with_pld=False).epsilon_pld is None
