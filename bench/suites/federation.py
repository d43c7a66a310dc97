"""Whole federations on loopback: accuracy and round wall time, secure against plaintext FedAvg.

Every configuration runs the same task (examples/digits.py: the same non-IID split, seed,
initial model, local training, devices and transport); only the crypto profile, the bits and
DP differ. Each is a real coordinator with ten worker processes (five key holders).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.harness import BenchmarkError, Measurement, RunContext, Target, measurement
from bench.suites import Suite
from examples.federation import FederationSpec, LocalFederation, Observer, RoundReport

SECTION = "DESIGN.md §12"


@dataclass(frozen=True)
class Configuration:
    """One federation to run."""

    key: str
    description: str
    spec: FederationSpec


def _configurations(workdir: Path, rounds: int) -> list[Configuration]:
    base = FederationSpec(workdir=workdir, rounds=rounds, workers=10, key_holders=5)
    # DP off: a clip far above the updates' norms (about 1) so that only quantization differs
    # from plaintext FedAvg, which does not clip.
    return [
        Configuration(
            "plaintext",
            "plaintext FedAvg (no encryption, no DP)",
            replace(base, profile="plaintext", dp=False),
        ),
        Configuration(
            "oneshot_b8",
            "oneshot, b=8, DP off",
            replace(base, profile="oneshot", dp=False, bits=8, clip_norm=10.0),
        ),
        Configuration(
            "fast_b8",
            "fast (BGV), b=8, DP off",
            replace(base, profile="fast", dp=False, bits=8, clip_norm=10.0),
        ),
        Configuration(
            "oneshot_dp_eps8",
            "oneshot, b=16, DP epsilon 8",
            replace(base, profile="oneshot", dp=True, epsilon=8.0, bits=16),
        ),
    ]


async def _run(config: Configuration) -> list[RoundReport]:
    federation = LocalFederation(config.spec)
    coordinator = federation.start()
    try:
        observer = Observer(coordinator.grpc_address, config.spec)
        await observer.enroll()
        reports = await observer.follow(config.spec.rounds, timeout=1200)
    finally:
        federation.stop()
    published = [r for r in reports if r.version]
    if len(published) < config.spec.rounds:
        raise BenchmarkError(
            f"{config.key}: {len(published)} of {config.spec.rounds} rounds published"
            f" (logs in {config.spec.workdir})"
        )
    return published


def run(quick: bool, ctx: RunContext) -> list[Measurement]:
    """Runs each configuration once and compares it with plaintext FedAvg."""
    rounds = 4 if quick else 20
    root = Path(tempfile.mkdtemp(prefix="hefl-bench-federation-"))
    results: dict[str, list[RoundReport]] = {}
    durations: dict[str, float] = {}
    for config in _configurations(root, rounds):
        if not ctx.wants(config.key):
            continue
        spec = replace(config.spec, workdir=root / config.key)
        ctx.log(f"federation.{config.key}: {config.description}, {rounds} rounds")
        started = time.monotonic()
        results[config.key] = asyncio.run(_run(replace(config, spec=spec)))
        durations[config.key] = time.monotonic() - started
        reports = results[config.key]
        ctx.log(
            f"  accuracy {reports[-1].accuracy:.4f}, median round "
            f"{statistics.median(r.seconds for r in reports):.2f} s"
        )
    if "plaintext" not in results:
        raise BenchmarkError("the plaintext baseline must run in the same invocation")
    measurements: list[Measurement] = []
    for config in _configurations(root, rounds):
        reports = results.get(config.key)
        if reports is None:
            continue
        final = reports[-1].accuracy
        # Rounds after the first: the first also carries process start-up and the ceremony.
        seconds = [r.seconds for r in reports[1:]] or [r.seconds for r in reports]
        measurements.append(
            measurement(
                f"federation.{config.key}.final_accuracy",
                [final],
                "fraction",
                f"{config.description}: test accuracy after {rounds} rounds",
                baseline=None
                if config.key == "plaintext"
                else "federation.plaintext.final_accuracy",
                notes=f"Whole run {durations[config.key]:.0f} s.",
            )
        )
        measurements.append(
            measurement(
                f"federation.{config.key}.round_seconds",
                seconds,
                "s",
                f"{config.description}: wall time from window open to publication",
                baseline=None
                if config.key == "plaintext"
                else "federation.plaintext.round_seconds",
            )
        )
        if config.key != "plaintext":
            plain = [r.seconds for r in results["plaintext"][1:]] or [
                r.seconds for r in results["plaintext"]
            ]
            measurements.append(
                measurement(
                    f"federation.{config.key}.round_time_ratio",
                    [statistics.median(seconds) / statistics.median(plain)],
                    "ratio",
                    f"{config.description}: median round wall time over plaintext FedAvg's",
                    target=Target("<=", 1.3, f"{SECTION}: secure / plaintext round wall time"),
                )
            )
            gap = (results["plaintext"][-1].accuracy - final) * 100.0
            measurements.append(
                measurement(
                    f"federation.{config.key}.accuracy_gap_points",
                    [gap],
                    "points",
                    f"{config.description}: plaintext FedAvg accuracy minus this one",
                    target=(
                        Target("<=", 0.5, f"{SECTION}: DP off, b=8, within 0.5 points")
                        if not config.spec.dp
                        else None
                    ),
                )
            )
        measurements.append(
            measurement(
                f"federation.{config.key}.upload_bytes_per_round",
                [statistics.median(r.bytes_in for r in reports)],
                "bytes",
                f"{config.description}: payload bytes received per round ({config.spec.workers}"
                " devices)",
                baseline=None
                if config.key == "plaintext"
                else "federation.plaintext.upload_bytes_per_round",
            )
        )
    return measurements


SUITE = Suite(
    name="federation",
    description="whole federations on loopback: accuracy and round time against plaintext FedAvg",
    run=run,
    parts=("plaintext", "oneshot_b8", "fast_b8", "oneshot_dp_eps8"),
    notes=(
        "Ten worker processes (five key holders) and one coordinator on loopback train the "
        "digits MLP (examples/digits.py) on the same non-IID split and seed for each "
        "configuration; only the profile, the bits and DP differ. Accuracy is on the held-out "
        "test split; round time runs from window open to publication, rounds after the first. "
        "With DP off the secure runs clip at 10 (updates have norm about 1), so the accuracy "
        "gap is quantization alone. DP at epsilon 8 with ten devices is far from the regime DP "
        "is built for (hundreds of devices per round); it is reported for completeness."
    ),
)
