"""The federation's codec and privacy plan: calibrated once, before the first round.

With DP on, the target (epsilon, delta, rounds) and the quantization settings fix the scale and
the per-client Skellam noise (crypto.privacy.calibrate); every round publishes them in its
descriptor, and the ledger refuses a round that would exceed the budget before anyone spends
anything. With DP off, the scale only has to fit the b-bit fields.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from coordinator.config import CoordinatorConfig
from coordinator.store import Store
from crypto.codec import CodecConfig, choose_block_size, exact_mode_scale, modular_sum_scale
from crypto.codec.rotation import padded_length
from crypto.privacy import (
    BudgetExceededError,
    CalibrationTarget,
    LedgerEntry,
    PrivacyLedger,
    RoundOutcome,
    Sampling,
    SkellamRound,
    calibrate,
)
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)

_DEFAULT_BETA = math.exp(-0.5)


class BudgetRefusedError(Exception):
    """The next round would exceed the privacy budget; it must not start."""


@dataclass
class RoundPlan:
    """What every round of the federation uses, plus the ledger that charges them."""

    codec: CodecConfig
    mechanism: SkellamRound | None
    ledger: PrivacyLedger | None
    delta: float

    def dp_params(self) -> common.DpParams:
        """The DpParams of the next round, with its charge previewed by the ledger."""
        if self.mechanism is None or self.ledger is None:
            return common.DpParams(enabled=False)
        charge = self.ledger.preview(self.mechanism)
        return common.DpParams(
            enabled=True,
            local_noise_variance=self.mechanism.local_noise_variance,
            calibrated_contributors=self.mechanism.calibrated_contributors,
            target_delta=self.delta,
            epsilon_increment=charge.epsilon_increment,
            epsilon_after_round=charge.epsilon_cumulative,
        )

    def check_budget(self) -> None:
        """Raises BudgetRefusedError if the next round would exceed the budget."""
        if self.mechanism is None or self.ledger is None:
            return
        try:
            self.ledger.check(self.mechanism)
        except BudgetExceededError as error:
            raise BudgetRefusedError(error.charge.reason) from error

    def record(
        self, store: Store, round_number: int, published: bool, contributors: int
    ) -> LedgerEntry | None:
        """Charges a round that ran (published or abandoned after its descriptor went out)."""
        if self.mechanism is None or self.ledger is None:
            return None
        entry = self.ledger.record(
            round_number,
            self.mechanism,
            RoundOutcome.COMPLETED if published else RoundOutcome.ABANDONED,
            actual_contributors=contributors,
        )
        store.record_ledger_entry(round_number, entry.to_dict())
        return entry

    def summary(self) -> tuple[float, float, float]:
        """(epsilon spent, budget, delta); zeros without DP."""
        if self.ledger is None:
            return 0.0, 0.0, 0.0
        return self.ledger.epsilon_spent, self.ledger.budget_epsilon, self.ledger.delta


def make_plan(
    config: CoordinatorConfig, store: Store, parameter_count: int, max_summands: int
) -> RoundPlan:
    """Calibrates the codec and noise for the federation and rebuilds its ledger from the store.

    Raises:
        crypto.privacy.CalibrationError: if no scale meets the privacy target within b bits.
    """
    settings, privacy = config.codec, config.privacy
    block = choose_block_size(parameter_count)
    padded = padded_length(parameter_count, block)
    beta = settings.rounding_beta
    if beta < 0:
        beta = _DEFAULT_BETA if privacy.enabled else 0.0
    mode = settings.sum_mode
    if mode == "auto":
        mode = "mod" if privacy.enabled else "exact"
    mechanism: SkellamRound | None = None
    ledger: PrivacyLedger | None = None
    if privacy.enabled:
        calibration = calibrate(
            CalibrationTarget(
                epsilon=privacy.epsilon,
                delta=privacy.delta,
                rounds=privacy.rounds,
                calibrated_contributors=config.round.min_contributors,
                clip=settings.clip_norm,
                dim=padded,
                bits=settings.bits,
                beta=beta,
                sampling=Sampling.parse(privacy.sampling),
                max_contributors=max_summands,
                rotation_dim=block,
            )
        )
        mechanism = calibration.mechanism
        scale = mechanism.scale
        noise = mechanism.local_noise_variance
        entries = [LedgerEntry.from_dict(entry) for entry, _ in store.ledger_entries()]
        ledger = PrivacyLedger.from_entries(privacy.epsilon, privacy.delta, entries)
        logger.info(
            "DP calibrated: epsilon %.3g at delta %.1e over %d rounds, noise multiplier %.3g,"
            " scale %.4g, local variance %.4g; %.3g spent so far",
            calibration.epsilon,
            privacy.delta,
            privacy.rounds,
            calibration.noise_multiplier,
            scale,
            noise,
            ledger.epsilon_spent,
        )
    else:
        noise = 0.0
        if settings.scale > 0:
            scale = settings.scale
        elif mode == "exact":
            scale = exact_mode_scale(settings.bits, settings.clip_norm, padded)
        else:
            scale = modular_sum_scale(settings.bits, settings.clip_norm, padded, max_summands)
    codec = CodecConfig(
        bits=settings.bits,
        sum_mode=mode,  # type: ignore[arg-type]
        clip_norm=settings.clip_norm,
        scale=scale,
        parameter_count=parameter_count,
        max_summands=max_summands,
        rotation_block_size=block,
        conditional_rounding_beta=beta,
        local_noise_variance=noise,
    )
    return RoundPlan(codec, mechanism, ledger, privacy.delta)
