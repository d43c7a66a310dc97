"""FederationService: the calls edge workers make."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coordinator.anomalies import AnomalyMonitor
from coordinator.config import CoordinatorConfig
from coordinator.downloads import ModelDownloads
from coordinator.errors import (
    CoordinatorError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from coordinator.rounds import RoundEngine
from coordinator.servicers.gate import Gate, stream_errors, unary_errors
from coordinator.store import ReportRow, Store
from coordinator.tls import CertificateError, peer_identity
from coordinator.uploads import UploadReceiver
from crypto import model_payload
from crypto.signing import PUBLIC_KEY_BYTES, SignatureTag, verify, worker_id_for
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc

logger = logging.getLogger(__name__)

_SERVICE = "/hefl.v1.FederationService/"
ENROLL_TOLERANCE_SECONDS = 300.0


def enrollment_message(
    federation_id: str, signing_public_key: bytes, request_seconds: int
) -> bytes:
    """The bytes a device signs (tag ``enroll``) to prove it holds its key."""
    return b"\n".join(
        (federation_id.encode(), signing_public_key.hex().encode(), str(request_seconds).encode())
    )


class FederationServicer(fed_grpc.FederationServiceServicer):
    """Thin handlers: check the caller and the request, call domain code, map errors."""

    def __init__(
        self,
        config: CoordinatorConfig,
        store: Store,
        gate: Gate,
        engine: RoundEngine,
        uploads: UploadReceiver,
        downloads: ModelDownloads,
        anomalies: AnomalyMonitor | None = None,
    ) -> None:
        """Wires the handlers to the coordinator's components."""
        self._config = config
        self._store = store
        self.gate = gate
        self._engine = engine
        self._uploads = uploads
        self._downloads = downloads
        self._anomalies = anomalies

    def _check_federation(self, federation_id: str) -> None:
        if not federation_id:
            raise InvalidRequestError("federation_id is required")
        if federation_id != self._config.federation.federation_id:
            raise NotFoundError(f"unknown federation {federation_id!r}")

    @unary_errors("EnrollWorker")
    async def EnrollWorker(
        self,
        request: fed.EnrollWorkerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> fed.EnrollWorkerResponse:
        """Enrols a device under its Ed25519 signing key; idempotent for the same key."""
        self._check_federation(request.federation_id)
        key = request.signing_public_key
        if len(key) != PUBLIC_KEY_BYTES:
            raise InvalidRequestError(f"signing_public_key must be {PUBLIC_KEY_BYTES} bytes")
        tokens = self._config.federation.enrollment_tokens
        if tokens and not any(
            hmac.compare_digest(request.enrollment_token.encode(), t.encode()) for t in tokens
        ):
            raise PermissionDeniedError("enrollment_token is not valid for this federation")
        if not request.HasField("request_time"):
            raise InvalidRequestError("request_time is required")
        seconds = request.request_time.seconds
        if abs(time.time() - seconds) > ENROLL_TOLERANCE_SECONDS:
            raise UnauthenticatedError("request_time is too far from the coordinator's clock")
        message = enrollment_message(request.federation_id, key, seconds)
        if not verify(key, SignatureTag.ENROLL, message, request.proof_of_possession):
            raise UnauthenticatedError("proof_of_possession does not verify with the key")
        certificate = b""
        if not self._config.server.insecure:
            # Under mutual TLS the device CA, not the coordinator, vouches for the identity.
            try:
                peer = peer_identity(context)
            except CertificateError as error:
                raise UnauthenticatedError(f"client certificate: {error}") from None
            if peer is None or peer[0].signing_public_key != key:
                raise PermissionDeniedError(
                    "the TLS client certificate was issued for another signing key"
                )
            certificate = peer[1]
        worker = await asyncio.to_thread(
            self._store.enroll_worker,
            worker_id_for(key),
            key,
            request.display_name[:128],
            request.key_holder_capable,
            certificate,
        )
        logger.info("[EnrollWorker] worker=%s name=%s", worker.worker_id, worker.display_name)
        return fed.EnrollWorkerResponse(
            worker_id=worker.worker_id,
            profile=self._engine.protocol.profile,  # type: ignore[arg-type]
            global_version=self._engine_version(),
            first_check_in=self._engine.retry_window(
                common.RETRY_REASON_NO_OPEN_ROUND, earliest=time.time()
            ),
            parameter_count=self._parameter_count(),
        )

    def _engine_version(self) -> int:
        latest = self._store.latest_version()
        return 0 if latest is None else latest.version

    def _parameter_count(self) -> int:
        latest = self._store.latest_version()
        return 0 if latest is None else (latest.size - model_payload.model_size(0)) // 4

    @unary_errors("CheckIn")
    async def CheckIn(
        self, request: fed.CheckInRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> fed.CheckInResponse:
        """Returns a task for the open round or a window to come back in."""
        worker = self.gate.admit(context, _SERVICE + "CheckIn")
        self._check_federation(request.federation_id)
        return self._engine.check_in(worker, request)

    @unary_errors("UploadUpdate")
    async def UploadUpdate(
        self,
        request_iterator: AsyncIterator[fed.UploadUpdateRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> fed.UploadUpdateResponse:
        """Receives one framed upload (or the next part of a resumed one)."""
        worker = self.gate.admit(context, _SERVICE + "UploadUpdate")
        try:
            return await self._uploads.receive(worker, request_iterator)
        except CoordinatorError as error:
            self.gate.metrics.upload_rejections.labels(error.code.name).inc()
            if self._anomalies is not None:
                current = self._engine.current
                self._anomalies.on_upload_refused(
                    0 if current is None else current.number, error.code.name
                )
            raise

    @unary_errors("GetUploadStatus")
    async def GetUploadStatus(
        self, request: fed.GetUploadStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> fed.GetUploadStatusResponse:
        """Tells how much of an upload is durably committed."""
        worker = self.gate.admit(context, _SERVICE + "GetUploadStatus")
        return self._uploads.status(worker, request.task_id)

    @stream_errors("DownloadModel")
    async def DownloadModel(
        self, request: fed.DownloadModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[fed.DownloadModelResponse]:
        """Streams a correction chain or the full model, from the requested offset."""
        self.gate.admit(context, _SERVICE + "DownloadModel")
        self._check_federation(request.federation_id)
        header, data = self._downloads.plan(request)
        async for frame in self._downloads.stream(header, data, request.offset_bytes):
            yield frame

    @unary_errors("ReportTaskOutcome")
    async def ReportTaskOutcome(
        self, request: fed.ReportTaskOutcomeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> fed.ReportTaskOutcomeResponse:
        """Records how a task ended on the device (counts and aggregate metrics only)."""
        worker = self.gate.admit(context, _SERVICE + "ReportTaskOutcome")
        if request.outcome == fed.TASK_OUTCOME_UNSPECIFIED:
            raise InvalidRequestError("outcome must be set")
        task = self._store.get_task(request.task_id)
        if task is None:
            raise NotFoundError(f"unknown task {request.task_id!r}")
        if task.worker_id != worker.worker_id:
            raise PermissionDeniedError(f"task {request.task_id} belongs to another worker")
        if len(request.metrics) > 32:
            raise InvalidRequestError("at most 32 metrics per report")
        latest = self._engine_version()
        if request.applied_version > latest:
            raise InvalidRequestError(
                f"applied_version {request.applied_version} is newer than the latest model"
                f" version {latest}"
            )
        recorded = self._store.record_report(
            ReportRow(
                task_id=task.task_id,
                worker_id=worker.worker_id,
                round_number=task.round_number,
                outcome=request.outcome,
                applied_version=request.applied_version,
                update_rejections=request.update_rejections,
                correction_rejections=request.correction_rejections,
                metrics={k[:64]: float(v) for k, v in request.metrics.items()},
                record_time=time.time(),
            )
        )
        if recorded and self._anomalies is not None:
            self._anomalies.on_device_report(
                task.round_number, request.update_rejections, request.correction_rejections
            )
        if recorded:
            metrics = self.gate.metrics
            metrics.validation_rejections.labels("update").inc(request.update_rejections)
            metrics.validation_rejections.labels("correction").inc(request.correction_rejections)
        return fed.ReportTaskOutcomeResponse(recorded=recorded)
