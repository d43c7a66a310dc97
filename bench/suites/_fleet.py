"""A real coordinator process, a helper process (committee + simulated devices) and a gRPC sink.

The worker, coordinator and scaling suites drive a real coordinator on loopback. Its key
holders, and the devices other than the ones a suite times itself, run in one helper process
(``python -m bench.suites._fleet``), so their CPU work never shares the bench process's event
loop. Simulated devices are real protocol clients: they enrol, check in, verify the signed
descriptor, encode with the worker's own encoder (codec, DP noise, mask or encrypt) and stream a
signed upload; they only skip training (a fixed delta stands in for it). The sink
(``python -m bench.suites._fleet sink``) is the raw-gRPC baseline: the same FederationService
``UploadUpdate`` method, same server limits, but it discards every frame.

Not a suite (the leading underscore keeps it out of the registry).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import BenchmarkError
from bench.suites._procfs import peak_rss_mib
from crypto import model_payload
from crypto.call_auth import call_metadata
from crypto.signing import SignatureTag, SigningKey
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc

if TYPE_CHECKING:
    from crypto.committee import EnrollmentVerifier
    from edge_worker.encoders import UpdateEncoder
    from examples.processes import CoordinatorProcess

ROOT = Path(__file__).resolve().parents[2]
FEDERATION = "bench"
SERVICE = "/hefl.v1.FederationService/"
CHUNK_BYTES = 256 * 1024  # the worker's default upload chunk (edge_worker/config.py)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # the coordinator's default gRPC message limit
CALL_TIMEOUT = 60.0
UPLOAD_TIMEOUT = 600.0
SHED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
READY = "FLEET_READY"
SINK_READY = "SINK_READY"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# --------------------------------------------------------------------------- pure helpers


def upload_frames(
    task_id: str,
    round_number: int,
    profile: int,
    payload_format_version: int,
    payload: bytes,
    trailer: fed.UploadTrailer,
    chunk_size: int = CHUNK_BYTES,
) -> list[fed.UploadUpdateRequest]:
    """Header, offset-tagged chunks and trailer: one upload exactly as edge_worker/transfer.py
    sends it from offset 0."""
    frames = [
        fed.UploadUpdateRequest(
            header=fed.UploadHeader(
                task_id=task_id,
                round_number=round_number,
                profile=profile,  # type: ignore[arg-type]
                payload_format_version=payload_format_version,
                total_size_bytes=len(payload),
            )
        )
    ]
    for offset in range(0, len(payload), chunk_size):
        chunk = common.Chunk(offset_bytes=offset, data=payload[offset : offset + chunk_size])
        frames.append(fed.UploadUpdateRequest(chunk=chunk))
    frames.append(fed.UploadUpdateRequest(trailer=trailer))
    return frames


def fixed_delta(parameters: int, norm: float, seed: int) -> npt.NDArray[np.float32]:
    """A random update of L2 norm ``norm`` (inside the default clip of 1): what training gives."""
    values = np.random.default_rng(seed).normal(0.0, 1.0, parameters)
    return (values * (norm / float(np.linalg.norm(values)))).astype(np.float32)


def random_model(parameters: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Initial weights of a model of ``parameters`` parameters (their values do not matter)."""
    return np.random.default_rng(seed).normal(0.0, 0.1, parameters).astype(np.float32)


