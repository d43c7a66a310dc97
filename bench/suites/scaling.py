"""Scaling suite: round time and coordinator memory against workers and against model size.

Each point is a fresh coordinator process (oneshot profile) with a 3-member committee and N
simulated devices in one helper process (bench/suites/_fleet.py): real protocol clients that
encode and mask real oneshot uploads, without training. Peak memory is the coordinator's VmHWM,
so every point needs its own process. Plots go to bench/results/ (see PLOT_DIR_ENV).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Measurement, RunContext, measurement
from bench.suites import Suite
from bench.suites._fleet import ROOT, Fleet, FleetSpec, metric, round_seconds

PLOT_DIR_ENV = "HEFL_BENCH_PLOT_DIR"
DEFAULT_PLOT_DIR = ROOT / "bench" / "results"
# Devices that check in with a digits-sized model: what the worker axis varies is their number.
WORKER_AXIS_PARAMETERS = 10_000
SIZE_AXIS_DEVICES = 5
# DP noise on, drawn by the same sampler as at any epsilon; at epsilon 8 a 10M-parameter model
# with five contributors does not fit 16 bits (the coordinator refuses to start).
EPSILON = 1e6


@dataclass(frozen=True)
class Plan:
    """Axes and repetitions of a run."""

    workers: tuple[int, ...]
    sizes: tuple[int, ...]
    worker_rounds: int
    size_rounds: int


FULL = Plan(
    workers=(10, 50, 100, 250, 500),
    sizes=(100_000, 1_000_000, 3_000_000, 10_000_000),
    worker_rounds=4,
    size_rounds=3,
)
QUICK = Plan(workers=(10, 100), sizes=(100_000, 1_000_000), worker_rounds=2, size_rounds=2)


@dataclass(frozen=True)
class Point:
    """What one fleet measured."""

    x: int
    round_seconds: list[float]
    open_seconds: float
    peak_mib: float


def size_label(parameters: int) -> str:
    """100000 -> ``100k``, 1000000 -> ``1m``, 3000000 -> ``3m`` (for keys and ticks)."""
    if parameters >= 1_000_000 and parameters % 1_000_000 == 0:
        return f"{parameters // 1_000_000}m"
    if parameters >= 1000 and parameters % 1000 == 0:
        return f"{parameters // 1000}k"
    return str(parameters)


def later_rounds(seconds: Sequence[float]) -> list[float]:
    """Rounds after the first (which also carries the key ceremony), or all if only one."""
    return list(seconds[1:]) or list(seconds)


def _measure(spec: FleetSpec, timeout: float) -> Point:
    with Fleet(spec) as fleet:
        rounds = asyncio.run(fleet.wait_for_rounds(spec.rounds, timeout))
        samples = fleet.metrics()
        peak = fleet.peak_rss_mib()
    opened = metric(samples, "hefl_coordinator_decryption_duration_seconds_sum") / max(
        metric(samples, "hefl_coordinator_decryption_duration_seconds_count"), 1.0
    )
    return Point(0, later_rounds([round_seconds(r) for r in rounds]), opened, peak)


def _spec(root: Path, name: str, parameters: int, devices: int, rounds: int) -> FleetSpec:
    return FleetSpec(
        workdir=root / name,
        parameters=parameters,
        contributors=devices,
        helper_devices=devices,
        rounds=rounds,
        epsilon=EPSILON,
    )


def _axis(
    values: Sequence[int],
    make: Callable[[int], FleetSpec],
    rounds: int,
    ctx: RunContext,
    what: str,
) -> list[Point]:
    points = []
    for value in values:
        point = _measure(make(value), timeout=180.0 + 120.0 * rounds)
        point = Point(value, point.round_seconds, point.open_seconds, point.peak_mib)
        ctx.log(
            f"  {what} {value:,}: round {statistics.median(point.round_seconds):.2f} s, "
            f"opening {point.open_seconds:.2f} s, coordinator peak {point.peak_mib:.0f} MiB"
        )
        points.append(point)
    return points


def _figures(
    axis: str, points: list[Point], label: Sequence[str], describe: Sequence[str]
) -> list[Measurement]:
    out: list[Measurement] = []
    base = f"scaling.{axis}_{label[0]}"
    for point, name, what in zip(points, label, describe, strict=True):
        key = f"scaling.{axis}_{name}"
        first = key == base
        out += [
            measurement(
                f"{key}.round_seconds",
                point.round_seconds,
                "s",
                f"{what}: round wall time, window open to publication",
                baseline=None if first else f"{base}.round_seconds",
                notes=f"{len(point.round_seconds)} rounds after the first.",
            ),
            measurement(
                f"{key}.opening_seconds",
                [point.open_seconds],
                "s",
                f"{what}: committee opening + decode per round (coordinator's mean)",
                baseline=None if first else f"{base}.opening_seconds",
            ),
            measurement(
                f"{key}.coordinator_peak_mib",
                [point.peak_mib],
                "MiB",
                f"{what}: coordinator process peak RSS (VmHWM) over the whole run",
                baseline=None if first else f"{base}.coordinator_peak_mib",
            ),
        ]
    return out


# --------------------------------------------------------------------------- plots


def plot_path(name: str, quick: bool, directory: Path | None = None) -> Path:
    """Where a plot goes: ``$HEFL_BENCH_PLOT_DIR`` or bench/results/, ``_quick`` in quick mode
    so that a smoke run never replaces the full run's plots."""
    root = directory or Path(os.environ.get(PLOT_DIR_ENV) or DEFAULT_PLOT_DIR)
    return root / f"{name}{'_quick' if quick else ''}.png"


