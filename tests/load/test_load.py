"""Load: simulated workers against one coordinator process on loopback (tests/load/loadgen.py).

The reports (pytest -s prints them) give throughput and latency. The assertions are about
correctness only: every worker enrolled, every upload accepted or refused because the window had
filled, no other error, health SERVING throughout, and the coordinator counted exactly the uploads
the clients saw accepted, no more than the round's goal.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.load.loadgen import LoadConfig, drive, start_load_coordinator

WORKERS = 500
# docs/protocol.md "Status codes", plus OK and the deadline clients retry.
DOCUMENTED = {
    "OK",
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "ALREADY_EXISTS",
    "DATA_LOSS",
    "RESOURCE_EXHAUSTED",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "UNAVAILABLE",
    "CANCELLED",
    "DEADLINE_EXCEEDED",
}


def _run(tmp_path: Path, config: LoadConfig) -> dict[str, Any]:
    coordinator = start_load_coordinator(tmp_path, config)
    try:
        report = asyncio.run(drive(coordinator.grpc_address, coordinator.metrics_address, config))
    finally:
        exit_code = coordinator.stop()
    print("\n" + json.dumps(report, indent=2, sort_keys=True))
    assert exit_code == 0, coordinator.log()[-3000:]
    assert report["unfinished_workers"] == 0 and report["crashed_workers"] == []
    return report


def _accounting_holds(report: dict[str, Any], goal: int) -> None:
    """The clients and the coordinator agree on every accepted upload, and none passed the goal."""
    accepted = report["uploads_accepted"]
    seen = report["coordinator"]
    assert accepted <= goal
    assert seen["uploads_accepted_metric"] == accepted
    assert seen["round_contributors"] == {1: accepted}
    assert report["upload_outcomes"] == {"ACCEPTED": accepted}  # an OK upload is accepted
    health = report["health"]
    assert health["polls"] >= 5
    assert health["answers"] == {"SERVING": health["polls"]}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_500_workers_enrol_check_in_and_upload(tmp_path: Path) -> None:
    # 125 workers arriving per second: about half of what this coordinator absorbs on 2 vCPUs.
    config = LoadConfig(workers=WORKERS, channels=32, ramp_seconds=4, time_limit_seconds=240)
    report = _run(tmp_path, config)
    # Every worker enrolled, with its own key.
    assert report["enrolled"] == WORKERS
    assert report["coordinator"]["enrolled_workers"] == WORKERS
    # Nothing but the expected answers.
    assert report["unexpected_errors"] == 0, report["unexpected_samples"]
    codes = report["codes"]
    assert codes["EnrollWorker"] == {"OK": WORKERS}
    assert set(codes["CheckIn"]) == {"OK"}
    assert set(codes["UploadUpdate"]) <= {"OK", "FAILED_PRECONDITION"}
    # Each worker got a task and uploaded once, or found the window closed (the goal reached).
    check_ins = report["check_in_outcomes"]
    tasks = check_ins.get("task", 0)
    gave_up = sum(n for outcome, n in check_ins.items() if outcome.startswith("gave up"))
    assert tasks + gave_up == WORKERS, check_ins
    assert gave_up == check_ins.get("gave up (RETRY_REASON_NO_OPEN_ROUND)", 0)
    assert sum(codes["UploadUpdate"].values()) == tasks
    accepted = report["uploads_accepted"]
    assert accepted + report["uploads_refused"] == tasks
    # The window closed exactly at the goal: no upload accepted past it, none lost before it.
    assert tasks >= config.round_goal
    assert accepted == config.round_goal
    assert report["coordinator"]["round_selected"] == {1: tasks}
    _accounting_holds(report, config.round_goal)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_burst_beyond_capacity_gets_only_documented_answers(tmp_path: Path) -> None:
    """2,000 workers arriving within 2 s, four times what the coordinator absorbs.

    Refusing or delaying some is fine (RESOURCE_EXHAUSTED, UNAVAILABLE, a deadline, and the
    CANCELLED with which gRPC sheds calls once over ~1,000 wait unstarted: clients back off and
    retry); every answer must still be a documented one, and every device gets in in the end.
    """
    config = LoadConfig(workers=2000, channels=32, ramp_seconds=2, time_limit_seconds=240)
    report = _run(tmp_path, config)
    undocumented = {
        rpc: {code: n for code, n in codes.items() if code not in DOCUMENTED}
        for rpc, codes in report["codes"].items()
    }
    _accounting_holds(report, config.round_goal)
    assert report["coordinator"]["enrolled_workers"] == report["enrolled"] == config.workers
    assert not any(undocumented.values()), (undocumented, report["unexpected_samples"][:3])
