"""OperatorService: read-only status, ledger, anomalies and the round-event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from coordinator.config import CoordinatorConfig
from coordinator.errors import InvalidRequestError, NotFoundError
from coordinator.events import EventBus
from coordinator.rounds import RoundEngine, timestamp
from coordinator.servicers.gate import Gate, stream_errors, unary_errors
from coordinator.store import EventRow, Store
from crypto import model_payload
from hefl.v1 import common_pb2 as common
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc

_DEFAULT_ROUNDS = 50
_DEFAULT_ANOMALIES = 100
_MAX_PAGE = 1000


def event_message(event: EventRow) -> ops.RoundEvent:
    """The wire form of a stored event."""
    message = ops.RoundEvent(
        sequence=event.sequence,
        kind=event.kind,  # type: ignore[arg-type]
        round_number=event.round_number,
        event_time=timestamp(event.event_time),
        phase=event.phase,  # type: ignore[arg-type]
        contributors=event.contributors,
        detail=event.detail,
    )
    if event.round_open_time is not None:
        elapsed = Duration()
        elapsed.FromNanoseconds(int((event.event_time - event.round_open_time) * 1e9))
        message.elapsed.CopyFrom(elapsed)
    return message


class OperatorServicer(ops_grpc.OperatorServiceServicer):
    """Answers operators and dashboards from the store; exposes no update or key material."""

    def __init__(
        self,
        config: CoordinatorConfig,
        store: Store,
        gate: Gate,
        engine: RoundEngine,
        events: EventBus,
    ) -> None:
        """Wires the handlers to the coordinator's components."""
        self._config = config
        self._store = store
        self.gate = gate
        self._engine = engine
        self._events = events

    def _check_federation(self, federation_id: str) -> None:
        if not federation_id:
            raise InvalidRequestError("federation_id is required")
        if federation_id != self._config.federation.federation_id:
            raise NotFoundError(f"unknown federation {federation_id!r}")

    def _budget(self) -> tuple[float, float, float]:
        """(spent, budget, delta) from the privacy ledger, zeros when DP is off."""
        return self._engine.protocol.privacy_summary()

    @unary_errors("GetFederationStatus")
    async def GetFederationStatus(
        self, request: ops.GetFederationStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ops.GetFederationStatusResponse:
        """Returns the state of the federation."""
        self._check_federation(request.federation_id)
        latest_round = self._store.latest_round()
        latest_version = self._store.latest_version()
        active = self._engine.current
        spent, budget, delta = self._budget()
        return ops.GetFederationStatusResponse(
            federation_id=self._config.federation.federation_id,
            profile=self._engine.protocol.profile,  # type: ignore[arg-type]
            global_version=0 if latest_version is None else latest_version.version,
            current_round=0 if latest_round is None else latest_round.round_number,
            current_phase=(
                active.phase  # type: ignore[arg-type]
                if active is not None
                else (
                    common.ROUND_PHASE_UNSPECIFIED if latest_round is None else latest_round.phase
                )
            ),
            enrolled_workers=len(self._store.list_workers()),
            active_workers=self.gate.active_workers(self._config.round.active_worker_seconds),
            key_epoch=self._engine.protocol.key_epoch,
            epsilon_spent=spent,
            epsilon_budget=budget,
            delta=delta,
            parameter_count=(
                0
                if latest_version is None
                else (latest_version.size - model_payload.model_size(0)) // 4
            ),
        )

    @unary_errors("ListRounds")
    async def ListRounds(
        self, request: ops.ListRoundsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ops.ListRoundsResponse:
        """Lists rounds, newest first."""
        self._check_federation(request.federation_id)
        limit = min(request.page_size or _DEFAULT_ROUNDS, _MAX_PAGE)
        rounds = []
        for row in self._store.list_rounds(limit, request.before_round):
            summary = ops.RoundSummary(
                round_number=row.round_number,
                phase=row.phase,  # type: ignore[arg-type]
                outcome=row.outcome,  # type: ignore[arg-type]
                selected=row.selected,
                contributors=row.contributors,
                dropouts=max(row.selected - row.contributors, 0) if row.end_time else 0,
                open_time=timestamp(row.open_time),
                published_version=row.published_version,
                epsilon_increment=row.epsilon_increment,
                bytes_in=row.bytes_in,
            )
            if row.end_time is not None:
                summary.end_time.CopyFrom(timestamp(row.end_time))
            rounds.append(summary)
        return ops.ListRoundsResponse(rounds=rounds)

    @unary_errors("ListWorkers")
    async def ListWorkers(
        self, request: ops.ListWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ops.ListWorkersResponse:
        """Lists enrolled workers."""
        self._check_federation(request.federation_id)
        self.gate.flush_last_seen()
        members = self._engine.protocol.committee_indices()
        return ops.ListWorkersResponse(
            workers=[
                ops.WorkerSummary(
                    worker_id=w.worker_id,
                    display_name=w.display_name,
                    key_holder_capable=w.key_holder_capable,
                    committee_index=members.get(w.worker_id, 0),
                    last_seen_time=timestamp(w.last_seen_time),
                    contributions=w.contributions,
                    applied_version=w.applied_version,
                )
                for w in self._store.list_workers()
            ]
        )

    @unary_errors("GetPrivacyLedger")
    async def GetPrivacyLedger(
        self, request: ops.GetPrivacyLedgerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ops.GetPrivacyLedgerResponse:
        """Returns the privacy ledger."""
        self._check_federation(request.federation_id)
        spent, budget, delta = self._budget()
        entries = []
        for entry, record_time in self._store.ledger_entries():
            entries.append(
                ops.LedgerEntry(
                    round_number=int(entry.get("round", 0)),
                    mechanism=str(entry.get("mechanism", "")),
                    local_noise_variance=float(entry.get("local_noise_variance", 0.0)),
                    calibrated_contributors=int(entry.get("calibrated_contributors", 0)),
                    actual_contributors=int(entry.get("actual_contributors", 0)),
                    bits=int(entry.get("bits", 0)),
                    sampling=str(entry.get("sampling", "")),
                    epsilon_increment=float(entry.get("epsilon_increment", 0.0)),
                    epsilon_cumulative=float(entry.get("epsilon_cumulative", 0.0)),
                    accountant=str(entry.get("accountant", "")),
                    record_time=timestamp(record_time),
                )
            )
        return ops.GetPrivacyLedgerResponse(
            epsilon_budget=budget, delta=delta, epsilon_spent=spent, entries=entries
        )

    @unary_errors("ListAnomalies")
    async def ListAnomalies(
        self, request: ops.ListAnomaliesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ops.ListAnomaliesResponse:
        """Lists recorded anomalies, newest first."""
        self._check_federation(request.federation_id)
        limit = min(request.page_size or _DEFAULT_ANOMALIES, _MAX_PAGE)
        return ops.ListAnomaliesResponse(
            anomalies=[
                ops.Anomaly(
                    kind=a.kind,
                    round_number=a.round_number,
                    observed=a.observed,
                    threshold=a.threshold,
                    detail=a.detail,
                    record_time=timestamp(a.record_time),
                )
                for a in self._store.list_anomalies(limit)
            ]
        )

    @stream_errors("WatchRoundEvents")
    async def WatchRoundEvents(
        self, request: ops.WatchRoundEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[ops.WatchRoundEventsResponse]:
        """Replays events after the cursor, then streams new ones until the client leaves."""
        self._check_federation(request.federation_id)
        newest = self._events.last_sequence()
        if request.after_sequence > newest:
            # A cursor from the future means the watcher saw another state (a reset coordinator).
            raise InvalidRequestError(
                f"after_sequence {request.after_sequence} is ahead of the newest event {newest};"
                " resume from 0"
            )
        queue = self._events.subscribe()
        try:
            last = request.after_sequence
            if last:
                for event in self._events.replay(last):
                    last = event.sequence
                    yield ops.WatchRoundEventsResponse(event=event_message(event))
            while True:
                pushed = await queue.get()
                if pushed is None:
                    return
                if pushed.sequence <= last:
                    continue
                last = pushed.sequence
                yield ops.WatchRoundEventsResponse(event=event_message(pushed))
        finally:
            self._events.unsubscribe(queue)
