"""Worker observability: metrics values after real rounds, the /metrics flag, JSON logs and the
per-task progress line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from edge_worker.config import WorkerConfig
from edge_worker.metrics import TASK_OUTCOMES, TaskProgress, WorkerMetrics
from edge_worker.model_state import save_initial_model
from edge_worker.runner import WorkerRuntime
from examples import digits
from examples.processes import start_coordinator, start_worker, stop_processes
from tests.support.cluster import FEDERATION, coordinator_settings, running_coordinator
from tests.support.metrics import scrape, value
from tests.support.prometheus import promtool_binary

WIDTH = 16  # 1,210 parameters: rounds stay quick
KEY_HOLDERS = 3


def _sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, name
    return found


async def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def _published_rounds(coordinator: Any) -> int:
    return int(
        _coordinator_sample(coordinator, "hefl_coordinator_rounds_total", outcome="published")
    )


def _coordinator_sample(coordinator: Any, name: str, **labels: str) -> float:
    found = coordinator.metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else float(found)


async def test_a_dp_round_moves_every_worker_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three in-process key holders run one oneshot round with DP against a real coordinator."""
    save_initial_model(digits.initial_weights(0, WIDTH), tmp_path / "initial.model")
    settings: dict[str, Any] = {
        "federation.profile": "oneshot",
        "federation.allow_plaintext": "false",
        "committee.size": KEY_HOLDERS,
        "round.goal_contributors": KEY_HOLDERS,
        "round.min_contributors": KEY_HOLDERS,
        "round.min_enrolled_workers": KEY_HOLDERS,
        "round.collect_seconds": 60,
        "round.interval_seconds": 1,
        "round.max_rounds": 1,
        "privacy.rounds": 10,
    }
    caplog.set_level(logging.INFO, logger="edge_worker.runner")
    async with running_coordinator(tmp_path, **settings) as coordinator:
        runtimes = [
            WorkerRuntime(
                WorkerConfig(
                    coordinator=coordinator.grpc_address,
                    federation_id=FEDERATION,
                    state_dir=str(tmp_path / f"device{index}"),
                    key_holder=True,
                    max_rounds=1,
                    insecure=True,
                ),
                digits.make_trainer(index, KEY_HOLDERS, width=WIDTH),
            )
            for index in range(KEY_HOLDERS)
        ]
        # Key holders keep serving the committee after their own round, until stopped.
        stop = asyncio.Event()
        running = [asyncio.create_task(runtime.run(stop)) for runtime in runtimes]
        try:
            await _wait(lambda: _published_rounds(coordinator) == 1, timeout=120)
            await _wait(
                lambda: all(r.counters.rounds_contributed == 1 for r in runtimes), timeout=30
            )
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*running), timeout=60)
        model_sent = _coordinator_sample(
            coordinator, "hefl_coordinator_sent_bytes_total", stream="model"
        )
        upload_received = _coordinator_sample(
            coordinator, "hefl_coordinator_received_bytes_total", stream="upload"
        )
        full_model = len(coordinator.store.blobs.read("models/v1.model"))

    received = [
        _sample(r.metrics, "hefl_worker_received_bytes_total", stream="model") for r in runtimes
    ]
    sent = [_sample(r.metrics, "hefl_worker_sent_bytes_total", stream="upload") for r in runtimes]
    # Each device downloaded the full initial model once and had one upload accepted; the
    # coordinator counted the same bytes from its side.
    assert received == [full_model] * KEY_HOLDERS
    assert sum(received) == model_sent
    assert all(size > 0 for size in sent) and sum(sent) == upload_received
    for runtime in runtimes:
        metrics = runtime.metrics
        for outcome in TASK_OUTCOMES:
            expected = 1.0 if outcome == "uploaded" else 0.0
            assert _sample(metrics, "hefl_worker_rounds_total", outcome=outcome) == expected
        for target in ("update", "correction"):
            assert _sample(metrics, "hefl_worker_hook_rejections_total", target=target) == 0
        for phase in ("train", "encode", "upload"):
            name = f"hefl_worker_{phase}_duration_seconds"
            assert _sample(metrics, f"{name}_count") == 1
            assert _sample(metrics, f"{name}_sum") > 0
        spent = runtime.ledger.epsilon_spent
        assert spent > 0
        assert _sample(metrics, "hefl_worker_epsilon_spent") == pytest.approx(spent)
        assert _sample(metrics, "hefl_worker_global_version") == 1  # trained from version 1

    progress = [r for r in caplog.records if getattr(r, "task", None) is not None]
    assert len(progress) == KEY_HOLDERS
    for record in progress:
        assert record.levelno == logging.INFO
        message = record.getMessage()
        assert re.fullmatch(
            r"round 1: uploaded; received \d+\.\d kB, sent \d+\.\d kB; train \d+\.\d\ds,"
            r" encode \d+\.\d\ds, upload \d+\.\d\ds; epsilon spent [0-9.e+-]+;"
            r" holding version 1",
            message,
        ), message
        task = record.task  # type: ignore[attr-defined]
        assert task["round"] == 1 and task["outcome"] == "uploaded"
        assert task["received_bytes"] == full_model
        assert task["epsilon_spent"] > 0

    # A restarted device exports its stored state before its first task.
    again = WorkerRuntime(runtimes[0].config, digits.make_trainer(0, KEY_HOLDERS, width=WIDTH))
    assert _sample(again.metrics, "hefl_worker_epsilon_spent") == pytest.approx(
        runtimes[0].ledger.epsilon_spent
    )
    assert _sample(again.metrics, "hefl_worker_global_version") == 1
    assert _sample(again.metrics, "hefl_worker_rounds_total", outcome="uploaded") == 0


