"""Sensitivity of a clipped, scaled and stochastically rounded update in the integer domain."""

from __future__ import annotations

import math


def rounded_l2_sensitivity(clip: float, scale: float, dim: int, beta: float) -> float:
    """L2 norm bound Δ₂ of an update after scaling by ``scale`` and (conditional) rounding.

    Kairouz, Liu, Steinke (DDG, ICML 2021), Theorem 1: stochastic rounding of a vector x ∈ ℝ^d
    yields x̃ with ‖x̃‖₂ ≤ ‖x‖₂ + √d always, and conditional rounding (resample until the bound
    holds, which it does with probability >= 1 − β per draw) enforces

        ‖x̃‖₂² ≤ ‖x‖₂² + d/4 + √(2 ln(1/β)) · (‖x‖₂ + √d/2).

    With ‖x‖₂ ≤ c·s this gives Δ₂² = min(the conditional bound, (c·s + √d)²), and (c·s + √d)²
    alone when β = 0 (unconditional rounding).

    Args:
        clip: L2 clipping norm c of the update before scaling.
        scale: Scale s = 1/γ applied before rounding.
        dim: Number of rounded coordinates d (after padding for the rotation).
        beta: Conditional-rounding parameter β in [0, 1); 0 means no conditioning.

    Returns:
        Δ₂ in integer units.
    """
    if clip <= 0 or scale <= 0:
        raise ValueError(f"clip and scale must be positive, got clip={clip}, scale={scale}")
    if dim < 1:
        raise ValueError(f"dimension must be at least 1, got {dim}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    norm = clip * scale
    root_d = math.sqrt(dim)
    unconditional = norm + root_d
    if beta == 0:
        return unconditional
    conditional_sq = (
        norm**2 + dim / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (norm + root_d / 2)
    )
    return min(unconditional, math.sqrt(conditional_sq))


def rounded_l1_sensitivity(l2_sensitivity: float, dim: int) -> float:
    """L1 bound Δ₁ = min(√d·Δ₂, Δ₂²) of an integer vector with L2 norm at most Δ₂.

    √d·Δ₂ is Cauchy-Schwarz; Δ₂² holds because every non-zero integer coordinate has |x_i| ≤ x_i².
    """
    if l2_sensitivity < 0 or dim < 1:
        raise ValueError("need a non-negative L2 bound and a positive dimension")
    return min(math.sqrt(dim) * l2_sensitivity, l2_sensitivity**2)
