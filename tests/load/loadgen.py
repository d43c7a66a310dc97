"""A load generator: many lightweight simulated workers against one coordinator process.

Each simulated worker has its own Ed25519 key and runs, as an asyncio task, the device side of a
round: EnrollWorker, CheckIn (coming back at the start of each retry window it is given, as long
as that falls within the run) and one small plaintext UploadUpdate (header, chunks, trailer with
a signed statement). The workers share a bounded pool of gRPC channels, each its own TCP
connection. Meanwhile a separate task asks the gRPC health service every ~100 ms.

The coordinator is started as a separate process on loopback (plaintext profile, a small model,
a round whose goal is below the number of workers so that the window fills while uploads are
still arriving, high per-worker rate limits), unless ``--address`` names a running one.

    python -m tests.load.loadgen --workers 500 --channels 32

prints a JSON report: throughput, p50/p99/max latency per RPC, outcomes and errors by code, the
health probe's answers, and what the coordinator itself counted (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crypto import plaintext_update
from crypto.call_auth import call_metadata
from crypto.signing import SignatureTag, SigningKey
from edge_worker.runner import enrollment_proof_message
from examples.processes import CoordinatorProcess, start_coordinator
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc
from tests.support.cluster import FEDERATION, coordinator_settings
from tests.support.metrics import scrape, value

SERVICE = "/hefl.v1.FederationService/"
CALL_TIMEOUT = 30.0
ENROLL_ATTEMPTS = 8
SHED_CODES = frozenset({"CANCELLED", "UNAVAILABLE"})
UPLOAD_TIMEOUT = 60.0
CHUNK = 16 * 1024

# What each call may answer besides OK: FAILED_PRECONDITION is an upload that arrived after the
# window filled (the round reached its goal) or closed; nothing else is expected.
EXPECTED_ERRORS: dict[str, frozenset[str]] = {
    "EnrollWorker": SHED_CODES,  # retried: shedding under a burst is how overload shows
    "CheckIn": frozenset(),
    "UploadUpdate": frozenset({"FAILED_PRECONDITION"}),
}


@dataclass(frozen=True)
class LoadConfig:
    """What to run."""

    workers: int = 500
    channels: int = 32
    parameters: int = 1000
    goal: int = 0  # uploads the round accepts; 0: 80 % of the workers
    ramp_seconds: float = 2.0  # workers start at uniformly random moments of this span
    time_limit_seconds: float = 180.0
    health_interval_seconds: float = 0.1
    seed: int = 0

    @property
    def round_goal(self) -> int:
        return self.goal or max(1, int(self.workers * 0.8))


def load_settings(workdir: Path, config: LoadConfig) -> dict[str, str]:
    """Coordinator settings: tests/support/cluster.py's, with one long round and loose limits."""
    workdir.mkdir(parents=True, exist_ok=True)
    return coordinator_settings(
        workdir,
        config.parameters,
        **{
            "round.goal_contributors": config.round_goal,
            "round.min_contributors": 1,
            "round.collect_seconds": 3600,
            "round.interval_seconds": 3600,  # one round per run
            "limits.max_calls_per_worker_per_minute": 100_000,
            "limits.max_chunk_size_bytes": 64 * 1024,
            "server.grace_period_seconds": 2,
        },
    )


def start_load_coordinator(workdir: Path, config: LoadConfig) -> CoordinatorProcess:
    """Starts ``python -m coordinator`` for a load run (examples/processes.py)."""
    return start_coordinator(workdir / "process", load_settings(workdir, config))


# --- measurements ---------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies, outcomes and errors of every call."""

    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    codes: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    outcomes: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    windows: dict[str, list[float]] = field(default_factory=dict)  # first start, last end
    unexpected: list[str] = field(default_factory=list)

    def call(self, rpc: str, started: float, code: str, details: str = "") -> None:
        ended = time.monotonic()
        self.latencies[rpc].append(ended - started)
        self.codes[rpc][code] += 1
        window = self.windows.setdefault(rpc, [started, ended])
        window[0] = min(window[0], started)
        window[1] = max(window[1], ended)
        expected = code == "OK" or code in EXPECTED_ERRORS.get(rpc, frozenset())
        if not expected and len(self.unexpected) < 20:
            self.unexpected.append(f"{rpc}: {code} {details}"[:300])

    def unexpected_count(self) -> int:
        return sum(
            count
            for rpc, codes in self.codes.items()
            for code, count in codes.items()
            if code != "OK" and code not in EXPECTED_ERRORS.get(rpc, frozenset())
        )