def test_exposition_passes_promtool_check_metrics() -> None:
    promtool = promtool_binary()
    metrics = WorkerMetrics.create()
    task = TaskProgress(round_number=3, outcome="uploaded", received_bytes=10, sent_bytes=20)
    task.durations = {"train": 0.5, "encode": 0.01, "upload": 0.2}
    metrics.record_task(task, epsilon_spent=1.5, global_version=3)
    metrics.hook_rejections.labels("correction").inc()
    exposition = generate_latest(metrics.registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().strip() == ""
    text = exposition.decode()
    assert 'hefl_worker_rounds_total{outcome="uploaded"} 1.0' in text
    assert 'hefl_worker_rounds_total{outcome="deadline_missed"} 0.0' in text
    assert "hefl_worker_epsilon_spent 1.5" in text
    # Every family is the worker's own: nothing from the process-global default registry.
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert names and all(name.startswith("hefl_worker_") for name in names)


def test_registries_are_per_worker() -> None:
    first, second = WorkerMetrics.create(), WorkerMetrics.create()
    first.rounds.labels("uploaded").inc()
    assert first.registry.get_sample_value("hefl_worker_rounds_total", {"outcome": "uploaded"}) == 1
    assert (
        second.registry.get_sample_value("hefl_worker_rounds_total", {"outcome": "uploaded"}) == 0
    )


def _json_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(180)
def test_worker_cli_serves_metrics_and_logs_json(tmp_path: Path) -> None:
    """``python -m edge_worker --metrics-address 127.0.0.1:0 --log-json`` against a coordinator
    process: /metrics shows the round, and every log line is one JSON object.
    """
    save_initial_model(digits.initial_weights(0, WIDTH), tmp_path / "initial.model")
    overrides: dict[str, Any] = {
        "round.goal_contributors": 1,
        "round.min_contributors": 1,
        "round.collect_seconds": 30,
        "round.interval_seconds": 0.5,
    }
    settings = coordinator_settings(tmp_path, **overrides)
    coordinator = start_coordinator(tmp_path / "coordinator", settings)
    worker_dir = tmp_path / "worker"
    worker = start_worker(
        worker_dir,
        coordinator.grpc_address,
        0,
        1,
        "--insecure",
        "--model-width",
        str(WIDTH),
        "--metrics-address",
        "127.0.0.1:0",
        "--log-json",
        federation_id=FEDERATION,
    )
    log = worker_dir / "worker.log"
    try:
        address = ""
        deadline = time.monotonic() + 90
        while not address and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()
            for line in log.read_text().splitlines():
                if "metrics on http://" in line:
                    address = json.loads(line)["message"].split("http://", 1)[1]
                    address = address.removesuffix("/metrics")
            time.sleep(0.1)
        assert address, log.read_text()
        samples = scrape(address)
        while value(samples, "hefl_worker_rounds_total", outcome="uploaded") < 1:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
            samples = scrape(address)
        assert value(samples, "hefl_worker_sent_bytes_total", stream="upload") > 0
        assert value(samples, "hefl_worker_received_bytes_total", stream="model") > 0
        assert value(samples, "hefl_worker_train_duration_seconds_count") >= 1
        assert value(samples, "hefl_worker_global_version") >= 1
        assert value(samples, "hefl_worker_epsilon_spent") == 0  # plaintext: no DP
    finally:
        stop_processes([worker])
        coordinator.stop()
    assert worker.returncode == 0, log.read_text()
    lines = _json_lines(log)  # raises if any line is not JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    progress = [line for line in lines if "task" in line]
    assert progress, log.read_text()
    first = progress[0]
    assert first["logger"] == "edge_worker.runner" and first["level"] == "INFO"
    assert first["message"].startswith("round 1: uploaded; received ")
    assert first["task"]["outcome"] == "uploaded" and first["task"]["sent_bytes"] > 0
    assert any("stopping after" in line["message"] for line in lines)


def test_worker_cli_refuses_a_malformed_metrics_address(tmp_path: Path) -> None:
    worker = start_worker(tmp_path, "127.0.0.1:1", 0, 1, "--insecure", "--metrics-address", "9464")
    assert worker.wait(60) == 2
    assert (
        "--metrics-address expects HOST:PORT, got '9464'" in (tmp_path / "worker.log").read_text()
    )
