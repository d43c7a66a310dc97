"""The privacy-relevant parameters of one round of the distributed Skellam mechanism."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from crypto.privacy.sampling import Sampling
from crypto.privacy.sensitivity import rounded_l1_sensitivity, rounded_l2_sensitivity

MECHANISM_NAME = "skellam"

PrivacyKey = tuple[float, float, int, float, float, int, str]
"""(clip, scale, dim, beta, local_noise_variance, calibrated_contributors, str(sampling))."""


@dataclass(frozen=True)
class SkellamRound:
    """What a round does to a user's update, as far as privacy is concerned.

    Each contributor clips its update to L2 norm ``clip``, rotates it, scales it by ``scale``,
    rounds it (conditionally, with ``beta``) to integers and adds symmetric Skellam noise of
    variance ``local_noise_variance`` per coordinate. The released sum carries Skellam noise of
    variance at least ``calibrated_contributors * local_noise_variance``: a round with fewer
    contributors is abandoned unopened.

    Attributes:
        clip: L2 clipping norm c (model units).
        scale: Scale s = 1/γ applied before rounding.
        dim: Number of rounded coordinates d, after padding.
        beta: Conditional-rounding parameter β in [0, 1); 0 for plain stochastic rounding.
        local_noise_variance: Per-client Skellam variance per coordinate, integer units (2λ).
        calibrated_contributors: Fewest contributors whose noise is summed (n_min).
        bits: Width b of the aggregate modulus; recorded, does not affect privacy.
        sampling: Sampling assumption of the accountant.
    """

    clip: float
    scale: float
    dim: int
    beta: float
    local_noise_variance: float
    calibrated_contributors: int
    bits: int
    sampling: Sampling = field(default_factory=Sampling.none)

    def __post_init__(self) -> None:
        """Checks ranges; the sensitivity helpers check clip, scale, dim and beta."""
        if not (math.isfinite(self.local_noise_variance) and self.local_noise_variance > 0):
            raise ValueError(
                f"local noise variance must be positive, got {self.local_noise_variance}"
            )
        if self.calibrated_contributors < 1:
            raise ValueError("calibrated_contributors must be at least 1")
        if self.bits < 1:
            raise ValueError(f"bits must be positive, got {self.bits}")
        rounded_l2_sensitivity(self.clip, self.scale, self.dim, self.beta)

    @property
    def l2_sensitivity(self) -> float:
        """Δ₂ in integer units, including the rounding inflation."""
        return rounded_l2_sensitivity(self.clip, self.scale, self.dim, self.beta)

    @property
    def l1_sensitivity(self) -> float:
        """Δ₁ in integer units."""
        return rounded_l1_sensitivity(self.l2_sensitivity, self.dim)

    @property
    def central_variance(self) -> float:
        """μ: variance of the total noise in the released sum, integer units."""
        return self.calibrated_contributors * self.local_noise_variance

    @property
    def noise_multiplier(self) -> float:
        """Effective noise multiplier √μ / Δ₂, with the inflated sensitivity."""
        return math.sqrt(self.central_variance) / self.l2_sensitivity

    @property
    def nominal_noise_multiplier(self) -> float:
        """√μ / (c·s): what the noise multiplier would be without rounding inflation."""
        return math.sqrt(self.central_variance) / (self.clip * self.scale)

    @property
    def local_stddev(self) -> float:
        """Per-client noise standard deviation in model units (σ = √variance / s)."""
        return math.sqrt(self.local_noise_variance) / self.scale

    def privacy_key(self) -> PrivacyKey:
        """The fields that determine the round's RDP curve (everything except ``bits``)."""
        return (
            self.clip,
            self.scale,
            self.dim,
            self.beta,
            self.local_noise_variance,
            self.calibrated_contributors,
            str(self.sampling),
        )
