"""A restarted coordinator resumes the open round from SQLite and blobs: every acknowledged
byte and every accepted upload is still there, counted once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hefl.v1 import federation_service_pb2 as fed
from tests.support.cluster import Device, plaintext_upload, running_coordinator, wait_for_round

PARAMETERS = 50_000


async def test_restart_keeps_accepted_and_partial_uploads(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path, PARAMETERS) as coordinator:
        await wait_for_round(coordinator)
        round_number = coordinator.engine.current.number  # type: ignore[union-attr]
        done, partial = (
            Device.connect(coordinator.grpc_address),
            Device.connect(coordinator.grpc_address),
        )
        await done.enroll()
        await partial.enroll()
        done_task = (await done.check_in()).task
        partial_task = (await partial.check_in()).task
        _, frames = plaintext_upload(done, done_task, np.full(PARAMETERS, 2.0), tmp_path / "a")
        assert (await done.upload_frames(frames)).state == fed.UPLOAD_STATE_ACCEPTED
        _, frames = plaintext_upload(
            partial, partial_task, np.full(PARAMETERS, 4.0), tmp_path / "b"
        )
        # Header and three chunks, then the stream ends: a pause, not an error.
        paused = await partial.upload_frames(frames[:4])
        assert paused.state == fed.UPLOAD_STATE_RECEIVING
        committed = paused.committed_size_bytes
        assert committed == sum(len(f.chunk.data) for f in frames[1:4])
        await done.close()
        await partial.close()

    async with running_coordinator(tmp_path, PARAMETERS) as restarted:
        await wait_for_round(restarted)
        active = restarted.engine.current
        assert active is not None and active.number == round_number
        assert active.contributors == 1 and active.aggregate.count == 1
        device = Device.connect(restarted.grpc_address, partial.key)
        status = await device.status(partial_task.task_id)
        assert status.committed_size_bytes == committed
        # The same task is handed out again, and the upload resumes where it stopped.
        again = await device.check_in()
        assert again.task.task_id == partial_task.task_id
        resume = frames[0]
        resume.header.start_offset_bytes = committed
        response = await device.upload_frames([resume, *frames[4:]])
        assert response.state == fed.UPLOAD_STATE_ACCEPTED
        assert active.contributors == 2 and active.aggregate.count == 2
        mean = active.aggregate.mean()  # type: ignore[attr-defined]
        assert np.allclose(mean, 3.0)
        await device.close()
