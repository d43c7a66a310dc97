"""Resumable transfers: uploads from a spooled payload file, downloads into one.

The payload is encoded once and spooled to the device's disk, so memory stays bounded by a
chunk and a broken upload resumes with exactly the same bytes (re-encoding would draw fresh
randomness and change the digest). Both directions resume from the last offset the other side
confirmed, and both verify the SHA-256 of the whole payload.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from edge_worker.connection import RETRYABLE, Connection
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc

logger = logging.getLogger(__name__)

_SERVICE = "/hefl.v1.FederationService/"
_READ_BLOCK = 1024 * 1024


class TransferError(Exception):
    """A transfer cannot complete (refused by the coordinator, or corrupt beyond retrying)."""


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.digest()


@dataclass(frozen=True)
class UploadJob:
    """Everything needed to (re)send one upload."""

    task_id: str
    round_number: int
    profile: int
    payload_format_version: int
    payload_path: Path
    trailer: fed.UploadTrailer
    chunk_size: int
    deadline: float


async def upload(connection: Connection, job: UploadJob) -> fed.UploadUpdateResponse:
    """Sends a payload, resuming from the coordinator's committed offset after any break.

    Raises:
        TransferError: if the coordinator refuses the upload for good.
        grpc.aio.AioRpcError: a non-retryable refusal (with the coordinator's message).
    """
    stub = fed_grpc.FederationServiceStub(connection.channel)
    total = job.payload_path.stat().st_size
    digest_resets = 0
    interruptions = 0
    while True:
        status = await connection.retry(
            "GetUploadStatus",
            lambda: stub.GetUploadStatus(
                fed.GetUploadStatusRequest(task_id=job.task_id),
                metadata=connection.metadata(_SERVICE + "GetUploadStatus"),
                timeout=connection.config.call_timeout_seconds,
            ),
            give_up_at=job.deadline,
        )
        if status.state == fed.UPLOAD_STATE_ACCEPTED:
            return fed.UploadUpdateResponse(
                task_id=job.task_id,
                state=fed.UPLOAD_STATE_ACCEPTED,
                committed_size_bytes=status.committed_size_bytes,
            )
        offset = status.committed_size_bytes
        try:
            response: fed.UploadUpdateResponse = await stub.UploadUpdate(
                _frames(job, total, offset),
                metadata=connection.metadata(_SERVICE + "UploadUpdate"),
                timeout=max(
                    min(connection.config.transfer_timeout_seconds, job.deadline - time.time()),
                    1.0,
                ),
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.DATA_LOSS and digest_resets < 2:
                # The coordinator discarded bytes that did not hash right; send them again.
                digest_resets += 1
                logger.warning("upload %s: digest mismatch, resending", job.task_id)
                continue
            if code in RETRYABLE and time.time() < job.deadline:
                interruptions += 1
                logger.info(
                    "upload %s interrupted at or after %d bytes (%s); resuming",
                    job.task_id,
                    offset,
                    code.name,
                )
                await connection.backoff(interruptions, job.deadline)
                continue
            raise
        if response.state == fed.UPLOAD_STATE_ACCEPTED:
            return response
        if time.time() >= job.deadline:
            raise TransferError(f"upload {job.task_id} not accepted before its deadline")


async def _frames(
    job: UploadJob, total: int, offset: int
) -> AsyncIterator[fed.UploadUpdateRequest]:
    yield fed.UploadUpdateRequest(
        header=fed.UploadHeader(
            task_id=job.task_id,
            round_number=job.round_number,
            profile=job.profile,  # type: ignore[arg-type]
            payload_format_version=job.payload_format_version,
            total_size_bytes=total,
            start_offset_bytes=offset,
        )
    )
    with open(job.payload_path, "rb") as handle:
        handle.seek(offset)
        position = offset
        while position < total:
            data = handle.read(job.chunk_size)
            if not data:
                raise TransferError("payload file shrank while uploading")
            yield fed.UploadUpdateRequest(chunk=common.Chunk(offset_bytes=position, data=data))
            position += len(data)
    yield fed.UploadUpdateRequest(trailer=job.trailer)


@dataclass(frozen=True)
class DownloadedModel:
    """A verified model payload on disk."""

    header: fed.ModelHeader
    path: Path


async def download_model(
    connection: Connection,
    have_version: int,
    want_version: int,
    spool: Path,
    give_up_at: float | None = None,
) -> DownloadedModel:
    """Downloads the full model or the correction chain, resuming after breaks.

    Raises:
        TransferError: if the payload fails its digest repeatedly.
        grpc.aio.AioRpcError: a non-retryable refusal.
    """
    stub = fed_grpc.FederationServiceStub(connection.channel)
    spool.parent.mkdir(parents=True, exist_ok=True)
    offset, header = 0, None
    failures = interruptions = 0
    while True:
        request = fed.DownloadModelRequest(
            federation_id=connection.config.federation_id,
            have_version=have_version,
            want_version=want_version,
            offset_bytes=offset,
            expected_sha256=header.payload_sha256 if header is not None and offset else b"",
        )
        try:
            call = stub.DownloadModel(
                request,
                metadata=connection.metadata(_SERVICE + "DownloadModel"),
                timeout=connection.config.transfer_timeout_seconds,
            )
            with open(spool, "r+b" if offset else "wb") as handle:
                handle.truncate(offset)
                handle.seek(offset)
                async for frame in call:
                    kind = frame.WhichOneof("frame")
                    if kind == "header":
                        if (
                            header is not None
                            and offset
                            and (frame.header.payload_sha256 != header.payload_sha256)
                        ):
                            raise TransferError("resumed download changed its payload")
                        header = frame.header
                    elif kind == "chunk":
                        if frame.chunk.offset_bytes != offset:
                            raise TransferError(
                                f"chunk at {frame.chunk.offset_bytes}, expected {offset}"
                            )
                        handle.write(frame.chunk.data)
                        offset += len(frame.chunk.data)
                    elif kind == "trailer":
                        handle.flush()
                        os.fsync(handle.fileno())
                        break
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.FAILED_PRECONDITION and offset:
                offset, header = 0, None  # the payload changed: start over
                continue
            if code in RETRYABLE and (give_up_at is None or time.time() < give_up_at):
                interruptions += 1
                await connection.backoff(interruptions, give_up_at)
                continue
            raise
        if header is None or offset != header.total_size_bytes:
            continue  # stream ended early without an error: resume
        if file_sha256(spool) == header.payload_sha256:
            return DownloadedModel(header, spool)
        failures += 1
        if failures >= 3:
            raise TransferError("downloaded model fails its digest repeatedly")
        offset, header = 0, None
