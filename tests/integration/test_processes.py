"""Real processes over real gRPC on loopback: a coordinator and several workers move
multi-megabyte models and updates through a proxy that cuts connections mid-transfer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import grpc
import pytest

from edge_worker.model_state import save_initial_model
from examples import digits
from examples.processes import start_coordinator, start_worker, stop_processes
from hefl.v1 import common_pb2 as common
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc
from tests.support.metrics import scrape, value
from tests.support.tcp_proxy import FaultyProxy

WIDTH = 16384  # 1,228,810 parameters: 4.9 MB each way
WORKERS = 5


async def _rounds(address: str) -> list[ops.RoundSummary]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ops_grpc.OperatorServiceStub(channel)
        response = await stub.ListRounds(
            ops.ListRoundsRequest(federation_id="test-fed"), timeout=10
        )
        return list(response.rounds)


@pytest.mark.timeout(240)
async def test_workers_train_through_a_cutting_proxy(tmp_path: Path) -> None:
    initial = tmp_path / "initial.model"
    save_initial_model(digits.initial_weights(0, WIDTH), initial)
    model_bytes = initial.stat().st_size
    assert model_bytes > 4_000_000
    coordinator = start_coordinator(
        tmp_path / "coordinator",
        {
            "server.listen_address": "127.0.0.1:0",
            "server.metrics_address": "127.0.0.1:0",
            "state.state_dir": str(tmp_path / "coordinator" / "state"),
            "federation.federation_id": "test-fed",
            "federation.profile": "plaintext",
            "federation.allow_plaintext": "true",
            "server.insecure": "true",
            "federation.initial_model": str(initial),
            "round.collect_seconds": "40",
            "round.interval_seconds": "2",
            "round.goal_contributors": "3",
            "round.min_contributors": "2",
            "round.max_rounds": "2",
            "limits.max_chunk_size_bytes": str(256 * 1024),
        },
    )
    # Cut each of the first connections once 1.5 MB crossed it: mid-download and mid-upload.
    proxy = FaultyProxy(coordinator.grpc_address, cut_after_bytes=1_500_000, max_cuts=8).start()
    workers = [
        start_worker(
            tmp_path / f"worker{i}",
            proxy.address,
            i,
            WORKERS,
            "--model-width",
            str(WIDTH),
            "--max-rounds",
            "2",
            "--insecure",
            "--learning-rate",
            "0.05",
        )
        for i in range(WORKERS)
    ]
    try:
        published: list[ops.RoundSummary] = []
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            rounds = await _rounds(coordinator.grpc_address)
            published = [r for r in rounds if r.outcome == common.ROUND_OUTCOME_PUBLISHED]
            if len(published) >= 2:
                break
            await asyncio.sleep(1.0)
        assert len(published) == 2, coordinator.log()[-3000:]
        samples = scrape(coordinator.metrics_address)
    finally:
        stop_processes(workers)
        proxy.stop()
        exit_code = coordinator.stop()

    assert exit_code == 0
    assert proxy.stats.cuts >= 4, proxy.stats
    for summary in published:
        assert summary.contributors >= 2
        # Over-selection: ceil(3 * 1.3) = 4 of the 5 devices get a task, the fifth a window.
        assert summary.selected <= 4
    uploads = sum(r.contributors for r in published)
    payload = 20 + 4 * digits.parameter_count(WIDTH)
    received = value(samples, "hefl_coordinator_received_bytes_total", stream="upload")
    # Resumed, not restarted: every accepted byte arrived about once despite the cuts.
    assert uploads * payload <= received < uploads * payload + 8 * 1_500_000
    sent = value(samples, "hefl_coordinator_sent_bytes_total", stream="model")
    assert sent >= WORKERS * model_bytes * 0.5
    # Every stored upload matches the digest its worker signed.
    from coordinator.store import Store
    from hefl.v1 import federation_service_pb2 as fed

    store = Store(tmp_path / "coordinator" / "state")
    try:
        for summary in published:
            for row in store.accepted_uploads(summary.round_number, fed.UPLOAD_STATE_ACCEPTED):
                data = store.blobs.read(row.blob_name)
                assert len(data) == payload
                assert hashlib.sha256(data).digest() == row.payload_sha256
        latest = store.latest_version()
        assert latest is not None and latest.version == 3
    finally:
        store.close()
