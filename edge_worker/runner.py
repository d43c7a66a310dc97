"""The device loop: enrol, check in, honour retry windows, train, encode, upload, report."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp

from crypto import model_payload
from crypto.signing import SignatureTag
from edge_worker.config import WorkerConfig
from edge_worker.connection import Connection
from edge_worker.device_ledger import DeviceBudgetExceededError, DeviceLedger
from edge_worker.encoders import DescriptorRefused, EncodedUpload, UpdateEncoder, encoder_for
from edge_worker.hooks import CorrectionCheck, CorrectionHook, UpdateCheck, UpdateHook
from edge_worker.identity import load_or_create_identity
from edge_worker.member import MemberRuntime
from edge_worker.metrics import TaskProgress, WorkerMetrics, outcome_label
from edge_worker.model_state import CorrectionRejected, DeviceModel, apply_download
from edge_worker.statement import build_trailer, trailer_format_version
from edge_worker.tls import enrollment_verifier
from edge_worker.training import LocalTrainer
from edge_worker.transfer import UploadJob, download_model, upload
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc

logger = logging.getLogger(__name__)

_SERVICE = "/hefl.v1.FederationService/"


def enrollment_proof_message(federation_id: str, public_key: bytes, seconds: int) -> bytes:
    """The bytes signed (tag ``enroll``) to prove possession of the enrolling key."""
    return b"\n".join((federation_id.encode(), public_key.hex().encode(), str(seconds).encode()))


@dataclass
class WorkerCounters:
    """What the device reports about itself: counts only."""

    rounds_contributed: int = 0
    update_rejections: int = 0
    correction_rejections: int = 0
    refused_descriptors: int = 0
    reported_update_rejections: int = 0
    reported_correction_rejections: int = 0
    outcomes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TaskReport:
    """Passed to the optional ``on_task`` callback after each task."""

    round_number: int
    outcome: int
    delta: npt.NDArray[np.float32] | None
    global_version: int


async def enroll_device(connection: Connection) -> fed.EnrollWorkerResponse:
    """EnrollWorker for the connection's key, retrying transient failures."""
    config, key = connection.config, connection.key
    stub = fed_grpc.FederationServiceStub(connection.channel)

    async def attempt() -> fed.EnrollWorkerResponse:
        now = int(time.time())
        proof = key.sign(
            SignatureTag.ENROLL,
            enrollment_proof_message(config.federation_id, key.public_bytes, now),
        )
        response: fed.EnrollWorkerResponse = await stub.EnrollWorker(
            fed.EnrollWorkerRequest(
                federation_id=config.federation_id,
                signing_public_key=key.public_bytes,
                display_name=config.display_name or key.worker_id[:8],
                enrollment_token=config.enrollment_token,
                key_holder_capable=config.key_holder,
                request_time=Timestamp(seconds=now),
                proof_of_possession=proof,
            ),
            timeout=config.call_timeout_seconds,
        )
        return response

    return await connection.retry("EnrollWorker", attempt)


