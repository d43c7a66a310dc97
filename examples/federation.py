"""A whole federation on loopback: one coordinator and N worker processes, plus an observer.

Used by the demo, the end-to-end tests and the benchmarks, so that all three run the same
thing: real processes talking hefl.v1 over real gRPC.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from crypto.certs import Issued, create_ca, enrol_device, issue_server, read_issued, write_issued
from edge_worker.config import WorkerConfig
from edge_worker.connection import Connection
from edge_worker.identity import load_or_create_identity
from edge_worker.model_state import DeviceModel, apply_download, save_initial_model
from edge_worker.runner import enroll_device
from edge_worker.transfer import download_model
from examples import digits
from examples.processes import CoordinatorProcess, start_coordinator, start_worker, stop_processes
from hefl.v1 import common_pb2 as common
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc


@dataclass(frozen=True)
class FederationSpec:
    """What to run."""

    workdir: Path
    federation_id: str = "demo"
    workers: int = 10
    key_holders: int = 5
    profile: str = "oneshot"
    dp: bool = True
    epsilon: float = 8.0
    delta: float = 1e-5
    rounds: int = 12
    bits: int = 16
    clip_norm: float = 1.0
    goal_contributors: int = 0
    min_contributors: int = 5
    collect_seconds: float = 20.0
    seed: int = 0
    width: int = digits.HIDDEN
    learning_rate: float = 0.1
    local_epochs: int = 2
    record_updates: bool = False
    tls: bool = True
    """Mutual TLS with a fresh local CA; False runs plaintext (tests that capture traffic)."""
    server_settings: dict[str, str] = field(default_factory=dict)

    @property
    def goal(self) -> int:
        """Uploads wanted per round (all workers by default)."""
        return self.goal_contributors or self.workers


class LocalFederation:
    """Starts and stops the processes of a :class:`FederationSpec`."""

    def __init__(self, spec: FederationSpec) -> None:
        """Prepares the working directory; nothing runs until :meth:`start`."""
        self.spec = spec
        self.coordinator: CoordinatorProcess | None = None
        self.workers: list[subprocess.Popen[str]] = []
        self.worker_address = ""
        self.authority: Issued | None = None

    def settings(self) -> dict[str, str]:
        """The coordinator's settings (``--set`` flags)."""
        spec = self.spec
        certs = spec.workdir / "certs"
        tls = (
            {
                "server.tls_cert": str(certs / "coordinator.pem"),
                "server.tls_key": str(certs / "coordinator.key"),
                "server.tls_client_ca": str(certs / "ca.pem"),
            }
            if spec.tls
            else {"server.insecure": "true"}
        )
        settings = {
            **tls,
            "server.listen_address": "127.0.0.1:0",
            "server.metrics_address": "127.0.0.1:0",
            "server.grace_period_seconds": "2",
            "state.state_dir": str(spec.workdir / "coordinator" / "state"),
            "federation.federation_id": spec.federation_id,
            "federation.profile": spec.profile,
            "federation.allow_plaintext": "true" if spec.profile == "plaintext" else "false",
            "federation.initial_model": str(spec.workdir / "initial.model"),
            "round.goal_contributors": str(spec.goal),
            "round.min_contributors": str(spec.min_contributors),
            "round.collect_seconds": str(spec.collect_seconds),
            "round.interval_seconds": "1",
            # Loopback devices are always reachable: short retry windows keep rounds brisk.
            "round.retry_jitter_seconds": "1",
            "round.max_rounds": str(spec.rounds),
            # Workers plus the observer: the first window opens once every device is there.
            "round.min_enrolled_workers": str(spec.workers + 1),
            "committee.size": str(spec.key_holders),
            "codec.bits": str(spec.bits),
            "codec.clip_norm": str(spec.clip_norm),
            "privacy.enabled": "true" if spec.dp and spec.profile != "plaintext" else "false",
            "privacy.epsilon": str(spec.epsilon),
            "privacy.delta": str(spec.delta),
            "privacy.rounds": str(spec.rounds),
        }
        settings.update(spec.server_settings)
        return settings

    def start(
        self,
        worker_address: str | None = None,
        overrides: dict[int, tuple[str, ...]] | None = None,
        environment: dict[str, str] | None = None,
    ) -> CoordinatorProcess:
        """Writes the initial model, starts the coordinator, then the workers.

        Args:
            worker_address: Where workers connect (a proxy, say); the coordinator by default.
            overrides: Extra flags for some workers, by index.
            environment: Extra environment of the coordinator process (failpoints, say).
        """
        coordinator = self.start_coordinator(environment)
        self.worker_address = worker_address or coordinator.grpc_address
        for index in range(self.spec.workers):
            self.workers.append(self.start_worker(index, *(overrides or {}).get(index, ())))
        return coordinator

    def restart_coordinator(self, environment: dict[str, str] | None = None) -> CoordinatorProcess:
        """Starts the coordinator again on its state and port (after it died or was stopped)."""
        assert self.coordinator is not None
        settings = {**self.settings(), "server.listen_address": self.coordinator.grpc_address}
        self.coordinator = start_coordinator(
            self.spec.workdir / "coordinator", settings, environment=environment
        )
        return self.coordinator

    def start_coordinator(self, environment: dict[str, str] | None = None) -> CoordinatorProcess:
        """Writes the initial model and starts the coordinator only."""
        spec = self.spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        if spec.tls:
            certs = spec.workdir / "certs"
            self.authority = create_ca()
            write_issued(certs, "ca", self.authority)
            write_issued(certs, "coordinator", issue_server(self.authority, ["127.0.0.1"]))
        save_initial_model(
            digits.initial_weights(spec.seed, spec.width), spec.workdir / "initial.model"
        )
        self.coordinator = start_coordinator(
            spec.workdir / "coordinator", self.settings(), environment=environment
        )
        return self.coordinator

    def worker_dir(self, index: int) -> Path:
        """State and log folder of worker ``index``."""
        return self.spec.workdir / f"worker{index}"

    def start_worker(self, index: int, *overrides: str) -> subprocess.Popen[str]:
        """(Re)starts worker ``index`` with its own state directory (``overrides``: more flags)."""
        spec = self.spec
        assert self.coordinator is not None
        extra = [
            "--seed",
            str(spec.seed),
            "--model-width",
            str(spec.width),
            "--learning-rate",
            str(spec.learning_rate),
            "--local-epochs",
            str(spec.local_epochs),
            "--display-name",
            f"device-{index}",
        ]
        if index < spec.key_holders:
            extra.append("--key-holder")
        if spec.dp and spec.profile != "plaintext":
            # Each device keeps its own ledger with the same budget as the federation.
            extra += ["--privacy-budget", str(spec.epsilon)]
        if spec.record_updates:
            extra += ["--record-updates", str(self.worker_dir(index) / "updates")]
        if self.authority is not None:
            enrol_device(self.authority, self.worker_dir(index) / "state")
        else:
            extra.append("--insecure")
        extra += overrides
        return start_worker(
            self.worker_dir(index),
            self.worker_address or self.coordinator.grpc_address,
            index,
            spec.workers,
            *extra,
            federation_id=spec.federation_id,
        )

    def stop(self) -> int:
        """Stops the workers, then the coordinator; returns the coordinator's exit code."""
        stop_processes(self.workers)
        return 0 if self.coordinator is None else self.coordinator.stop()