def write_plot(
    path: Path, points: Sequence[Point], x_label: str, title: str, log_x: bool = False
) -> Path:
    """Two panels: round time (median, min-max bars, and opening) and coordinator peak RSS."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    xs = [p.x for p in points]
    medians = [statistics.median(p.round_seconds) for p in points]
    low = [m - min(p.round_seconds) for m, p in zip(medians, points, strict=True)]
    high = [max(p.round_seconds) - m for m, p in zip(medians, points, strict=True)]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    time_axis.errorbar(xs, medians, yerr=[low, high], marker="o", capsize=3, label="round")
    time_axis.plot(xs, [p.open_seconds for p in points], marker="s", label="opening + decode")
    time_axis.set_ylabel("seconds")
    time_axis.legend()
    memory_axis.plot(xs, [p.peak_mib for p in points], marker="o", color="tab:red")
    memory_axis.set_ylabel("coordinator peak RSS (MiB)")
    for axis in (time_axis, memory_axis):
        axis.set_xlabel(x_label)
        axis.grid(True, alpha=0.3)
        if log_x:
            axis.set_xscale("log")
        axis.set_ylim(bottom=0)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------- suite


@dataclass(frozen=True)
class Axis:
    """One scaling curve: what varies, how a point is set up, and how it is named and plotted."""

    part: str
    key: str
    values: tuple[int, ...]
    rounds: int
    spec: Callable[[int], FleetSpec]
    label: Callable[[int], str]
    describe: Callable[[int], str]
    unit: str
    x_label: str
    title: str
    log_x: bool = False


def _axes(plan: Plan, root: Path, mode: str) -> list[Axis]:
    return [
        Axis(
            part="workers",
            key="workers",
            values=plan.workers,
            rounds=plan.worker_rounds,
            spec=lambda n: _spec(root, f"w{n}", WORKER_AXIS_PARAMETERS, n, plan.worker_rounds),
            label=str,
            describe=lambda n: f"oneshot, {n} workers, {WORKER_AXIS_PARAMETERS:,} params",
            unit="workers",
            x_label="simulated workers (all contribute every round)",
            title=f"oneshot, {WORKER_AXIS_PARAMETERS:,} parameters{mode}",
        ),
        Axis(
            part="model_size",
            key="params",
            values=plan.sizes,
            rounds=plan.size_rounds,
            spec=lambda p: _spec(root, f"p{p}", p, SIZE_AXIS_DEVICES, plan.size_rounds),
            label=size_label,
            describe=lambda p: f"oneshot, {p:,} params, {SIZE_AXIS_DEVICES} workers",
            unit="parameters",
            x_label="model parameters",
            title=f"oneshot, {SIZE_AXIS_DEVICES} workers{mode}",
            log_x=True,
        ),
    ]


def run(quick: bool, ctx: RunContext) -> list[Measurement]:
    """Both axes, one fresh coordinator per point, and a plot per axis."""
    plan = QUICK if quick else FULL
    root = Path(tempfile.mkdtemp(prefix="hefl-bench-scaling-"))
    out: list[Measurement] = []
    for axis in _axes(plan, root, " (quick mode)" if quick else ""):
        if not ctx.wants(axis.part):
            continue
        ctx.log(f"scaling.{axis.part}: {axis.values}")
        points = _axis(axis.values, axis.spec, axis.rounds, ctx, axis.unit)
        out += _figures(
            axis.key,
            points,
            [axis.label(p.x) for p in points],
            [axis.describe(p.x) for p in points],
        )
        plot = write_plot(
            plot_path(f"scaling_{axis.part}", quick),
            points,
            axis.x_label,
            axis.title,
            log_x=axis.log_x,
        )
        ctx.log(f"  wrote {plot}")
    return out


NOTES = """\
Each point is a fresh coordinator process (oneshot, b=16, DP noise on at epsilon 1e6: the
same Skellam sampler as at any epsilon, but epsilon 8 does not fit 16 bits at 10M parameters
with five contributors), a 3-member committee and N simulated devices, all on insecure
loopback; goal and minimum are N, so every device contributes to every round. The devices
(`bench/suites/_fleet.py`) are real protocol clients: they enrol, check in, verify the
committee's signed descriptor, run the worker's `OneshotEncoder` (codec, noise, mask, sealed
key shares) on a fixed random delta, sign and stream the upload; they skip training. They
all run in ONE helper process, so the round time includes N devices' encoding done one core's
worth at a time: on the worker axis that is a few ms per device; on the model-size axis,
about 2.5 s per device at 10M parameters, most of the round. `opening_seconds` is the
coordinator's own `hefl_coordinator_decryption_duration_seconds` (committee opening, unmask,
decode), and peak RSS is the coordinator's VmHWM from /proc over the whole run (start-up,
enrolment, every round). Round times exclude the first round (it carries the key ceremony).
The worker axis uses a 10,000-parameter model; the model-size axis, five devices.

![Round time and coordinator memory against workers](../bench/results/scaling_workers.png)

![Round time and coordinator memory against model size](../bench/results/scaling_model_size.png)

The plots are written by the full run (a quick run writes `*_quick.png` beside them;
`HEFL_BENCH_PLOT_DIR` moves them).
"""

SUITE = Suite(
    name="scaling",
    description="round time and coordinator peak memory against workers and model size",
    run=run,
    parts=("workers", "model_size"),
    notes=NOTES,
)
