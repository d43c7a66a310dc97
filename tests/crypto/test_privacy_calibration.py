"""Calibration: the target is met (not wastefully), the aggregate fits the bits, refusals."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from crypto.privacy import (
    DEFAULT_ORDERS,
    CalibrationError,
    CalibrationTarget,
    Sampling,
    aggregate_bits,
    calibrate,
    required_noise_multiplier,
    rounded_l1_sensitivity,
    rounded_l2_sensitivity,
    skellam_rdp,
)
from crypto.privacy.__main__ import main

BETA = math.exp(-0.5)
NOTE_Q = 100 / 3400
# notes/dp-quantized-secagg.md §1.3: central Gaussian z* at ε = 8 under the same generic
# Zhu-Wang machinery (reproduced in test_privacy_rdp.py).
NOTE_Z_STAR = 1.0885

TARGET = CalibrationTarget(
    epsilon=8.0,
    delta=1e-5,
    rounds=1000,
    calibrated_contributors=100,
    clip=1.0,
    dim=2**16,
    bits=16,
    beta=BETA,
)


def test_meets_the_target_within_a_hair_and_fits_the_bits() -> None:
    result = calibrate(TARGET)
    assert result.epsilon <= TARGET.epsilon
    assert result.epsilon >= 0.999 * TARGET.epsilon
    assert result.aggregate_bits <= TARGET.bits
    assert result.aggregate_bits == pytest.approx(TARGET.bits, abs=1e-6)
    # Independent check: the same curve, composed and converted by dp-accounting directly.
    mech = result.mechanism
    d2 = rounded_l2_sensitivity(mech.clip, mech.scale, mech.dim, mech.beta)
    d1 = rounded_l1_sensitivity(d2, mech.dim)
    curve = skellam_rdp(DEFAULT_ORDERS, d2, d1, 100 * mech.local_noise_variance)
    expected, _ = rdp_privacy_accountant.compute_epsilon(
        list(DEFAULT_ORDERS), list(TARGET.rounds * curve), TARGET.delta
    )
    assert result.epsilon == pytest.approx(expected, abs=1e-6)


def test_reports_the_effective_noise_multiplier_from_the_inflated_sensitivity() -> None:
    result = calibrate(TARGET)
    mech = result.mechanism
    assert mech.l2_sensitivity > mech.clip * mech.scale
    assert result.noise_multiplier < mech.nominal_noise_multiplier
    assert result.noise_multiplier == pytest.approx(
        math.sqrt(100 * mech.local_noise_variance) / mech.l2_sensitivity
    )


def test_the_scale_is_the_largest_that_fits() -> None:
    result = calibrate(TARGET)
    bigger = result.scale * 1.001
    d2 = rounded_l2_sensitivity(TARGET.clip, bigger, TARGET.dim, TARGET.beta)
    z = required_noise_multiplier(
        d2,
        rounded_l1_sensitivity(d2, TARGET.dim),
        TARGET.sampling,
        TARGET.rounds,
        TARGET.delta,
        TARGET.epsilon,
    )
    variance = (z * d2) ** 2 / TARGET.calibrated_contributors
    assert aggregate_bits(bigger, 1.0, 100, variance, TARGET.dim) > TARGET.bits


@pytest.mark.parametrize(
    ("dim", "beta", "bits", "note_ratio"),
    [
        (2**16, 0.0, 12, 4.97),
        (2**16, 0.0, 16, 1.08),
        (2**20, BETA, 14, 1.08),
        (2**20, 0.0, 16, 1.34),
        (2**22, 0.0, 16, 1.89),
        (2**22, BETA, 18, 1.001),
    ],
)
def test_reproduces_the_notes_bits_sweep(
    dim: int, beta: float, bits: int, note_ratio: float
) -> None:
    # §1.3 table: server error variance (Skellam noise + n γ²/4 rounding) over the central
    # Gaussian variance (z* c)² at the same ε; c = 1, k = 4, n = 100, q = 100/3400, T = 1500.
    target = CalibrationTarget(
        epsilon=8.0,
        delta=1e-5,
        rounds=1500,
        calibrated_contributors=100,
        clip=1.0,
        dim=dim,
        bits=bits,
        beta=beta,
        sampling=Sampling.poisson(NOTE_Q),
    )
    result = calibrate(target)
    ratio = result.server_error_variance() / NOTE_Z_STAR**2
    assert ratio == pytest.approx(note_ratio, rel=0.006, abs=0.002)


@pytest.mark.parametrize(
    ("dim", "beta", "bits", "sampling", "rounds"),
    [
        (2**20, BETA, 12, Sampling.poisson(NOTE_Q), 1500),  # "inf" in the note's table
        (2**22, 0.0, 14, Sampling.poisson(NOTE_Q), 1500),  # "inf" in the note's table
        (2**20, BETA, 16, Sampling.none(), 1000),  # no amplification: z ≈ 20 needs 16.3 bits
    ],
)
def test_refuses_targets_no_scale_can_meet(
    dim: int, beta: float, bits: int, sampling: Sampling, rounds: int
) -> None:
    target = replace(TARGET, dim=dim, beta=beta, bits=bits, sampling=sampling, rounds=rounds)
    with pytest.raises(CalibrationError, match="no scale fits the aggregate"):
        calibrate(target)


def test_more_bits_buy_less_error_and_more_rounds_need_more_noise() -> None:
    errors = [calibrate(replace(TARGET, bits=b)).server_error_variance() for b in (15, 16, 18)]
    assert errors[0] > errors[1] > errors[2]
    multipliers = [calibrate(replace(TARGET, rounds=t)).noise_multiplier for t in (10, 100, 1000)]
    assert multipliers[0] < multipliers[1] < multipliers[2]


def test_headroom_for_over_selection_and_blockwise_rotation_costs_scale() -> None:
    base = calibrate(TARGET).scale
    assert calibrate(replace(TARGET, max_contributors=130)).scale < base
    assert calibrate(replace(TARGET, rotation_dim=2**12)).scale < base


def test_rejects_malformed_targets() -> None:
    with pytest.raises(ValueError):
        replace(TARGET, epsilon=0.0)
    with pytest.raises(ValueError):
        replace(TARGET, beta=1.0)
    with pytest.raises(ValueError):
        replace(TARGET, max_contributors=50)


def test_command_line_prints_the_calibration_and_refuses_impossible_targets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["--epsilon", "8", "--delta", "1e-5", "--rounds", "1000", "--contributors", "100"]
    common += ["--clip", "1"]
    assert main([*common, "--dim", "65536", "--bits", "16"]) == 0
    out = capsys.readouterr().out
    assert "epsilon after 1000 rounds" in out and "rounds the budget allows      1000" in out
    assert main([*common, "--dim", "1048576", "--bits", "16"]) == 2
    assert "no scale fits the aggregate in 16 bits" in capsys.readouterr().err
