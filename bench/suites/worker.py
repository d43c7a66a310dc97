"""Worker suite: a device's time per round by phase, and its peak memory with and without hefl.

Phases: the real worker runtime (edge_worker/runner.py) trains the digits MLP in this process and
works real rounds against a real coordinator process on loopback; its own TaskProgress record
gives training, encode and upload time, and a thin subclass of its encoder splits the encode
phase into the codec (clip, rotate, quantize, DP noise) and the mask or encryption. Memory: child
processes train the same model with plain PyTorch, or train and encode with hefl, and report their
peak resident set (VmHWM).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.harness import BenchmarkError, Measurement, RunContext, Target, measurement
from bench.suites import Suite
from bench.suites._fleet import FEDERATION, ROOT, Fleet, FleetSpec, child_environment
from bench.suites._memory_probe import build_model, parameter_count
from edge_worker.bgv_encoder import BgvEncoder
from edge_worker.config import WorkerConfig
from edge_worker.encoders import OneshotEncoder, SecureEncoder
from edge_worker.metrics import TaskProgress, WorkerMetrics
from edge_worker.runner import WorkerRuntime
from edge_worker.tls import enrollment_verifier
from edge_worker.training import TorchTrainer
from examples import digits
from hefl.v1 import common_pb2 as common

SECTION = "DESIGN.md §12"
MEMORY_TARGET = Target("<=", 1.2, f"{SECTION}: worker peak memory over plain training")
# This suite times the pipeline, not privacy. With three contributors, epsilon 8 (or even 1000)
# adds noise of std 2 (0.1) per coordinate to the model and the CNN's loss turns NaN in a round;
# at 1e6 the noise is still drawn by the same Skellam sampler (PTRS, variance 5.5e5 integer
# units against 1.7e7 at epsilon 8), at the same cost, and the model keeps training.
EPSILON = 1e6
SHARDS = 10  # like each of the federation suite's ten devices...
SHARD = 9  # ...holding the median shard (138 examples; shard sizes run from 107 to 217)
PROFILES = {"oneshot": common.CRYPTO_PROFILE_ONESHOT, "fast": common.CRYPTO_PROFILE_FAST}


@dataclass(frozen=True)
class Model:
    """A model of the digits task (bench/suites/_memory_probe.py builds it)."""

    key: str
    kind: str
    width: int = digits.HIDDEN

    def build(self) -> nn.Module:
        """The seeded module (the same initial weights every time)."""
        return build_model(self.kind, self.width)

    @property
    def parameters(self) -> int:
        return parameter_count(self.build())


DIGITS = Model("digits", "mlp")  # 9,610 parameters: the demo task's MLP
MLP1M = Model("mlp1m", "mlp", 13_333)  # 999,985: one multiply-add per parameter per example
CNN1M = Model("cnn1m", "cnn")  # 917,770: about twelve, as convolutional edge models


@dataclass(frozen=True)
class Plan:
    """How much a run measures."""

    models: tuple[Model, ...]
    profiles: tuple[str, ...]
    rounds: int
    memory_models: tuple[Model, ...]
    memory_variants: tuple[str, ...]
    memory_repeats: int
    memory_rounds: int = 3


FULL = Plan(
    models=(DIGITS, MLP1M, CNN1M),
    profiles=("oneshot", "fast"),
    rounds=6,
    memory_models=(DIGITS, MLP1M, CNN1M),
    memory_variants=("oneshot", "oneshot_nodp", "fast"),
    memory_repeats=3,
)
QUICK = Plan(
    models=(CNN1M,),
    profiles=("oneshot",),
    rounds=3,
    memory_models=(CNN1M,),
    memory_variants=("oneshot",),
    memory_repeats=1,
    memory_rounds=2,
)


# --------------------------------------------------------------------------- phases


class _CodecClock:
    """Seconds of each ``codec_fields`` call, in order (one per encoded upload)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def timed(self, call: Callable[[], npt.NDArray[np.uint16]]) -> npt.NDArray[np.uint16]:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds.append(time.perf_counter() - started)


class TimedOneshotEncoder(OneshotEncoder):
    """The worker's oneshot encoder, timing its codec step apart from the mask."""

    clock: _CodecClock

    def codec_fields(
        self, delta: npt.NDArray[np.float32], descriptor: common.RoundDescriptor
    ) -> npt.NDArray[np.uint16]:
        return self.clock.timed(
            lambda: super(TimedOneshotEncoder, self).codec_fields(delta, descriptor)
        )


class TimedBgvEncoder(BgvEncoder):
    """The worker's BGV encoder, timing its codec step apart from packing and encryption."""

    clock: _CodecClock

    def codec_fields(
        self, delta: npt.NDArray[np.float32], descriptor: common.RoundDescriptor
    ) -> npt.NDArray[np.uint16]:
        return self.clock.timed(
            lambda: super(TimedBgvEncoder, self).codec_fields(delta, descriptor)
        )


