"""Coordinator and worker processes on loopback, started and stopped by PID (demo, tests, bench)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "protos")])
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class CoordinatorProcess:
    """A coordinator child process and the addresses it announced."""

    process: subprocess.Popen[str]
    grpc_address: str
    metrics_address: str
    log_path: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the drain, and return the exit code (kills after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL (a crash, as far as the coordinator is concerned)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        """The process's log so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""


def start_coordinator(
    workdir: Path,
    settings: dict[str, str],
    timeout: float = 60.0,
    environment: dict[str, str] | None = None,
) -> CoordinatorProcess:
    """Starts ``python -m coordinator`` with ``--set`` flags and waits for HEFL_READY.

    A restart in the same ``workdir`` appends to the same log.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "coordinator.log"
    arguments = [sys.executable, "-m", "coordinator"]
    for key, value in settings.items():
        arguments += ["--set", f"{key}={value}"]
    process = subprocess.Popen(
        arguments,
        cwd=ROOT,
        env={**_env(), **(environment or {})},
        stdout=subprocess.PIPE,
        stderr=open(log_path, "a"),  # noqa: SIM115 - the child owns it
        text=True,
    )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("HEFL_READY "):
            ready = json.loads(line.split(" ", 1)[1])
            return CoordinatorProcess(
                process, ready["grpc_address"], ready["metrics_address"], log_path
            )
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"coordinator did not start:\n{log_path.read_text()}")


def start_worker(
    workdir: Path,
    coordinator: str,
    shard: int,
    shards: int,
    *extra: str,
    federation_id: str = "test-fed",
) -> subprocess.Popen[str]:
    """Starts ``python -m edge_worker`` for one shard of the digits task."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_worker",
            "--coordinator",
            coordinator,
            "--federation-id",
            federation_id,
            "--state-dir",
            str(workdir / "state"),
            "--shard",
            f"{shard}/{shards}",
            *extra,
        ],
        cwd=ROOT,
        env=_env(),
        stdout=open(workdir / "worker.log", "w"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_processes(processes: list[subprocess.Popen[str]], timeout: float = 20.0) -> None:
    """SIGTERM every process, then wait (killing any that outlive ``timeout``)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
