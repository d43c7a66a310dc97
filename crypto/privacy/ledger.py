"""Privacy ledger: the budget check before a round and the record of every round charged."""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crypto.privacy.accountant import ACCOUNTANT_NAME, SkellamAccountant
from crypto.privacy.calibration import Calibration
from crypto.privacy.gaussian import GaussianReference, GaussianRun, gaussian_reference
from crypto.privacy.mechanism import MECHANISM_NAME, SkellamRound
from crypto.privacy.rdp import DEFAULT_ORDERS
from crypto.privacy.sampling import Sampling

_log = logging.getLogger(__name__)

# Stored entries are recomputed on rebuild; they must agree to this (relative) tolerance.
_REBUILD_TOLERANCE = 1e-9
_MAX_ROUNDS_LEFT = 10**9


class LedgerError(ValueError):
    """An entry or a rebuild is inconsistent with the ledger."""


class BudgetExceededError(Exception):
    """The round would take the cumulative ε above the budget; it must not run.

    Attributes:
        charge: The refused charge, with the numbers and the reason.
    """

    def __init__(self, charge: RoundCharge) -> None:
        """Wraps the refused ``charge``; the message is its reason."""
        super().__init__(charge.reason)
        self.charge = charge


class RoundOutcome(str, enum.Enum):
    """How a charged round ended, from the ledger keeper's point of view."""

    COMPLETED = "completed"
    """The aggregate was opened and published."""
    ABANDONED = "abandoned"
    """Nothing was published (below quorum, committee failure, rejected aggregate)."""
    JOINED = "joined"
    """Worker-side: this device contributed; the round's outcome is not known to it."""


@dataclass(frozen=True)
class RoundCharge:
    """What the next round would cost, computed before it runs.

    Attributes:
        epsilon_before: Cumulative ε of the rounds recorded so far.
        epsilon_increment: ``epsilon_cumulative - epsilon_before``.
        epsilon_cumulative: Cumulative ε once the round is recorded (composed RDP of all rounds
            converted once, not a sum of per-round ε).
        budget: The ledger's ε budget.
        delta: δ of every ε here.
        allowed: Whether ``epsilon_cumulative <= budget``.
        reason: Empty when allowed, otherwise why the round is refused.
    """

    epsilon_before: float
    epsilon_increment: float
    epsilon_cumulative: float
    budget: float
    delta: float
    allowed: bool
    reason: str


