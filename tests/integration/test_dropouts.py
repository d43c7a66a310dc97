"""Devices come and go: a worker killed mid-round, a key holder killed before decryption, and a
device that was offline for several rounds and then catches up and contributes again.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from edge_worker.model_state import DeviceModel
from examples.federation import FederationSpec, LocalFederation, Observer
from hefl.v1 import common_pb2 as common
from tests.support.federation_state import query, until, worker_id

ROUNDS = 7


def _ended(state: Path, round_number: int) -> bool:
    rows = query(state, "SELECT phase FROM rounds WHERE round_number = ?", round_number)
    return bool(rows) and rows[0][0] == common.ROUND_PHASE_DONE


@pytest.mark.timeout(600)
async def test_rounds_survive_dropouts_and_offline_devices_catch_up(tmp_path: Path) -> None:
    spec = FederationSpec(
        workdir=tmp_path,
        federation_id="fed",
        workers=7,
        key_holders=5,
        profile="oneshot",
        dp=False,
        rounds=ROUNDS,
        min_contributors=4,
        collect_seconds=10,
    )
    federation = LocalFederation(spec)
    victim, offline, key_holder = 6, 5, 0
    # The victim trains for far longer than a window, so it is surely killed mid-round.
    coordinator = federation.start(overrides={victim: ("--local-epochs", "5000")})
    state = tmp_path / "coordinator" / "state"
    try:
        observer = Observer(coordinator.grpc_address, spec)
        await observer.enroll()
        key_file = federation.worker_dir(victim) / "state" / "signing.key"
        await until(key_file.exists, timeout=60)
        victim_id = worker_id(federation, victim)
        await until(
            lambda: bool(
                query(
                    state,
                    "SELECT 1 FROM tasks WHERE round_number = 1 AND worker_id = ?",
                    victim_id,
                )
            ),
            timeout=180,
        )
        federation.workers[victim].kill()
        await until(lambda: _ended(state, 1))
        # The offline device leaves for a few rounds.
        federation.workers[offline].send_signal(signal.SIGTERM)
        await until(lambda: _ended(state, 2))
        # A key holder dies between rounds: the next rounds need the threshold to cover it.
        # The round after the one that just ended may already have selected it.
        opened_before_kill = int(str(query(state, "SELECT MAX(round_number) FROM rounds")[0][0]))
        federation.workers[key_holder].kill()
        await until(lambda: _ended(state, 4))
        federation.workers[offline].wait(20)
        federation.workers[offline] = federation.start_worker(offline)
        reports = await observer.follow(ROUNDS, timeout=300)
    finally:
        exit_code = federation.stop()
    assert exit_code == 0

    outcomes = {r.round_number: r.outcome for r in reports}
    # A key holder that dies between its seed commitment and its reveal costs that one round
    # (members reveal against one commitment set per round, so the coordinator cannot grind
    # seeds); every other round publishes.
    assert set(outcomes.values()) <= {"published", "committee_failed"}, outcomes
    assert list(outcomes.values()).count("committee_failed") <= 1, outcomes
    assert outcomes[1] == outcomes[2] == "published", outcomes
    round_one = query(state, "SELECT selected, contributors FROM rounds WHERE round_number = 1")
    selected, contributors = (int(str(value)) for value in round_one[0])
    assert contributors < selected  # the killed worker's task was never answered
    assert query(
        state, "SELECT COUNT(*) FROM uploads WHERE worker_id = ? AND round_number = 1", victim_id
    ) == [(0,)]
    # Rounds opened after the key holder died were opened by the remaining members.
    key_holder_id = worker_id(federation, key_holder)
    later_rounds = [
        n for n in range(opened_before_kill + 1, ROUNDS + 1) if outcomes[n] == "published"
    ]
    assert later_rounds, outcomes
    for round_number in later_rounds:
        rows = query(
            state,
            "SELECT COUNT(*) FROM tasks WHERE round_number = ? AND worker_id = ?",
            round_number,
            key_holder_id,
        )
        assert rows == [(0,)]
    # The device that was offline caught up with the published model and contributed again.
    offline_id = worker_id(federation, offline)
    later = query(
        state,
        "SELECT round_number FROM uploads WHERE worker_id = ? AND round_number >= 5 AND state = 3",
        offline_id,
    )
    assert later, "the returning device did not contribute"
    device = DeviceModel.load(federation.worker_dir(offline) / "state" / "model.bin")
    assert device is not None and device.version >= int(str(later[0][0]))
