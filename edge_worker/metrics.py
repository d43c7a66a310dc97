"""Prometheus metrics of one edge worker, and the per-task record they and its log line come from.

Names follow ``hefl_worker_<name>_<unit>``; counters end in ``_total``; labels come from small
fixed sets (outcome, target, stream), never worker ids or display names: one process is one
device, and Prometheus' ``instance`` label already tells devices apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hefl.v1 import federation_service_pb2 as fed

TASK_OUTCOMES = tuple(
    name.removeprefix("TASK_OUTCOME_").lower()
    for name, number in fed.TaskOutcome.items()
    if number != fed.TASK_OUTCOME_UNSPECIFIED
)
HOOK_TARGETS = ("update", "correction")
PHASES = ("train", "encode", "upload")

# Local training spans sub-second toy models to many minutes on a phone; encoding (clip, rotate,
# quantize, noise, mask or encrypt) milliseconds to about a minute for BGV; transfers depend on
# the link, from loopback to a slow cellular uplink.
_TRAIN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_ENCODE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_UPLOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def outcome_label(outcome: int) -> str:
    """``TASK_OUTCOME_UPLOADED`` (a number) -> ``uploaded``."""
    name = fed.TaskOutcome.Name(fed.TaskOutcome.ValueType(outcome))
    return name.removeprefix("TASK_OUTCOME_").lower()


@dataclass
class TaskProgress:
    """What one task did and cost; filled in by the runtime as the task goes."""

    round_number: int = 0
    outcome: str = ""
    received_bytes: int = 0
    """Model payload bytes downloaded for the task (correction chain or full model)."""
    sent_bytes: int = 0
    """Payload bytes of the update the coordinator accepted."""
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds of each phase that completed (see :data:`PHASES`)."""

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Measures ``phase``; a phase that raises records nothing (it did not complete)."""
        started = time.perf_counter()
        yield
        self.durations[phase] = time.perf_counter() - started

    def as_dict(self, epsilon_spent: float, global_version: int) -> dict[str, Any]:
        """The record as plain data (the ``task`` field of JSON log lines)."""
        return {
            "round": self.round_number,
            "outcome": self.outcome,
            "received_bytes": self.received_bytes,
            "sent_bytes": self.sent_bytes,
            **{f"{phase}_seconds": round(s, 6) for phase, s in self.durations.items()},
            "epsilon_spent": epsilon_spent,
            "global_version": global_version,
        }

    def summary(self, epsilon_spent: float, global_version: int) -> str:
        """One human-readable console line."""
        round_text = str(self.round_number) if self.round_number else "?"
        timings = ", ".join(
            f"{phase} {self.durations[phase]:.2f}s" for phase in PHASES if phase in self.durations
        )
        return (
            f"round {round_text}: {self.outcome.replace('_', ' ')}"
            f"; received {_bytes(self.received_bytes)}, sent {_bytes(self.sent_bytes)}"
            f"; {timings or 'no phase completed'}"
            f"; epsilon spent {epsilon_spent:.4g}; holding version {global_version}"
        )


def _bytes(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    if count < 1_000_000:
        return f"{count / 1000:.1f} kB"
    return f"{count / 1_000_000:.1f} MB"


@dataclass(frozen=True)
class WorkerMetrics:
    """Every metric an edge worker exports, on the worker's own registry."""

    registry: CollectorRegistry
    rounds: Counter
    hook_rejections: Counter
    sent_bytes: Counter
    received_bytes: Counter
    train_seconds: Histogram
    encode_seconds: Histogram
    upload_seconds: Histogram
    epsilon_spent: Gauge
    global_version: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> WorkerMetrics:
        """Creates the metrics in ``registry`` (a fresh one when None, never the global one)."""
        registry = registry or CollectorRegistry()
        metrics = cls(
            registry=registry,
            rounds=Counter(
                "hefl_worker_rounds_total",
                "Tasks this device worked, by outcome.",
                ["outcome"],
                registry=registry,
            ),
            # Not hefl_worker_validation_rejections_total: the coordinator exports that name for
            # what all devices report, and one name for both would double-count in sum().
            hook_rejections=Counter(
                "hefl_worker_hook_rejections_total",
                "This device's validation-hook rejections, by what was rejected.",
                ["target"],
                registry=registry,
            ),
            sent_bytes=Counter(
                "hefl_worker_sent_bytes_total",
                "Payload bytes of accepted uploads.",
                ["stream"],
                registry=registry,
            ),
            received_bytes=Counter(
                "hefl_worker_received_bytes_total",
                "Payload bytes downloaded.",
                ["stream"],
                registry=registry,
            ),
            train_seconds=Histogram(
                "hefl_worker_train_duration_seconds",
                "Local training time per task.",
                buckets=_TRAIN_BUCKETS,
                registry=registry,
            ),
            encode_seconds=Histogram(
                "hefl_worker_encode_duration_seconds",
                "Time to clip, quantize, noise and mask or encrypt one update.",
                buckets=_ENCODE_BUCKETS,
                registry=registry,
            ),
            upload_seconds=Histogram(
                "hefl_worker_upload_duration_seconds",
                "Time from the first upload attempt to the coordinator's acceptance.",
                buckets=_UPLOAD_BUCKETS,
                registry=registry,
            ),
            epsilon_spent=Gauge(
                "hefl_worker_epsilon_spent",
                "Epsilon this device has spent, from its own privacy ledger.",
                registry=registry,
            ),
            global_version=Gauge(
                "hefl_worker_global_version",
                "Global model version this device holds.",
                registry=registry,
            ),
        )
        # Every label value from the start, so rate() and absent() work before the first event.
        for outcome in TASK_OUTCOMES:
            metrics.rounds.labels(outcome)
        for target in HOOK_TARGETS:
            metrics.hook_rejections.labels(target)
        metrics.sent_bytes.labels("upload")
        metrics.received_bytes.labels("model")
        return metrics

    def observe_state(self, epsilon_spent: float, global_version: int) -> None:
        """Sets the gauges (at start-up from the device's stored state, then after each task)."""
        self.epsilon_spent.set(epsilon_spent)
        self.global_version.set(global_version)

    def record_task(self, task: TaskProgress, epsilon_spent: float, global_version: int) -> None:
        """Counts one finished task."""
        self.rounds.labels(task.outcome).inc()
        self.sent_bytes.labels("upload").inc(task.sent_bytes)
        self.received_bytes.labels("model").inc(task.received_bytes)
        histograms = {
            "train": self.train_seconds,
            "encode": self.encode_seconds,
            "upload": self.upload_seconds,
        }
        for phase, seconds in task.durations.items():
            histograms[phase].observe(seconds)
        self.observe_state(epsilon_spent, global_version)
