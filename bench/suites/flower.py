"""Flower reference (optional): the federation suite's digits task under Flower's FedAvg,
in the clear (``fedavg``) and with SecAgg+ secure aggregation (``secaggplus``).

Opt-in and skip-safe: it runs only if .venv-flower exists with flwr importable
(scripts/flower-venv.sh creates it; flwr cannot share hefl's venv, its protobuf pin conflicts).
Anything that keeps it from running is reported as a ``flower.*.skipped`` figure whose notes give
the reason, never as a suite failure, so ``make bench`` does not depend on Flower.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Measurement, RunContext, measurement
from bench.suites import Suite
from bench.suites._fleet import ROOT

PYTHON_ENV = "HEFL_FLOWER_PYTHON"
DEFAULT_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
CLIENTS = 10  # the federation suite's ten devices
SEED = 0


@dataclass(frozen=True)
class FlowerRun:
    """What the Flower run reported, or why there is none."""

    report: dict[str, Any] | None
    reason: str = ""


def flower_python() -> Path:
    """The interpreter of the Flower venv (``$HEFL_FLOWER_PYTHON`` overrides)."""
    return Path(os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)


def unavailable(python: Path) -> str:
    """Why Flower cannot run with ``python`` ('' when it can)."""
    if not python.exists():
        return f"no Flower venv at {python} (create it with scripts/flower-venv.sh)"
    try:
        probe = subprocess.run(
            [str(python), "-c", "import flwr; print(flwr.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"{python} does not run: {error}"
    if probe.returncode != 0:
        return f"flwr does not import in {python}: {probe.stderr.strip()[-300:]}"
    return ""


def write_task(path: Path, clients: int = CLIENTS, seed: int = SEED) -> Path:
    """The digits task as examples/digits.py defines it, for a venv without hefl or torch:
    each device's training rows (its shard minus the fifth it holds out), the test split and
    the initial weights in torch's parameter order."""
    from examples import digits

    data = digits.load(seed)
    arrays: dict[str, Any] = {
        "seed": np.int64(seed),
        "clients": np.int64(clients),
        "width": np.int64(digits.HIDDEN),
        "initial": digits.initial_weights(seed, digits.HIDDEN),
        "test_x": data.test_x,
        "test_y": data.test_y,
    }
    for shard, indices in enumerate(digits.shard_indices(data.train_y, clients, seed)):
        train = np.setdiff1d(indices, indices[::5])  # as digits.make_trainer
        arrays[f"shard{shard}_x"] = data.train_x[train]
        arrays[f"shard{shard}_y"] = data.train_y[train]
    np.savez(path, **arrays)
    return path


def run_flower(python: Path, workdir: Path, rounds: int, timeout: float) -> FlowerRun:
    """Runs bench/flower_task/run.py in the Flower venv; never raises."""
    task = write_task(workdir / "task.npz")
    command = [str(python), "-m", "bench.flower_task.run", "--task", str(task)]
    command += ["--rounds", str(rounds), "--logs", str(workdir)]
    return _run_task(command, workdir, timeout)


def run_secaggplus(python: Path, workdir: Path, rounds: int, timeout: float) -> FlowerRun:
    """Runs bench/flower_task/secagg.py (Deployment Engine, SecAgg+) in the Flower venv; never
    raises. Its report must also show every client's masked update in every round's sum."""
    task = write_task(workdir / "task.npz")
    command = [str(python), "-m", "bench.flower_task.secagg", "--task", str(task)]
    command += ["--rounds", str(rounds), "--logs", str(workdir), "--timeout", f"{timeout:.0f}"]
    result = _run_task(command, workdir, timeout + 120.0)  # + start-up and shut-down
    return result if result.report is None else check_secaggplus(result.report)


def _run_task(command: list[str], workdir: Path, timeout: float) -> FlowerRun:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return FlowerRun(None, f"Flower run exceeded {timeout:.0f} s (logs in {workdir})")
    except OSError as error:
        return FlowerRun(None, f"Flower run did not start: {error}")
    return parse_report(done.returncode, done.stdout, done.stderr)


def check_secaggplus(report: dict[str, Any]) -> FlowerRun:
    """The SecAgg+ report, if no client dropped out of any round's secure sum."""
    clients = int(report["clients"])
    counts = report.get("aggregated_clients", {})
    short = {r: n for r, n in counts.items() if int(n) != clients}
    if len(counts) != int(report["rounds"]) or short:
        return FlowerRun(
            None, f"SecAgg+ did not sum all {clients} clients every round: {counts or 'no counts'}"
        )
    return FlowerRun(report)


