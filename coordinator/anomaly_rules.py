"""Pure detection maths for aggregate-level anomalies: bounds, baselines, status classes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto.codec import CodecConfig, inflated_norm_bound
from crypto.privacy import SkellamRound, composed_epsilon

# Scales the median absolute deviation to the standard deviation of a normal distribution, so
# that "k MADs" reads like "k sigmas".
MAD_TO_SIGMA = 1.4826

# Upload refusals by gRPC status name. Malformed: the bytes or their framing are wrong or too
# big; replayed: an upload for a task that already has an accepted one.
MALFORMED_STATUS_CODES = frozenset({"INVALID_ARGUMENT", "DATA_LOSS", "RESOURCE_EXHAUSTED"})
REPLAYED_STATUS_CODES = frozenset({"ALREADY_EXISTS"})


@dataclass(frozen=True)
class NoiseFloor:
    """What bounds the opened mean of a round: clipping, rounding and the DP noise.

    Attributes:
        clip_norm: L2 clipping norm c (model units).
        scale: Quantization scale s (integer units per model unit).
        local_noise_variance: Per-client Skellam variance per coordinate (integer units); 0
            without DP.
        contribution_bound: Largest L2 norm of one honest rounded contribution before noise,
            in integer units (the codec's inflated norm bound; the encoder refuses above it).
    """

    clip_norm: float
    scale: float
    local_noise_variance: float
    contribution_bound: float

    @classmethod
    def from_codec(cls, config: CodecConfig) -> NoiseFloor:
        """The noise floor of rounds encoded with ``config``."""
        return cls(
            clip_norm=config.clip_norm,
            scale=config.scale,
            local_noise_variance=config.local_noise_variance,
            contribution_bound=inflated_norm_bound(config),
        )


@dataclass(frozen=True)
class NormBound:
    """The norm an honest round's opened mean can reach, in model units, and its parts."""

    signal: float
    """Largest norm of the mean of honest rounded contributions: contribution_bound / s."""
    noise_expected: float
    """Typical norm of the DP noise in the mean: sqrt(d * n * local_variance) / (s * n)."""
    noise_bound: float
    """Noise norm not exceeded except with probability about exp(-t^2 / 2)."""
    allowed: float
    """signal + noise_bound."""


def aggregate_norm_bound(
    floor: NoiseFloor, contributors: int, dim: int, tail_sigmas: float
) -> NormBound:
    """The largest norm an honest round's opened mean should have.

    Every honest contribution r_i is a rounded integer vector with ||r_i|| <= B (the inflated
    norm bound, integer units). The coordinator decodes mean = R^T(sum_i r_i + z) / (s n) and
    keeps d of the P rotated coordinates; R is orthogonal and dropping coordinates never adds
    norm, so by the triangle inequality ||R^T(sum r_i) / (s n)|| <= n B / (s n) = B / s, which is
    the clip norm c plus the rounding inflation. The noise z is the sum of n independent Skellam
    draws of variance v per coordinate, so every kept coordinate of the mean's noise has
    standard deviation sigma = sqrt(n v) / (s n), and E||noise|| <= sigma sqrt(d). The norm is
    1-Lipschitz, so (treating the summed Skellam noise as Gaussian, which it is close to at
    these variances) ||noise|| > sigma (sqrt(d) + t) has probability at most exp(-t^2 / 2).
    Hence ||mean|| <= B / s + sigma (sqrt(d) + t) for an honest round.

    Args:
        floor: Codec and DP parameters of the round.
        contributors: n, the number of contributions in the opened sum (at least 1).
        dim: d, the length of the decoded mean.
        tail_sigmas: t, how many noise standard deviations above the typical noise norm are
            still considered noise.

    Returns:
        The bound and its parts.
    """
    n = max(contributors, 1)
    signal = floor.contribution_bound / floor.scale
    sigma = math.sqrt(n * floor.local_noise_variance) / (floor.scale * n)
    noise_expected = sigma * math.sqrt(dim)
    noise_bound = sigma * (math.sqrt(dim) + tail_sigmas)
    return NormBound(signal, noise_expected, noise_bound, signal + noise_bound)


def finite_norm(values: npt.NDArray[np.float64]) -> float:
    """L2 norm of ``values``, or +inf if any value is not finite (NaN must not look small)."""
    if not np.all(np.isfinite(values)):
        return math.inf
    return float(np.linalg.norm(values))


def ewma(previous: float | None, value: float, alpha: float) -> float:
    """Exponentially weighted mean: ``value`` weighs ``alpha``, the history ``1 - alpha``."""
    if previous is None:
        return value
    return alpha * value + (1.0 - alpha) * previous


def robust_upper_limit(
    history: Sequence[float], mad_multiplier: float, min_excess_fraction: float
) -> float:
    """The limit median + max(k * 1.4826 * MAD, f * median) of a non-empty ``history``.

    The MAD term ignores a few outliers in the history; the relative floor keeps a history of
    near-identical values (MAD about 0, common when rounds last exactly their window) from
    flagging a round that is only slightly longer.
    """
    median = statistics.median(history)
    mad = statistics.median(abs(value - median) for value in history)
    return median + max(mad_multiplier * MAD_TO_SIGMA * mad, min_excess_fraction * median)


def refusal_class(status_code_name: str) -> str | None:
    """``"malformed"``, ``"replayed"`` or None for a gRPC status name (``"DATA_LOSS"``...).

    Accepts ``"StatusCode.DATA_LOSS"`` and any letter case too.
    """
    name = status_code_name.strip().upper().removeprefix("STATUSCODE.")
    if name in MALFORMED_STATUS_CODES:
        return "malformed"
    if name in REPLAYED_STATUS_CODES:
        return "replayed"
    return None


class PrivacyTrajectory:
    """The cumulative epsilon the privacy plan expects after each charged round.

    Cumulative epsilon under RDP is a minimum over orders of functions affine in the number of
    rounds, hence concave: early rounds cost more than late ones and a straight line from 0 to
    the budget lies below the plan. So the reference is the plan's own curve, composed_epsilon
    of the calibrated mechanism over k rounds, not a line.
    """

    def __init__(self, mechanism: SkellamRound, delta: float, planned_rounds: int) -> None:
        """The trajectory of ``planned_rounds`` rounds of ``mechanism`` at ``delta``."""
        self.mechanism = mechanism
        self.delta = delta
        self.planned_rounds = planned_rounds
        self._cache: dict[int, float] = {}

    def epsilon_after(self, rounds: int) -> float:
        """Planned cumulative epsilon after ``rounds`` charged rounds (0 for none)."""
        if rounds <= 0:
            return 0.0
        if rounds not in self._cache:
            self._cache[rounds] = composed_epsilon(self.mechanism, rounds, self.delta)
        return self._cache[rounds]