@dataclass(frozen=True)
class RecordingMetrics(WorkerMetrics):
    """The worker's metrics, keeping every finished task's TaskProgress."""

    tasks: list[TaskProgress] = field(default_factory=list)

    def record_task(self, task: TaskProgress, epsilon_spent: float, global_version: int) -> None:
        super().record_task(task, epsilon_spent, global_version)
        self.tasks.append(task)


def _encoder(profile: str, config: WorkerConfig, clock: _CodecClock) -> SecureEncoder:
    state, verifier = Path(config.state_dir), enrollment_verifier(config)
    encoder: TimedOneshotEncoder | TimedBgvEncoder
    if profile == "oneshot":
        encoder = TimedOneshotEncoder(state, verifier)
    else:
        encoder = TimedBgvEncoder(state, PROFILES[profile], verifier)
    encoder.clock = clock
    return encoder


@dataclass(frozen=True)
class Phases:
    """Per-round seconds of the measured device, warm-up round dropped."""

    train: list[float]
    codec: list[float]
    crypto: list[float]
    upload: list[float]
    payload_bytes: int


def phases_from(tasks: list[TaskProgress], codec: list[float], skip: int = 1) -> Phases:
    """Splits the runtime's records: encode phase = codec + mask/encrypt (+ spooling).

    Raises:
        BenchmarkError: if a task did not upload or the codec timings do not line up.
    """
    if any(t.outcome != "uploaded" for t in tasks):
        raise BenchmarkError(f"task outcomes {[t.outcome for t in tasks]}")
    if len(codec) != len(tasks):
        raise BenchmarkError(f"{len(codec)} codec timings for {len(tasks)} tasks")
    kept = list(zip(tasks, codec, strict=True))[skip:] or list(zip(tasks, codec, strict=True))
    return Phases(
        train=[t.durations["train"] for t, _ in kept],
        codec=list(c for _, c in kept),
        crypto=[t.durations["encode"] - c for t, c in kept],
        upload=[t.durations["upload"] for t, _ in kept],
        payload_bytes=kept[-1][0].sent_bytes,
    )


def make_trainer(model: Model) -> TorchTrainer:
    """examples/digits.py's trainer of one device (which builds only the MLP) for any model."""
    data = digits.load(0)
    indices = digits.shard_indices(data.train_y, SHARDS, 0)[SHARD]
    held_out = indices[::5]
    train = np.setdiff1d(indices, held_out)
    module = model.build()

    def loader(rows: npt.NDArray[np.int64], batch: int, shuffle: bool) -> DataLoader[Any]:
        tensors = TensorDataset(
            torch.from_numpy(data.train_x[rows]), torch.from_numpy(data.train_y[rows])
        )
        generator = torch.Generator().manual_seed(SHARD)
        return DataLoader(tensors, batch_size=batch, shuffle=shuffle, generator=generator)

    return TorchTrainer(
        module=module,
        optimizer=torch.optim.SGD(module.parameters(), lr=0.1),
        train_loader=loader(train, 16, True),
        eval_loader=loader(held_out, 256, False),
        local_epochs=2,
    )


async def _measured_device(
    fleet: Fleet, model: Model, profile: str, rounds: int, state: Path
) -> Phases:
    config = WorkerConfig(
        coordinator=fleet.address,
        federation_id=FEDERATION,
        state_dir=str(state),
        display_name="measured",
        insecure=True,
        max_rounds=rounds,
    )
    clock = _CodecClock()
    metrics = cast(RecordingMetrics, RecordingMetrics.create())
    encoder = _encoder(profile, config, clock)
    runtime = WorkerRuntime(config, make_trainer(model), encoder, metrics=metrics)
    await asyncio.wait_for(runtime.run(), timeout=120 + 60 * rounds)
    return phases_from(metrics.tasks, clock.seconds)


def _phases(model: Model, profile: str, plan: Plan, root: Path, ctx: RunContext) -> Phases:
    # Two simulated devices (helper process) contribute with the measured one: three per round,
    # the fewest a 3-member committee accepts, so the rest of the fleet stays light.
    spec = FleetSpec(
        workdir=root / f"{model.key}_{profile}",
        parameters=model.parameters,
        contributors=3,
        helper_devices=2,
        other_devices=1,
        rounds=plan.rounds,
        profile=profile,
        epsilon=EPSILON,
        initial_model=_weights(model),
    )
    with Fleet(spec) as fleet:
        phases = asyncio.run(
            _measured_device(fleet, model, profile, plan.rounds, spec.workdir / "measured")
        )
    ctx.log(
        f"  {model.key} {profile}: train {np.median(phases.train) * 1e3:.0f} ms, codec "
        f"{np.median(phases.codec) * 1e3:.0f} ms, crypto {np.median(phases.crypto) * 1e3:.0f} ms,"
        f" upload {np.median(phases.upload) * 1e3:.0f} ms"
    )
    return phases


