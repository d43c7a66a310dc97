"""Anomaly detectors: each fires on a crafted situation and stays quiet in a normal run."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from coordinator.anomalies import (
    AGGREGATE_NORM,
    ANOMALY_KINDS,
    BUDGET_BURN,
    DROPOUT_SPIKE,
    MALFORMED_UPLOADS,
    PARTICIPATION_DROP,
    REPLAYED_UPLOADS,
    ROUND_LATENCY,
    VALIDATION_REJECTIONS,
    WRAP_RATE,
    AnomalyMonitor,
    AnomalyThresholds,
    RoundSummary,
    noise_floor_for,
)
from coordinator.anomaly_rules import (
    NoiseFloor,
    PrivacyTrajectory,
    aggregate_norm_bound,
    refusal_class,
    robust_upper_limit,
)
from coordinator.events import EventBus
from coordinator.metrics import CoordinatorMetrics
from coordinator.profiles.base import OpenedAggregate
from coordinator.store import Store
from crypto.codec import CodecConfig, decode, encode, rotation_for
from crypto.codec.quantize import to_fields
from crypto.csprng import Csprng
from crypto.privacy import PrivacyLedger, RoundOutcome, SkellamRound
from crypto.round_codec import codec_params
from hefl.v1 import common_pb2 as common
from hefl.v1 import operator_service_pb2 as ops

DIM = 1000
CLIENTS = 10
SEED = b"anomaly-tests"


@dataclass
class Harness:
    metrics: CoordinatorMetrics
    store: Store
    events: EventBus
    monitor: AnomalyMonitor


def _harness(
    tmp_path: Path,
    thresholds: AnomalyThresholds | None = None,
    trajectory: PrivacyTrajectory | None = None,
) -> Harness:
    metrics = CoordinatorMetrics.create()
    store = Store(tmp_path / "state")
    events = EventBus(store)
    monitor = AnomalyMonitor(metrics, store, events, thresholds, trajectory)
    return Harness(metrics, store, events, monitor)


def _count(h: Harness, kind: str) -> float:
    value = h.metrics.registry.get_sample_value("hefl_anomalies_total", {"kind": kind})
    assert value is not None  # every kind is exported from the start
    return value


def _assert_recorded(h: Harness, kind: str, round_number: int, times: int = 1) -> None:
    """The anomaly reached all four places: counter, store row, event (the log is tested apart)."""
    assert _count(h, kind) == times
    rows = [row for row in h.store.list_anomalies(1000) if row.kind == kind]
    assert len(rows) == times
    assert all(row.round_number == round_number for row in rows)
    events = [e for e in h.store.events_after(0) if e.kind == ops.ROUND_EVENT_KIND_ANOMALY]
    mine = [e for e in events if e.detail.startswith(f"{kind}:")]
    assert len(mine) == times
    assert all(e.round_number == round_number for e in mine)
    others = {row.kind for row in h.store.list_anomalies(1000)} - {kind}
    assert not others, f"unexpected anomalies {others}"


def _assert_quiet(h: Harness) -> None:
    assert all(_count(h, kind) == 0 for kind in ANOMALY_KINDS)
    assert h.store.list_anomalies(1000) == []
    assert not [e for e in h.store.events_after(0) if e.kind == ops.ROUND_EVENT_KIND_ANOMALY]


def _summary(round_number: int, **changes: object) -> RoundSummary:
    values: dict[str, object] = {
        "round_number": round_number,
        "outcome": "published",
        "selected": 13,
        "contributors": 10,
        "duration_seconds": 20.0,
    }
    values.update(changes)
    return RoundSummary(**values)  # type: ignore[arg-type]


# --- aggregate norm and wrap rate, on real encodings -------------------------------------------


def _codec(bits: int = 16) -> CodecConfig:
    return CodecConfig(
        bits=bits,
        sum_mode="mod",
        clip_norm=1.0,
        scale=200.0,
        parameter_count=DIM,
        max_summands=20,
        conditional_rounding_beta=math.exp(-0.5),
        local_noise_variance=400.0,
    )


def _opened_round(
    config: CodecConfig, attacker_norm: float = 0.0
) -> tuple[OpenedAggregate, NoiseFloor]:
    """Encodes CLIENTS honest updates (all the same direction, the worst honest case: their
    mean has the full clip norm) and opens their modular sum like the secure profiles do.
    With ``attacker_norm``, client 0 skips clipping and sends an update of that norm."""
    rotation = rotation_for(config, SEED)
    direction: npt.NDArray[np.float64] = np.random.default_rng(1).normal(size=DIM)
    direction /= np.linalg.norm(direction)
    fields = [
        encode(5.0 * direction, config, rotation, rng=Csprng.from_seed(SEED, f"c{i}"))
        .fields.astype(np.int64)
        .copy()
        for i in range(CLIENTS)
    ]
    if attacker_norm:
        scaled = rotation.forward(attacker_norm * direction) * config.scale
        fields[0][: config.padded_length], _ = to_fields(
            np.round(scaled).astype(np.int64), config.bits, "mod"
        )
    sums = np.sum(fields, axis=0) % config.modulus
    decoded = decode(sums, config, rotation, CLIENTS)
    counters = {
        "contributors": float(decoded.contributor_count),
        "clipped": float(decoded.clipped_count),
        "near_modulus_fraction": decoded.near_modulus_fraction,
    }
    opened = OpenedAggregate(decoded.mean, CLIENTS, counters, sums)
    return opened, NoiseFloor.from_codec(config)


def test_aggregate_norm_fires_when_one_client_skips_clipping(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    opened, floor = _opened_round(_codec(), attacker_norm=50.0)
    found = h.monitor.on_round_end(_summary(4, opened=opened, noise_floor=floor))
    assert [a.kind for a in found] == [AGGREGATE_NORM]
    # (9 clipped updates of norm 1 + one of norm 50) / 10, plus noise of norm about 1.
    assert found[0].observed > 5.0
    assert found[0].threshold == pytest.approx(1.1 * 2.1324, rel=1e-3)
    _assert_recorded(h, AGGREGATE_NORM, 4)
    row = h.store.list_anomalies(1)[0]
    assert "10 contributions clipped" in row.detail


def test_aggregate_norm_and_wrap_rate_are_quiet_for_aligned_honest_updates(
    tmp_path: Path,
) -> None:
    h = _harness(tmp_path)
    opened, floor = _opened_round(_codec())
    bound = aggregate_norm_bound(floor, CLIENTS, DIM, 4.0)
    norm = float(np.linalg.norm(opened.mean_delta))
    # Signal (norm 1, orthogonal to the noise) and noise (norm about 1) add up to about sqrt(2).
    assert 1.2 < norm < bound.allowed
    assert opened.counters["near_modulus_fraction"] == 0.0
    assert h.monitor.on_round_end(_summary(1, opened=opened, noise_floor=floor)) == []
    _assert_quiet(h)


def test_norm_bound_matches_the_documented_formula() -> None:
    config = _codec()
    floor = NoiseFloor.from_codec(config)
    bound = aggregate_norm_bound(floor, CLIENTS, DIM, 4.0)
    sigma = math.sqrt(CLIENTS * 400.0) / (200.0 * CLIENTS)
    assert bound.noise_expected == pytest.approx(sigma * math.sqrt(DIM))
    assert bound.noise_bound == pytest.approx(sigma * (math.sqrt(DIM) + 4.0))
    # Clip norm 1 plus the conditional-rounding inflation, in model units.
    assert 1.0 < bound.signal < 1.01
    assert bound.allowed == pytest.approx(bound.signal + bound.noise_bound)


def test_a_non_finite_mean_is_an_aggregate_norm_anomaly(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    mean = np.zeros(DIM)
    mean[3] = math.nan
    opened = OpenedAggregate(mean, CLIENTS, {})
    found = h.monitor.on_round_end(
        _summary(2, opened=opened, noise_floor=NoiseFloor.from_codec(_codec()))
    )
    assert [a.kind for a in found] == [AGGREGATE_NORM]
    assert h.store.list_anomalies(1)[0].observed == math.inf


def test_wrap_rate_fires_when_the_noise_outgrows_the_field_width(tmp_path: Path) -> None:
    # Same updates and noise, but 8-bit fields: the aggregate's standard deviation (about 63
    # integer units) no longer fits the +-128 range, so many coordinate sums wrap.
    h = _harness(tmp_path)
    opened, floor = _opened_round(_codec(bits=8))
    found = h.monitor.on_round_end(_summary(7, opened=opened, noise_floor=floor))
    assert [a.kind for a in found] == [WRAP_RATE]
    assert found[0].observed > 0.05
    _assert_recorded(h, WRAP_RATE, 7)


def test_noise_floor_is_read_from_the_round_descriptor() -> None:
    config = _codec()
    descriptor = common.RoundDescriptor(
        codec=codec_params(config),
        dp=common.DpParams(enabled=True, local_noise_variance=config.local_noise_variance),
    )
    assert noise_floor_for(descriptor) == NoiseFloor.from_codec(config)
    plaintext = common.RoundDescriptor(codec=common.CodecParams(parameter_count=DIM))
    assert noise_floor_for(plaintext) is None


# --- participation and dropouts ----------------------------------------------------------------


def test_participation_drop_fires_against_the_recent_mean(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    for number in (1, 2, 3):
        assert h.monitor.on_round_end(_summary(number, contributors=10)) == []
    found = h.monitor.on_round_end(_summary(4, selected=4, contributors=3, outcome="below_quorum"))
    assert [a.kind for a in found] == [PARTICIPATION_DROP]
    assert found[0].observed == 3
    assert found[0].threshold == pytest.approx(5.0)
    _assert_recorded(h, PARTICIPATION_DROP, 4)


def test_participation_is_not_judged_during_warm_up(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    h.monitor.on_round_end(_summary(1, contributors=10))
    assert h.monitor.on_round_end(_summary(2, selected=3, contributors=2)) == []
    _assert_quiet(h)


def test_dropout_spike_fires_above_the_rate(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    found = h.monitor.on_round_end(_summary(1, selected=13, contributors=5))
    assert [a.kind for a in found] == [DROPOUT_SPIKE]
    assert found[0].observed == pytest.approx(8 / 13)
    _assert_recorded(h, DROPOUT_SPIKE, 1)


def test_participation_and_dropouts_are_quiet_in_a_normal_run(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    # Over-selection 1.3: 13 selected, the window closes at the goal of 10, some miss it.
    for number, contributors in enumerate([10, 9, 10, 8, 10, 7, 10, 10, 9, 10], start=1):
        assert h.monitor.on_round_end(_summary(number, contributors=contributors)) == []
    # Too few selected devices to judge a dropout rate.
    assert h.monitor.on_round_end(_summary(11, selected=3, contributors=8)) == []
    _assert_quiet(h)


# --- device reports and refused uploads --------------------------------------------------------


def test_validation_rejections_are_judged_when_the_next_round_ends(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    for _ in range(4):
        h.monitor.on_device_report(3, 1, 0)
    h.monitor.on_device_report(3, 0, 2)
    # Round 3's own end comes before its late reports: nothing is judged yet.
    assert h.monitor.on_round_end(_summary(3)) == []
    found = h.monitor.on_round_end(_summary(4))
    assert [(a.kind, a.round_number) for a in found] == [(VALIDATION_REJECTIONS, 3)]
    assert found[0].observed == pytest.approx(6 / 5)
    # Judged once: later reports about round 3 and later round ends add nothing.
    h.monitor.on_device_report(3, 5, 5)
    assert h.monitor.on_round_end(_summary(5)) == []
    _assert_recorded(h, VALIDATION_REJECTIONS, 3)


def test_validation_rejections_are_quiet_at_a_normal_rate(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    for number in (1, 2, 3):
        # The rejecting devices report first: the rate is judged on the whole round.
        for device in range(10):
            h.monitor.on_device_report(number, int(device == 0), int(device == 1))
        assert h.monitor.on_round_end(_summary(number + 1)) == []
    # Too few reports to judge, however many rejections they carry.
    for _ in range(4):
        h.monitor.on_device_report(4, 3, 3)
    assert h.monitor.on_round_end(_summary(5)) == []
    _assert_quiet(h)


def test_malformed_and_replayed_uploads_fire_at_their_thresholds(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    codes = ["DATA_LOSS", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "StatusCode.DATA_LOSS"]
    for code in codes:
        assert h.monitor.on_upload_refused(5, code) == []
    found = h.monitor.on_upload_refused(5, "data_loss")
    assert [a.kind for a in found] == [MALFORMED_UPLOADS]
    assert h.monitor.on_upload_refused(5, "DATA_LOSS") == []  # once per round
    _assert_recorded(h, MALFORMED_UPLOADS, 5)

    replays = [h.monitor.on_upload_refused(6, "ALREADY_EXISTS") for _ in range(3)]
    assert [len(r) for r in replays] == [0, 0, 1]
    assert replays[2][0].kind == REPLAYED_UPLOADS
    assert _count(h, REPLAYED_UPLOADS) == 1
    assert h.store.list_anomalies(1)[0].kind == REPLAYED_UPLOADS


def test_refused_uploads_are_quiet_below_the_thresholds(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    for number in (1, 2, 3):
        for code in ("DATA_LOSS",) * 4 + ("ALREADY_EXISTS",) * 2:
            assert h.monitor.on_upload_refused(number, code) == []
        # Late uploads and unknown tasks are ordinary churn, not counted at all.
        for code in ("FAILED_PRECONDITION", "NOT_FOUND", "UNAVAILABLE") * 5:
            assert h.monitor.on_upload_refused(number, code) == []
    _assert_quiet(h)
    assert refusal_class("FAILED_PRECONDITION") is None


# --- privacy budget ------------------------------------------------------------------------------


def _mechanism() -> SkellamRound:
    return SkellamRound(
        clip=1.0,
        scale=100.0,
        dim=1024,
        beta=math.exp(-0.5),
        local_noise_variance=1100.0,
        calibrated_contributors=CLIENTS,
        bits=16,
    )


def _ledger_summaries(ledger: PrivacyLedger, contributors: list[int]) -> list[RoundSummary]:
    summaries = []
    for number, count in enumerate(contributors, start=1):
        entry = ledger.record(number, _mechanism(), RoundOutcome.COMPLETED, count)
        summaries.append(
            _summary(
                number,
                selected=count,
                contributors=count,
                epsilon_increment=entry.epsilon_increment,
                epsilon_spent=entry.epsilon_cumulative,
                epsilon_budget=ledger.budget_epsilon,
            )
        )
    return summaries


def test_budget_burn_fires_when_a_round_is_charged_at_less_noise(tmp_path: Path) -> None:
    trajectory = PrivacyTrajectory(_mechanism(), 1e-5, planned_rounds=100)
    h = _harness(tmp_path, AnomalyThresholds(participation_drop_fraction=0.0), trajectory)
    # (participation off: this test is about the ledger, not the small round itself)
    ledger = PrivacyLedger(1000.0, 1e-5)
    # Five rounds at the calibrated 10 contributors, then one published with only 3: its sum
    # carried less noise, the ledger charges it as such, and epsilon jumps off the plan.
    summaries = _ledger_summaries(ledger, [10, 10, 10, 10, 10, 3])
    for summary in summaries[:5]:
        assert h.monitor.on_round_end(summary) == []
    found = h.monitor.on_round_end(summaries[5])
    assert [a.kind for a in found] == [BUDGET_BURN, BUDGET_BURN]
    increment, cumulative = found
    assert increment.observed > 3 * increment.threshold / 1.1
    assert cumulative.observed == pytest.approx(ledger.epsilon_spent)
    assert cumulative.threshold == pytest.approx(1.1 * trajectory.epsilon_after(6))
    _assert_recorded(h, BUDGET_BURN, 6, times=2)
    # Still above the plan next round, but the crossing was already reported.
    entry = ledger.record(7, _mechanism(), RoundOutcome.COMPLETED, CLIENTS)
    assert (
        h.monitor.on_round_end(
            _summary(
                7,
                epsilon_increment=entry.epsilon_increment,
                epsilon_spent=entry.epsilon_cumulative,
                epsilon_budget=1000.0,
            )
        )
        == []
    )


def test_budget_burn_is_quiet_when_rounds_follow_the_plan(tmp_path: Path) -> None:
    trajectory = PrivacyTrajectory(_mechanism(), 1e-5, planned_rounds=100)
    h = _harness(tmp_path, trajectory=trajectory)
    ledger = PrivacyLedger(1000.0, 1e-5)
    for summary in _ledger_summaries(ledger, [CLIENTS] * 12):
        assert h.monitor.on_round_end(summary) == []
    _assert_quiet(h)


def test_budget_burn_fires_once_when_the_budget_is_nearly_gone(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    spent = 0.0
    found = []
    for number, increment in enumerate([1.0, 0.8, 0.7, 0.6, 0.5], start=1):
        spent += increment
        found += h.monitor.on_round_end(
            _summary(number, epsilon_increment=increment, epsilon_spent=spent, epsilon_budget=3.9)
        )
    # 3.1 of 3.9 spent leaves 20%; 3.6 leaves 7.7%, below 10%: reported on that round only.
    assert [(a.kind, a.round_number) for a in found] == [(BUDGET_BURN, 5)]
    assert found[0].observed == pytest.approx(0.3 / 3.9)
    _assert_recorded(h, BUDGET_BURN, 5)


# --- round latency -------------------------------------------------------------------------------


def test_round_latency_fires_above_the_robust_baseline(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    for number, seconds in enumerate([20.0, 21.0, 20.0, 22.0, 20.0], start=1):
        assert h.monitor.on_round_end(_summary(number, duration_seconds=seconds)) == []
    found = h.monitor.on_round_end(_summary(6, duration_seconds=95.0))
    assert [a.kind for a in found] == [ROUND_LATENCY]
    # median 20, MAD 0: the floor of 50% over the median applies.
    assert found[0].threshold == pytest.approx(30.0)
    _assert_recorded(h, ROUND_LATENCY, 6)


def test_round_latency_is_quiet_for_ordinary_variation(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    rng = np.random.default_rng(3)
    for number in range(1, 41):
        seconds = float(20.0 + rng.uniform(0.0, 4.0))
        assert h.monitor.on_round_end(_summary(number, duration_seconds=seconds)) == []
    _assert_quiet(h)


def test_robust_limit_ignores_a_past_outlier() -> None:
    history = [20.0, 21.0, 19.0, 20.0, 22.0, 300.0]
    assert robust_upper_limit(history, 5.0, 0.5) == pytest.approx(20.5 + 0.5 * 20.5)


def test_restored_history_skips_the_warm_up(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    for number in range(1, 7):
        h.store.create_round(number, common.ROUND_PHASE_COLLECTING, 0, b"descriptor", 0.0, 20.0)
        h.store.update_round(
            number,
            phase=common.ROUND_PHASE_DONE,
            outcome=common.ROUND_OUTCOME_PUBLISHED,
            end_time=20.0 + number % 2,
            contributors=10,
            epsilon_increment=1.0,
        )
    # A round refused while preparing never collected: no duration, no participation.
    h.store.create_round(7, common.ROUND_PHASE_PREPARING, 0, b"", 100.0, 100.0)
    h.store.update_round(7, phase=common.ROUND_PHASE_DONE, end_time=100.0)
    restarted = AnomalyMonitor(h.metrics, h.store, h.events)
    restarted.restore_history()
    found = restarted.on_round_end(_summary(8, selected=3, contributors=2, duration_seconds=90.0))
    assert sorted(a.kind for a in found) == [PARTICIPATION_DROP, ROUND_LATENCY]
    # The seventh charged round cost more than the sixth one restored from the store.
    found = restarted.on_round_end(_summary(9, epsilon_increment=2.0, epsilon_spent=8.0))
    assert [a.kind for a in found] == [BUDGET_BURN]


# --- recording ---------------------------------------------------------------------------------


def test_an_anomaly_is_logged_with_structured_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = _harness(tmp_path)
    with caplog.at_level(logging.WARNING, logger="coordinator.anomalies"):
        h.monitor.on_round_end(_summary(9, selected=10, contributors=1))
    records = [r for r in caplog.records if getattr(r, "anomaly_kind", None) == DROPOUT_SPIKE]
    assert len(records) == 1
    assert records[0].round_number == 9  # type: ignore[attr-defined]
    assert records[0].observed == pytest.approx(0.9)  # type: ignore[attr-defined]
    assert "kind=dropout_spike round=9" in records[0].getMessage()


def test_the_anomaly_event_reaches_live_watchers(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    queue = h.events.subscribe()
    h.monitor.on_round_end(_summary(2, selected=10, contributors=0))
    event = queue.get_nowait()
    assert event is not None
    assert event.kind == ops.ROUND_EVENT_KIND_ANOMALY
    assert event.phase == common.ROUND_PHASE_DONE
    assert event.detail.startswith("dropout_spike: observed 1, threshold 0.5")


def test_a_failing_detector_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = _harness(tmp_path)
    broken = NoiseFloor(clip_norm=1.0, scale=0.0, local_noise_variance=1.0, contribution_bound=1.0)
    opened = OpenedAggregate(np.ones(DIM), CLIENTS, {"near_modulus_fraction": 0.5})
    with caplog.at_level(logging.ERROR, logger="coordinator.anomalies"):
        found = h.monitor.on_round_end(_summary(3, opened=opened, noise_floor=broken))
    assert [a.kind for a in found] == [WRAP_RATE]
    assert any("_check_aggregate_norm failed" in r.getMessage() for r in caplog.records)


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="dropout_rate must be in"):
        AnomalyThresholds(dropout_rate=1.5)
    with pytest.raises(ValueError, match="latency_warmup_rounds must not exceed"):
        AnomalyThresholds(latency_warmup_rounds=30)
    assert AnomalyThresholds(aggregate_norm_factor=math.inf).aggregate_norm_factor == math.inf
