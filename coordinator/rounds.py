"""The round engine: windows, selection, tasks, the running aggregate, quorum and publishing.

One round at a time: PREPARING (the profile's committee signs a descriptor) -> COLLECTING
(check-ins get tasks until the over-selected target is reached; uploads are added as they
arrive; the window closes at the deadline or once the goal has uploaded) -> the profile opens
the aggregate (CERTIFYING, OPENING) -> APPLYING (server step, new version) -> DONE. Below quorum
the round is abandoned and nothing is published. All of it is recorded in the store so that a
restarted coordinator resumes the open round with every accepted upload counted exactly once.

All state changes run on the event loop; only payload decoding and homomorphic additions go to
threads, under a per-round lock so that "check, add, record" is atomic.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp

from coordinator import failpoints
from coordinator.anomalies import AnomalyMonitor, RoundSummary, noise_floor_for
from coordinator.config import CoordinatorConfig
from coordinator.errors import AlreadyExistsError, WrongPhaseError
from coordinator.events import EventBus
from coordinator.metrics import CoordinatorMetrics
from coordinator.models import ModelRegistry
from coordinator.profiles.base import (
    Aggregate,
    OpenedAggregate,
    RoundContext,
    RoundProtocol,
    RoundRefusedError,
    UploadRecord,
)
from coordinator.store import RoundRow, Store, TaskRow, WorkerRow
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import operator_service_pb2 as ops

logger = logging.getLogger(__name__)

_OUTCOME_LABELS: dict[int, str] = {
    common.ROUND_OUTCOME_PUBLISHED: "published",
    common.ROUND_OUTCOME_BELOW_QUORUM: "below_quorum",
    common.ROUND_OUTCOME_COMMITTEE_FAILED: "committee_failed",
    common.ROUND_OUTCOME_BUDGET_REFUSED: "budget_refused",
    common.ROUND_OUTCOME_REJECTED: "rejected",
}
_PHASE_LABELS: dict[int, str] = {
    common.ROUND_PHASE_PREPARING: "preparing",
    common.ROUND_PHASE_COLLECTING: "collecting",
    common.ROUND_PHASE_CERTIFYING: "certifying",
    common.ROUND_PHASE_OPENING: "opening",
    common.ROUND_PHASE_APPLYING: "applying",
}


def phase_name(phase: int) -> str:
    """The enum name of a round phase, for logs and events."""
    return common.RoundPhase.Name(cast(common.RoundPhase.ValueType, phase))


def timestamp(seconds: float) -> Timestamp:
    """A protobuf Timestamp for a Unix time."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


@dataclass
class ActiveRound:
    """The open round, in memory."""

    number: int
    signed: common.SignedRoundDescriptor
    descriptor: common.RoundDescriptor
    open_time: float
    deadline: float
    aggregate: Aggregate
    selected: int = 0
    contributors: int = 0
    phase: int = common.ROUND_PHASE_COLLECTING
    phase_started: float = field(default_factory=time.monotonic)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    add_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def descriptor_sha256(self) -> bytes:
        """Digest of the signed descriptor bytes, which upload statements name."""
        return hashlib.sha256(self.signed.descriptor).digest()