def scrape(address: str) -> Samples:
    """A Prometheus /metrics endpoint as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --------------------------------------------------------------------------- simulated device


@dataclass(frozen=True)
class PreparedUpload:
    """An encoded, signed upload ready to stream."""

    task_id: str
    frames: list[fed.UploadUpdateRequest]
    payload_bytes: int

    @property
    def wire_bytes(self) -> int:
        """Serialized size of every frame (what crosses the connection, before HTTP/2)."""
        return sum(frame.ByteSize() for frame in self.frames)


class SimulatedDevice:
    """One device without training: enrol, check in, encode a fixed delta, upload."""

    def __init__(
        self, index: int, state_dir: Path, channel: grpc.aio.Channel, delta: npt.NDArray[np.float32]
    ) -> None:
        """A fresh identity; ``state_dir`` holds its encoder state (rosters, used rounds)."""
        self.index = index
        self.key = SigningKey.generate()
        self.state_dir = state_dir
        self.stub = fed_grpc.FederationServiceStub(channel)
        self.delta = delta
        self.encoder: UpdateEncoder | None = None
        self.key_epoch = 0

    def metadata(self, method: str) -> tuple[tuple[str, str | bytes], ...]:
        """Signed-call metadata, as every device call carries."""
        return call_metadata(self.key, SERVICE + method)

    async def enroll(self, attempts: int = 8) -> None:
        """EnrollWorker, backing off like a device when an enrolment burst is shed."""
        from edge_worker.encoders import encoder_for
        from edge_worker.runner import enrollment_proof_message

        for attempt in range(attempts):
            now = int(time.time())
            request = fed.EnrollWorkerRequest(
                federation_id=FEDERATION,
                signing_public_key=self.key.public_bytes,
                display_name=f"sim-{self.index}",
                request_time=Timestamp(seconds=now),
                proof_of_possession=self.key.sign(
                    SignatureTag.ENROLL,
                    enrollment_proof_message(FEDERATION, self.key.public_bytes, now),
                ),
            )
            try:
                response = await self.stub.EnrollWorker(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                if error.code() not in SHED_CODES or attempt == attempts - 1:
                    raise
                await asyncio.sleep(random.uniform(0, min(8.0, 0.5 * 2**attempt)))
                continue
            self.encoder = encoder_for(response.profile, self.state_dir, _verifier())
            return

    async def next_task(self, stop: asyncio.Event) -> fed.TaskAssignment | None:
        """Checks in until given a task, sleeping through retry windows; None once stopped."""
        while not stop.is_set():
            answer: fed.CheckInResponse = await self.stub.CheckIn(
                fed.CheckInRequest(federation_id=FEDERATION, have_key_epoch=self.key_epoch),
                metadata=self.metadata("CheckIn"),
                timeout=CALL_TIMEOUT,
            )
            if answer.WhichOneof("outcome") == "task":
                return answer.task
            earliest = answer.retry.earliest_time.ToNanoseconds() / 1e9
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(earliest - time.time(), 0.05))
        return None

    def prepare(self, task: fed.TaskAssignment, spool_dir: Path) -> PreparedUpload:
        """Verifies the descriptor, encodes the delta and signs the trailer (CPU work)."""
        from edge_worker.statement import build_trailer

        assert self.encoder is not None, "enroll() first"
        material = task.key_material if task.HasField("key_material") else None
        descriptor = self.encoder.verify_descriptor(task.descriptor, material)
        if material is not None:
            self.key_epoch = descriptor.committee_epoch
        spool = spool_dir / f"{task.task_id}.payload"
        encoded = self.encoder.encode(self.delta, task.descriptor, self.key.worker_id, spool)
        digest = hashlib.sha256(task.descriptor.descriptor).digest()
        trailer = build_trailer(self.key, descriptor, digest, self.encoder.profile, encoded)
        payload = spool.read_bytes()
        spool.unlink()
        frames = upload_frames(
            task.task_id,
            descriptor.round_number,
            self.encoder.profile,
            encoded.payload_format_version,
            payload,
            trailer,
            min(CHUNK_BYTES, task.max_chunk_size_bytes or CHUNK_BYTES),
        )
        return PreparedUpload(task.task_id, frames, len(payload))

    async def send(
        self, upload: PreparedUpload, stub: fed_grpc.FederationServiceAsyncStub | None = None
    ) -> None:
        """Streams the upload (to the coordinator, or to ``stub``: the sink)."""

        async def frames() -> AsyncIterator[fed.UploadUpdateRequest]:
            for frame in upload.frames:
                yield frame

        response: fed.UploadUpdateResponse = await (stub or self.stub).UploadUpdate(
            frames(), metadata=self.metadata("UploadUpdate"), timeout=UPLOAD_TIMEOUT
        )
        if response.state != fed.UPLOAD_STATE_ACCEPTED:
            raise BenchmarkError(f"upload {upload.task_id} ended in state {response.state}")

    async def contribute(self, stop: asyncio.Event, spool_dir: Path) -> None:
        """Works every round it is given until ``stop``."""
        while True:
            task = await self.next_task(stop)
            if task is None:
                return
            prepared = await asyncio.to_thread(self.prepare, task, spool_dir)
            try:
                await self.send(prepared)
            except grpc.aio.AioRpcError as error:
                # A window that closed before this upload finished: the next round will do.
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise


def _verifier() -> EnrollmentVerifier:
    from edge_worker.config import WorkerConfig
    from edge_worker.tls import enrollment_verifier

    # Loopback without TLS: enrolment credentials are self-certifying keys.
    return enrollment_verifier(WorkerConfig(insecure=True))


def open_channels(address: str, count: int) -> list[grpc.aio.Channel]:
    """``count`` channels, each its own TCP connection (devices do not share one)."""
    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    return [grpc.aio.insecure_channel(address, options=options) for _ in range(count)]


def make_devices(
    address: str, count: int, state_root: Path, parameters: int, channels: int
) -> tuple[list[SimulatedDevice], list[grpc.aio.Channel]]:
    """``count`` devices sharing ``channels`` connections (tests/load/loadgen.py does the same)."""
    pool = open_channels(address, max(1, min(channels, count)))
    devices = []
    for index in range(count):
        directory = state_root / f"device-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        delta = fixed_delta(parameters, 0.5, seed=index)
        devices.append(SimulatedDevice(index, directory, pool[index % len(pool)], delta))
    return devices, pool


# --------------------------------------------------------------------------- helper process


async def _start_member(
    address: str, directory: Path, index: int, stop: asyncio.Event
) -> asyncio.Task[None]:
    from edge_worker.config import WorkerConfig
    from edge_worker.connection import Connection
    from edge_worker.identity import load_or_create_identity
    from edge_worker.member import MemberRuntime
    from edge_worker.runner import enroll_device

    config = WorkerConfig(
        coordinator=address,
        federation_id=FEDERATION,
        state_dir=str(directory),
        display_name=f"member-{index}",
        key_holder=True,
        insecure=True,
    )
    key = load_or_create_identity(directory)
    connection = Connection(config, key)
    await enroll_device(connection)
    member = MemberRuntime(config, key, directory)
    return asyncio.create_task(member.run(connection, stop))


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _report_crash(task: asyncio.Task[None]) -> None:
    # A device that dies stalls its rounds; say why in the helper's log.
    if not task.cancelled() and task.exception() is not None:
        print(f"device task failed: {task.exception()!r}", file=sys.stderr, flush=True)


async def run_helper(args: argparse.Namespace) -> None:
    """Members and devices until SIGTERM; prints READY once all have enrolled."""
    stop = _stop_on_signals()
    state = Path(args.state)
    members = [
        await _start_member(args.coordinator, state / f"member-{i}", i, stop)
        for i in range(args.members)
    ]
    devices, pool = make_devices(
        args.coordinator, args.devices, state / "devices", args.parameters, args.channels
    )
    await asyncio.gather(*(d.enroll() for d in devices))
    print(READY, flush=True)
    spool = state / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    workers = [asyncio.create_task(d.contribute(stop, spool)) for d in devices]
    for worker in workers:
        worker.add_done_callback(_report_crash)
    await stop.wait()
    for task in (*workers, *members):
        task.cancel()
    await asyncio.gather(*workers, *members, return_exceptions=True)
    for channel in pool:
        await channel.close(grace=None)


async def discard_upload(
    frames: AsyncIterator[fed.UploadUpdateRequest], context: grpc.aio.ServicerContext[Any, Any]
) -> fed.UploadUpdateResponse:
    """The raw-gRPC baseline's UploadUpdate: reads every frame and keeps nothing."""
    received, task_id = 0, ""
    async for frame in frames:
        kind = frame.WhichOneof("frame")
        if kind == "chunk":
            received += len(frame.chunk.data)
        elif kind == "header":
            task_id = frame.header.task_id
    return fed.UploadUpdateResponse(
        task_id=task_id, state=fed.UPLOAD_STATE_ACCEPTED, committed_size_bytes=received
    )


