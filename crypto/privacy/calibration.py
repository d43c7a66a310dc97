"""Choosing the scale and the local Skellam noise before training, from an (ε, δ) target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from crypto.privacy.accountant import SkellamAccountant
from crypto.privacy.mechanism import SkellamRound
from crypto.privacy.modulus import aggregate_bits, wrap_probability
from crypto.privacy.rdp import (
    DEFAULT_ORDERS,
    FloatArray,
    IntArray,
    poisson_subsampled_rdp,
    rdp_to_epsilon,
    skellam_rdp,
    validate_orders,
)
from crypto.privacy.sampling import Sampling
from crypto.privacy.sensitivity import rounded_l1_sensitivity, rounded_l2_sensitivity

DEFAULT_BETA = math.exp(-0.5)
"""Conditional-rounding β of the DDG/Skellam experiments."""

# Noise multipliers searched; outside this range the target is absurd either way.
_Z_MIN, _Z_MAX = 1e-4, 1e5
# Scales searched, relative to 1/clip.
_S_MIN, _S_MAX = 1e-9, 1e12
_FIXED_POINT_ITERATIONS = 60
_RELATIVE_TOLERANCE = 1e-12


class CalibrationError(ValueError):
    """No scale and noise meet the target within the bit budget."""


@dataclass(frozen=True)
class CalibrationTarget:
    """What the federation asks for before training starts.

    Attributes:
        epsilon: Target ε after ``rounds`` rounds.
        delta: Target δ.
        rounds: Number of rounds T the budget must cover.
        calibrated_contributors: n_min, the fewest contributors whose noise is summed.
        clip: L2 clipping norm c.
        dim: Padded dimension d (number of rounded coordinates).
        bits: Width b of the aggregate modulus.
        beta: Conditional-rounding β in [0, 1).
        sampling: Sampling assumption (default: none, every round charged in full).
        k_stddevs: Standard deviations of the aggregate that must fit the modulus.
        max_contributors: Most contributions an aggregate may hold (selection goal times
            over-selection); sizes the modulus. Defaults to ``calibrated_contributors``.
        rotation_dim: Dimension of one rotation block; defaults to ``dim``.
    """

    epsilon: float
    delta: float
    rounds: int
    calibrated_contributors: int
    clip: float
    dim: int
    bits: int
    beta: float = DEFAULT_BETA
    sampling: Sampling = field(default_factory=Sampling.none)
    k_stddevs: float = 4.0
    max_contributors: int | None = None
    rotation_dim: int | None = None

    def __post_init__(self) -> None:
        """Checks ranges."""
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"target epsilon must be positive, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.rounds < 1 or self.calibrated_contributors < 1 or self.dim < 1 or self.bits < 1:
            raise ValueError("rounds, calibrated_contributors, dim and bits must be positive")
        if self.clip <= 0 or self.k_stddevs <= 0:
            raise ValueError("clip and k_stddevs must be positive")
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")
        if (
            self.max_contributors is not None
            and self.max_contributors < self.calibrated_contributors
        ):
            raise ValueError("max_contributors must be at least calibrated_contributors")
        if self.rotation_dim is not None and not 1 <= self.rotation_dim <= self.dim:
            raise ValueError("rotation_dim must be in [1, dim]")

    @property
    def modulus_contributors(self) -> int:
        """Contributors n in the bits equation."""
        return self.max_contributors or self.calibrated_contributors

    @property
    def flat_dim(self) -> int:
        """Dimension d in the bits equation."""
        return self.rotation_dim or self.dim


@dataclass(frozen=True)
class Calibration:
    """The chosen mechanism and what it achieves.

    Attributes:
        target: The request.
        mechanism: Per-round parameters to publish in every round's descriptor.
        epsilon: ε after ``target.rounds`` rounds, from the inflated sensitivity (<= target).
        optimal_order: RDP order attaining ``epsilon``.
        aggregate_bits: Modulus width the heuristic asks for at this scale (<= target bits).
        wrap_probability: Gaussian-approximation probability that a coordinate of the
            aggregate leaves ±k standard deviations (and may wrap).
    """

    target: CalibrationTarget
    mechanism: SkellamRound
    epsilon: float
    optimal_order: float
    aggregate_bits: float
    wrap_probability: float

    @property
    def scale(self) -> float:
        """Scale s = 1/γ."""
        return self.mechanism.scale

    @property
    def local_noise_variance(self) -> float:
        """Per-client Skellam variance per coordinate, integer units."""
        return self.mechanism.local_noise_variance

    @property
    def noise_multiplier(self) -> float:
        """Effective z = √μ/Δ₂ with the inflated Δ₂."""
        return self.mechanism.noise_multiplier

    def server_error_variance(self, contributors: int | None = None) -> float:
        """Per-coordinate variance of the decoded sum's error, model units: noise plus rounding.

        Args:
            contributors: Contributors summed; defaults to ``calibrated_contributors``.
        """
        n = contributors or self.target.calibrated_contributors
        return n * (self.local_noise_variance + 0.25) / self.scale**2


def _composed_epsilon(
    alphas: IntArray, d2: float, d1: float, mu: float, sampling: Sampling, rounds: int, delta: float
) -> float:
    def base(orders: IntArray) -> FloatArray:
        return skellam_rdp(orders, d2, d1, mu)

    rate = sampling.rate
    curve = base(alphas) if rate is None else poisson_subsampled_rdp(alphas, rate, base)
    return rdp_to_epsilon(alphas, float(rounds) * curve, delta)[0]


def required_noise_multiplier(
    l2_sensitivity: float,
    l1_sensitivity: float,
    sampling: Sampling,
    rounds: int,
    delta: float,
    epsilon: float,
    orders: Sequence[int] = DEFAULT_ORDERS,
) -> float:
    """Smallest z (μ = (z·Δ₂)²) for which T rounds of the Skellam bound meet ε at δ.

    ε is decreasing in μ at every order, so this is a root of a monotone function; Brent's method
    finds it to ~1e-12 relative.

    Raises:
        CalibrationError: If even z = 1e5 does not meet the target.
    """
    alphas = validate_orders(orders)

    def excess(log_z: float) -> float:
        mu = (math.exp(log_z) * l2_sensitivity) ** 2
        return (
            _composed_epsilon(alphas, l2_sensitivity, l1_sensitivity, mu, sampling, rounds, delta)
            - epsilon
        )

    lo, hi = math.log(_Z_MIN), math.log(_Z_MAX)
    if excess(hi) > 0:
        raise CalibrationError(
            f"epsilon={epsilon} at delta={delta} over {rounds} rounds is out of reach of the "
            f"Skellam RDP bound even with noise multiplier {_Z_MAX:g}"
        )
    if excess(lo) <= 0:
        return _Z_MIN
    root = float(optimize.brentq(excess, lo, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps))
    return math.exp(root)


def _largest_scale(target: CalibrationTarget, noise_multiplier: float) -> float:
    """Largest s whose aggregate fits the bits, given z (bisection: bits grow with s).

    Raises:
        CalibrationError: If no scale fits.
    """
    n_min, n = target.calibrated_contributors, target.modulus_contributors

    def bits_at(scale: float) -> float:
        d2 = rounded_l2_sensitivity(target.clip, scale, target.dim, target.beta)
        variance = (noise_multiplier * d2) ** 2 / n_min
        return aggregate_bits(scale, target.clip, n, variance, target.flat_dim, target.k_stddevs)

    lo, hi = math.log(_S_MIN / target.clip), math.log(_S_MAX / target.clip)
    floor = bits_at(math.exp(lo))
    if floor > target.bits:
        raise CalibrationError(
            f"no scale fits the aggregate in {target.bits} bits: epsilon={target.epsilon:g} at "
            f"delta={target.delta:g} over {target.rounds} rounds needs noise multiplier "
            f"{noise_multiplier:.3f}, and the rounding inflation (Δ₂ >= "
            f"{rounded_l2_sensitivity(target.clip, math.exp(lo), target.dim, target.beta):.0f} "
            f"integer units at any scale, d={target.dim}) makes that noise need at least "
            f"{floor:.2f} bits with n={target.modulus_contributors}, k={target.k_stddevs:g}; "
            "raise bits, the target epsilon or the contributors, or lower the dimension or rounds"
        )
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if bits_at(math.exp(mid)) <= target.bits:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-14:
            break
    return math.exp(lo)


def calibrate(target: CalibrationTarget, orders: Sequence[int] = DEFAULT_ORDERS) -> Calibration:
    """Chooses the scale s and the local Skellam variance that meet ``target``.

    Larger s means less rounding inflation and less rounding error, so the solver takes the
    largest s whose aggregate still fits in ``bits``. The noise that s needs depends on s
    (Δ₂ is inflated by rounding), and s depends on the noise through the bits equation, so the
    two are iterated to a fixed point: z ← z_required(Δ₂(s)), s ← s_max(z).

    Args:
        target: The request.
        orders: Integer RDP orders.

    Returns:
        The calibration; its ``epsilon`` is computed by the same accountant as the ledger.

    Raises:
        CalibrationError: If no scale meets the target within the bit budget.
    """

    def z_at(scale: float) -> float:
        d2 = rounded_l2_sensitivity(target.clip, scale, target.dim, target.beta)
        d1 = rounded_l1_sensitivity(d2, target.dim)
        return required_noise_multiplier(
            d2, d1, target.sampling, target.rounds, target.delta, target.epsilon, orders
        )

    # The coarsest scale needs the most noise and the fewest bits: if it does not fit, none does
    # (bits grow with s once z is re-solved for Δ₂(s), since z·Δ₂(s) grows with s).
    z = z_at(_S_MIN / target.clip)
    scale = _largest_scale(target, z)
    for _ in range(_FIXED_POINT_ITERATIONS):
        z_next = z_at(scale)
        scale_next = _largest_scale(target, z_next)
        converged = abs(z_next - z) <= _RELATIVE_TOLERANCE * z
        z, scale = z_next, scale_next
        if converged:
            break
    else:
        raise CalibrationError("scale/noise fixed point did not converge")
    return _finalise(target, scale, orders)


def _finalise(target: CalibrationTarget, scale: float, orders: Sequence[int]) -> Calibration:
    """Builds the mechanism at ``scale``, nudging the noise up / the scale down past round-off."""
    n_min = target.calibrated_contributors
    for _ in range(100):
        d2 = rounded_l2_sensitivity(target.clip, scale, target.dim, target.beta)
        d1 = rounded_l1_sensitivity(d2, target.dim)
        z = required_noise_multiplier(
            d2, d1, target.sampling, target.rounds, target.delta, target.epsilon, orders
        )
        variance = (z * d2) ** 2 / n_min
        mechanism, epsilon, order = _feasible_mechanism(target, scale, variance, orders)
        bits = aggregate_bits(
            scale,
            target.clip,
            target.modulus_contributors,
            mechanism.local_noise_variance,
            target.flat_dim,
            target.k_stddevs,
        )
        if bits <= target.bits:
            return Calibration(
                target, mechanism, epsilon, order, bits, wrap_probability(target.k_stddevs)
            )
        scale *= 1.0 - 1e-9
    raise CalibrationError("could not settle a scale that fits the bits")


def _feasible_mechanism(
    target: CalibrationTarget, scale: float, variance: float, orders: Sequence[int]
) -> tuple[SkellamRound, float, float]:
    """Raises ``variance`` by round-off steps until the ledger's own accountant accepts it."""
    for _ in range(1000):
        mechanism = SkellamRound(
            clip=target.clip,
            scale=scale,
            dim=target.dim,
            beta=target.beta,
            local_noise_variance=variance,
            calibrated_contributors=target.calibrated_contributors,
            bits=target.bits,
            sampling=target.sampling,
        )
        accountant = SkellamAccountant(orders)
        accountant.compose(mechanism, target.rounds)
        epsilon, order = accountant.get_epsilon_and_order(target.delta)
        if epsilon <= target.epsilon:
            return mechanism, epsilon, order
        variance *= 1.0 + 1e-12
    raise CalibrationError("could not settle a noise variance that meets the target")
