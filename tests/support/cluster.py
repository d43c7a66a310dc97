"""In-process coordinators on loopback and signed clients that speak hefl.v1 directly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.config import build_config
from coordinator.server import Coordinator, start
from crypto import model_payload
from crypto.call_auth import call_metadata
from crypto.signing import SignatureTag, SigningKey
from edge_worker.runner import enrollment_proof_message
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc
from hefl.v1 import operator_service_pb2_grpc as ops_grpc

FEDERATION = "test-fed"
SERVICE = "/hefl.v1.FederationService/"


def write_initial_model(path: Path, parameters: int, seed: int = 0) -> npt.NDArray[np.float32]:
    values = np.random.default_rng(seed).normal(0, 0.1, parameters).astype(np.float32)
    path.write_bytes(model_payload.encode_model(1, values))
    return values


def coordinator_settings(
    tmp_path: Path, parameters: int = 1000, **overrides: Any
) -> dict[str, str]:
    model = tmp_path / "initial.model"
    if not model.exists():
        write_initial_model(model, parameters)
    settings = {
        "server.listen_address": "127.0.0.1:0",
        "server.metrics_address": "127.0.0.1:0",
        "server.grace_period_seconds": "1",
        "server.insecure": "true",
        "state.state_dir": str(tmp_path / "coordinator"),
        "federation.federation_id": FEDERATION,
        "federation.profile": "plaintext",
        "federation.allow_plaintext": "true",
        "federation.initial_model": str(model),
        "round.collect_seconds": "60",
        "round.interval_seconds": "61",
        "round.goal_contributors": "3",
        "round.min_contributors": "2",
        "limits.max_chunk_size_bytes": str(64 * 1024),
        "limits.max_payload_size_bytes": str(64 * 1024 * 1024),
    }
    settings.update({k: str(v) for k, v in overrides.items()})
    return settings


@asynccontextmanager
async def running_coordinator(
    tmp_path: Path, parameters: int = 1000, **overrides: Any
) -> AsyncIterator[Coordinator]:
    config = build_config(overrides=coordinator_settings(tmp_path, parameters, **overrides))
    coordinator = await start(config)
    try:
        yield coordinator
    finally:
        await coordinator.stop()


async def wait_for_round(coordinator: Coordinator, timeout: float = 10.0) -> None:
    """Waits until a round is collecting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = coordinator.engine.current
        if active is not None and not active.closed.is_set():
            return
        await _sleep(0.02)
    raise TimeoutError("no round opened")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@dataclass
class Device:
    """A bare client with its own key: drives the protocol message by message."""

    address: str
    key: SigningKey
    channel: grpc.aio.Channel
    stub: fed_grpc.FederationServiceAsyncStub
    operator: ops_grpc.OperatorServiceAsyncStub

    @classmethod
    def connect(cls, address: str, key: SigningKey | None = None) -> Device:
        channel = grpc.aio.insecure_channel(address)
        return cls(
            address,
            key or SigningKey.generate(),
            channel,
            fed_grpc.FederationServiceStub(channel),
            ops_grpc.OperatorServiceStub(channel),
        )

    async def close(self) -> None:
        await self.channel.close(grace=None)

    def md(self, method: str) -> tuple[tuple[str, str | bytes], ...]:
        return call_metadata(self.key, SERVICE + method)

    async def enroll(self, token: str = "") -> fed.EnrollWorkerResponse:
        now = int(time.time())
        return await self.stub.EnrollWorker(
            fed.EnrollWorkerRequest(
                federation_id=FEDERATION,
                signing_public_key=self.key.public_bytes,
                display_name="test",
                enrollment_token=token,
                request_time=Timestamp(seconds=now),
                proof_of_possession=self.key.sign(
                    SignatureTag.ENROLL,
                    enrollment_proof_message(FEDERATION, self.key.public_bytes, now),
                ),
            ),
            timeout=10,
        )

    async def check_in(self, have_version: int = 0) -> fed.CheckInResponse:
        return await self.stub.CheckIn(
            fed.CheckInRequest(federation_id=FEDERATION, have_version=have_version),
            metadata=self.md("CheckIn"),
            timeout=10,
        )

    async def status(self, task_id: str) -> fed.GetUploadStatusResponse:
        return await self.stub.GetUploadStatus(
            fed.GetUploadStatusRequest(task_id=task_id),
            metadata=self.md("GetUploadStatus"),
            timeout=10,
        )

    async def upload_frames(
        self, frames: Sequence[fed.UploadUpdateRequest]
    ) -> fed.UploadUpdateResponse:
        async def iterate() -> AsyncIterator[fed.UploadUpdateRequest]:
            for frame in frames:
                yield frame

        return await self.stub.UploadUpdate(iterate(), metadata=self.md("UploadUpdate"), timeout=30)


def plaintext_upload(
    device: Device,
    task: fed.TaskAssignment,
    delta: npt.NDArray[np.floating],
    spool: Path,
    chunk_size: int = 16 * 1024,
) -> tuple[bytes, list[fed.UploadUpdateRequest]]:
    """A complete, valid upload of ``delta`` for ``task``: (payload, frames)."""
    import hashlib

    from edge_worker.encoders import PlaintextEncoder
    from edge_worker.statement import build_trailer
    from hefl.v1 import common_pb2 as common

    encoder = PlaintextEncoder()
    descriptor = common.RoundDescriptor.FromString(task.descriptor.descriptor)
    digest = hashlib.sha256(task.descriptor.descriptor).digest()
    encoded = encoder.encode(delta.astype(np.float32), task.descriptor, device.key.worker_id, spool)
    trailer = build_trailer(device.key, descriptor, digest, encoder.profile, encoded)
    payload = spool.read_bytes()
    frames = [
        fed.UploadUpdateRequest(
            header=fed.UploadHeader(
                task_id=task.task_id,
                round_number=descriptor.round_number,
                profile=common.CRYPTO_PROFILE_PLAINTEXT,
                payload_format_version=encoder.payload_format_version,
                total_size_bytes=len(payload),
            )
        )
    ]
    for offset in range(0, len(payload), chunk_size):
        frames.append(
            fed.UploadUpdateRequest(
                chunk=common.Chunk(offset_bytes=offset, data=payload[offset : offset + chunk_size])
            )
        )
    frames.append(fed.UploadUpdateRequest(trailer=trailer))
    return payload, frames