def parse_report(returncode: int, stdout: str, stderr: str) -> FlowerRun:
    """The run's JSON line, checked: every round timed and evaluated, every client exited 0."""
    if returncode != 0:
        return FlowerRun(None, f"Flower run exited {returncode}: {stderr.strip()[-400:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        return FlowerRun(None, "Flower run printed no report")
    report: dict[str, Any] = json.loads(lines[-1])
    rounds = int(report["rounds"])
    if len(report["round_seconds"]) != rounds or str(rounds) not in report["accuracy"]:
        return FlowerRun(
            None, f"Flower completed {len(report['round_seconds'])} of {rounds} rounds"
        )
    if any(code != 0 for code in report.get("client_exit_codes", [])):
        return FlowerRun(None, f"Flower clients exited {report['client_exit_codes']}")
    return FlowerRun(report)


def skipped(key: str, reason: str) -> Measurement:
    """A figure that records why a part did not run (the reason is in its notes)."""
    return measurement(
        f"flower.{key}.skipped",
        [1.0],
        "flag",
        f"Flower {key} reference not measured",
        notes=f"skipped: {reason}",
    )


def figures(report: dict[str, Any], part: str = "fedavg") -> list[Measurement]:
    """Accuracy and round time of a Flower run, against the federation suite's plaintext."""
    rounds = int(report["rounds"])
    seconds = [report["round_seconds"][str(r)] for r in range(1, rounds + 1)]
    what = f"Flower {report['flwr']} {PARTS[part]}, {report['clients']} clients, digits MLP"
    return [
        measurement(
            f"flower.{part}.final_accuracy",
            [report["accuracy"][str(rounds)]],
            "fraction",
            f"{what}: test accuracy after {rounds} rounds",
            baseline="federation.plaintext.final_accuracy",
            notes="Ratio only when the federation suite ran in the same invocation.",
        ),
        measurement(
            f"flower.{part}.round_seconds",
            seconds[1:] or seconds,
            "s",
            f"{what}: round wall time, configure_fit to the end of aggregate_fit",
            baseline="federation.plaintext.round_seconds",
            notes="Rounds after the first, as the federation suite.",
        ),
    ]


PARTS = {
    "fedavg": "FedAvg (legacy start_server / start_client, a process per client)",
    "secaggplus": "FedAvg with SecAgg+ (Deployment Engine: SuperLink, a SuperNode per client)",
}
RUNNERS = {"fedavg": run_flower, "secaggplus": run_secaggplus}
# Flower's Deployment Engine polls every 3 s at each of SecAgg+'s four stages: about 25 s a round,
# too slow for the five-minute smoke run.
QUICK_SKIP = "quick mode (a SecAgg+ round takes about 25 s here; the full run measures it)"


def run(quick: bool, ctx: RunContext) -> list[Measurement]:
    """FedAvg, then FedAvg with SecAgg+, under Flower for the federation suite's rounds;
    a skipped figure with the reason for each part that does not run."""
    rounds = 4 if quick else 20  # the federation suite's
    out: list[Measurement] = []
    python = flower_python()
    reason = unavailable(python)
    for part, runner in RUNNERS.items():
        if not ctx.wants(part):
            continue
        why = reason or (QUICK_SKIP if quick and part == "secaggplus" else "")
        if why:
            ctx.log(f"flower.{part}: skipped: {why}")
            out.append(skipped(part, why))
            continue
        ctx.log(f"flower.{part}: {CLIENTS} clients, {rounds} rounds ({python})")
        workdir = Path(tempfile.mkdtemp(prefix=f"hefl-bench-flower-{part}-"))
        # A SecAgg+ round starts a ClientApp process per client for each of its four stages.
        per_round = 30.0 if part == "fedavg" else 120.0
        try:
            result = runner(python, workdir, rounds, 180.0 + per_round * rounds)
        except Exception as error:  # noqa: BLE001 - an optional reference must never fail
            result = FlowerRun(None, f"{type(error).__name__}: {error} (logs in {workdir})")
        if result.report is None:
            ctx.log(f"flower.{part}: skipped: {result.reason}")
            out.append(skipped(part, result.reason))
            continue
        measured = figures(result.report, part)
        ctx.log(
            f"  accuracy {measured[0].summary.median:.4f}, round "
            f"{statistics.median(measured[1].samples):.2f} s"
        )
        out += measured
    return out


NOTES = """\
An external reference, not a target. The task is the federation suite's: examples/digits.py's
non-IID split over ten devices (each keeps a fifth of its shard held out), the same initial
weights, two local epochs of SGD at 0.1 with batches of 16, and FedAvg weighting every device
equally as hefl does. Flower runs in a separate venv (.venv-flower, created by
`scripts/flower-venv.sh`; flwr pins protobuf versions that conflict with hefl's), with all
traffic on insecure loopback gRPC. `fedavg` uses Flower's legacy `start_server` /
`start_client` with ten client processes. `secaggplus` packages bench/flower_task/secagg_app.py
as a Flower App and runs it on the Deployment Engine (bench/flower_task/secagg.py): one
`flower-superlink`, ten `flower-supernode`s (node config `partition-id`), `flwr run`; the
ServerApp drives FedAvg through `SecAggPlusWorkflow` (ten shares, reconstruction threshold six,
no dropouts), the ClientApp uses `secaggplus_mod`, and each SuperNode starts a fresh
`flwr-clientapp` process for every message. Its round time is mostly waiting, not crypto: in
flwr 1.30 an idle SuperNode polls for messages every 3 s and the ServerApp polls for replies
every 3 s, for each of a round's four SecAgg+ stages. No Ray: the simulation engine is not
used. Flower's clients train the MLP in numpy (bench/flower_task/mlp.py: the same maths as the
torch model, but not the same shuffling or float summation order), so accuracies agree with
hefl's in trend, not to the last digit; the SecAgg+ clients replay the FedAvg clients'
shuffles, so the two Flower accuracies differ only by SecAgg+'s quantization. Round time is
from `configure_fit` to the end of `aggregate_fit`; hefl's is from window open to publication
and includes the model download. hefl's devices pull: they check in when their retry window
comes (the federation suite gives windows of up to 1 s), which is most of a plaintext hefl
round here, where Flower's legacy clients hold a stream open and get their instructions pushed.
The like-for-like secure comparison is `flower.secaggplus.round_seconds` against
`federation.oneshot_b8.round_seconds` (both pull-based, secure aggregation, no DP). Quick mode
runs FedAvg only. If the venv is missing or a run fails, a `flower.<part>.skipped` figure says
why.
"""

SUITE = Suite(
    name="flower",
    description="optional external reference: digits under Flower FedAvg and SecAgg+ (own venv)",
    run=run,
    parts=("fedavg", "secaggplus"),
    notes=NOTES,
)