@dataclass
class RoundReport:
    """One published (or abandoned) round as the observer saw it."""

    round_number: int
    outcome: str
    contributors: int
    version: int
    accuracy: float
    epsilon: float
    bytes_in: int
    seconds: float


class Observer:
    """An enrolled, non-training device that follows rounds and evaluates each new version."""

    def __init__(self, address: str, spec: FederationSpec) -> None:
        """Uses its own identity under ``workdir/observer``."""
        self.address = address
        self.spec = spec
        state = spec.workdir / "observer"
        self.config = WorkerConfig(
            coordinator=address,
            federation_id=spec.federation_id,
            state_dir=str(state),
            insecure=not spec.tls,
        )
        if spec.tls:
            ca = read_issued(spec.workdir / "certs", "ca")
            enrol_device(ca, state)
        self.state = state
        self.model: DeviceModel | None = None

    async def enroll(self) -> None:
        """Enrols the observer (it never checks in, so it is never selected)."""
        connection = Connection(self.config, load_or_create_identity(self.state))
        try:
            await enroll_device(connection)
        finally:
            await connection.close()

    def operator_channel(self) -> grpc.aio.Channel:
        """A channel for OperatorService calls, with the observer's credentials under TLS."""
        return Connection(self.config, load_or_create_identity(self.state)).channel

    async def status(self) -> ops.GetFederationStatusResponse:
        """The federation's status."""
        async with self.operator_channel() as channel:
            return await ops_grpc.OperatorServiceStub(channel).GetFederationStatus(
                ops.GetFederationStatusRequest(federation_id=self.spec.federation_id), timeout=10
            )

    async def rounds(self) -> list[ops.RoundSummary]:
        """Rounds so far, oldest first."""
        async with self.operator_channel() as channel:
            stub = ops_grpc.OperatorServiceStub(channel)
            response = await stub.ListRounds(
                ops.ListRoundsRequest(federation_id=self.spec.federation_id, page_size=1000),
                timeout=10,
            )
        return sorted(response.rounds, key=lambda r: r.round_number)

    async def epsilon(self) -> float:
        """Epsilon spent so far."""
        async with self.operator_channel() as channel:
            stub = ops_grpc.OperatorServiceStub(channel)
            ledger = await stub.GetPrivacyLedger(
                ops.GetPrivacyLedgerRequest(federation_id=self.spec.federation_id), timeout=10
            )
        return float(ledger.epsilon_spent)

    async def model_at(self, version: int) -> npt.NDArray[np.float32]:
        """Downloads (correction chain or full model) and returns the published model."""
        key = load_or_create_identity(self.state)
        connection = Connection(self.config, key)
        try:
            have = 0 if self.model is None else self.model.version
            downloaded = await download_model(
                connection, have, version, self.state / "download.tmp"
            )
            self.model = apply_download(self.model, downloaded.header, downloaded.path.read_bytes())
        finally:
            await connection.close()
        return self.model.values

    async def follow(
        self,
        rounds: int,
        on_round: object = None,
        timeout: float = 900.0,
    ) -> list[RoundReport]:
        """Waits until ``rounds`` rounds ended, reporting each as it ends."""
        reports: dict[int, RoundReport] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            summaries = await self.rounds()
            for summary in summaries:
                if summary.round_number in reports or summary.phase != common.ROUND_PHASE_DONE:
                    continue
                version = summary.published_version
                accuracy = math.nan
                if version:
                    values = await self.model_at(version)
                    accuracy = digits.test_accuracy(values, self.spec.seed, self.spec.width)
                seconds = (
                    summary.end_time.ToNanoseconds() - summary.open_time.ToNanoseconds()
                ) / 1e9
                report = RoundReport(
                    round_number=summary.round_number,
                    outcome=common.RoundOutcome.Name(summary.outcome)
                    .removeprefix("ROUND_OUTCOME_")
                    .lower(),
                    contributors=summary.contributors,
                    version=version,
                    accuracy=accuracy,
                    epsilon=await self.epsilon(),
                    bytes_in=summary.bytes_in,
                    seconds=seconds,
                )
                reports[summary.round_number] = report
                if callable(on_round):
                    on_round(report)
            if len(reports) >= rounds:
                break
            await asyncio.sleep(0.5)
        return [reports[n] for n in sorted(reports)]


def initial_accuracy(spec: FederationSpec) -> float:
    """Test accuracy of the initial model."""
    return digits.test_accuracy(
        digits.initial_weights(spec.seed, spec.width), spec.seed, spec.width
    )
