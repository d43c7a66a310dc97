"""A full secure federation in separate processes: it trains, every opened aggregate is exactly
the sum of what the devices encoded, and nothing the coordinator received or stored holds a key
or an individual update.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from examples.federation import FederationSpec, LocalFederation, Observer, initial_accuracy
from tests.support.federation_state import worker_ids
from tests.support.h2capture import grpc_messages
from tests.support.tcp_proxy import FaultyProxy

ROUNDS = 5


def _contributors(state: Path, round_number: int) -> list[str]:
    with sqlite3.connect(state / "coordinator.sqlite3") as db:
        rows = db.execute(
            "SELECT worker_id FROM uploads WHERE round_number = ? AND state = 3", (round_number,)
        ).fetchall()
    return [row[0] for row in rows]


def _coordinator_files(state: Path) -> list[bytes]:
    return [path.read_bytes() for path in state.rglob("*") if path.is_file()]


@pytest.mark.timeout(420)
async def test_oneshot_federation_trains_and_reveals_nothing_individual(tmp_path: Path) -> None:
    spec = FederationSpec(
        workdir=tmp_path,
        federation_id="fed",
        workers=6,
        key_holders=5,
        profile="oneshot",
        dp=True,
        epsilon=1000.0,  # the noise is real but small: this run checks mechanics, not privacy
        rounds=ROUNDS,
        min_contributors=4,
        collect_seconds=30,
        record_updates=True,
        tls=False,  # the proxy below captures the plaintext traffic to inspect it
    )
    federation = LocalFederation(spec)
    coordinator = federation.start_coordinator()
    proxy = FaultyProxy(coordinator.grpc_address, capture=True).start()
    federation.worker_address = proxy.address
    for index in range(spec.workers):
        federation.workers.append(federation.start_worker(index))
    try:
        observer = Observer(coordinator.grpc_address, spec)
        await observer.enroll()
        reports = await observer.follow(ROUNDS, timeout=360)
    finally:
        exit_code = federation.stop()
        proxy.stop()
    assert exit_code == 0

    # It trains.
    published = [r for r in reports if r.version]
    assert len(published) >= ROUNDS - 1, reports
    assert published[-1].accuracy >= 0.6
    assert published[-1].accuracy > initial_accuracy(spec) + 0.4
    # The ledger charged every round and stayed within the budget.
    epsilons = [r.epsilon for r in reports]
    assert all(b > a for a, b in zip(epsilons, epsilons[1:], strict=False))
    assert 0 < epsilons[-1] <= spec.epsilon

    # Every opened aggregate is exactly the sum (mod 2^b) of what its contributors encoded.
    state = tmp_path / "coordinator" / "state"
    workers = worker_ids(federation)
    modulus = 1 << spec.bits
    individual_windows: list[bytes] = []
    for report in published:
        sums = np.frombuffer(
            (state / "blobs" / "aggregates" / f"round-{report.round_number}.sums").read_bytes(),
            dtype="<i8",
        )
        contributors = _contributors(state, report.round_number)
        assert len(contributors) == report.contributors >= spec.min_contributors
        expected = np.zeros_like(sums)
        for worker_id in contributors:
            raw = (
                workers[worker_id] / "updates" / f"round-{report.round_number}.fields"
            ).read_bytes()
            fields = np.frombuffer(raw, dtype="<u2").astype(np.int64)
            expected += fields
            middle = len(raw) // 2
            individual_windows.append(raw[middle : middle + 64])
        assert np.array_equal(np.mod(sums, modulus), np.mod(expected, modulus))

    # Nothing the coordinator received or stored holds key material or an individual update.
    received = [m for buffer in proxy.captured for m in grpc_messages(bytes(buffer))]
    assert sum(len(m) for m in received) > 100_000  # the capture really saw the traffic
    stored = _coordinator_files(state)
    secrets = []
    for directory in workers.values():
        secrets.append((directory / "state" / "signing.key").read_bytes())
        secrets += [
            p.read_bytes() for p in (directory / "state").glob("member/epoch-*/sealing.key")
        ]
    assert len(secrets) > spec.workers  # signing keys and the members' sealing keys
    for blob in received + stored:
        for secret in secrets:
            assert secret not in blob
        for window in individual_windows:
            assert window not in blob