async def run_sink() -> None:
    """Serves the discarding UploadUpdate on a free loopback port until SIGTERM."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    # The same method path and message types as the coordinator's, so the bytes are identical.
    handler = grpc.stream_unary_rpc_method_handler(
        discard_upload,
        request_deserializer=fed.UploadUpdateRequest.FromString,
        response_serializer=fed.UploadUpdateResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.strip("/"), {"UploadUpdate": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = _stop_on_signals()
    print(f"{SINK_READY} 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop(grace=None)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suites._fleet")
    sub = parser.add_subparsers(dest="command", required=True)
    helper = sub.add_parser("helper", help="key holders and simulated devices")
    helper.add_argument("--coordinator", required=True)
    helper.add_argument("--state", required=True)
    helper.add_argument("--members", type=int, default=3)
    helper.add_argument("--devices", type=int, default=0)
    helper.add_argument("--parameters", type=int, required=True)
    helper.add_argument("--channels", type=int, default=32)
    sub.add_parser("sink", help="a gRPC server whose UploadUpdate discards every frame")
    args = parser.parse_args(argv)
    asyncio.run(run_helper(args) if args.command == "helper" else run_sink())
    return 0


# --------------------------------------------------------------------------- the bench side


@dataclass(frozen=True)
class FleetSpec:
    """One coordinator, its committee and the devices of a run.

    Attributes:
        workdir: State and logs (coordinator, helper).
        parameters: Model size (the initial model is random unless ``initial_model`` is given).
        contributors: Uploads per round: the round's goal and minimum.
        helper_devices: Simulated devices in the helper process.
        other_devices: Devices the caller enrols itself (they count toward enrolment).
        rounds: Rounds the coordinator runs (round.max_rounds).
    """

    workdir: Path
    parameters: int
    contributors: int
    helper_devices: int
    other_devices: int = 0
    rounds: int = 3
    profile: str = "oneshot"
    members: int = 3
    dp: bool = True
    epsilon: float = 8.0
    bits: int = 16
    collect_seconds: float = 300.0
    initial_model: npt.NDArray[np.float32] | None = None


def coordinator_settings(spec: FleetSpec, model_path: Path) -> dict[str, str]:
    """``--set`` flags of the fleet's coordinator: insecure loopback, back-to-back rounds."""
    return {
        "server.listen_address": "127.0.0.1:0",
        "server.metrics_address": "127.0.0.1:0",
        "server.insecure": "true",
        "server.grace_period_seconds": "1",
        "state.state_dir": str(spec.workdir / "coordinator" / "state"),
        "federation.federation_id": FEDERATION,
        "federation.profile": spec.profile,
        "federation.allow_plaintext": str(spec.profile == "plaintext").lower(),
        "federation.initial_model": str(model_path),
        "round.goal_contributors": str(spec.contributors),
        "round.min_contributors": str(spec.contributors),
        "round.collect_seconds": str(spec.collect_seconds),
        # Short cadence: a device told to come back at the next opening waits a fraction of a
        # second, not the 1 s quantum that would otherwise dominate small rounds.
        "round.interval_seconds": "0.25",
        "round.retry_jitter_seconds": "0.25",
        "round.max_rounds": str(spec.rounds),
        "round.min_enrolled_workers": str(spec.members + spec.helper_devices + spec.other_devices),
        "committee.size": str(spec.members),
        "codec.bits": str(spec.bits),
        "privacy.enabled": str(spec.dp and spec.profile != "plaintext").lower(),
        "privacy.epsilon": str(spec.epsilon),
        "privacy.rounds": str(max(spec.rounds, 100)),
        # Simulated devices check in far more often than the per-device default allows.
        "limits.max_calls_per_worker_per_minute": "100000",
    }


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "protos")])
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_line(process: subprocess.Popen[str], prefix: str, timeout: float, log: Path) -> str:
    """Reads the child's stdout until a line starting with ``prefix``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    process.wait(10)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise BenchmarkError(f"{prefix} not seen from {process.args!r}:\n{tail}")


def start_child(
    arguments: list[str], log: Path, ready: str, timeout: float = 120.0
) -> tuple[subprocess.Popen[str], str]:
    """Starts ``python -m bench.suites._fleet ...``; returns it and its ready line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.suites._fleet", *arguments],
            cwd=ROOT,
            env=child_environment(),
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    return process, _wait_line(process, ready, timeout, log)