class WorkerRuntime:
    """Runs one device against a coordinator until stopped or ``max_rounds`` are done."""

    def __init__(
        self,
        config: WorkerConfig,
        trainer: LocalTrainer,
        encoder: UpdateEncoder | None = None,
        *,
        update_hooks: Sequence[UpdateHook] = (),
        correction_hooks: Sequence[CorrectionHook] = (),
        on_task: Callable[[TaskReport], None] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """Prepares the device; nothing touches the network until :meth:`run`.

        ``metrics`` receives this device's Prometheus metrics (a fresh registry by default).
        """
        self.config = config
        self.trainer = trainer
        self._encoder = encoder
        self.update_hooks = tuple(update_hooks)
        self.correction_hooks = tuple(correction_hooks)
        self.on_task = on_task
        self.state_dir = Path(config.state_dir)
        self.key = load_or_create_identity(self.state_dir)
        self.model = DeviceModel.load(self.state_dir / "model.bin")
        self.counters = WorkerCounters()
        self.ledger = DeviceLedger(
            self.state_dir / "privacy_ledger.json", config.privacy_budget_epsilon
        )
        self.metrics = metrics or WorkerMetrics.create()
        self.metrics.observe_state(self.ledger.epsilon_spent, self._held_version())
        self.key_epoch = 0
        self._rng = random.SystemRandom()
        self._connection: Connection | None = None
        self.member: MemberRuntime | None = None

    @property
    def encoder(self) -> UpdateEncoder:
        """The encoder of the federation's profile (known after enrolment)."""
        assert self._encoder is not None, "enroll() has not run"
        return self._encoder

    @property
    def worker_id(self) -> str:
        """This device's worker id."""
        return self.key.worker_id

    @property
    def connection(self) -> Connection:
        """The open connection (only during :meth:`run`)."""
        assert self._connection is not None, "run() has not started"
        return self._connection

    def _held_version(self) -> int:
        return 0 if self.model is None else self.model.version

    def _stub(self) -> fed_grpc.FederationServiceAsyncStub:
        return fed_grpc.FederationServiceStub(self.connection.channel)

    async def run(self, stop: asyncio.Event | None = None) -> WorkerCounters:
        """Enrols, then works rounds until ``stop`` is set or ``max_rounds`` contributions."""
        stop = stop or asyncio.Event()
        self._connection = Connection(self.config, self.key)
        member_stop = asyncio.Event()
        member_task: asyncio.Task[None] | None = None
        try:
            await self.enroll()
            if self.config.key_holder:
                self.member = MemberRuntime(self.config, self.key, self.state_dir)
                member_task = asyncio.create_task(self.member.run(self.connection, member_stop))
            while not stop.is_set():
                if self.config.max_rounds and (
                    self.counters.rounds_contributed >= self.config.max_rounds
                ):
                    break
                response = await self._check_in()
                if response.WhichOneof("outcome") == "retry":
                    await self._sleep_until(response.retry, stop)
                    continue
                await self.execute(response.task)
            if member_task is not None and self.config.serve_committee_after_rounds:
                # A key holder keeps serving the committee after its own rounds are done.
                await stop.wait()
        finally:
            member_stop.set()
            if member_task is not None:
                await asyncio.gather(member_task, return_exceptions=True)
            await self.connection.close()
            self._connection = None
        return self.counters

    async def enroll(self) -> fed.EnrollWorkerResponse:
        """Enrols (idempotently) with a fresh proof of key possession."""
        response = await enroll_device(self.connection)
        if self._encoder is None:
            self._encoder = encoder_for(
                response.profile,
                self.state_dir,
                enrollment_verifier(self.config),
                self.config.reproducible_rounding_seed,
            )
        elif self._encoder.profile != response.profile:
            raise DescriptorRefused(
                f"federation uses profile {response.profile}, this device's encoder"
                f" {self._encoder.profile}"
            )
        logger.info("enrolled as %s (profile %s)", response.worker_id, response.profile)
        return response

    async def _check_in(self) -> fed.CheckInResponse:
        stub = self._stub()

        async def attempt() -> fed.CheckInResponse:
            response: fed.CheckInResponse = await stub.CheckIn(
                fed.CheckInRequest(
                    federation_id=self.config.federation_id,
                    have_version=0 if self.model is None else self.model.version,
                    have_key_epoch=self.key_epoch,
                    expected_online_seconds=self.config.expected_online_seconds,
                ),
                metadata=self.connection.metadata(_SERVICE + "CheckIn"),
                timeout=self.config.call_timeout_seconds,
            )
            return response

        return await self.connection.retry("CheckIn", attempt)

    async def _sleep_until(self, window: common.RetryWindow, stop: asyncio.Event) -> None:
        earliest = window.earliest_time.ToNanoseconds() / 1e9
        latest = max(window.latest_time.ToNanoseconds() / 1e9, earliest)
        # A random moment inside the window spreads devices out (no thundering herd).
        wake = self._rng.uniform(earliest, latest)
        delay = min(max(wake - time.time(), 0.05), 300.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)

    async def sync_model(
        self,
        want_version: int,
        give_up_at: float | None = None,
        progress: TaskProgress | None = None,
    ) -> DeviceModel:
        """Brings the device model to ``want_version`` (correction chain or full model)."""
        if self.model is not None and self.model.version == want_version:
            return self.model
        have = 0 if self.model is None else self.model.version
        downloaded = await download_model(
            self.connection,
            have,
            want_version,
            self.state_dir / "spool" / "model.download",
            give_up_at=give_up_at,
        )
        data = downloaded.path.read_bytes()
        if progress is not None:
            progress.received_bytes += len(data)
        check = None
        if self.correction_hooks:

            def check(before: npt.NDArray[np.float32], after: npt.NDArray[np.float32]) -> bool:
                context = CorrectionCheck(before, after, self._evaluate_weights)
                return all(hook(context) for hook in self.correction_hooks)

        try:
            model = apply_download(self.model, downloaded.header, data, check)
        except CorrectionRejected:
            self.counters.correction_rejections += 1
            self.metrics.hook_rejections.labels("correction").inc()
            raise
        model.save(self.state_dir / "model.bin")
        self.model = model
        return model

    def _evaluate_weights(self, values: npt.NDArray[np.float32]) -> dict[str, float]:
        self.trainer.set_weights(values)
        return self.trainer.evaluate()

    async def execute(self, task: fed.TaskAssignment) -> int:
        """Works one task and reports its outcome; returns the TaskOutcome."""
        deadline = task.upload_deadline_time.ToNanoseconds() / 1e9
        descriptor: common.RoundDescriptor | None = None
        delta = None
        metrics: dict[str, float] = {}
        progress = TaskProgress()
        try:
            key_material = task.key_material if task.HasField("key_material") else None
            descriptor = self.encoder.verify_descriptor(task.descriptor, key_material)
            progress.round_number = descriptor.round_number
            if key_material is not None:
                self.key_epoch = descriptor.committee_epoch
            self.ledger.check(descriptor)
            model = await self.sync_model(
                descriptor.global_version, give_up_at=deadline, progress=progress
            )
            if model.sha256 != descriptor.global_model_sha256:
                raise DescriptorRefused("the descriptor names a different global model digest")
            self.trainer.set_weights(model.values)
            metrics_before = await asyncio.to_thread(self.trainer.evaluate)
            metrics.update(metrics_before)
            with progress.timed("train"):
                result = await asyncio.to_thread(self.trainer.train)
            delta = (self.trainer.get_weights() - model.values).astype(np.float32)
            # The user's module keeps holding the global model, not this round's local fit.
            self.trainer.set_weights(model.values)
            metrics.update({"train_loss": result.mean_loss, "train_examples": result.examples})
            check = UpdateCheck(delta, result.mean_loss, result.examples, metrics_before)
            if not all(hook(check) for hook in self.update_hooks):
                self.counters.update_rejections += 1
                self.metrics.hook_rejections.labels("update").inc()
                outcome = fed.TASK_OUTCOME_UPDATE_REJECTED
            else:
                await self._upload(task, descriptor, delta, deadline, progress)
                self.counters.rounds_contributed += 1
                outcome = fed.TASK_OUTCOME_UPLOADED
        except DeviceBudgetExceededError as refusal:
            logger.warning("not contributing: %s", refusal)
            outcome = fed.TASK_OUTCOME_BUDGET_REFUSED
        except DescriptorRefused as refusal:
            logger.warning("refusing round: %s", refusal)
            self.counters.refused_descriptors += 1
            outcome = fed.TASK_OUTCOME_DESCRIPTOR_REFUSED
        except CorrectionRejected as rejection:
            logger.warning("%s", rejection)
            outcome = fed.TASK_OUTCOME_FAILED
        except model_payload.PayloadError as error:
            logger.error("model download unusable: %s", error)
            outcome = fed.TASK_OUTCOME_FAILED
        except grpc.aio.AioRpcError as error:
            logger.warning("task failed: %s %s", error.code().name, error.details())
            outcome = (
                fed.TASK_OUTCOME_DEADLINE_MISSED
                if error.code() in (grpc.StatusCode.FAILED_PRECONDITION,) or time.time() >= deadline
                else fed.TASK_OUTCOME_FAILED
            )
        self.counters.outcomes.append(outcome)
        await self._report(task, outcome, metrics)
        self._record(progress, outcome)
        if self.on_task is not None:
            self.on_task(
                TaskReport(
                    round_number=0 if descriptor is None else descriptor.round_number,
                    outcome=outcome,
                    delta=delta if outcome == fed.TASK_OUTCOME_UPLOADED else None,
                    global_version=0 if descriptor is None else descriptor.global_version,
                )
            )
        return outcome

    def _record(self, progress: TaskProgress, outcome: int) -> None:
        """Metrics and the console's one progress line per task."""
        progress.outcome = outcome_label(outcome)
        epsilon, version = self.ledger.epsilon_spent, self._held_version()
        self.metrics.record_task(progress, epsilon, version)
        logger.info(
            "%s",
            progress.summary(epsilon, version),
            extra={"task": progress.as_dict(epsilon, version)},
        )

    async def _upload(
        self,
        task: fed.TaskAssignment,
        descriptor: common.RoundDescriptor,
        delta: npt.NDArray[np.float32],
        deadline: float,
        progress: TaskProgress,
    ) -> None:
        descriptor_sha256 = hashlib.sha256(task.descriptor.descriptor).digest()
        spool = self.state_dir / "spool" / f"{task.task_id}.payload"
        trailer_path = spool.with_suffix(".trailer")
        if spool.exists() and trailer_path.exists():
            # A restarted device resumes the very payload it started to send.
            trailer = fed.UploadTrailer.FromString(trailer_path.read_bytes())
            encoded = EncodedUpload(
                spool,
                trailer_format_version(trailer),
                list(trailer.sealed_shares),
            )
        else:
            # Charged before anything leaves the device (conservative if the upload then fails).
            self.ledger.record(descriptor)
            with progress.timed("encode"):
                encoded = await asyncio.to_thread(
                    self.encoder.encode, delta, task.descriptor, self.worker_id, spool
                )
            trailer = build_trailer(
                self.key,
                descriptor,
                descriptor_sha256,
                self.encoder.profile,
                encoded,
            )
            trailer_path.write_bytes(trailer.SerializeToString())
            if self.config.record_updates_dir and encoded.fields is not None:
                record = Path(self.config.record_updates_dir)
                record.mkdir(parents=True, exist_ok=True)
                (record / f"round-{descriptor.round_number}.fields").write_bytes(
                    encoded.fields.astype("<u2").tobytes()
                )
        chunk = min(self.config.chunk_size_bytes, task.max_chunk_size_bytes or 2**20)
        size = encoded.payload_path.stat().st_size
        with progress.timed("upload"):
            await upload(
                self.connection,
                UploadJob(
                    task_id=task.task_id,
                    round_number=descriptor.round_number,
                    profile=self.encoder.profile,
                    payload_format_version=encoded.payload_format_version,
                    payload_path=encoded.payload_path,
                    trailer=trailer,
                    chunk_size=chunk,
                    deadline=deadline,
                ),
            )
        progress.sent_bytes += size
        encoded.payload_path.unlink(missing_ok=True)
        trailer_path.unlink(missing_ok=True)

    async def _report(
        self, task: fed.TaskAssignment, outcome: int, metrics: dict[str, float]
    ) -> None:
        stub = self._stub()
        counters = self.counters
        request = fed.ReportTaskOutcomeRequest(
            task_id=task.task_id,
            outcome=outcome,  # type: ignore[arg-type]
            applied_version=0 if self.model is None else self.model.version,
            update_rejections=counters.update_rejections - counters.reported_update_rejections,
            correction_rejections=(
                counters.correction_rejections - counters.reported_correction_rejections
            ),
            metrics=metrics,
        )
        try:
            await self.connection.retry(
                "ReportTaskOutcome",
                lambda: stub.ReportTaskOutcome(
                    request,
                    metadata=self.connection.metadata(_SERVICE + "ReportTaskOutcome"),
                    timeout=self.config.call_timeout_seconds,
                ),
                give_up_at=time.time() + 60.0,
            )
            counters.reported_update_rejections += request.update_rejections
            counters.reported_correction_rejections += request.correction_rejections
        except grpc.aio.AioRpcError as error:
            # A lost report costs an operator statistic, never training progress.
            logger.info("report not delivered: %s", error.code().name)
