"""Receives framed, resumable uploads: header, offset-tagged chunks, trailer.

Bytes are appended to a blob and fsync'd before the committed offset is recorded, so a device
can resume from exactly what the coordinator acknowledged. The trailer's digest is checked over
the durable bytes, the worker's signed statement is checked against its enrolled key and the open
round, and only then is the payload handed to the round engine, which adds it to the running
aggregate and marks it accepted in one step.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import cast

from coordinator.config import LimitsConfig
from coordinator.errors import (
    AlreadyExistsError,
    DigestMismatchError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    WrongPhaseError,
)
from coordinator.metrics import CoordinatorMetrics
from coordinator.profiles.base import InvalidPayloadError, UploadRecord
from coordinator.rounds import RoundEngine
from coordinator.store import Store, TaskRow, UploadRow, WorkerRow
from crypto.committee.contributions import sealed_boxes_sha256
from crypto.signing import SignatureTag, verify
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed

logger = logging.getLogger(__name__)


def _profile_name(profile: int) -> str:
    try:
        return common.CryptoProfile.Name(cast(common.CryptoProfile.ValueType, profile))
    except ValueError:
        return f"undefined profile {profile}"


class UploadReceiver:
    """Turns an UploadUpdate stream into durable bytes and, at the trailer, an accepted upload."""

    def __init__(
        self,
        store: Store,
        engine: RoundEngine,
        limits: LimitsConfig,
        metrics: CoordinatorMetrics,
        federation_id: str,
    ) -> None:
        """Wires the receiver to the store and the round engine."""
        self._store = store
        self._engine = engine
        self._limits = limits
        self._metrics = metrics
        self._federation_id = federation_id

    def trim_after_restart(self) -> None:
        """Cuts partial blobs back to their committed size (bytes never acknowledged)."""
        for row in self._store.unfinished_uploads(fed.UPLOAD_STATE_RECEIVING):
            self._store.blobs.truncate(row.blob_name, row.committed_size)

    def status(self, worker: WorkerRow, task_id: str) -> fed.GetUploadStatusResponse:
        """Where an upload stands, for a device about to resume."""
        task = self._own_task(worker, task_id)
        upload = self._store.get_upload(task.task_id)
        if upload is None:
            return fed.GetUploadStatusResponse(task_id=task_id, state=fed.UPLOAD_STATE_NOT_STARTED)
        return fed.GetUploadStatusResponse(
            task_id=task_id,
            state=upload.state,  # type: ignore[arg-type]
            committed_size_bytes=upload.committed_size,
            total_size_bytes=upload.total_size,
        )

    def _own_task(self, worker: WorkerRow, task_id: str) -> TaskRow:
        if not task_id:
            raise InvalidRequestError("task_id is required")
        task = self._store.get_task(task_id)
        if task is None:
            raise NotFoundError(f"unknown task {task_id!r}")
        if task.worker_id != worker.worker_id:
            raise PermissionDeniedError(f"task {task_id} belongs to another worker")
        return task

    async def receive(
        self, worker: WorkerRow, frames: AsyncIterator[fed.UploadUpdateRequest]
    ) -> fed.UploadUpdateResponse:
        """Consumes one upload stream.

        Raises:
            CoordinatorError: a subclass naming what was wrong; bytes committed before the
                error stay committed, and nothing else changes.
        """
        first = await anext(frames, None)
        if first is None or first.WhichOneof("frame") != "header":
            raise InvalidRequestError("an upload stream must start with a header frame")
        header = first.header
        task = self._own_task(worker, header.task_id)
        upload = self._open(task, header)
        committed = upload.committed_size
        async for frame in frames:
            kind = frame.WhichOneof("frame")
            if kind == "chunk":
                # The fsync runs off the event loop: health checks and other calls keep flowing.
                committed = await asyncio.to_thread(
                    self._append, task, upload, committed, frame.chunk
                )
            elif kind == "trailer":
                await self._finish(worker, task, upload, committed, frame.trailer)
                return fed.UploadUpdateResponse(
                    task_id=task.task_id,
                    state=fed.UPLOAD_STATE_ACCEPTED,
                    committed_size_bytes=committed,
                )
            else:
                raise InvalidRequestError(
                    "after the header only chunk frames and one trailer frame may follow"
                )
        # The stream ended without a trailer: a clean pause; the device resumes later.
        return fed.UploadUpdateResponse(
            task_id=task.task_id, state=fed.UPLOAD_STATE_RECEIVING, committed_size_bytes=committed
        )

    def _open(self, task: TaskRow, header: fed.UploadHeader) -> UploadRow:
        protocol = self._engine.protocol
        if header.profile == common.CRYPTO_PROFILE_UNSPECIFIED:
            raise InvalidRequestError("header.profile must be set")
        if header.profile != protocol.profile:
            raise InvalidRequestError(
                f"header.profile {_profile_name(header.profile)} does not match the"
                f" federation's {_profile_name(protocol.profile)}"
            )
        if header.payload_format_version != protocol.payload_format_version:
            raise InvalidRequestError(
                f"payload format {header.payload_format_version} is not supported"
                f" (expected {protocol.payload_format_version})"
            )
        if header.round_number != task.round_number:
            raise WrongPhaseError(
                f"task {task.task_id} is for round {task.round_number}, header says"
                f" {header.round_number}"
            )
        if header.total_size_bytes == 0:
            raise InvalidRequestError("header.total_size_bytes must be positive")
        if header.total_size_bytes > self._limits.max_payload_size_bytes:
            raise LimitExceededError(
                f"payload of {header.total_size_bytes} bytes exceeds the limit of"
                f" {self._limits.max_payload_size_bytes}"
            )
        upload = self._store.get_upload(task.task_id)
        if upload is not None and upload.state == fed.UPLOAD_STATE_ACCEPTED:
            raise AlreadyExistsError(f"upload for task {task.task_id} was already accepted")
        self._engine.require_collecting(task)
        if upload is None:
            if header.start_offset_bytes != 0:
                raise WrongPhaseError("nothing is committed for this task yet: start at offset 0")
            return self._store.begin_upload(
                task,
                fed.UPLOAD_STATE_RECEIVING,
                header.profile,
                header.payload_format_version,
                header.total_size_bytes,
                f"uploads/{task.task_id}.part",
            )
        if upload.total_size != header.total_size_bytes:
            raise InvalidRequestError(
                f"resumed upload announces {header.total_size_bytes} bytes, first header said"
                f" {upload.total_size}"
            )
        if header.start_offset_bytes != upload.committed_size:
            raise WrongPhaseError(
                f"resume from the committed offset {upload.committed_size}, not"
                f" {header.start_offset_bytes}"
            )
        return upload

    def _append(self, task: TaskRow, upload: UploadRow, committed: int, chunk: common.Chunk) -> int:
        if len(chunk.data) > self._limits.max_chunk_size_bytes:
            raise LimitExceededError(
                f"chunk of {len(chunk.data)} bytes exceeds {self._limits.max_chunk_size_bytes}"
            )
        if not chunk.data:
            raise InvalidRequestError("empty chunk")
        if chunk.offset_bytes != committed:
            raise InvalidRequestError(
                f"chunk at offset {chunk.offset_bytes}, expected {committed} (chunks must be"
                " contiguous and in order)"
            )
        end = committed + len(chunk.data)
        if end > upload.total_size:
            raise InvalidRequestError(
                f"chunk ends at {end}, beyond the announced size {upload.total_size}"
            )
        self._engine.require_collecting(task)
        self._store.blobs.append_durable(upload.blob_name, committed, chunk.data)
        self._store.commit_upload_bytes(task.task_id, end)
        self._metrics.bytes_received.labels("upload").inc(len(chunk.data))
        return end

    async def _finish(
        self,
        worker: WorkerRow,
        task: TaskRow,
        upload: UploadRow,
        committed: int,
        trailer: fed.UploadTrailer,
    ) -> None:
        if committed != upload.total_size:
            raise InvalidRequestError(
                f"trailer after {committed} of {upload.total_size} bytes; send the rest first"
            )
        payload = self._store.blobs.read(upload.blob_name, 0, committed)
        digest = hashlib.sha256(payload).digest()
        if trailer.payload_sha256 != digest:
            # Some stored byte is not what the device meant to send: start over cleanly.
            self._store.blobs.truncate(upload.blob_name, 0)
            self._store.reset_upload(task.task_id, fed.UPLOAD_STATE_RECEIVING)
            raise DigestMismatchError(
                "payload SHA-256 does not match the trailer; the upload was reset, send it again"
            )
        active = self._engine.require_collecting(task)
        self._check_statement(worker, task, upload, digest, trailer, active.descriptor_sha256)
        record = UploadRecord(
            worker_id=worker.worker_id,
            signing_public_key=worker.signing_public_key,
            enrollment_certificate=worker.enrollment_certificate,
            signed_statement=trailer.statement,
            sealed_shares=tuple(trailer.sealed_shares),
        )
        final_name = f"uploads/{task.task_id}.blob"
        shares_blob = fed.UploadTrailer(sealed_shares=trailer.sealed_shares).SerializeToString()

        def commit() -> bool:
            self._store.blobs.rename(upload.blob_name, final_name)
            return self._store.accept_upload(
                task.task_id,
                fed.UPLOAD_STATE_ACCEPTED,
                digest,
                trailer.statement.statement,
                trailer.statement.signature,
                shares_blob,
                final_name,
                worker.worker_id,
                task.round_number,
                committed,
            )

        try:
            await self._engine.accept_upload(task, payload, record, commit)
        except InvalidPayloadError as error:
            raise InvalidRequestError(f"payload rejected: {error}") from error
        logger.info(
            "[UploadUpdate] worker=%s round=%d bytes=%d accepted",
            worker.worker_id,
            task.round_number,
            committed,
        )

    def _check_statement(
        self,
        worker: WorkerRow,
        task: TaskRow,
        upload: UploadRow,
        digest: bytes,
        trailer: fed.UploadTrailer,
        descriptor_sha256: bytes,
    ) -> None:
        signed = trailer.statement
        if not signed.statement or not signed.signature:
            raise InvalidRequestError("trailer.statement must carry a statement and a signature")
        if not verify(
            worker.signing_public_key,
            SignatureTag.UPLOAD_STATEMENT,
            signed.statement,
            signed.signature,
        ):
            raise UnauthenticatedError("upload statement signature does not verify")
        try:
            statement = common.UploadStatement.FromString(signed.statement)
        except Exception as error:  # noqa: BLE001 - protobuf raises DecodeError subclasses
            raise InvalidRequestError(f"upload statement does not parse: {error}") from error
        shares_digest = sealed_boxes_sha256(trailer.sealed_shares)
        mismatches = [
            name
            for name, ok in (
                ("federation_id", statement.federation_id == self._federation_id),
                ("round_number", statement.round_number == task.round_number),
                ("worker_id", statement.worker_id == worker.worker_id),
                ("descriptor_sha256", statement.descriptor_sha256 == descriptor_sha256),
                ("profile", statement.profile == upload.profile),
                (
                    "payload_format_version",
                    statement.payload_format_version == upload.format_version,
                ),
                ("payload_size_bytes", statement.payload_size_bytes == upload.total_size),
                ("payload_sha256", statement.payload_sha256 == digest),
                ("sealed_shares_sha256", statement.sealed_shares_sha256 == shares_digest),
            )
            if not ok
        ]
        if mismatches:
            raise InvalidRequestError(
                "upload statement does not match this upload: " + ", ".join(mismatches)
            )