def stop_child(process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only this child, by its PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


class Fleet:
    """Starts and stops the coordinator and helper processes of a :class:`FleetSpec`."""

    def __init__(self, spec: FleetSpec) -> None:
        """Nothing runs until :meth:`start`."""
        self.spec = spec
        self.coordinator: CoordinatorProcess | None = None
        self.helper: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        """The coordinator's gRPC address."""
        assert self.coordinator is not None
        return self.coordinator.grpc_address

    def start(self) -> Fleet:
        """Starts the coordinator, then the helper (which returns once everyone enrolled)."""
        from examples.processes import start_coordinator

        spec = self.spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        model_path = spec.workdir / "initial.model"
        values = spec.initial_model
        if values is None:
            values = random_model(spec.parameters)
        model_path.write_bytes(model_payload.encode_model(1, values))
        self.coordinator = start_coordinator(
            spec.workdir / "coordinator", coordinator_settings(spec, model_path)
        )
        # Device state on tmpfs when there is one: their fsyncs are not what is measured.
        state = Path(tempfile.mkdtemp(prefix="hefl-fleet-", dir=_scratch_root()))
        self.helper, _ = start_child(
            [
                "helper",
                "--coordinator",
                self.address,
                "--state",
                str(state),
                "--members",
                str(spec.members),
                "--devices",
                str(spec.helper_devices),
                "--parameters",
                str(spec.parameters),
            ],
            spec.workdir / "helper.log",
            READY,
            timeout=180.0,
        )
        return self

    def stop(self) -> None:
        """Stops the helper, then the coordinator."""
        if self.helper is not None:
            stop_child(self.helper)
        if self.coordinator is not None:
            self.coordinator.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def peak_rss_mib(self) -> float:
        """The coordinator process's peak resident set so far."""
        assert self.coordinator is not None
        return peak_rss_mib(self.coordinator.process.pid)

    def metrics(self) -> Samples:
        """The coordinator's Prometheus samples now."""
        assert self.coordinator is not None
        return scrape(self.coordinator.metrics_address)

    async def rounds(self) -> list[ops.RoundSummary]:
        """Every round so far, oldest first."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            response = await ops_grpc.OperatorServiceStub(channel).ListRounds(
                ops.ListRoundsRequest(federation_id=FEDERATION, page_size=1000), timeout=10
            )
        return sorted(response.rounds, key=lambda r: r.round_number)

    async def wait_for_rounds(self, count: int, timeout: float) -> list[ops.RoundSummary]:
        """Waits until ``count`` rounds ended; all must have published.

        Raises:
            BenchmarkError: on an abandoned round or when ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [r for r in await self.rounds() if r.phase == common.ROUND_PHASE_DONE]
            failed = [r for r in done if r.outcome != common.ROUND_OUTCOME_PUBLISHED]
            if failed:
                outcome = common.RoundOutcome.Name(failed[0].outcome)
                raise BenchmarkError(
                    f"round {failed[0].round_number} ended {outcome} (logs in {self.spec.workdir})"
                )
            if len(done) >= count:
                return done[:count]
            await asyncio.sleep(0.2)
        raise BenchmarkError(f"{count} rounds did not end in {timeout:.0f} s ({self.spec.workdir})")


def round_seconds(summary: ops.RoundSummary) -> float:
    """Wall time of a round from window open to its end (the Observer's figure)."""
    return (summary.end_time.ToNanoseconds() - summary.open_time.ToNanoseconds()) / 1e9


def _scratch_root() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def describe(spec: FleetSpec) -> str:
    """One line for logs and notes."""
    return json.dumps(
        {
            "profile": spec.profile,
            "parameters": spec.parameters,
            "contributors": spec.contributors,
            "members": spec.members,
            "dp": spec.dp,
            "epsilon": spec.epsilon,
            "bits": spec.bits,
        }
    )


if __name__ == "__main__":
    sys.exit(_main())