def percentiles(samples: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max in milliseconds."""
    if not samples:
        return {"count": 0}
    data = np.array(samples) * 1000.0
    return {
        "count": len(samples),
        "p50_ms": round(float(np.percentile(data, 50)), 2),
        "p99_ms": round(float(np.percentile(data, 99)), 2),
        "max_ms": round(float(data.max()), 2),
    }


# --- one simulated worker -------------------------------------------------------------------------


class SimulatedWorker:
    """The device side of one round, message by message, with its own key."""

    def __init__(self, index: int, channel: grpc.aio.Channel, recorder: Recorder) -> None:
        self.index = index
        self.key = SigningKey.generate()
        self.stub = fed_grpc.FederationServiceStub(channel)
        self.recorder = recorder
        self.last_code = ""

    def _md(self, method: str) -> tuple[tuple[str, str | bytes], ...]:
        return call_metadata(self.key, SERVICE + method)

    async def _timed(self, rpc: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            self.last_code = error.code().name
            self.recorder.call(rpc, started, self.last_code, error.details() or "")
            return None
        self.last_code = "OK"
        self.recorder.call(rpc, started, "OK")
        return response

    async def run(self, start_delay: float, deadline: float) -> None:
        await asyncio.sleep(start_delay)
        if not await self.enroll():
            return
        task = await self.check_in_until_task(deadline)
        if task is not None:
            await self.upload(task)

    async def enroll(self) -> bool:
        now = int(time.time())
        request = fed.EnrollWorkerRequest(
            federation_id=FEDERATION,
            signing_public_key=self.key.public_bytes,
            display_name=f"load-{self.index}",
            request_time=Timestamp(seconds=now),
            proof_of_possession=self.key.sign(
                SignatureTag.ENROLL,
                enrollment_proof_message(FEDERATION, self.key.public_bytes, now),
            ),
        )
        # Like edge_worker/connection.py: an overloaded coordinator sheds calls (CANCELLED,
        # UNAVAILABLE); the device backs off with full jitter and tries again.
        for attempt in range(ENROLL_ATTEMPTS):
            response = await self._timed(
                "EnrollWorker", self.stub.EnrollWorker(request, timeout=CALL_TIMEOUT)
            )
            if response is not None or self.last_code not in SHED_CODES:
                break
            await asyncio.sleep(random.uniform(0, min(8.0, 0.5 * 2**attempt)))
        self.recorder.outcomes["EnrollWorker"]["enrolled" if response else "failed"] += 1
        return response is not None

    async def check_in_until_task(self, deadline: float) -> fed.TaskAssignment | None:
        while True:
            response = await self._timed(
                "CheckIn",
                self.stub.CheckIn(
                    fed.CheckInRequest(federation_id=FEDERATION),
                    metadata=self._md("CheckIn"),
                    timeout=CALL_TIMEOUT,
                ),
            )
            if response is None:
                return None
            answer: fed.CheckInResponse = response
            if answer.WhichOneof("outcome") == "task":
                self.recorder.outcomes["CheckIn"]["task"] += 1
                return answer.task
            reason = common.RetryReason.Name(answer.retry.reason)
            self.recorder.outcomes["CheckIn"][reason] += 1
            # Come back at the start of the window, if the run lasts that long.
            earliest = answer.retry.earliest_time.ToNanoseconds() / 1e9
            wait = max(earliest - time.time(), 0.05)
            if time.monotonic() + wait > deadline:
                self.recorder.outcomes["CheckIn"][f"gave up ({reason})"] += 1
                return None
            await asyncio.sleep(wait)

    def frames(self, task: fed.TaskAssignment) -> list[fed.UploadUpdateRequest]:
        descriptor = common.RoundDescriptor.FromString(task.descriptor.descriptor)
        rng = np.random.default_rng(self.index)
        payload = plaintext_update.encode(
            rng.normal(0, 0.01, descriptor.codec.parameter_count).astype(np.float32)
        )
        digest = hashlib.sha256(payload).digest()
        statement = common.UploadStatement(
            federation_id=FEDERATION,
            round_number=descriptor.round_number,
            worker_id=self.key.worker_id,
            descriptor_sha256=hashlib.sha256(task.descriptor.descriptor).digest(),
            profile=common.CRYPTO_PROFILE_PLAINTEXT,
            payload_format_version=plaintext_update.FORMAT_VERSION,
            payload_size_bytes=len(payload),
            payload_sha256=digest,
        ).SerializeToString()
        frames = [
            fed.UploadUpdateRequest(
                header=fed.UploadHeader(
                    task_id=task.task_id,
                    round_number=descriptor.round_number,
                    profile=common.CRYPTO_PROFILE_PLAINTEXT,
                    payload_format_version=plaintext_update.FORMAT_VERSION,
                    total_size_bytes=len(payload),
                )
            )
        ]
        size = min(CHUNK, task.max_chunk_size_bytes or CHUNK)
        for offset in range(0, len(payload), size):
            chunk = common.Chunk(offset_bytes=offset, data=payload[offset : offset + size])
            frames.append(fed.UploadUpdateRequest(chunk=chunk))
        signature = self.key.sign(SignatureTag.UPLOAD_STATEMENT, statement)
        frames.append(
            fed.UploadUpdateRequest(
                trailer=fed.UploadTrailer(
                    payload_sha256=digest,
                    statement=common.SignedUploadStatement(
                        statement=statement, signature=signature
                    ),
                )
            )
        )
        return frames

    async def upload(self, task: fed.TaskAssignment) -> None:
        frames = self.frames(task)

        async def stream() -> AsyncIterator[fed.UploadUpdateRequest]:
            for frame in frames:
                yield frame

        response = await self._timed(
            "UploadUpdate",
            self.stub.UploadUpdate(
                stream(), metadata=self._md("UploadUpdate"), timeout=UPLOAD_TIMEOUT
            ),
        )
        if response is not None:
            state = fed.UploadState.Name(response.state)
            self.recorder.outcomes["UploadUpdate"][state.removeprefix("UPLOAD_STATE_")] += 1


# --- the health probe -----------------------------------------------------------------------------


@dataclass
class HealthLog:
    """What the probe saw."""

    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)


async def probe_health(address: str, interval: float, stop: asyncio.Event, log: HealthLog) -> None:
    """Asks grpc.health.v1 every ``interval`` seconds on its own channel until ``stop``."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            started = time.monotonic()
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.aio.AioRpcError as error:
                status = f"error {error.code().name}"
            log.latencies.append(time.monotonic() - started)
            log.answers[status] += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


# --- the run --------------------------------------------------------------------------------------


async def coordinator_view(address: str, metrics_address: str) -> dict[str, Any]:
    """What the coordinator itself counted."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ops_grpc.OperatorServiceStub(channel)
        status = await stub.GetFederationStatus(
            ops.GetFederationStatusRequest(federation_id=FEDERATION), timeout=10
        )
        rounds = await stub.ListRounds(ops.ListRoundsRequest(federation_id=FEDERATION), timeout=10)
    samples = scrape(metrics_address) if metrics_address else {}
    return {
        "enrolled_workers": status.enrolled_workers,
        "round_contributors": {r.round_number: r.contributors for r in rounds.rounds},
        "round_selected": {r.round_number: r.selected for r in rounds.rounds},
        "uploads_accepted_metric": value(samples, "hefl_coordinator_uploads_accepted_total"),
    }


def _rate(count: int, window: list[float] | None) -> float:
    if not window or count == 0:
        return 0.0
    return round(count / max(window[1] - window[0], 1e-9), 1)


async def drive(address: str, metrics_address: str, config: LoadConfig) -> dict[str, Any]:
    """Runs the simulated workers and the health probe against ``address``; returns the report."""
    recorder = Recorder()
    health = HealthLog()
    stop = asyncio.Event()
    rng = random.Random(config.seed)
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(config.channels)
    ]
    probe = asyncio.create_task(probe_health(address, config.health_interval_seconds, stop, health))
    started = time.monotonic()
    deadline = started + config.time_limit_seconds
    workers = [
        SimulatedWorker(i, channels[i % len(channels)], recorder) for i in range(config.workers)
    ]
    tasks = [
        asyncio.create_task(w.run(rng.uniform(0, config.ramp_seconds), deadline)) for w in workers
    ]
    done, pending = await asyncio.wait(tasks, timeout=config.time_limit_seconds + 10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    crashed = [repr(t.exception()) for t in done if t.exception() is not None]
    elapsed = time.monotonic() - started
    stop.set()
    await probe
    for channel in channels:
        await channel.close(grace=None)
    view = await coordinator_view(address, metrics_address)

    uploads = recorder.outcomes["UploadUpdate"]
    codes = {rpc: dict(counter) for rpc, counter in recorder.codes.items()}
    accepted = uploads["ACCEPTED"]
    return {
        "workers": config.workers,
        "channels": config.channels,
        "parameters": config.parameters,
        "payload_bytes": plaintext_update.encoded_size(config.parameters),
        "round_goal": config.round_goal,
        "elapsed_seconds": round(elapsed, 2),
        "unfinished_workers": len(pending),
        "crashed_workers": crashed[:5],
        "enrolled": recorder.outcomes["EnrollWorker"]["enrolled"],
        "check_in_outcomes": dict(recorder.outcomes["CheckIn"]),
        "upload_outcomes": dict(uploads),
        "uploads_accepted": accepted,
        "uploads_refused": codes.get("UploadUpdate", {}).get("FAILED_PRECONDITION", 0),
        "throughput_per_second": {
            rpc: _rate(sum(recorder.codes[rpc].values()), recorder.windows.get(rpc))
            for rpc in ("EnrollWorker", "CheckIn", "UploadUpdate")
        },
        "accepted_uploads_per_second": _rate(accepted, recorder.windows.get("UploadUpdate")),
        "latency": {rpc: percentiles(samples) for rpc, samples in recorder.latencies.items()},
        "codes": codes,
        "unexpected_errors": recorder.unexpected_count(),
        "unexpected_samples": recorder.unexpected,
        "health": {
            "polls": sum(health.answers.values()),
            "answers": dict(health.answers),
            "latency": percentiles(health.latencies),
        },
        "coordinator": view,
    }


def _run_own_coordinator(workdir: Path, config: LoadConfig) -> dict[str, Any]:
    coordinator = start_load_coordinator(workdir, config)
    try:
        report = asyncio.run(drive(coordinator.grpc_address, coordinator.metrics_address, config))
    finally:
        exit_code = coordinator.stop()
    report["coordinator"]["exit_code"] = exit_code
    return report


def main(argv: list[str] | None = None) -> int:
    """Starts a coordinator process (unless --address), drives it, prints the JSON report."""
    parser = argparse.ArgumentParser(description="Drives simulated workers against a coordinator.")
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--parameters", type=int, default=1000)
    parser.add_argument("--goal", type=int, default=0, help="round goal (default 80%% of workers)")
    parser.add_argument("--ramp-seconds", type=float, default=2.0)
    parser.add_argument("--time-limit", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", help="a running coordinator (its round settings apply)")
    parser.add_argument("--metrics-address", default="", help="its metrics endpoint")
    parser.add_argument("--workdir", type=Path, help="keep the coordinator's state and log here")
    args = parser.parse_args(argv)
    config = LoadConfig(
        workers=args.workers,
        channels=args.channels,
        parameters=args.parameters,
        goal=args.goal,
        ramp_seconds=args.ramp_seconds,
        time_limit_seconds=args.time_limit,
        seed=args.seed,
    )
    if args.address:
        report = asyncio.run(drive(args.address, args.metrics_address, config))
    elif args.workdir:
        report = _run_own_coordinator(args.workdir, config)
    else:  # a scratch coordinator, removed afterwards (--workdir keeps its state and log)
        with tempfile.TemporaryDirectory(prefix="hefl-load-") as scratch:
            report = _run_own_coordinator(Path(scratch), config)
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0 if report["unexpected_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
