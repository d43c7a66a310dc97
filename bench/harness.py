"""Timing primitives, the Measurement record, targets, and the machine description."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeVar

T = TypeVar("T")

Comparison = Literal["<=", ">="]


@dataclass(frozen=True)
class Target:
    """A figure the design commits to, e.g. ``<= 8.2`` bytes per parameter."""

    op: Comparison
    value: float
    source: str = "DESIGN.md §12"

    def met_by(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return value <= self.value if self.op == "<=" else value >= self.value

    def shortfall(self, value: float) -> float:
        """How far ``value`` misses, as a fraction of the target (0 when it is met)."""
        if self.met_by(value) or self.value == 0:
            return 0.0
        return abs(value - self.value) / abs(self.value)

    def to_json(self) -> dict[str, object]:
        return {"op": self.op, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class Summary:
    """Median, extremes and count of a sample set."""

    median: float
    min: float
    max: float
    repetitions: int


def summarize(samples: Sequence[float]) -> Summary:
    """Median, min and max of ``samples`` (at least one, all finite).

    Raises:
        ValueError: for an empty sample set or a non-finite sample.
    """
    if not samples:
        raise ValueError("no samples")
    if not all(math.isfinite(s) for s in samples):
        raise ValueError(f"non-finite sample in {list(samples)[:5]}...")
    return Summary(
        median=float(statistics.median(samples)),
        min=float(min(samples)),
        max=float(max(samples)),
        repetitions=len(samples),
    )


@dataclass(frozen=True)
class Measurement:
    """One reported figure: its samples plus what it is compared against.

    Attributes:
        key: Flat dotted key ``suite.subject.figure``, e.g. ``crypto.fast.upload_bytes_per_param``.
        samples: Every observation (already normalised, e.g. per 1M parameters).
        unit: Unit of the samples (``ms``, ``B/param``...).
        description: One line: what was measured, on what.
        target: The design's target for this figure, if any.
        baseline: Key of the figure it is compared to, measured in the same run.
        notes: Method details a reader needs to interpret the figure.
    """

    key: str
    samples: tuple[float, ...]
    unit: str
    description: str
    target: Target | None = None
    baseline: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.key or self.key.count(".") < 2:
            raise ValueError(f"measurement key {self.key!r} must be suite.subject.figure")
        summarize(self.samples)  # refuses empty or non-finite samples early

    @property
    def summary(self) -> Summary:
        return summarize(self.samples)

    @property
    def suite(self) -> str:
        return self.key.split(".", 1)[0]


def measurement(
    key: str,
    samples: Sequence[float],
    unit: str,
    description: str,
    *,
    target: Target | None = None,
    baseline: str | None = None,
    notes: str = "",
) -> Measurement:
    """Builds a :class:`Measurement` from any sequence of numbers."""
    return Measurement(
        key, tuple(float(s) for s in samples), unit, description, target, baseline, notes
    )


def time_ms(action: Callable[[], T]) -> tuple[float, T]:
    """Runs ``action`` once; returns (wall milliseconds, its result)."""
    start = time.perf_counter()
    result = action()
    return (time.perf_counter() - start) * 1e3, result


def repeat_ms(
    action: Callable[[], T], repetitions: int, *, warmup: int = 0
) -> tuple[list[float], T]:
    """Times ``action`` ``repetitions`` times after ``warmup`` untimed runs.

    Returns:
        The samples in milliseconds and the last result.
    """
    if repetitions < 1:
        raise ValueError("at least one repetition")
    for _ in range(warmup):
        action()
    ms, result = time_ms(action)
    samples = [ms]
    for _ in range(repetitions - 1):
        ms, result = time_ms(action)
        samples.append(ms)
    return samples, result


@dataclass
class Stopwatch:
    """Accumulates samples of one step that is interleaved with others (e.g. per upload)."""

    samples: list[float] = field(default_factory=list)

    @contextmanager
    def timing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.samples.append((time.perf_counter() - start) * 1e3)


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load average, where the platform has one."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    # Metadata, not import: importing torch alone costs seconds and memory we are measuring.
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, object]:
    """What the figures were measured on: CPU, cores, memory, versions, threads, load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "numpy": _version("numpy"),
        "openfhe": _version("openfhe"),
        "torch": _version("torch"),
        "tenseal": _version("tenseal"),
        "cryptography": _version("cryptography"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": _git_commit(),
        "load_average": list(load_average() or ()),
    }


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class BenchmarkError(RuntimeError):
    """What was measured did not work (e.g. a decrypted sum is wrong): no figure is valid."""


@dataclass(frozen=True)
class RunContext:
    """What a suite is told about the run.

    Attributes:
        quick: Smoke mode: small inputs, few clients; figures are indicative only.
        parts: Parts of this suite selected with ``--only suite.part``; None selects all.
        log: Progress sink (stderr by default); one line per call.
    """

    quick: bool = False
    parts: frozenset[str] | None = None
    log: Callable[[str], None] = _stderr

    def wants(self, part: str) -> bool:
        """Whether ``part`` of the suite should run."""
        return self.parts is None or part in self.parts
