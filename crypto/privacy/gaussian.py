"""Central-Gaussian cross-check through dp-accounting: an optimistic reference, not a guarantee."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dp_accounting

from crypto.privacy.sampling import Sampling

DEFAULT_PLD_DISCRETIZATION = 1e-4


@dataclass(frozen=True)
class GaussianRun:
    """``rounds`` rounds of a Gaussian mechanism with noise multiplier z under ``sampling``."""

    noise_multiplier: float
    rounds: int
    sampling: Sampling = Sampling()


@dataclass(frozen=True)
class GaussianReference:
    """ε of the continuous Gaussian mechanism with the same effective noise multipliers.

    The Skellam bound is looser than the Gaussian's exact RDP, and the PLD accountant is tighter
    than any RDP conversion, so ``epsilon_pld`` is what an idealised central Gaussian at the same
    z would claim. It ignores the discreteness of the noise and is reported for comparison only.

    Attributes:
        delta: δ at which both values are computed.
        epsilon_rdp: dp-accounting ``RdpAccountant`` (its default orders, exact subsampled
            Gaussian RDP).
        epsilon_pld: dp-accounting ``PLDAccountant``, or None when not requested.
    """

    delta: float
    epsilon_rdp: float
    epsilon_pld: float | None


def _event(run: GaussianRun) -> Any:
    if run.noise_multiplier <= 0 or run.rounds < 0:
        raise ValueError("need a positive noise multiplier and a non-negative round count")
    event: Any = dp_accounting.GaussianDpEvent(run.noise_multiplier)
    if run.sampling.rate is not None and run.sampling.rate < 1.0:
        event = dp_accounting.PoissonSampledDpEvent(run.sampling.rate, event)
    return dp_accounting.SelfComposedDpEvent(event, run.rounds)


def gaussian_epsilon_rdp(runs: Sequence[GaussianRun], delta: float) -> float:
    """ε of the composed Gaussian runs under dp-accounting's RDP accountant."""
    accountant: Any = dp_accounting.rdp.RdpAccountant()
    for run in runs:
        accountant.compose(_event(run))
    return float(accountant.get_epsilon(delta))


def gaussian_epsilon_pld(
    runs: Sequence[GaussianRun],
    delta: float,
    value_discretization_interval: float = DEFAULT_PLD_DISCRETIZATION,
) -> float:
    """ε of the composed Gaussian runs under dp-accounting's PLD accountant."""
    accountant: Any = dp_accounting.pld.PLDAccountant(
        value_discretization_interval=value_discretization_interval
    )
    for run in runs:
        accountant.compose(_event(run))
    return float(accountant.get_epsilon(delta))


def gaussian_reference(
    runs: Sequence[GaussianRun], delta: float, *, with_pld: bool = True
) -> GaussianReference:
    """Both Gaussian cross-check numbers for a sequence of runs.

    Args:
        runs: Groups of identical rounds, e.g. one per distinct noise multiplier.
        delta: Target δ.
        with_pld: Also run the PLD accountant (slower: about a second per thousand Poisson
            rounds).

    Returns:
        The reference ε values.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not runs or all(run.rounds == 0 for run in runs):
        return GaussianReference(delta, 0.0, 0.0 if with_pld else None)
    pld = gaussian_epsilon_pld(runs, delta) if with_pld else None
    return GaussianReference(delta, gaussian_epsilon_rdp(runs, delta), pld)