@dataclass(frozen=True)
class LedgerEntry:
    """One charged round; plain data, stored by the caller (SQLite, JSON, protobuf).

    Attributes:
        round: Round number (strictly increasing in a ledger).
        mechanism: Always ``"skellam"``.
        local_noise_variance: Per-client noise variance per coordinate, integer units.
        calibrated_contributors: n_min the noise was calibrated for.
        actual_contributors: Contributors summed; None when unknown (worker side).
        bits: Aggregate modulus width.
        sampling: ``"none"`` or ``"poisson:<q>"``.
        epsilon_increment: ε added by this round (cumulative after minus before).
        epsilon_cumulative: ε after this round.
        accountant: Always ``"rdp"``.
        scale: Scale s = 1/γ.
        clip: L2 clipping norm c.
        dim: Padded dimension d.
        beta: Conditional-rounding β.
        delta: δ of the ε values.
        outcome: ``"completed"``, ``"abandoned"`` or ``"joined"``.
        noise_multiplier: Effective √μ/Δ₂ charged (informational; recomputed on rebuild).
    """

    round: int
    mechanism: str
    local_noise_variance: float
    calibrated_contributors: int
    actual_contributors: int | None
    bits: int
    sampling: str
    epsilon_increment: float
    epsilon_cumulative: float
    accountant: str
    scale: float
    clip: float
    dim: int
    beta: float
    delta: float
    outcome: str
    noise_multiplier: float

    def round_mechanism(self) -> SkellamRound:
        """The mechanism parameters the round was run with."""
        return SkellamRound(
            clip=self.clip,
            scale=self.scale,
            dim=self.dim,
            beta=self.beta,
            local_noise_variance=self.local_noise_variance,
            calibrated_contributors=self.calibrated_contributors,
            bits=self.bits,
            sampling=Sampling.parse(self.sampling),
        )

    def to_dict(self) -> dict[str, Any]:
        """The entry as a flat mapping of field name to int, float, str or None."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Reads an entry written by ``to_dict`` (extra keys, e.g. a row id, are ignored).

        Raises:
            LedgerError: If a field is missing or has the wrong type.
        """
        try:
            actual = data["actual_contributors"]
            return cls(
                round=int(data["round"]),
                mechanism=str(data["mechanism"]),
                local_noise_variance=float(data["local_noise_variance"]),
                calibrated_contributors=int(data["calibrated_contributors"]),
                actual_contributors=None if actual is None else int(actual),
                bits=int(data["bits"]),
                sampling=str(data["sampling"]),
                epsilon_increment=float(data["epsilon_increment"]),
                epsilon_cumulative=float(data["epsilon_cumulative"]),
                accountant=str(data["accountant"]),
                scale=float(data["scale"]),
                clip=float(data["clip"]),
                dim=int(data["dim"]),
                beta=float(data["beta"]),
                delta=float(data["delta"]),
                outcome=str(data["outcome"]),
                noise_multiplier=float(data["noise_multiplier"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise LedgerError(f"malformed ledger entry {dict(data)!r}: {error}") from error


def charged_mechanism(
    mechanism: SkellamRound, outcome: RoundOutcome, actual_contributors: int | None
) -> SkellamRound:
    """The mechanism a round is charged as.

    A published sum of fewer than ``calibrated_contributors`` updates carried less noise than
    planned; it is charged at the noise it really had. Every other round is charged at the
    calibrated noise, including abandoned ones (docs/privacy-accounting.md, section 6).
    """
    if (
        outcome is RoundOutcome.COMPLETED
        and actual_contributors is not None
        and actual_contributors < mechanism.calibrated_contributors
    ):
        if actual_contributors < 1:
            raise LedgerError("a completed round needs at least one contributor")
        return dataclasses.replace(mechanism, calibrated_contributors=actual_contributors)
    return mechanism


class PrivacyLedger:
    """The privacy budget of one federation (coordinator) or one device (worker).

    The ledger holds no storage of its own: it returns each ``LedgerEntry`` for the caller to
    persist, and ``from_entries`` rebuilds it from them, recomputing and checking every number.
    Cumulative ε always comes from the composed RDP of all recorded rounds.
    """

    def __init__(
        self, budget_epsilon: float, delta: float, orders: Sequence[int] = DEFAULT_ORDERS
    ) -> None:
        """Creates an empty ledger.

        Args:
            budget_epsilon: Total ε that may be spent.
            delta: δ at which ε is computed.
            orders: Integer RDP orders of the accountant.
        """
        if not (math.isfinite(budget_epsilon) and budget_epsilon > 0):
            raise ValueError(f"budget must be positive, got {budget_epsilon}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self._budget = float(budget_epsilon)
        self._delta = float(delta)
        self._accountant = SkellamAccountant(orders)
        self._entries: list[LedgerEntry] = []
        self._by_round: dict[int, LedgerEntry] = {}
        self._epsilon = 0.0

    @classmethod
    def for_calibration(
        cls, calibration: Calibration, orders: Sequence[int] = DEFAULT_ORDERS
    ) -> PrivacyLedger:
        """A ledger whose budget and δ are the calibration target's."""
        return cls(calibration.target.epsilon, calibration.target.delta, orders)

    @classmethod
    def from_entries(
        cls,
        budget_epsilon: float,
        delta: float,
        entries: Iterable[LedgerEntry],
        orders: Sequence[int] = DEFAULT_ORDERS,
    ) -> PrivacyLedger:
        """Rebuilds a ledger by replaying stored entries, oldest first.

        Raises:
            LedgerError: If an entry is out of order, of another mechanism, accountant or δ, or
                its stored ε differs from the recomputed one (other orders, tampering, a bug).
        """
        ledger = cls(budget_epsilon, delta, orders)
        for stored in entries:
            if stored.mechanism != MECHANISM_NAME or stored.accountant != ACCOUNTANT_NAME:
                raise LedgerError(
                    f"round {stored.round}: cannot replay mechanism {stored.mechanism!r} under "
                    f"accountant {stored.accountant!r}"
                )
            if stored.delta != ledger._delta:
                raise LedgerError(
                    f"round {stored.round}: entry is at delta={stored.delta}, ledger at "
                    f"delta={ledger._delta}"
                )
            try:
                outcome = RoundOutcome(stored.outcome)
            except ValueError:
                raise LedgerError(
                    f"round {stored.round}: unknown outcome {stored.outcome!r}"
                ) from None
            replayed = ledger.record(
                stored.round, stored.round_mechanism(), outcome, stored.actual_contributors
            )
            for name in ("epsilon_increment", "epsilon_cumulative"):
                if not math.isclose(
                    getattr(replayed, name),
                    getattr(stored, name),
                    rel_tol=_REBUILD_TOLERANCE,
                    abs_tol=_REBUILD_TOLERANCE,
                ):
                    raise LedgerError(
                        f"round {stored.round}: stored {name}={getattr(stored, name)!r} but "
                        f"replay gives {getattr(replayed, name)!r}"
                    )
        return ledger

    @property
    def budget_epsilon(self) -> float:
        """Total ε that may be spent."""
        return self._budget

    @property
    def delta(self) -> float:
        """δ of every ε in the ledger."""
        return self._delta

    @property
    def orders(self) -> tuple[int, ...]:
        """RDP orders of the accountant."""
        return self._accountant.orders

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """Recorded entries, oldest first."""
        return tuple(self._entries)

    @property
    def epsilon_spent(self) -> float:
        """Cumulative ε of the recorded rounds."""
        return self._epsilon

    @property
    def epsilon_remaining(self) -> float:
        """Budget minus ε spent, floored at zero."""
        return max(0.0, self._budget - self._epsilon)

    @property
    def last_round(self) -> int | None:
        """Highest recorded round number, or None."""
        return self._entries[-1].round if self._entries else None

    def preview(self, mechanism: SkellamRound) -> RoundCharge:
        """What one more round of ``mechanism`` would cost, and whether the budget allows it."""
        trial = self._accountant.copy()
        trial.compose(mechanism)
        after = trial.get_epsilon(self._delta)
        allowed = after <= self._budget
        reason = ""
        if not allowed:
            reason = (
                f"privacy budget exceeded: the round would raise epsilon from "
                f"{self._epsilon:.6g} to {after:.6g} (+{after - self._epsilon:.3g}) at "
                f"delta={self._delta:g}, above the budget {self._budget:g} after "
                f"{self._accountant.rounds} charged rounds"
            )
        return RoundCharge(
            self._epsilon, after - self._epsilon, after, self._budget, self._delta, allowed, reason
        )

    def check(self, mechanism: SkellamRound) -> RoundCharge:
        """Like ``preview``, but raises if the round must not run.

        Raises:
            BudgetExceededError: With the charge and its reason.
        """
        charge = self.preview(mechanism)
        if not charge.allowed:
            raise BudgetExceededError(charge)
        return charge

    def rounds_left(self, mechanism: SkellamRound) -> int:
        """How many more rounds of ``mechanism`` fit in the budget."""

        def fits(count: int) -> bool:
            trial = self._accountant.copy()
            trial.compose(mechanism, count)
            return trial.get_epsilon(self._delta) <= self._budget

        if not fits(1):
            return 0
        low, high = 1, 2
        while fits(high):
            low, high = high, high * 2
            if high > _MAX_ROUNDS_LEFT:
                return _MAX_ROUNDS_LEFT
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if fits(mid) else (low, mid)
        return low

    def record(
        self,
        round_number: int,
        mechanism: SkellamRound,
        outcome: RoundOutcome,
        actual_contributors: int | None = None,
    ) -> LedgerEntry:
        """Charges a round that has run (or started) and returns the entry to persist.

        The budget is enforced by ``check`` before a round starts; ``record`` never refuses for
        budget, because the release it records has already happened. Recording the same round
        again with the same parameters returns the stored entry (safe to retry after a crash).

        Args:
            round_number: Round number, above every recorded one.
            mechanism: The parameters the round ran with.
            outcome: How it ended.
            actual_contributors: Contributors summed, if known.

        Returns:
            The new entry.

        Raises:
            LedgerError: If the round number goes backwards or repeats with other parameters.
        """
        if actual_contributors is not None and actual_contributors < 0:
            raise LedgerError("actual_contributors must be non-negative")
        existing = self._by_round.get(round_number)
        if existing is not None:
            if (
                existing.round_mechanism() == mechanism
                and existing.outcome == outcome.value
                and existing.actual_contributors == actual_contributors
            ):
                return existing
            raise LedgerError(f"round {round_number} is already recorded differently")
        last = self.last_round
        if last is not None and round_number <= last:
            raise LedgerError(f"round {round_number} is not after the last recorded round {last}")
        charged = charged_mechanism(mechanism, outcome, actual_contributors)
        if charged is not mechanism:
            _log.warning(
                "round %d published a sum of %s contributors, below the %d its noise was "
                "calibrated for; charged at the lower noise",
                round_number,
                actual_contributors,
                mechanism.calibrated_contributors,
            )
        self._accountant.compose(charged)
        before, after = self._epsilon, self._accountant.get_epsilon(self._delta)
        self._epsilon = after
        if after > self._budget:
            _log.warning(
                "round %d took epsilon to %.6g, above the budget %.6g",
                round_number,
                after,
                self._budget,
            )
        entry = LedgerEntry(
            round=round_number,
            mechanism=MECHANISM_NAME,
            local_noise_variance=mechanism.local_noise_variance,
            calibrated_contributors=mechanism.calibrated_contributors,
            actual_contributors=actual_contributors,
            bits=mechanism.bits,
            sampling=str(mechanism.sampling),
            epsilon_increment=after - before,
            epsilon_cumulative=after,
            accountant=ACCOUNTANT_NAME,
            scale=mechanism.scale,
            clip=mechanism.clip,
            dim=mechanism.dim,
            beta=mechanism.beta,
            delta=self._delta,
            outcome=outcome.value,
            noise_multiplier=charged.noise_multiplier,
        )
        self._entries.append(entry)
        self._by_round[round_number] = entry
        return entry

    def gaussian_reference(self, *, with_pld: bool = True) -> GaussianReference:
        """ε of a central Gaussian with the same effective noise multipliers (optimistic)."""
        counts: dict[tuple[float, str], int] = {}
        for entry in self._entries:
            charged = charged_mechanism(
                entry.round_mechanism(), RoundOutcome(entry.outcome), entry.actual_contributors
            )
            key = (charged.noise_multiplier, entry.sampling)
            counts[key] = counts.get(key, 0) + 1
        runs = [GaussianRun(z, count, Sampling.parse(s)) for (z, s), count in counts.items()]
        return gaussian_reference(runs, self._delta, with_pld=with_pld)
