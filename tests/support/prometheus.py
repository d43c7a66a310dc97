"""A real Prometheus server on loopback for tests: temp config and storage, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "run scripts/install-test-deps.sh (Debian package 'prometheus') to enable"
# Launch to /-/ready takes about 0.2 s; the first scrape lands about 6 s after launch because
# Prometheus 2.x batches target discovery every 5 s (notes/tooling-check.md section 2).
READY_TIMEOUT = 20.0
DATA_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def prometheus_binary() -> str:
    """Path of the ``prometheus`` server, or skips the calling test with the reason."""
    found = shutil.which("prometheus")
    if found is None:
        pytest.skip(f"the prometheus server is not installed; {INSTALL_HINT}")
    return found


def promtool_binary() -> str:
    """Path of ``promtool``, or skips the calling test with the reason."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(f"promtool is not installed; {INSTALL_HINT}")
    return found


@dataclass
class PrometheusServer:
    """A running Prometheus; ``address`` is host:port of its HTTP API."""

    address: str
    pid: int
    workdir: Path
    process: subprocess.Popen[bytes]

    def get(self, path: str, **params: str) -> Any:
        """GETs an API path (for example ``/api/v1/targets``) and returns the decoded JSON."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://{self.address}{path}{query}", timeout=5) as reply:
            return json.loads(reply.read().decode())

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Runs an instant query and returns its result vector."""
        answer = self.get("/api/v1/query", query=promql)
        if answer.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = DATA_TIMEOUT,
    ) -> list[dict[str, Any]]:
        """Polls ``promql`` until ``until(result)`` holds; fails with the log after ``timeout``.

        Polling (never a fixed sleep) because the first scrape's timing varies between runs.
        """
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if until(result):
                return result
            time.sleep(0.25)
        raise AssertionError(
            f"{promql!r} did not reach the expected value within {timeout} s; last result"
            f" {result}; targets {self.get('/api/v1/targets')}; log:\n{self.log()}"
        )

    def log(self) -> str:
        """The server's stderr so far (for failure messages)."""
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM by PID, then wait for a graceful exit (SIGKILL after STOP_TIMEOUT)."""
        if self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def write_config(
    path: Path,
    targets: Sequence[str],
    *,
    job: str = "hefl",
    interval: str = "1s",
    rule_files: Sequence[Path] = (),
) -> None:
    """Writes a prometheus.yml that scrapes ``targets`` (host:port) every ``interval``.

    JSON is valid YAML, so no YAML library is needed.
    """
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rule) for rule in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    path.write_text(json.dumps(config, indent=2))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_prometheus(
    workdir: Path,
    targets: Sequence[str],
    *,
    job: str = "hefl",
    interval: str = "1s",
    rule_files: Sequence[Path] = (),
) -> PrometheusServer:
    """Starts Prometheus on a free loopback port and waits for ``/-/ready``.

    Args:
        workdir: A fresh directory for the config, the TSDB and the log.
        targets: host:port of each /metrics endpoint to scrape.
        job: The ``job`` label of the scraped series.
        interval: Scrape and rule evaluation interval.
        rule_files: Rule files to load (for example deploy/prometheus/alerts.yml).

    Returns:
        The running server; call :meth:`PrometheusServer.stop` (or use :func:`running`).
    """
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    write_config(config, targets, job=job, interval=interval, rule_files=rule_files)
    last_log = ""
    # A free port can be taken between the probe and Prometheus binding it: retry on a new one.
    for _attempt in range(3):
        port = _free_port()
        log = (workdir / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        log.close()
        server = PrometheusServer(f"127.0.0.1:{port}", process.pid, workdir, process)
        if _wait_ready(server):
            return server
        server.stop()
        last_log = server.log()
    raise AssertionError(f"prometheus did not become ready; log:\n{last_log}")


def _wait_ready(server: PrometheusServer) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        # 503 (HTTPError, a URLError) until the TSDB is open; refused before the port is bound.
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"http://{server.address}/-/ready", timeout=2) as reply,
        ):
            if reply.status == 200:
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def running(
    workdir: Path,
    targets: Sequence[str],
    *,
    job: str = "hefl",
    interval: str = "1s",
    rule_files: Sequence[Path] = (),
) -> Iterator[PrometheusServer]:
    """:func:`start_prometheus` as a context manager that always stops the server."""
    server = start_prometheus(workdir, targets, job=job, interval=interval, rule_files=rule_files)
    try:
        yield server
    finally:
        server.stop()