class RoundEngine:
    """Drives rounds and answers check-ins and uploads for the open one."""

    def __init__(
        self,
        config: CoordinatorConfig,
        store: Store,
        models: ModelRegistry,
        protocol: RoundProtocol,
        metrics: CoordinatorMetrics,
        events: EventBus,
        clock: Callable[[], float] = time.time,
        anomalies: AnomalyMonitor | None = None,
    ) -> None:
        """Wires the engine to its collaborators; call :meth:`run` to start rounds."""
        self._config = config
        self._store = store
        self._models = models
        self._protocol = protocol
        self._metrics = metrics
        self._events = events
        self._clock = clock
        self._anomalies = anomalies
        self._rng = random.SystemRandom()
        self.current: ActiveRound | None = None
        self.next_open_time = clock()
        self.preparing = False
        self.ceremony = False
        self.refused = ""
        self.rounds_finished = 0
        self.round_finished = asyncio.Condition()

    @property
    def protocol(self) -> RoundProtocol:
        """The crypto profile's round protocol."""
        return self._protocol

    @property
    def selection_target(self) -> int:
        """Devices selected per round: the goal times the over-selection factor."""
        rounds = self._config.round
        return math.ceil(rounds.goal_contributors * rounds.over_selection)

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Opens, collects and finishes rounds until ``stop`` is set."""
        if not await self._ready(stop):
            return
        if not await self._enough_enrolled(stop):
            return
        await self._recover()
        resumed = self.current
        if resumed is not None:
            if resumed.phase == common.ROUND_PHASE_COLLECTING:
                await self._collect(resumed, stop)
            if stop.is_set():
                return
            await self._finish(resumed)
        max_rounds = self._config.round.max_rounds
        while not stop.is_set():
            latest = self._store.latest_round()
            if self.refused or (
                max_rounds and latest is not None and latest.round_number >= max_rounds
            ):
                await stop.wait()
                return
            delay = self.next_open_time - self._clock()
            if delay > 0 and await _wait_or_stop(stop, delay):
                return
            active = await self._open_round()
            if active is None:
                continue
            await self._collect(active, stop)
            if stop.is_set():
                return
            await self._finish(active)

    async def _ready(self, stop: asyncio.Event) -> bool:
        """Runs the profile's setup (the first key ceremony), retrying until it succeeds."""
        self.ceremony = True
        try:
            while not stop.is_set():
                try:
                    await self._protocol.ensure_ready()
                    self._metrics.key_epoch.set(self._protocol.key_epoch)
                    return True
                except Exception as error:  # noqa: BLE001 - retried; devices are told to wait
                    logger.warning("federation not ready yet: %s", error)
                    if await _wait_or_stop(stop, 5.0):
                        return False
            return False
        finally:
            self.ceremony = False

    async def _enough_enrolled(self, stop: asyncio.Event) -> bool:
        """Holds the first round until ``min_enrolled_workers`` devices have enrolled."""
        wanted = self._config.round.min_enrolled_workers
        while len(self._store.list_workers()) < wanted:
            if await _wait_or_stop(stop, 0.5):
                return False
        return True

    async def _recover(self) -> None:
        """Resumes a round left open by a crash or restart."""
        latest = self._store.latest_round()
        if latest is None or latest.phase == common.ROUND_PHASE_DONE:
            if latest is not None:
                self.next_open_time = latest.open_time + self._config.round.interval_seconds
            return
        if latest.phase == common.ROUND_PHASE_PREPARING:
            # No device was given work yet: close it without cost and open a fresh round.
            self._end_round_row(latest, common.ROUND_OUTCOME_COMMITTEE_FAILED, "restarted")
            return
        signed = common.SignedRoundDescriptor.FromString(latest.descriptor)
        descriptor = common.RoundDescriptor.FromString(signed.descriptor)
        active = ActiveRound(
            number=latest.round_number,
            signed=signed,
            descriptor=descriptor,
            open_time=latest.open_time,
            deadline=latest.deadline_time,
            aggregate=self._protocol.new_aggregate(descriptor),
            selected=latest.selected,
            phase=latest.phase,
        )
        accepted = self._store.accepted_uploads(latest.round_number, fed.UPLOAD_STATE_ACCEPTED)
        for row in accepted:
            record = self.upload_record(
                row.worker_id, row.statement, row.signature, row.sealed_shares
            )
            payload = self._store.blobs.read(row.blob_name)
            await asyncio.to_thread(active.aggregate.add, payload, record)
        active.contributors = len(accepted)
        logger.info(
            "resuming round %d in phase %s with %d accepted uploads",
            active.number,
            phase_name(active.phase),
            active.contributors,
        )
        self.current = active
        self._metrics.current_round.set(active.number)
        self._metrics.contributors.set(active.contributors)
        if active.phase != common.ROUND_PHASE_COLLECTING or self._clock() >= active.deadline:
            active.closed.set()

    async def _open_round(self) -> ActiveRound | None:
        latest = self._store.latest_round()
        number = 1 if latest is None else latest.round_number + 1
        version = self._models.latest_version
        context = RoundContext(
            federation_id=self._config.federation.federation_id,
            round_number=number,
            global_version=version,
            global_model_sha256=self._models.published_sha256(version),
            parameter_count=self._models.parameter_count,
            min_contributors=self._config.round.min_contributors,
            max_contributors=self.selection_target,
        )
        open_time = self._clock()
        self.next_open_time = open_time + self._config.round.interval_seconds
        self.preparing = True
        started = time.monotonic()
        try:
            signed = await self._protocol.prepare(context)
        except RoundRefusedError as refusal:
            logger.error("round %d refused: %s; no further rounds will open", number, refusal)
            row = self._store.create_round(
                number, common.ROUND_PHASE_PREPARING, version, b"", open_time, open_time
            )
            self._end_round_row(row, common.ROUND_OUTCOME_BUDGET_REFUSED, str(refusal))
            self._metrics.budget_exhaustions.inc()
            self.refused = str(refusal)
            return None
        except Exception as error:  # noqa: BLE001 - any committee failure abandons the round
            logger.error("round %d could not be prepared: %s", number, error)
            row = self._store.create_round(
                number, common.ROUND_PHASE_PREPARING, version, b"", open_time, open_time
            )
            self._end_round_row(row, common.ROUND_OUTCOME_COMMITTEE_FAILED, str(error))
            return None
        finally:
            self.preparing = False
        self._metrics.round_phase_seconds.labels("preparing").observe(time.monotonic() - started)
        descriptor = common.RoundDescriptor.FromString(signed.descriptor)
        deadline = self._clock() + self._config.round.collect_seconds
        self._store.create_round(
            number,
            common.ROUND_PHASE_COLLECTING,
            version,
            signed.SerializeToString(),
            open_time,
            deadline,
        )
        active = ActiveRound(
            number=number,
            signed=signed,
            descriptor=descriptor,
            open_time=open_time,
            deadline=deadline,
            aggregate=self._protocol.new_aggregate(descriptor),
        )
        self.current = active
        self._metrics.current_round.set(number)
        self._metrics.contributors.set(0)
        self._metrics.selected.set(0)
        self._events.publish(
            ops.ROUND_EVENT_KIND_OPENED,
            number,
            active.phase,
            0,
            f"global version {version}, deadline in {self._config.round.collect_seconds:.0f} s",
            open_time,
        )
        logger.info("round %d open: global version %d", number, version)
        return active

    async def _collect(self, active: ActiveRound, stop: asyncio.Event) -> None:
        remaining = active.deadline - self._clock()
        if remaining > 0 and not active.closed.is_set():
            closed = asyncio.ensure_future(active.closed.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopped}, timeout=remaining, return_when="FIRST_COMPLETED")
            for waiter in (closed, stopped):
                waiter.cancel()
        if stop.is_set():
            return
        async with active.add_lock:
            active.closed.set()
        self._metrics.round_phase_seconds.labels("collecting").observe(
            time.monotonic() - active.phase_started
        )
        self._events.publish(
            ops.ROUND_EVENT_KIND_WINDOW_CLOSED,
            active.number,
            active.phase,
            active.contributors,
            f"{active.contributors} of {active.selected} selected devices uploaded",
            active.open_time,
        )

    def _set_phase(self, active: ActiveRound, phase: int) -> None:
        label = _PHASE_LABELS.get(active.phase)
        if label is not None and active.phase != common.ROUND_PHASE_COLLECTING:
            self._metrics.round_phase_seconds.labels(label).observe(
                time.monotonic() - active.phase_started
            )
        active.phase = phase
        active.phase_started = time.monotonic()
        self._store.update_round(active.number, phase=phase)
        if phase == common.ROUND_PHASE_CERTIFYING:
            failpoints.reach("round.certifying", active.number)
        elif phase == common.ROUND_PHASE_OPENING:
            failpoints.reach("round.opening", active.number)
        if phase == common.ROUND_PHASE_CERTIFYING:
            kind = ops.ROUND_EVENT_KIND_WINDOW_CLOSED
        elif phase == common.ROUND_PHASE_OPENING:
            kind = ops.ROUND_EVENT_KIND_CERTIFIED
        elif phase == common.ROUND_PHASE_APPLYING:
            kind = ops.ROUND_EVENT_KIND_OPENED_AGGREGATE
        else:
            return
        self._events.publish(
            kind,
            active.number,
            phase,
            active.contributors,
            phase_name(phase),
            active.open_time,
        )

    async def _finish(self, active: ActiveRound) -> None:
        rounds = self._config.round
        try:
            if active.contributors < rounds.min_contributors:
                self._abandon(
                    active,
                    common.ROUND_OUTCOME_BELOW_QUORUM,
                    f"{active.contributors} uploads, fewer than min_contributors"
                    f" = {rounds.min_contributors}",
                )
                return
            uploads = [
                self.upload_record(r.worker_id, r.statement, r.signature, r.sealed_shares)
                for r in self._store.accepted_uploads(active.number, fed.UPLOAD_STATE_ACCEPTED)
            ]
            started = time.monotonic()
            try:
                opened = await self._protocol.open(
                    active.signed,
                    active.aggregate,
                    uploads,
                    lambda phase: self._set_phase(active, phase),
                )
            except Exception as error:  # noqa: BLE001 - nothing is published on any failure
                logger.error("round %d: opening the aggregate failed: %s", active.number, error)
                self._abandon(active, common.ROUND_OUTCOME_COMMITTEE_FAILED, str(error))
                return
            self._metrics.decryption_seconds.observe(time.monotonic() - started)
            if opened.field_sums is not None:
                # The opened (DP-noised) sum is what the round releases; keep it for audits.
                self._store.blobs.write_atomic(
                    f"aggregates/round-{active.number}.sums",
                    opened.field_sums.astype("<i8").tobytes(),
                )
            self._set_phase(active, common.ROUND_PHASE_APPLYING)
            failpoints.reach("round.decoded", active.number)
            # The ledger is charged before the release is committed: a crash in between
            # re-runs this step, and charging the same round again is idempotent.
            increment = self._protocol.round_ended(active.number, True, active.contributors)
            end = self._clock()
            version = await asyncio.to_thread(
                self._models.publish,
                opened.mean_delta,
                active.number,
                {
                    "phase": common.ROUND_PHASE_DONE,
                    "outcome": common.ROUND_OUTCOME_PUBLISHED,
                    "end_time": end,
                    "contributors": active.contributors,
                    "epsilon_increment": increment,
                },
            )
            failpoints.reach("round.published", active.number)
            self._metrics.rounds.labels("published").inc()
            self._after_end(active, common.ROUND_OUTCOME_PUBLISHED, end, increment, opened)
            self._metrics.global_version.set(version)
            self._events.publish(
                ops.ROUND_EVENT_KIND_PUBLISHED,
                active.number,
                common.ROUND_PHASE_DONE,
                active.contributors,
                f"version {version} from {opened.contributors} contributions",
                active.open_time,
            )
            logger.info(
                "round %d published version %d from %d contributions",
                active.number,
                version,
                opened.contributors,
            )
        finally:
            self.current = None
            async with self.round_finished:
                self.rounds_finished += 1
                self.round_finished.notify_all()

    def _abandon(self, active: ActiveRound, outcome: int, reason: str) -> None:
        end = self._clock()
        row = self._store.get_round(active.number)
        assert row is not None
        # Charged first (idempotently): an abandoned round's descriptor went out, so it counts.
        increment = self._protocol.round_ended(active.number, False, active.contributors)
        self._end_round_row(row, outcome, reason, increment)
        self._after_end(active, outcome, end, increment)
        self._events.publish(
            ops.ROUND_EVENT_KIND_ABANDONED,
            active.number,
            common.ROUND_PHASE_DONE,
            active.contributors,
            reason,
            active.open_time,
        )
        logger.warning("round %d abandoned: %s", active.number, reason)

    def _end_round_row(
        self, row: RoundRow, outcome: int, reason: str, epsilon_increment: float = 0.0
    ) -> None:
        self._store.update_round(
            row.round_number,
            phase=common.ROUND_PHASE_DONE,
            outcome=outcome,
            end_time=self._clock(),
            detail=reason,
            epsilon_increment=epsilon_increment,
        )
        self._metrics.rounds.labels(_OUTCOME_LABELS[outcome]).inc()

    def _after_end(
        self,
        active: ActiveRound,
        outcome: int,
        end: float,
        increment: float,
        opened: OpenedAggregate | None = None,
    ) -> None:
        """Metrics and anomaly checks of a round whose end is already committed."""
        spent, budget, _ = self._protocol.privacy_summary()
        self._metrics.epsilon_spent.set(spent)
        self._metrics.epsilon_remaining.set(max(budget - spent, 0.0))
        if self._anomalies is not None:
            self._anomalies.on_round_end(
                RoundSummary(
                    round_number=active.number,
                    outcome=_OUTCOME_LABELS[outcome],
                    selected=active.selected,
                    contributors=active.contributors,
                    duration_seconds=end - active.open_time,
                    epsilon_increment=increment,
                    epsilon_spent=spent,
                    epsilon_budget=budget,
                    opened=opened,
                    noise_floor=noise_floor_for(active.descriptor),
                    open_time=active.open_time,
                )
            )
        self._metrics.round_seconds.observe(end - active.open_time)
        self._metrics.dropouts.set(max(active.selected - active.contributors, 0))

    # --- check-in ----------------------------------------------------------------------------

    def retry_window(self, reason: int, earliest: float | None = None) -> common.RetryWindow:
        """A jittered window starting at ``earliest`` (default: the next round's opening)."""
        now = self._clock()
        start = max(now, self.next_open_time if earliest is None else earliest)
        jitter = self._config.round.retry_jitter_seconds
        start += self._rng.uniform(0.0, jitter * 0.25)
        return common.RetryWindow(
            earliest_time=timestamp(start),
            latest_time=timestamp(start + jitter),
            reason=reason,  # type: ignore[arg-type]
        )

    def check_in(self, worker: WorkerRow, request: fed.CheckInRequest) -> fed.CheckInResponse:
        """Selects the device for the open round, or tells it when to come back."""
        active = self.current
        now = self._clock()
        if self.refused:
            return fed.CheckInResponse(
                retry=self.retry_window(common.RETRY_REASON_BUDGET_EXHAUSTED, now + 3600.0)
            )
        if self.ceremony:
            return fed.CheckInResponse(
                retry=self.retry_window(common.RETRY_REASON_KEY_CEREMONY, now + 2.0)
            )
        if self.preparing:
            return fed.CheckInResponse(
                retry=self.retry_window(common.RETRY_REASON_NO_OPEN_ROUND, now + 1.0)
            )
        if active is None or active.phase != common.ROUND_PHASE_COLLECTING:
            return fed.CheckInResponse(retry=self.retry_window(common.RETRY_REASON_NO_OPEN_ROUND))
        existing = self._store.task_for(active.number, worker.worker_id)
        if existing is not None:
            upload = self._store.get_upload(existing.task_id)
            if upload is not None and upload.state == fed.UPLOAD_STATE_ACCEPTED:
                return fed.CheckInResponse(
                    retry=self.retry_window(common.RETRY_REASON_ALREADY_PARTICIPATING)
                )
            # The device lost the first answer (or restarted): give it the same task again.
            return fed.CheckInResponse(task=self._assignment(active, existing, request))
        if active.closed.is_set() or now >= active.deadline:
            return fed.CheckInResponse(retry=self.retry_window(common.RETRY_REASON_NO_OPEN_ROUND))
        if active.selected >= self.selection_target:
            return fed.CheckInResponse(retry=self.retry_window(common.RETRY_REASON_ROUND_FULL))
        task = TaskRow(
            task_id=f"r{active.number}-{secrets.token_hex(8)}",
            round_number=active.number,
            worker_id=worker.worker_id,
            assigned_time=now,
            deadline_time=active.deadline,
        )
        self._store.create_task(task)
        active.selected += 1
        self._metrics.selected.set(active.selected)
        self._events.publish(
            ops.ROUND_EVENT_KIND_TASK_ASSIGNED,
            active.number,
            active.phase,
            active.contributors,
            f"{active.selected} of {self.selection_target} selected",
            active.open_time,
        )
        return fed.CheckInResponse(task=self._assignment(active, task, request))

    def _assignment(
        self, active: ActiveRound, task: TaskRow, request: fed.CheckInRequest
    ) -> fed.TaskAssignment:
        limits = self._config.limits
        assignment = fed.TaskAssignment(
            task_id=task.task_id,
            descriptor=active.signed,
            upload_deadline_time=timestamp(task.deadline_time),
            max_chunk_size_bytes=limits.max_chunk_size_bytes,
            max_payload_size_bytes=limits.max_payload_size_bytes,
        )
        material = self._protocol.key_material(request.have_key_epoch)
        if material is not None:
            assignment.key_material.CopyFrom(material)
        return assignment

    # --- uploads -----------------------------------------------------------------------------

    def require_collecting(self, task: TaskRow) -> ActiveRound:
        """The open round a task belongs to, if it still accepts bytes.

        Raises:
            WrongPhaseError: if the task's round is closed or its deadline has passed.
        """
        active = self.current
        if active is None or active.number != task.round_number:
            raise WrongPhaseError(
                f"round {task.round_number} is closed; check in for the current round"
            )
        if active.closed.is_set() or active.phase != common.ROUND_PHASE_COLLECTING:
            raise WrongPhaseError(f"round {task.round_number}'s upload window has closed")
        if self._clock() > task.deadline_time:
            raise WrongPhaseError(f"task {task.task_id} missed its upload deadline")
        return active

    def upload_record(
        self,
        worker_id: str,
        statement: bytes | None,
        signature: bytes | None,
        sealed_shares: bytes | None,
    ) -> UploadRecord:
        """Rebuilds an UploadRecord from stored columns."""
        worker = self._store.get_worker(worker_id)
        assert worker is not None
        shares = fed.UploadTrailer.FromString(sealed_shares or b"").sealed_shares
        return UploadRecord(
            worker_id=worker_id,
            signing_public_key=worker.signing_public_key,
            enrollment_certificate=worker.enrollment_certificate,
            signed_statement=common.SignedUploadStatement(
                statement=statement or b"", signature=signature or b""
            ),
            sealed_shares=tuple(shares),
        )

    async def accept_upload(
        self,
        task: TaskRow,
        payload: bytes,
        record: UploadRecord,
        commit: Callable[[], bool],
    ) -> None:
        """Adds a verified upload to the running aggregate and records it, exactly once.

        Args:
            task: The task the upload answers.
            payload: The whole payload (digest already checked).
            record: Statement, signature and sealed shares (already verified).
            commit: Marks the upload accepted in the store; returns False for a replay.

        Raises:
            WrongPhaseError: if the window closed meanwhile.
            AlreadyExistsError: if the upload was accepted before.
            InvalidPayloadError: if the payload does not decode; nothing changes.
        """
        active = self.require_collecting(task)
        started = time.monotonic()
        async with active.add_lock:
            self.require_collecting(task)
            existing = self._store.get_upload(task.task_id)
            if existing is not None and existing.state == fed.UPLOAD_STATE_ACCEPTED:
                raise AlreadyExistsError(f"upload for task {task.task_id} was already accepted")
            self._protocol.validate_statement_extras(active.descriptor, record)
            await asyncio.to_thread(active.aggregate.add, payload, record)
            # The aggregate already holds the payload; record it before anything can interrupt.
            if not commit():
                raise AlreadyExistsError(f"upload for task {task.task_id} was already accepted")
            active.contributors += 1
            failpoints.reach("upload.accepted", active.number)
            self._metrics.aggregation_seconds.observe(time.monotonic() - started)
            self._metrics.uploads_accepted.inc()
            self._metrics.contributors.set(active.contributors)
            self._events.publish(
                ops.ROUND_EVENT_KIND_UPLOAD_ACCEPTED,
                active.number,
                active.phase,
                active.contributors,
                f"{active.contributors} of goal {self._config.round.goal_contributors}",
                active.open_time,
            )
            if active.contributors >= self._config.round.goal_contributors:
                active.closed.set()


async def _wait_or_stop(stop: asyncio.Event, delay: float) -> bool:
    """Sleeps ``delay`` seconds unless ``stop`` is set first; returns whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except asyncio.TimeoutError:
        return False
    return True
