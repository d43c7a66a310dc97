"""The device's own privacy ledger: every round it joined, and a budget it will not exceed.

The federation's ledger protects the population; this one protects the device. Before
contributing, the device charges the round's mechanism (taken from the committee-signed
descriptor) to its own ledger and refuses if its budget would be exceeded, whatever the
coordinator says. Entries are kept in ``state_dir/privacy_ledger.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from crypto.durable import write_durable
from crypto.privacy import (
    BudgetExceededError,
    LedgerEntry,
    PrivacyLedger,
    RoundOutcome,
    Sampling,
    SkellamRound,
)
from crypto.round_codec import codec_config
from hefl.v1 import common_pb2 as common

# PrivacyLedger needs a finite budget; this stands for "no limit of the device's own".
_UNLIMITED = 1e12


class DeviceBudgetExceededError(Exception):
    """Contributing to this round would exceed the device's own privacy budget."""


class DeviceLedger:
    """Rounds this device contributed to, with their privacy cost."""

    def __init__(self, path: Path, budget_epsilon: float) -> None:
        """Loads the ledger; ``budget_epsilon`` <= 0 keeps the ledger without a limit."""
        self._path = path
        self._budget = budget_epsilon if budget_epsilon > 0 else _UNLIMITED
        self._ledger: PrivacyLedger | None = None
        if path.exists():
            stored = json.loads(path.read_text())
            entries = [LedgerEntry.from_dict(entry) for entry in stored["entries"]]
            self._ledger = PrivacyLedger.from_entries(self._budget, stored["delta"], entries)

    @property
    def epsilon_spent(self) -> float:
        """Epsilon spent by this device so far (0 before any DP round)."""
        return 0.0 if self._ledger is None else self._ledger.epsilon_spent

    @staticmethod
    def mechanism(descriptor: common.RoundDescriptor) -> SkellamRound | None:
        """The round's mechanism as the signed descriptor states it (None without DP)."""
        if not descriptor.dp.enabled:
            return None
        config = codec_config(descriptor.codec, descriptor.dp)
        return SkellamRound(
            clip=config.clip_norm,
            scale=config.scale,
            dim=config.padded_length,
            beta=config.conditional_rounding_beta,
            local_noise_variance=config.local_noise_variance,
            calibrated_contributors=descriptor.dp.calibrated_contributors,
            bits=config.bits,
            sampling=Sampling.none(),
        )

    def _ledger_for(self, delta: float) -> PrivacyLedger:
        if self._ledger is None:
            self._ledger = PrivacyLedger(self._budget, delta)
        return self._ledger

    def check(self, descriptor: common.RoundDescriptor) -> None:
        """Raises DeviceBudgetExceededError if joining the round would exceed the budget."""
        mechanism = self.mechanism(descriptor)
        if mechanism is None:
            return
        ledger = self._ledger_for(descriptor.dp.target_delta)
        if not math.isclose(ledger.delta, descriptor.dp.target_delta):
            raise DeviceBudgetExceededError(
                f"round accounts at delta {descriptor.dp.target_delta}, this device at"
                f" {ledger.delta}"
            )
        try:
            ledger.check(mechanism)
        except BudgetExceededError as error:
            raise DeviceBudgetExceededError(error.charge.reason) from error

    def record(self, descriptor: common.RoundDescriptor) -> None:
        """Charges a round the device is about to contribute to, durably."""
        mechanism = self.mechanism(descriptor)
        if mechanism is None:
            return
        ledger = self._ledger_for(descriptor.dp.target_delta)
        ledger.record(descriptor.round_number, mechanism, RoundOutcome.JOINED)
        data = json.dumps(
            {"delta": ledger.delta, "entries": [e.to_dict() for e in ledger.entries]}, indent=1
        )
        write_durable(self._path, data.encode())
