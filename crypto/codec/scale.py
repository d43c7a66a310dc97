"""Choosing the scale s = 1/gamma so that quantized values fit the b-bit range.

Units: the clip norm c and the noise std ``local_noise_std`` are in model (unscaled) units; the
codec's ``local_noise_variance`` is in quantized units, (s * local_noise_std)^2.
"""

from __future__ import annotations

import math


def exact_mode_scale(
    bits: int, clip_norm: float, padded_length: int, num_std: float = 4.0
) -> float:
    """Scale for DP-off exact mode: one client's coordinates fit the field with margin.

    After clipping and rotation a coordinate has standard deviation about c/sqrt(P). Mapping
    ``num_std`` of them to the largest magnitude M = 2^(b-1) - 1 that rounding cannot push out
    of range gives s = M sqrt(P) / (num_std c); larger coordinates are clamped and counted.

    Args:
        bits: Field width b.
        clip_norm: Clipping norm c (model units).
        padded_length: Rotated dimension P.
        num_std: Standard deviations that must fit; 4 leaves about 6e-5 of coordinates outside
            for Gaussian-like coordinates.

    Returns:
        The scale s.
    """
    _check_bits(bits)
    _check_positive(clip_norm=clip_norm, padded_length=padded_length, num_std=num_std)
    largest = (1 << (bits - 1)) - 1
    return largest * math.sqrt(padded_length) / (num_std * clip_norm)


def modular_sum_scale(
    bits: int,
    clip_norm: float,
    padded_length: int,
    num_clients: int,
    *,
    local_noise_std: float = 0.0,
    num_std: float = 4.0,
    flatness: float = 1.0,
) -> float:
    """Scale for mod mode: ``num_std`` deviations of the aggregate fit in the modulus 2^b.

    Solves the DDG/TFF heuristic for gamma = 1/s,

        2^b = (2 k / gamma) sqrt(rho (c n)^2 / P + n (gamma^2 / 4 + sigma^2)),

    where the three terms under the root are the aggregate's per-coordinate variance in model
    units: n aligned clipped updates spread over P coordinates (rho = ``flatness``, 1 for a
    perfectly flat rotation), n rounding errors of variance at most gamma^2/4, and n local noises
    of std sigma = ``local_noise_std``. Squaring gives the closed form
    gamma^2 = (rho c^2 n^2 / P + n sigma^2) / ((2^b / 2k)^2 - n/4). With sigma = 0 this is also
    the DP-off scale for mod mode.

    Args:
        bits: Field width b.
        clip_norm: Clipping norm c (model units).
        padded_length: Rotated dimension P.
        num_clients: Number of summed updates n.
        local_noise_std: One client's noise std sigma in model units: the quantized variance
            is then ``local_noise_variance(local_noise_std, s)``.
        num_std: k, aggregate standard deviations that must fit in half the modulus.
        flatness: rho >= 1, how much worse than flat the rotated coordinates are.

    Returns:
        The scale s = 1/gamma.

    Raises:
        ValueError: If rounding noise alone overflows the range (2^b <= k sqrt(n)).
    """
    _check_bits(bits)
    _check_positive(
        clip_norm=clip_norm,
        padded_length=padded_length,
        num_clients=num_clients,
        num_std=num_std,
        flatness=flatness,
    )
    if local_noise_std < 0:
        raise ValueError(f"local_noise_std must be non-negative, got {local_noise_std}")
    headroom = ((1 << bits) / (2.0 * num_std)) ** 2 - num_clients / 4.0
    if headroom <= 0:
        raise ValueError(
            f"{bits} bits cannot hold {num_std} standard deviations of the rounding error of "
            f"{num_clients} clients; need 2^b > k sqrt(n)"
        )
    spread = flatness * (clip_norm * num_clients) ** 2 / padded_length
    gamma = math.sqrt((spread + num_clients * local_noise_std**2) / headroom)
    return 1.0 / gamma


def local_noise_variance(local_noise_std: float, scale: float) -> float:
    """Converts one client's noise std in model units to the codec's quantized variance."""
    _check_positive(scale=scale)
    if local_noise_std < 0:
        raise ValueError(f"local_noise_std must be non-negative, got {local_noise_std}")
    return (local_noise_std * scale) ** 2


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 62:
        raise ValueError(f"bits must be in [1, 62], got {bits}")


def _check_positive(**values: float) -> None:
    bad = [f"{name}={value}" for name, value in values.items() if not value > 0]
    if bad:
        raise ValueError("must be positive: " + ", ".join(bad))
