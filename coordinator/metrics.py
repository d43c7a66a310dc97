"""Prometheus metrics of the coordinator, created against a registry so tests can use a fresh one.

Names follow ``hefl_<subsystem>_<name>_<unit>``; counters end in ``_total``; labels come from small
fixed sets (outcome, phase, method, code, kind, direction), never device ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUND_OUTCOMES = ("published", "below_quorum", "committee_failed", "budget_refused", "rejected")
ROUND_PHASES = ("preparing", "collecting", "certifying", "opening", "applying")
# HE work takes milliseconds to minutes: buckets span that, not the web defaults.
_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ROUND_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class CoordinatorMetrics:
    """Every metric the coordinator exports."""

    registry: CollectorRegistry
    rounds: Counter
    round_phase_seconds: Histogram
    round_seconds: Histogram
    contributors: Gauge
    dropouts: Gauge
    selected: Gauge
    bytes_received: Counter
    bytes_sent: Counter
    uploads_accepted: Counter
    upload_rejections: Counter
    rpc_errors: Counter
    aggregation_seconds: Histogram
    decryption_seconds: Histogram
    active_workers: Gauge
    enrolled_workers: Gauge
    global_version: Gauge
    current_round: Gauge
    key_epoch: Gauge
    epsilon_spent: Gauge
    epsilon_remaining: Gauge
    budget_exhaustions: Counter
    validation_rejections: Counter
    anomalies: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> CoordinatorMetrics:
        """Creates the metrics in ``registry`` (a fresh one when None)."""
        registry = registry or CollectorRegistry()
        metrics = cls(
            registry=registry,
            rounds=Counter(
                "hefl_coordinator_rounds_total",
                "Rounds ended, by outcome.",
                ["outcome"],
                registry=registry,
            ),
            round_phase_seconds=Histogram(
                "hefl_coordinator_round_phase_duration_seconds",
                "Time spent in each round phase.",
                ["phase"],
                buckets=_SECONDS_BUCKETS + (600, 1800),
                registry=registry,
            ),
            round_seconds=Histogram(
                "hefl_coordinator_round_duration_seconds",
                "Wall time from round open to its end.",
                buckets=_ROUND_BUCKETS,
                registry=registry,
            ),
            contributors=Gauge(
                "hefl_coordinator_round_contributors",
                "Uploads accepted in the current or last round.",
                registry=registry,
            ),
            dropouts=Gauge(
                "hefl_coordinator_round_dropouts",
                "Selected devices of the last ended round that did not contribute.",
                registry=registry,
            ),
            selected=Gauge(
                "hefl_coordinator_round_selected",
                "Devices given a task in the current or last round.",
                registry=registry,
            ),
            bytes_received=Counter(
                "hefl_coordinator_received_bytes_total",
                "Payload bytes received (uploads and committee output).",
                ["stream"],
                registry=registry,
            ),
            bytes_sent=Counter(
                "hefl_coordinator_sent_bytes_total",
                "Payload bytes sent (model downloads and committee input).",
                ["stream"],
                registry=registry,
            ),
            uploads_accepted=Counter(
                "hefl_coordinator_uploads_accepted_total",
                "Uploads verified and added to a running aggregate.",
                registry=registry,
            ),
            upload_rejections=Counter(
                "hefl_coordinator_upload_rejections_total",
                "Upload streams refused, by gRPC status code.",
                ["code"],
                registry=registry,
            ),
            rpc_errors=Counter(
                "hefl_coordinator_rpc_errors_total",
                "Calls that ended with an error status, by method and code.",
                ["method", "code"],
                registry=registry,
            ),
            aggregation_seconds=Histogram(
                "hefl_coordinator_aggregation_duration_seconds",
                "Time to verify and add one upload into the running aggregate.",
                buckets=_SECONDS_BUCKETS,
                registry=registry,
            ),
            decryption_seconds=Histogram(
                "hefl_coordinator_decryption_duration_seconds",
                "Time from asking the committee to open an aggregate to the decoded sum.",
                buckets=_SECONDS_BUCKETS,
                registry=registry,
            ),
            active_workers=Gauge(
                "hefl_coordinator_active_workers",
                "Workers that called within the activity period.",
                registry=registry,
            ),
            enrolled_workers=Gauge(
                "hefl_coordinator_enrolled_workers", "Workers enrolled.", registry=registry
            ),
            global_version=Gauge(
                "hefl_coordinator_global_version",
                "Latest published global model version.",
                registry=registry,
            ),
            current_round=Gauge(
                "hefl_coordinator_current_round", "Number of the newest round.", registry=registry
            ),
            key_epoch=Gauge(
                "hefl_coordinator_key_epoch", "Current committee key epoch.", registry=registry
            ),
            epsilon_spent=Gauge(
                "hefl_privacy_epsilon_spent",
                "Cumulative epsilon of the federation at the configured delta.",
                registry=registry,
            ),
            epsilon_remaining=Gauge(
                "hefl_privacy_epsilon_remaining",
                "Epsilon budget left at the configured delta.",
                registry=registry,
            ),
            budget_exhaustions=Counter(
                "hefl_privacy_budget_exhaustions_total",
                "Rounds refused because they would exceed the privacy budget.",
                registry=registry,
            ),
            validation_rejections=Counter(
                "hefl_worker_validation_rejections_total",
                "Validation-hook rejections reported by devices, by what was rejected.",
                ["target"],
                registry=registry,
            ),
            anomalies=Counter(
                "hefl_anomalies_total",
                "Anomalies detected, by kind.",
                ["kind"],
                registry=registry,
            ),
        )
        for outcome in ROUND_OUTCOMES:
            metrics.rounds.labels(outcome)
        for phase in ROUND_PHASES:
            metrics.round_phase_seconds.labels(phase)
        for stream in ("upload", "committee"):
            metrics.bytes_received.labels(stream)
        for stream in ("model", "committee"):
            metrics.bytes_sent.labels(stream)
        for target in ("update", "correction"):
            metrics.validation_rejections.labels(target)
        return metrics
