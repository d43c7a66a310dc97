"""CommitteeService: the calls key holders make."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coordinator.committee.hub import CommitteeHub
from coordinator.config import CoordinatorConfig
from coordinator.errors import (
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    UnauthenticatedError,
)
from coordinator.servicers.gate import Gate, stream_errors, unary_errors
from coordinator.store import WorkerRow
from crypto.committee.digests import committee_output_message
from crypto.signing import SignatureTag, verify
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import committee_service_pb2_grpc as cmt_grpc
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)

_SERVICE = "/hefl.v1.CommitteeService/"


class CommitteeServicer(cmt_grpc.CommitteeServiceServicer):
    """Relays tasks and answers between the round engine and the key holders."""

    def __init__(self, config: CoordinatorConfig, gate: Gate, hub: CommitteeHub) -> None:
        """Wires the handlers to the hub."""
        self._config = config
        self.gate = gate
        self._hub = hub

    def _admit_member(self, context: grpc.aio.ServicerContext[Any, Any], method: str) -> WorkerRow:
        return self.gate.admit(context, _SERVICE + method, key_holder=True)

    @stream_errors("WatchCommitteeTasks")
    async def WatchCommitteeTasks(
        self, request: cmt.WatchCommitteeTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[cmt.WatchCommitteeTasksResponse]:
        """Streams the tasks of the calling member."""
        worker = self._admit_member(context, "WatchCommitteeTasks")
        if request.federation_id != self._config.federation.federation_id:
            raise NotFoundError(f"unknown federation {request.federation_id!r}")
        async for task in self._hub.stream(worker.worker_id):
            yield cmt.WatchCommitteeTasksResponse(task=task)

    @unary_errors("SubmitCommitteeResult")
    async def SubmitCommitteeResult(
        self,
        request: cmt.SubmitCommitteeResultRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cmt.SubmitCommitteeResultResponse:
        """Records an answer to a task."""
        worker = self._admit_member(context, "SubmitCommitteeResult")
        if self._hub.is_retired(worker.worker_id, request.task_id):
            return cmt.SubmitCommitteeResultResponse(recorded=False)
        self._hub.submit(worker.worker_id, request)
        return cmt.SubmitCommitteeResultResponse(recorded=True)

    @stream_errors("DownloadCommitteeInput")
    async def DownloadCommitteeInput(
        self,
        request: cmt.DownloadCommitteeInputRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[cmt.DownloadCommitteeInputResponse]:
        """Streams a task's bulk input from the requested offset."""
        worker = self._admit_member(context, "DownloadCommitteeInput")
        data = self._hub.bulk_input(worker.worker_id, request.task_id)
        if request.offset_bytes > len(data):
            raise InvalidRequestError(f"offset {request.offset_bytes} beyond {len(data)} bytes")
        digest = hashlib.sha256(data).digest()
        yield cmt.DownloadCommitteeInputResponse(
            header=cmt.CommitteeInputHeader(
                task_id=request.task_id, total_size_bytes=len(data), payload_sha256=digest
            )
        )
        chunk = self._config.limits.max_chunk_size_bytes
        for start in range(request.offset_bytes, len(data), chunk):
            piece = data[start : start + chunk]
            self.gate.metrics.bytes_sent.labels("committee").inc(len(piece))
            yield cmt.DownloadCommitteeInputResponse(
                chunk=common.Chunk(offset_bytes=start, data=piece)
            )
        yield cmt.DownloadCommitteeInputResponse(
            trailer=cmt.CommitteeInputTrailer(payload_sha256=digest)
        )

    @unary_errors("UploadCommitteeOutput")
    async def UploadCommitteeOutput(
        self,
        request_iterator: AsyncIterator[cmt.UploadCommitteeOutputRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cmt.UploadCommitteeOutputResponse:
        """Receives a task's bulk output (partial decryptions), resumable by offset."""
        worker = self._admit_member(context, "UploadCommitteeOutput")
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("frame") != "header":
            raise InvalidRequestError("an output stream must start with a header frame")
        header = first.header
        pending = self._hub.output_task(worker.worker_id, header.task_id)
        limit = self._config.limits.max_payload_size_bytes
        if header.total_size_bytes > limit:
            raise LimitExceededError(f"output of {header.total_size_bytes} bytes exceeds {limit}")
        started = False
        async for frame in request_iterator:
            kind = frame.WhichOneof("frame")
            if not started and header.start_offset_bytes != len(pending.output):
                # A stream that only probed (header alone) gets the offset in its response.
                raise InvalidRequestError(
                    f"stream starts at {header.start_offset_bytes}, the committed offset is"
                    f" {len(pending.output)}"
                )
            started = True
            if kind == "chunk":
                chunk = frame.chunk
                if chunk.offset_bytes != len(pending.output):
                    raise InvalidRequestError(
                        f"chunk at {chunk.offset_bytes}, expected {len(pending.output)}"
                    )
                if len(chunk.data) > self._config.limits.max_chunk_size_bytes:
                    raise LimitExceededError("chunk exceeds the chunk size limit")
                if len(pending.output) + len(chunk.data) > header.total_size_bytes:
                    raise InvalidRequestError("chunk goes beyond the announced size")
                pending.output.extend(chunk.data)
                self.gate.metrics.bytes_received.labels("committee").inc(len(chunk.data))
            elif kind == "trailer":
                output = bytes(pending.output)
                if len(output) != header.total_size_bytes:
                    raise InvalidRequestError("trailer before the whole output")
                trailer = frame.trailer
                if hashlib.sha256(output).digest() != trailer.payload_sha256:
                    pending.output.clear()
                    raise InvalidRequestError("output SHA-256 does not match; send it again")
                signature = trailer.signature
                if signature.member_index != pending.member_index or not verify(
                    worker.signing_public_key,
                    SignatureTag.COMMITTEE_OUTPUT,
                    committee_output_message(header.task_id, output),
                    signature.signature,
                ):
                    raise UnauthenticatedError("committee output signature does not verify")
                self._hub.complete_output(pending)
                return cmt.UploadCommitteeOutputResponse(
                    task_id=header.task_id, committed_size_bytes=len(output), complete=True
                )
            else:
                raise InvalidRequestError("only chunks and one trailer may follow the header")
        return cmt.UploadCommitteeOutputResponse(
            task_id=header.task_id, committed_size_bytes=len(pending.output), complete=False
        )
