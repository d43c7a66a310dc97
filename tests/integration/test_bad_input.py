"""Bad input gets the right gRPC status, a message a person can act on, and changes no state."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from crypto.signing import SigningKey
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from tests.support.cluster import (
    FEDERATION,
    Device,
    plaintext_upload,
    running_coordinator,
    wait_for_round,
)

PARAMETERS = 20_000


async def _task(device: Device) -> fed.TaskAssignment:
    response = await device.check_in()
    assert response.WhichOneof("outcome") == "task", response
    return response.task


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value.code(), raised.value.details() or ""


def _contributors(coordinator) -> int:  # type: ignore[no-untyped-def]
    row = coordinator.store.latest_round()
    return 0 if row is None else row.contributors


async def test_unknown_worker_is_unauthenticated(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        stranger = Device.connect(coordinator.grpc_address)
        code, details = await _code(stranger.check_in())
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "EnrollWorker" in details
        await stranger.close()


async def test_call_signed_by_another_key_is_unauthenticated(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        impostor = Device.connect(coordinator.grpc_address, SigningKey.generate())
        metadata = list(impostor.md("CheckIn"))
        metadata[0] = ("hefl-worker-id", device.key.worker_id)  # claims the other identity
        code, _ = await _code(
            impostor.stub.CheckIn(
                fed.CheckInRequest(federation_id=FEDERATION), metadata=metadata, timeout=10
            )
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        await device.close()
        await impostor.close()


async def test_replayed_call_metadata_is_refused(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        metadata = device.md("CheckIn")
        request = fed.CheckInRequest(federation_id=FEDERATION)
        await device.stub.CheckIn(request, metadata=metadata, timeout=10)
        code, details = await _code(device.stub.CheckIn(request, metadata=metadata, timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "replayed" in details
        await device.close()


async def test_enrollment_with_wrong_token_or_bad_proof_is_refused(tmp_path: Path) -> None:
    async with running_coordinator(
        tmp_path, PARAMETERS, **{"federation.enrollment_tokens": "secret"}
    ) as coordinator:
        device = Device.connect(coordinator.grpc_address)
        code, _ = await _code(device.enroll(token="wrong"))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert (await device.enroll(token="secret")).worker_id == device.key.worker_id
        request = fed.EnrollWorkerRequest(
            federation_id=FEDERATION,
            signing_public_key=SigningKey.generate().public_bytes,
            enrollment_token="secret",
            proof_of_possession=b"\x00" * 64,
        )
        request.request_time.GetCurrentTime()
        code, _ = await _code(device.stub.EnrollWorker(request, timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert len(coordinator.store.list_workers()) == 1
        await device.close()


async def test_unknown_federation_and_unspecified_enums(tmp_path: Path, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        code, _ = await _code(
            device.stub.CheckIn(
                fed.CheckInRequest(federation_id="other"), metadata=device.md("CheckIn"), timeout=10
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND
        task = await _task(device)
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        frames[0].header.profile = common.CRYPTO_PROFILE_UNSPECIFIED
        code, details = await _code(device.upload_frames(frames))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "profile" in details
        code, _ = await _code(
            device.stub.ReportTaskOutcome(
                fed.ReportTaskOutcomeRequest(task_id=task.task_id),
                metadata=device.md("ReportTaskOutcome"),
                timeout=10,
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert (await device.status(task.task_id)).state == fed.UPLOAD_STATE_NOT_STARTED
        await device.close()


async def test_chunk_at_wrong_offset_keeps_committed_bytes(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        payload, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        # Header, first two chunks, then a chunk that skips ahead.
        broken = frames[:3] + [frames[4]]
        code, details = await _code(device.upload_frames(broken))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected" in details
        status = await device.status(task.task_id)
        assert status.state == fed.UPLOAD_STATE_RECEIVING
        assert status.committed_size_bytes == len(frames[1].chunk.data) + len(frames[2].chunk.data)
        assert _contributors(coordinator) == 0
        await device.close()


async def test_digest_mismatch_is_data_loss_and_resets_the_upload(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        corrupted = bytearray(frames[2].chunk.data)
        corrupted[10] ^= 0xFF
        frames[2].chunk.data = bytes(corrupted)
        code, details = await _code(device.upload_frames(frames))
        assert code == grpc.StatusCode.DATA_LOSS
        assert "again" in details
        status = await device.status(task.task_id)
        assert status.committed_size_bytes == 0
        assert _contributors(coordinator) == 0
        # The honest retry is accepted.
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        response = await device.upload_frames(frames)
        assert response.state == fed.UPLOAD_STATE_ACCEPTED
        assert _contributors(coordinator) == 1
        await device.close()


async def test_oversized_frames_are_resource_exhausted(tmp_path: Path) -> None:
    async with running_coordinator(
        tmp_path, PARAMETERS, **{"server.max_message_bytes": 256 * 1024}
    ) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        # A chunk above the negotiated chunk size (64 KiB) but below the message limit.
        big = fed.UploadUpdateRequest(chunk=common.Chunk(offset_bytes=0, data=b"x" * 100_000))
        code, details = await _code(device.upload_frames([frames[0], big]))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceeds" in details
        # A message above the transport limit is refused by gRPC itself.
        huge = fed.UploadUpdateRequest(chunk=common.Chunk(offset_bytes=0, data=b"x" * 400_000))
        code, _ = await _code(device.upload_frames([frames[0], huge]))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A payload above the limit is refused at the header.
        frames[0].header.total_size_bytes = 10**12
        code, _ = await _code(device.upload_frames(frames[:1]))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await device.status(task.task_id)).committed_size_bytes == 0
        await device.close()


async def test_replayed_upload_is_already_exists_and_counted_once(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        assert (await device.upload_frames(frames)).state == fed.UPLOAD_STATE_ACCEPTED
        code, _ = await _code(device.upload_frames(frames))
        assert code == grpc.StatusCode.ALREADY_EXISTS
        assert _contributors(coordinator) == 1
        assert coordinator.engine.current is not None
        assert coordinator.engine.current.aggregate.count == 1
        again = await device.check_in()
        assert again.retry.reason == common.RETRY_REASON_ALREADY_PARTICIPATING
        await device.close()


async def test_wrong_round_or_foreign_task(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        owner = Device.connect(coordinator.grpc_address)
        other = Device.connect(coordinator.grpc_address)
        await owner.enroll()
        await other.enroll()
        task = await _task(owner)
        _, frames = plaintext_upload(owner, task, np.ones(PARAMETERS), tmp_path / "p")
        frames[0].header.round_number += 1
        code, _ = await _code(owner.upload_frames(frames))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        frames[0].header.round_number -= 1
        code, _ = await _code(other.upload_frames(frames))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        # Resuming from an offset that was never committed.
        frames[0].header.start_offset_bytes = 4096
        code, details = await _code(owner.upload_frames(frames[:1]))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "offset 0" in details
        assert _contributors(coordinator) == 0
        await owner.close()
        await other.close()


async def test_statement_must_match_the_upload(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        frames[-1].trailer.statement.signature = b"\x01" * 64
        code, _ = await _code(device.upload_frames(frames))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert _contributors(coordinator) == 0
        await device.close()


async def test_malformed_payload_is_invalid_and_not_counted(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        bad = np.ones(PARAMETERS)
        bad[5] = np.nan
        _, frames = plaintext_upload(device, task, bad, tmp_path / "p")
        code, details = await _code(device.upload_frames(frames))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "non-finite" in details
        assert _contributors(coordinator) == 0
        assert coordinator.engine.current is not None
        assert coordinator.engine.current.aggregate.count == 0
        await device.close()


async def test_late_upload_after_window_closed_is_refused(tmp_path: Path) -> None:
    async with running_coordinator(
        tmp_path,
        PARAMETERS,
        **{"round.collect_seconds": 1.5, "round.interval_seconds": 30, "round.min_contributors": 1},
    ) as coordinator:
        await wait_for_round(coordinator)
        device = Device.connect(coordinator.grpc_address)
        await device.enroll()
        task = await _task(device)
        _, frames = plaintext_upload(device, task, np.ones(PARAMETERS), tmp_path / "p")
        import asyncio

        await asyncio.sleep(2.0)
        code, details = await _code(device.upload_frames(frames))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "closed" in details or "deadline" in details
        await device.close()
