"""The coordinator killed at several points of rounds (during uploads, during decryption, after
decode) resumes from SQLite and its blobs, counts every acknowledged upload exactly once, and
ends with the very same model as an uninterrupted run with the same seeds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from coordinator.failpoints import ENVIRONMENT_VARIABLE, EXIT_CODE
from examples.federation import FederationSpec, LocalFederation, Observer

ROUNDS = 4
WORKERS = 6
# Crash points, one per coordinator life: mid-upload in round 2, while round 3's aggregate is
# being opened by the committee, and after round 4's aggregate was decoded but not published.
CRASHES = ("upload.accepted@2#3", "round.opening@3", "round.decoded@4")


def _spec(workdir: Path) -> FederationSpec:
    return FederationSpec(
        workdir=workdir,
        federation_id="fed",
        workers=WORKERS,
        key_holders=5,
        profile="oneshot",
        dp=False,
        rounds=ROUNDS,
        goal_contributors=WORKERS,
        min_contributors=WORKERS,  # every round must hold every device: nothing may be lost
        collect_seconds=240,  # outlives the restarts
    )


def _reproducible() -> dict[int, tuple[str, ...]]:
    # One seed for every device: member indices and worker ids differ from run to run, so the
    # round seeds (and with them the rotations) repeat only if no contribution depends on them.
    return {index: ("--reproducible-rounding", "crash-test") for index in range(WORKERS)}


async def _final_model(federation: LocalFederation, observer: Observer) -> npt.NDArray[np.float32]:
    reports = await observer.follow(ROUNDS, timeout=400)
    published = [r.version for r in reports if r.version]
    assert len(published) == ROUNDS, reports
    return await observer.model_at(published[-1])


def _wait_for_exit(federation: LocalFederation, timeout: float = 200.0) -> int:
    assert federation.coordinator is not None
    deadline = time.monotonic() + timeout
    while federation.coordinator.process.poll() is None:
        if time.monotonic() > deadline:
            tail = federation.coordinator.log()[-3000:]
            raise TimeoutError(f"the coordinator did not reach its failpoint:\n{tail}")
        time.sleep(0.2)
    return int(federation.coordinator.process.returncode)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_crashes_lose_nothing_and_change_nothing(tmp_path: Path) -> None:
    reference = LocalFederation(_spec(tmp_path / "reference"))
    coordinator = reference.start(overrides=_reproducible())
    try:
        observer = Observer(coordinator.grpc_address, reference.spec)
        await observer.enroll()
        expected = await _final_model(reference, observer)
    finally:
        reference.stop()

    crashed = LocalFederation(_spec(tmp_path / "crashed"))
    crashed.start(overrides=_reproducible(), environment={ENVIRONMENT_VARIABLE: CRASHES[0]})
    try:
        assert crashed.coordinator is not None
        observer = Observer(crashed.coordinator.grpc_address, crashed.spec)
        await observer.enroll()
        for next_crash in (*CRASHES[1:], ""):
            assert await asyncio.to_thread(_wait_for_exit, crashed) == EXIT_CODE
            crashed.restart_coordinator({ENVIRONMENT_VARIABLE: next_crash} if next_crash else {})
        actual = await _final_model(crashed, observer)
        log = crashed.coordinator.log()
    finally:
        exit_code = crashed.stop()
    assert exit_code == 0
    for point in CRASHES:
        assert f"failpoint {point if '#' in point else point + '#1'}: exiting now" in log
    assert np.array_equal(actual, expected)
    with sqlite3.connect(
        tmp_path / "crashed" / "coordinator" / "state" / "coordinator.sqlite3"
    ) as db:
        rounds = db.execute(
            "SELECT round_number, contributors, outcome FROM rounds ORDER BY round_number"
        ).fetchall()
        accepted = dict(
            db.execute(
                "SELECT round_number, COUNT(*) FROM uploads WHERE state = 3 GROUP BY round_number"
            ).fetchall()
        )
    assert [(n, c) for n, c, _ in rounds] == [(n, WORKERS) for n in range(1, ROUNDS + 1)]
    assert accepted == {n: WORKERS for n in range(1, ROUNDS + 1)}