def _weights(model: Model) -> npt.NDArray[np.float32]:
    vector = nn.utils.parameters_to_vector(model.build().parameters())
    return vector.detach().numpy().astype(np.float32)


def _ms(seconds: list[float]) -> list[float]:
    return [s * 1e3 for s in seconds]


def _phase_figures(model: Model, profile: str, p: Phases, rounds: int) -> list[Measurement]:
    key = f"worker.{model.key}_{profile}"
    what = f"{model.key} ({model.parameters:,} params), {profile} b=16 DP"
    crypto = [c + e for c, e in zip(p.codec, p.crypto, strict=True)]
    per_round = f"{len(p.train)} rounds after a warm-up round, of {rounds}"
    return [
        measurement(
            f"{key}.train_ms",
            _ms(p.train),
            "ms",
            f"{what}: local training per round (2 epochs, TaskProgress 'train')",
            notes=per_round + ".",
        ),
        measurement(
            f"{key}.encode_ms",
            _ms(p.codec),
            "ms",
            f"{what}: codec per round (clip, rotate, quantize, Skellam noise)",
            baseline=f"{key}.train_ms",
        ),
        measurement(
            f"{key}.encrypt_ms",
            _ms(p.crypto),
            "ms",
            f"{what}: {'mask + seal shares' if profile == 'oneshot' else 'pack + encrypt'}"
            " + spool per round",
            baseline=f"{key}.train_ms",
            notes="The runtime's encode phase minus the codec; includes the durable spool write.",
        ),
        measurement(
            f"{key}.upload_ms",
            _ms(p.upload),
            "ms",
            f"{what}: resumable gRPC upload of {p.payload_bytes:,} B to the coordinator",
            baseline=f"{key}.train_ms",
            notes="TaskProgress 'upload': status call, stream, coordinator's acceptance.",
        ),
        measurement(
            f"{key}.crypto_ms",
            _ms(crypto),
            "ms",
            f"{what}: encode + encrypt per round (what hefl adds before the upload)",
            baseline=f"{key}.train_ms",
        ),
        measurement(
            f"{key}.crypto_to_train_ratio",
            [c / t for c, t in zip(crypto, p.train, strict=True)],
            "ratio",
            f"{what}: (encode + encrypt) / training time, per round",
            notes=per_round + ".",
        ),
    ]


# --------------------------------------------------------------------------- memory


def _bgv_material(path: Path) -> Path:
    """A fast-profile context and joint public key, as a device receives them."""
    from crypto import bgv

    ctx = bgv.open_context(bgv.FAST)
    committee = bgv.Committee(3, 2)
    seed = bytes(32)
    members = {i: bgv.MemberSecrets.generate(ctx, committee, i, seed) for i in committee.members}
    shares = {i: m.public_share for i, m in members.items()}
    joint = bgv.combine_public_shares(ctx, committee, members[1].crs_blob, shares)
    blob = {"context": ctx.serialize().hex(), "joint_public_key": bytes(joint).hex()}
    path.write_text(json.dumps(blob), encoding="utf-8")
    return path


def probe_arguments(model: Model, variant: str, rounds: int, material: Path | None) -> list[str]:
    """Command line of one memory probe (variant: plain, oneshot, oneshot_nodp or fast)."""
    arguments = [
        sys.executable,
        "-m",
        "bench.suites._memory_probe",
        "--model",
        model.kind,
        "--width",
        str(model.width),
        "--rounds",
        str(rounds),
        "--profile",
        "none" if variant == "plain" else variant.removesuffix("_nodp"),
    ]
    if variant.endswith("_nodp"):
        arguments.append("--no-dp")
    if variant == "fast" and material is not None:
        arguments += ["--bgv-material", str(material)]
    return arguments


