"""The device's own privacy ledger refuses the round that would exceed its budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.codec import CodecConfig
from crypto.privacy import CalibrationTarget, PrivacyLedger, RoundOutcome, calibrate
from crypto.round_codec import codec_params
from edge_worker.device_ledger import DeviceBudgetExceededError, DeviceLedger
from hefl.v1 import common_pb2 as common


def _descriptor(round_number: int, variance: float, scale: float) -> common.RoundDescriptor:
    config = CodecConfig(
        bits=16,
        sum_mode="mod",
        clip_norm=1.0,
        scale=scale,
        parameter_count=4000,
        max_summands=10,
        conditional_rounding_beta=0.6,
        local_noise_variance=variance,
    )
    return common.RoundDescriptor(
        round_number=round_number,
        codec=codec_params(config),
        dp=common.DpParams(
            enabled=True,
            local_noise_variance=variance,
            calibrated_contributors=5,
            target_delta=1e-5,
        ),
    )


def test_refuses_exactly_the_round_past_the_budget_and_survives_restarts(tmp_path: Path) -> None:
    calibration = calibrate(
        CalibrationTarget(
            epsilon=4.0,
            delta=1e-5,
            rounds=6,
            calibrated_contributors=5,
            clip=1.0,
            dim=4096,
            bits=16,
            beta=0.6,
            max_contributors=10,
            rotation_dim=4096,
        )
    )
    variance, scale = calibration.local_noise_variance, calibration.scale
    path = tmp_path / "ledger.json"
    for round_number in range(1, 7):
        ledger = DeviceLedger(path, budget_epsilon=4.0)  # reloaded from disk every round
        ledger.check(_descriptor(round_number, variance, scale))
        ledger.record(_descriptor(round_number, variance, scale))
    assert ledger.epsilon_spent == pytest.approx(calibration.epsilon, rel=1e-9)
    with pytest.raises(DeviceBudgetExceededError):
        DeviceLedger(path, budget_epsilon=4.0).check(_descriptor(7, variance, scale))
    # The same entries replayed by dp-accounting-backed PrivacyLedger give the same number.
    independent = PrivacyLedger(4.0, 1e-5)
    for round_number in range(1, 7):
        independent.record(round_number, calibration.mechanism, _joined())
    assert DeviceLedger(path, 4.0).epsilon_spent == pytest.approx(independent.epsilon_spent)


def test_rounds_without_dp_cost_nothing(tmp_path: Path) -> None:
    ledger = DeviceLedger(tmp_path / "ledger.json", budget_epsilon=1.0)
    plain = common.RoundDescriptor(round_number=1, dp=common.DpParams(enabled=False))
    ledger.check(plain)
    ledger.record(plain)
    assert ledger.epsilon_spent == 0.0
    assert not (tmp_path / "ledger.json").exists()


def _joined() -> RoundOutcome:
    return RoundOutcome.JOINED
