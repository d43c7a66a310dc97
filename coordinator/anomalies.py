"""Anomaly monitor: flags what can be seen without any individual update, and records it.

The coordinator only ever sees the opened (DP-noised) aggregate of a round, counts and timings.
Each detector here works from those alone. An anomaly is recorded four ways: the
``hefl_anomalies_total{kind}`` counter, a structured log line, a row in the store (served by
OperatorService.ListAnomalies) and an ANOMALY round event. docs/monitoring.md explains every
detector, its formula and what an operator should do about it.

Call the monitor from the event loop only; it keeps small in-memory baselines that
:meth:`AnomalyMonitor.restore_history` rebuilds from the store after a restart.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec

from coordinator.anomaly_rules import (
    NoiseFloor,
    PrivacyTrajectory,
    aggregate_norm_bound,
    ewma,
    finite_norm,
    refusal_class,
    robust_upper_limit,
)
from coordinator.events import EventBus
from coordinator.metrics import CoordinatorMetrics
from coordinator.profiles.base import OpenedAggregate
from coordinator.store import Store
from crypto.round_codec import RoundCodecError, codec_config
from hefl.v1 import common_pb2 as common
from hefl.v1 import operator_service_pb2 as ops

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")

AGGREGATE_NORM = "aggregate_norm"
WRAP_RATE = "wrap_rate"
PARTICIPATION_DROP = "participation_drop"
DROPOUT_SPIKE = "dropout_spike"
VALIDATION_REJECTIONS = "validation_rejections"
MALFORMED_UPLOADS = "malformed_uploads"
REPLAYED_UPLOADS = "replayed_uploads"
BUDGET_BURN = "budget_burn"
ROUND_LATENCY = "round_latency"
ANOMALY_KINDS = (
    AGGREGATE_NORM,
    WRAP_RATE,
    PARTICIPATION_DROP,
    DROPOUT_SPIKE,
    VALIDATION_REJECTIONS,
    MALFORMED_UPLOADS,
    REPLAYED_UPLOADS,
    BUDGET_BURN,
    ROUND_LATENCY,
)

# The outcome label of rounds refused before any device was involved; they say nothing about
# participation or latency.
_REFUSED_OUTCOME = "budget_refused"


@dataclass(frozen=True)
class AnomalyThresholds:
    """When each detector fires. Set a factor or rate to ``math.inf`` to turn a detector off.

    Attributes:
        aggregate_norm_factor: Fire when the opened mean's norm exceeds this multiple of the
            honest bound (clip plus rounding plus the noise tail, see
            ``anomaly_rules.aggregate_norm_bound``).
        noise_tail_sigmas: t in the noise part of that bound, sigma (sqrt(d) + t); an honest
            round's noise exceeds it with probability at most exp(-t^2/2) (3.4e-4 at 4).
        wrap_rate: Fire when the fraction of coordinate sums within the outer eighth of the
            modular range (``near_modulus_fraction``) exceeds this. A modulus sized for 4
            standard deviations puts about 5e-4 there; 0.005 is ten times that.
        participation_drop_fraction: Fire when a round's contributors fall below this fraction
            of the exponentially weighted mean of earlier rounds.
        participation_alpha: Weight of the newest round in that mean.
        participation_warmup_rounds: Rounds seen before the participation check starts.
        dropout_rate: Fire when (selected - contributors) / selected exceeds this. The window
            closing at the goal makes the over-selected extra (about 23% at over_selection 1.3)
            count as dropouts in a normal round.
        dropout_min_selected: Rounds with fewer selected devices are too small to judge.
        validation_rejection_rate: Fire when the validation-hook rejections (updates plus
            corrections) reported for a round, per task report, exceed this; judged when the
            next round ends.
        validation_min_reports: Reports of a round needed for its rate to be judged.
        malformed_uploads_per_round: Fire when this many uploads of one round were refused as
            malformed (INVALID_ARGUMENT, DATA_LOSS, RESOURCE_EXHAUSTED).
        replayed_uploads_per_round: Fire when this many uploads of one round were refused as
            replays (ALREADY_EXISTS).
        budget_burn_factor: Fire when cumulative epsilon exceeds this multiple of the plan's
            trajectory, or when one round's epsilon increment exceeds this multiple of the
            previous one (increments of identical rounds never grow).
        budget_min_remaining_fraction: Fire once when the remaining budget drops below this
            fraction of the budget while the plan still has rounds to run.
        latency_mad_multiplier: k in median + max(k * 1.4826 * MAD, f * median) of earlier
            round durations.
        latency_min_excess_fraction: f in that limit.
        latency_warmup_rounds: Earlier rounds needed before the latency check starts.
        latency_window_rounds: Earlier rounds the latency baseline uses.
        tracked_rounds: Rounds whose upload refusals and device reports are tallied (reports
            arrive after their round ended).
    """

    aggregate_norm_factor: float = 1.1
    noise_tail_sigmas: float = 4.0
    wrap_rate: float = 0.005
    participation_drop_fraction: float = 0.5
    participation_alpha: float = 0.3
    participation_warmup_rounds: int = 3
    dropout_rate: float = 0.5
    dropout_min_selected: int = 4
    validation_rejection_rate: float = 0.3
    validation_min_reports: int = 5
    malformed_uploads_per_round: int = 5
    replayed_uploads_per_round: int = 3
    budget_burn_factor: float = 1.1
    budget_min_remaining_fraction: float = 0.1
    latency_mad_multiplier: float = 5.0
    latency_min_excess_fraction: float = 0.5
    latency_warmup_rounds: int = 5
    latency_window_rounds: int = 20
    tracked_rounds: int = 16

    def __post_init__(self) -> None:
        """Rejects values that would make a detector meaningless."""
        problems = []
        for name in (
            "aggregate_norm_factor",
            "wrap_rate",
            "validation_rejection_rate",
            "budget_burn_factor",
            "latency_mad_multiplier",
        ):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive")
        for name in ("noise_tail_sigmas", "latency_min_excess_fraction"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be non-negative")
        for name in ("participation_drop_fraction", "dropout_rate"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1]")
        if not 0 < self.participation_alpha <= 1:
            problems.append("participation_alpha must be in (0, 1]")
        if not 0 <= self.budget_min_remaining_fraction < 1:
            problems.append("budget_min_remaining_fraction must be in [0, 1)")
        for name in (
            "participation_warmup_rounds",
            "dropout_min_selected",
            "validation_min_reports",
            "malformed_uploads_per_round",
            "replayed_uploads_per_round",
            "latency_warmup_rounds",
            "latency_window_rounds",
            "tracked_rounds",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.latency_warmup_rounds > self.latency_window_rounds:
            problems.append("latency_warmup_rounds must not exceed latency_window_rounds")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class RoundSummary:
    """What the engine knows about a round that ended after devices were selected.

    Attributes:
        round_number: The round.
        outcome: Its outcome label (``coordinator.metrics.ROUND_OUTCOMES``).
        selected: Devices given a task.
        contributors: Uploads accepted.
        duration_seconds: From the round's opening to its end.
        epsilon_increment: Epsilon the ledger charged for this round (0 without DP or charge).
        epsilon_spent: Cumulative epsilon after this round.
        epsilon_budget: The federation's budget (0 without DP).
        opened: The opened aggregate, for a round that got that far.
        noise_floor: The round's codec and noise (None for the plaintext profile).
        open_time: Unix time the round opened, copied into the anomaly events.
    """

    round_number: int
    outcome: str
    selected: int
    contributors: int
    duration_seconds: float
    epsilon_increment: float = 0.0
    epsilon_spent: float = 0.0
    epsilon_budget: float = 0.0
    opened: OpenedAggregate | None = None
    noise_floor: NoiseFloor | None = None
    open_time: float | None = None


@dataclass(frozen=True)
class Anomaly:
    """One recorded anomaly."""

    kind: str
    round_number: int
    observed: float
    threshold: float
    detail: str


@dataclass
class _RoundTally:
    """Refusals and device reports of one round, and what was already reported about it."""

    malformed: int = 0
    replayed: int = 0
    reports: int = 0
    rejections: int = 0
    judged: bool = False
    fired: set[str] = field(default_factory=set)


def noise_floor_for(descriptor: common.RoundDescriptor) -> NoiseFloor | None:
    """The noise floor of a round from its descriptor; None when it has no quantizing codec."""
    if descriptor.codec.bits == 0:
        return None
    try:
        return NoiseFloor.from_codec(codec_config(descriptor.codec, descriptor.dp))
    except RoundCodecError:
        return None


class AnomalyMonitor:
    """Runs every detector on what the engine reports and records what they find."""

    def __init__(
        self,
        metrics: CoordinatorMetrics,
        store: Store,
        events: EventBus,
        thresholds: AnomalyThresholds | None = None,
        trajectory: PrivacyTrajectory | None = None,
    ) -> None:
        """Wires the monitor to where anomalies go.

        Args:
            metrics: Gets ``anomalies.labels(kind).inc()`` per anomaly.
            store: Gets a row per anomaly; also the history :meth:`restore_history` reads.
            events: Gets an ANOMALY event per anomaly.
            thresholds: Detector settings (the defaults when None).
            trajectory: The privacy plan's epsilon curve (None without DP): enables the
                "spent faster than planned" half of ``budget_burn``.
        """
        self.thresholds = thresholds or AnomalyThresholds()
        self._metrics = metrics
        self._store = store
        self._events = events
        self._trajectory = trajectory
        self._participation: float | None = None
        self._participation_rounds = 0
        self._durations: deque[float] = deque(maxlen=self.thresholds.latency_window_rounds)
        self._rounds_charged = 0
        self._last_increment = 0.0
        self._above_trajectory = False
        self._tallies: dict[int, _RoundTally] = {}
        # Every kind is exported from the start at 0, so that increase() sees its first step.
        for kind in ANOMALY_KINDS:
            metrics.anomalies.labels(kind)

    # --- inputs -------------------------------------------------------------------------------

    def restore_history(self) -> None:
        """Rebuilds the baselines from the rounds in the store (after a restart)."""
        rows = sorted(self._store.list_rounds(1 << 30), key=lambda r: r.round_number)
        for row in rows:
            if row.epsilon_increment > 0:
                self._rounds_charged += 1
                self._last_increment = row.epsilon_increment
            if row.phase != common.ROUND_PHASE_DONE or not row.descriptor or row.end_time is None:
                continue  # never collected (refused or failed while preparing) or still open
            self._learn_participation(row.contributors)
            self._durations.append(row.end_time - row.open_time)

    def on_round_end(self, summary: RoundSummary) -> list[Anomaly]:
        """Checks a round that ended (published or abandoned); returns what it recorded."""
        found: list[Anomaly] = []
        checks = (
            self._check_aggregate_norm,
            self._check_wrap_rate,
            self._check_participation,
            self._check_dropouts,
            self._check_budget,
            self._check_latency,
        )
        for check in checks:
            found.extend(self._guarded(check.__name__, summary.round_number, check, summary))
        found.extend(
            self._guarded("_judge_reports", summary.round_number, self._judge_reports, summary)
        )
        return found

    def on_upload_refused(self, round_number: int, status_code_name: str) -> list[Anomaly]:
        """Counts an upload refused with gRPC status ``status_code_name`` (e.g. "DATA_LOSS").

        Statuses other than the malformed and replayed ones (see ``anomaly_rules``) are not
        counted: a late upload or an unknown task is not an attack signal by itself.
        """
        return self._guarded(
            "_count_refusal", round_number, self._count_refusal, round_number, status_code_name
        )

    def _count_refusal(self, round_number: int, status_code_name: str) -> list[Anomaly]:
        refusal = refusal_class(status_code_name)
        if refusal is None:
            return []
        tally = self._tally(round_number)
        limits = self.thresholds
        if refusal == "malformed":
            tally.malformed += 1
            kind, count, limit = (
                MALFORMED_UPLOADS,
                tally.malformed,
                limits.malformed_uploads_per_round,
            )
        else:
            tally.replayed += 1
            kind, count, limit = REPLAYED_UPLOADS, tally.replayed, limits.replayed_uploads_per_round
        if count < limit or kind in tally.fired:
            return []
        tally.fired.add(kind)
        return [
            self._record(
                kind,
                round_number,
                count,
                limit,
                f"{count} uploads of round {round_number} refused as {refusal}"
                f" (last status {status_code_name})",
                phase=common.ROUND_PHASE_COLLECTING,
            )
        ]

    def on_device_report(
        self, round_number: int, update_rejections: int, correction_rejections: int
    ) -> None:
        """Counts one device's task report (once per task) and its validation rejections.

        Reports trickle in during and after their round, so a round's rejection rate is judged
        once, when the next round ends (see :meth:`on_round_end`), not on every report.
        """
        tally = self._tally(round_number)
        tally.reports += 1
        tally.rejections += max(update_rejections, 0) + max(correction_rejections, 0)

    # --- detectors ----------------------------------------------------------------------------

    def _judge_reports(self, summary: RoundSummary) -> list[Anomaly]:
        """Judges the validation rejection rate of every unjudged round before this one."""
        found: list[Anomaly] = []
        limits = self.thresholds
        for round_number in sorted(self._tallies):
            tally = self._tallies[round_number]
            if round_number >= summary.round_number or tally.judged:
                continue
            tally.judged = True
            if tally.reports < limits.validation_min_reports:
                continue
            rate = tally.rejections / tally.reports
            if rate <= limits.validation_rejection_rate:
                continue
            found.append(
                self._record(
                    VALIDATION_REJECTIONS,
                    round_number,
                    rate,
                    limits.validation_rejection_rate,
                    f"{tally.rejections} validation rejections in {tally.reports} task reports",
                )
            )
        return found

    def _check_aggregate_norm(self, summary: RoundSummary) -> list[Anomaly]:
        opened, floor = summary.opened, summary.noise_floor
        if opened is None or floor is None or opened.mean_delta.size == 0:
            return []
        bound = aggregate_norm_bound(
            floor, opened.contributors, opened.mean_delta.size, self.thresholds.noise_tail_sigmas
        )
        limit = self.thresholds.aggregate_norm_factor * bound.allowed
        norm = finite_norm(opened.mean_delta)
        if norm <= limit:
            return []
        clipped = opened.counters.get("clipped")
        clipped_text = "" if clipped is None else f", {clipped:.0f} contributions clipped"
        return [
            self._round_anomaly(
                summary,
                AGGREGATE_NORM,
                norm,
                limit,
                f"mean norm {norm:.6g} over {opened.contributors} contributions; honest bound"
                f" {bound.allowed:.6g} = clip and rounding {bound.signal:.6g} + noise"
                f" {bound.noise_bound:.6g} (typical {bound.noise_expected:.6g}){clipped_text}",
            )
        ]

    def _check_wrap_rate(self, summary: RoundSummary) -> list[Anomaly]:
        if summary.opened is None:
            return []
        fraction = summary.opened.counters.get("near_modulus_fraction")
        limit = self.thresholds.wrap_rate
        if fraction is None or fraction <= limit:
            return []
        return [
            self._round_anomaly(
                summary,
                WRAP_RATE,
                fraction,
                limit,
                f"{fraction:.3%} of coordinate sums lie in the outer eighth of the modular range;"
                " sums may have wrapped",
            )
        ]

    def _check_participation(self, summary: RoundSummary) -> list[Anomaly]:
        if summary.outcome == _REFUSED_OUTCOME:
            return []
        baseline = self._participation
        warm = self._participation_rounds >= self.thresholds.participation_warmup_rounds
        # The baseline learns from every round, anomalous ones included, so a lasting change
        # becomes the new normal after a few rounds instead of firing forever.
        self._learn_participation(summary.contributors)
        if not warm or baseline is None:
            return []
        limit = self.thresholds.participation_drop_fraction * baseline
        if summary.contributors >= limit:
            return []
        return [
            self._round_anomaly(
                summary,
                PARTICIPATION_DROP,
                summary.contributors,
                limit,
                f"{summary.contributors} contributors against a recent mean of {baseline:.3g}"
                f" ({summary.selected} selected, outcome {summary.outcome})",
            )
        ]

    def _check_dropouts(self, summary: RoundSummary) -> list[Anomaly]:
        if summary.selected < self.thresholds.dropout_min_selected:
            return []
        dropouts = max(summary.selected - summary.contributors, 0)
        rate = dropouts / summary.selected
        limit = self.thresholds.dropout_rate
        if rate <= limit:
            return []
        return [
            self._round_anomaly(
                summary,
                DROPOUT_SPIKE,
                rate,
                limit,
                f"{dropouts} of {summary.selected} selected devices did not contribute",
            )
        ]

    def _check_budget(self, summary: RoundSummary) -> list[Anomaly]:
        found: list[Anomaly] = []
        factor = self.thresholds.budget_burn_factor
        increment, spent, budget = (
            summary.epsilon_increment,
            summary.epsilon_spent,
            summary.epsilon_budget,
        )
        if increment > 0:
            previous = self._last_increment
            self._rounds_charged += 1
            self._last_increment = increment
            if previous > 0 and increment > factor * previous:
                found.append(
                    self._round_anomaly(
                        summary,
                        BUDGET_BURN,
                        increment,
                        factor * previous,
                        f"round cost epsilon {increment:.4g}, the round before {previous:.4g};"
                        " a round of the plan never costs more than the one before it",
                    )
                )
        trajectory = self._trajectory
        if trajectory is not None and self._rounds_charged > 0:
            planned = trajectory.epsilon_after(self._rounds_charged)
            above = spent > factor * planned
            # Cumulative epsilon stays above the plan once it got there: report the crossing,
            # not every round after it.
            if above and not self._above_trajectory:
                found.append(
                    self._round_anomaly(
                        summary,
                        BUDGET_BURN,
                        spent,
                        factor * planned,
                        f"epsilon {spent:.4g} after {self._rounds_charged} charged rounds; the"
                        f" plan expects {planned:.4g} by then ({trajectory.planned_rounds}"
                        f" rounds within a budget of {budget:.4g})",
                    )
                )
            self._above_trajectory = above
        if budget > 0 and increment > 0:
            floor = self.thresholds.budget_min_remaining_fraction * budget
            before, after = budget - (spent - increment), budget - spent
            planned_left = trajectory is None or self._rounds_charged < trajectory.planned_rounds
            if before >= floor > after and planned_left:
                found.append(
                    self._round_anomaly(
                        summary,
                        BUDGET_BURN,
                        max(after, 0.0) / budget,
                        self.thresholds.budget_min_remaining_fraction,
                        f"epsilon {spent:.4g} of {budget:.4g} spent after"
                        f" {self._rounds_charged} charged rounds; the budget is nearly gone",
                    )
                )
        return found

    def _check_latency(self, summary: RoundSummary) -> list[Anomaly]:
        if summary.outcome == _REFUSED_OUTCOME or not math.isfinite(summary.duration_seconds):
            return []
        history = list(self._durations)
        self._durations.append(summary.duration_seconds)
        if len(history) < self.thresholds.latency_warmup_rounds:
            return []
        limit = robust_upper_limit(
            history,
            self.thresholds.latency_mad_multiplier,
            self.thresholds.latency_min_excess_fraction,
        )
        if summary.duration_seconds <= limit:
            return []
        return [
            self._round_anomaly(
                summary,
                ROUND_LATENCY,
                summary.duration_seconds,
                limit,
                f"round took {summary.duration_seconds:.3g} s; the last {len(history)} rounds"
                f" had a median of {statistics.median(history):.3g} s"
                f" (outcome {summary.outcome})",
            )
        ]

    # --- recording ----------------------------------------------------------------------------

    def _guarded(
        self,
        name: str,
        round_number: int,
        check: Callable[_P, list[Anomaly]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> list[Anomaly]:
        try:
            return check(*args, **kwargs)
        except Exception:  # noqa: BLE001 - monitoring must never break the round or RPC it watches
            logger.exception("anomaly check %s failed for round %d", name, round_number)
            return []

    def _learn_participation(self, contributors: int) -> None:
        self._participation = ewma(
            self._participation, float(contributors), self.thresholds.participation_alpha
        )
        self._participation_rounds += 1

    def _tally(self, round_number: int) -> _RoundTally:
        tally = self._tallies.get(round_number)
        if tally is None:
            tally = self._tallies[round_number] = _RoundTally()
            # Keep only the newest rounds: late reports for long-gone rounds start a fresh
            # tally, which at worst delays a detection, and memory stays bounded.
            while len(self._tallies) > self.thresholds.tracked_rounds:
                del self._tallies[min(self._tallies)]
        return tally

    def _round_anomaly(
        self, summary: RoundSummary, kind: str, observed: float, threshold: float, detail: str
    ) -> Anomaly:
        return self._record(
            kind,
            summary.round_number,
            observed,
            threshold,
            detail,
            phase=common.ROUND_PHASE_DONE,
            contributors=summary.contributors,
            round_open_time=summary.open_time,
        )

    def _record(
        self,
        kind: str,
        round_number: int,
        observed: float,
        threshold: float,
        detail: str,
        *,
        phase: int = common.ROUND_PHASE_UNSPECIFIED,
        contributors: int = 0,
        round_open_time: float | None = None,
    ) -> Anomaly:
        # SQLite stores NaN as NULL, which the NOT NULL column refuses; an unreadable
        # observation is as alarming as an infinite one.
        observed = math.inf if math.isnan(observed) else float(observed)
        anomaly = Anomaly(kind, round_number, observed, float(threshold), detail)
        self._metrics.anomalies.labels(kind).inc()
        logger.warning(
            "anomaly kind=%s round=%d observed=%.6g threshold=%.6g detail=%s",
            kind,
            round_number,
            observed,
            threshold,
            detail,
            extra={
                "anomaly_kind": kind,
                "round_number": round_number,
                "observed": observed,
                "threshold": threshold,
            },
        )
        self._store.record_anomaly(kind, round_number, observed, threshold, detail)
        self._events.publish(
            ops.ROUND_EVENT_KIND_ANOMALY,
            round_number,
            phase,
            contributors,
            f"{kind}: observed {observed:.6g}, threshold {threshold:.6g}; {detail}",
            round_open_time,
        )
        return anomaly