def _probe(arguments: list[str]) -> float:
    """Runs one probe; returns its peak resident set in MiB."""
    done = subprocess.run(
        arguments, cwd=ROOT, env=child_environment(), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise BenchmarkError(f"memory probe failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["vmhwm_kib"]) / 1024.0


def _memory(model: Model, plan: Plan, material: Path | None) -> dict[str, list[float]]:
    """Peak MiB per variant; variants interleave within each repetition (same conditions)."""
    variants = ("plain", *plan.memory_variants)
    peaks: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(plan.memory_repeats):
        for variant in variants:
            arguments = probe_arguments(model, variant, plan.memory_rounds, material)
            peaks[variant].append(_probe(arguments))
    return peaks


def _memory_figures(model: Model, peaks: dict[str, list[float]], rounds: int) -> list[Measurement]:
    key = f"worker.memory_{model.key}"
    what = f"{model.key} ({model.parameters:,} params), {rounds} rounds"
    out = [
        measurement(
            f"{key}.plain_peak_mib",
            peaks["plain"],
            "MiB",
            f"{what}: peak RSS of plain PyTorch training (torch + scikit-learn, no hefl)",
        )
    ]
    labels = {
        "oneshot": "oneshot, b=16, DP noise",
        "oneshot_nodp": "oneshot, b=16, no DP noise",
        "fast": "fast (BGV), b=16, DP noise",
    }
    for variant in peaks:
        if variant == "plain":
            continue
        out.append(
            measurement(
                f"{key}.{variant}_peak_mib",
                peaks[variant],
                "MiB",
                f"{what}: peak RSS of training + hefl encode ({labels[variant]})",
                baseline=f"{key}.plain_peak_mib",
            )
        )
        out.append(
            measurement(
                f"{key}.{variant}_peak_ratio",
                [h / p for h, p in zip(peaks[variant], peaks["plain"], strict=True)],
                "ratio",
                f"{what}: peak RSS with hefl ({labels[variant]}) over plain training",
                target=MEMORY_TARGET,
                notes="One ratio per repetition (probes of a repetition run back to back).",
            )
        )
    return out


# --------------------------------------------------------------------------- suite


def run(quick: bool, ctx: RunContext) -> list[Measurement]:
    """Phases (in-process device against a coordinator process) and memory (child probes)."""
    plan = QUICK if quick else FULL
    root = Path(tempfile.mkdtemp(prefix="hefl-bench-worker-"))
    out: list[Measurement] = []
    if ctx.wants("phases"):
        for model in plan.models:
            for profile in plan.profiles:
                ctx.log(f"worker.phases: {model.key} ({model.parameters:,} params), {profile}")
                phases = _phases(model, profile, plan, root, ctx)
                out += _phase_figures(model, profile, phases, plan.rounds)
    if ctx.wants("memory"):
        material = _bgv_material(root / "bgv.json") if "fast" in plan.memory_variants else None
        for model in plan.memory_models:
            ctx.log(f"worker.memory: {model.key}, {', '.join(plan.memory_variants)}")
            peaks = _memory(model, plan, material)
            ctx.log("  " + ", ".join(f"{v} {np.median(p):.0f} MiB" for v, p in peaks.items()))
            out += _memory_figures(model, peaks, plan.memory_rounds)
    return out


NOTES = """\
**Phases.** The measured device is the real worker runtime (`WorkerRuntime`, as
`python -m edge_worker` runs it) in the bench process, training the digits MLP of
examples/digits.py on one tenth of the data (2 local epochs, SGD 0.1, one torch thread). It
works real rounds against a real coordinator process on loopback (insecure gRPC; mTLS is not
on) with a 3-member committee and two simulated devices in a helper process (three
contributors per round, b=16, DP noise on at epsilon 1e6: the Skellam sampler and its cost are
those of any epsilon, but at epsilon 8 three contributors' noise, std 2 per coordinate, wrecks
the model in one round and the CNN's loss turns NaN). Training, encode and upload come from the
runtime's own `TaskProgress` record; a subclass of the runtime's encoder times the codec step
(clip, rotate, quantize, Skellam noise) so that the rest of the encode phase (mask and sealed
shares, or BGV packing and encryption, plus the durable spool write) is reported as
`encrypt_ms`. The first round is dropped (model download, key material, caches). The helper's
devices encode while the measured device trains, on the same two vCPUs, so absolute times
include that contention; the ratio `crypto_to_train_ratio` is the figure to quote. `mlp1m` is
the same MLP at width 13,333 (999,985 parameters) on the same data: its training is cheap for
its size (one small shard, two epochs), so its ratio is an upper end for a real edge model.

**Memory.** Each probe is a fresh child process (`bench/suites/_memory_probe.py`) that trains
the same MLP for a few rounds with plain PyTorch and scikit-learn (`plain`, nothing of hefl
imported), or trains and then, each round, imports the worker runtime's libraries and encodes
the delta as a device does (codec b=16 with or without Skellam noise, then the oneshot mask
and sealed shares, or BGV packing and encryption under a joint public key), keeping the
payload in memory. The figure is the child's VmHWM (peak resident set) from /proc. Probes of
one repetition run back to back and the ratio is taken per repetition.
"""

SUITE = Suite(
    name="worker",
    description="device time per round by phase (train, encode, encrypt, upload) and peak memory",
    run=run,
    parts=("phases", "memory"),
    notes=NOTES,
)
