"""How many bits the noisy aggregate needs: the DDG/Skellam k-standard-deviation heuristic."""

from __future__ import annotations

import math


def aggregate_bits(
    scale: float,
    clip: float,
    contributors: int,
    local_noise_variance: float,
    rotation_dim: int,
    k_stddevs: float = 4.0,
) -> float:
    """Modulus width b (real-valued) so that k standard deviations of a coordinate of the sum fit.

    Kairouz, Liu, Steinke (DDG), Sections 4.2 and 4.4, as used for scale selection in both papers'
    code and in TFF's distributed DP aggregator::

        2^b = (2k/γ) · √( (c·n)²/d + n·(γ²/4 + σ²) )

    with γ = 1/s, σ the local noise standard deviation in model units (σ² = variance / s²) and
    flatness ρ = 1 for the randomized Hadamard rotation. In integer units that is
    2k · √( (s·c·n)²/d + n/4 + n·variance ).

    Args:
        scale: s = 1/γ.
        clip: L2 clipping norm c.
        contributors: n, the most contributions the aggregate may hold.
        local_noise_variance: Per-client noise variance per coordinate, integer units.
        rotation_dim: d of the rotation that flattens the update (the rotation block size when
            the update is rotated blockwise: one block can hold the whole norm).
        k_stddevs: k; 4 gives a Gaussian-approximation wrap probability of 6e-5 per coordinate.

    Returns:
        log2 of the modulus the heuristic asks for.
    """
    if scale <= 0 or clip <= 0 or contributors < 1 or rotation_dim < 1 or k_stddevs <= 0:
        raise ValueError("scale, clip, contributors, rotation_dim and k_stddevs must be positive")
    if local_noise_variance < 0:
        raise ValueError("local noise variance must be non-negative")
    n = float(contributors)
    signal = (scale * clip * n) ** 2 / rotation_dim
    variance = signal + n / 4.0 + n * local_noise_variance
    return math.log2(2.0 * k_stddevs) + 0.5 * math.log2(variance)


def wrap_probability(k_stddevs: float) -> float:
    """Per-coordinate probability that a Gaussian leaves ±k standard deviations: erfc(k/√2)."""
    return math.erfc(k_stddevs / math.sqrt(2.0))
