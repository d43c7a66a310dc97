"""``python -m bench.flower_task.secagg``: the digits task under Flower SecAgg+, real processes.

Packages bench/flower_task/secagg_app.py (with mlp.py) as a Flower App in a scratch folder and
runs it on Flower's Deployment Engine, all on 127.0.0.1 with insecure gRPC: one
``flower-superlink`` (in-memory state; it spawns the ``flower-superexec`` that runs the
ServerApp), one ``flower-supernode`` per shard (``--node-config partition-id=<shard>``; each
spawns a ``flower-superexec`` that runs a ``flwr-clientapp`` process per message), then
``flwr run --stream`` of the app with run config ``task``, ``num-server-rounds`` and ``report``.
``FLWR_HOME`` (the CLI's config.toml with the SuperLink connection, and the installed app) is
inside the scratch folder. Prints one JSON line in bench/flower_task/run.py's format. Only
numpy and flwr are needed (run it with .venv-flower's python); Ray is not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
APP = "hefl-secagg"  # Flower App (project) name: letters, digits and hyphens
PACKAGE = "hefl_secagg"  # the app's Python package: secagg_app.py, common.py and mlp.py

PYPROJECT = f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP}"
version = "1.0.0"
description = "hefl benchmark: the digits task under FedAvg with SecAgg+"
license = "Apache-2.0"
dependencies = ["flwr", "numpy"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "hefl"

[tool.flwr.app.components]
serverapp = "{PACKAGE}.secagg_app:server"
clientapp = "{PACKAGE}.secagg_app:client"

[tool.flwr.app.config]
task = ""
num-server-rounds = 4
report = ""
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_app(folder: Path) -> Path:
    """The Flower App: pyproject.toml and the package with the ServerApp and ClientApp."""
    package = folder / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""hefl SecAgg+ benchmark app."""\n')
    for name in ("secagg_app.py", "common.py", "mlp.py"):
        shutil.copyfile(HERE / name, package / name)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    return folder


def write_flwr_home(home: Path, control: str) -> Path:
    """FLWR_HOME with a config.toml whose default SuperLink connection is ``control``."""
    home.mkdir(parents=True)
    connection = f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{control}"\n'
    (home / "config.toml").write_text(connection + "insecure = true\n")
    return home


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ends the process and everything it spawned (its own session), TERM then KILL."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # superexec / app children left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _tail(path: Path, size: int = 600) -> str:
    """The end of a log, without its colour codes."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()[-size:]


def run(task: Path, rounds: int, logs: Path, timeout: float) -> dict[str, Any]:
    """Starts the federation, runs the app, stops everything; the ServerApp's report."""
    import numpy as np

    clients = int(np.load(task)["clients"])
    bin_dir = Path(sys.executable).parent
    fleet, control = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    home = write_flwr_home(logs / "flwr-home", control)
    app = write_app(logs / APP)
    report_path = logs / "report.json"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # superexec, flwr-*app
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    env.pop("PYTHONPATH", None)  # the app imports only its own package, numpy and flwr
    processes: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []

    def start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115
        files.append(log)
        process = subprocess.Popen(
            command, env=env, cwd=logs, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        processes.append(process)
        return process

    report: dict[str, Any] = {"flwr": "", "clients": clients, "rounds": rounds}
    began = time.perf_counter()
    try:
        superlink = start(
            "superlink",
            [str(bin_dir / "flower-superlink"), "--insecure", "--fleet-api-address", fleet]
            + ["--control-api-address", control, "--serverappio-api-address", "127.0.0.1:0"],
        )
        for shard in range(clients):
            start(
                f"supernode{shard}",
                [str(bin_dir / "flower-supernode"), "--insecure", "--superlink", fleet]
                + ["--clientappio-api-address", "127.0.0.1:0", "--max-retries", "60"]
                + ["--node-config", f"partition-id={shard} num-partitions={clients}"],
            )
        _wait_for_port(control, superlink, 60.0)
        run_config = f'task="{task}" num-server-rounds={rounds} report="{report_path}"'
        flwr = start(
            "flwr-run",
            [str(bin_dir / "flwr"), "run", str(app), "local", "--stream", "-c", run_config],
        )
        try:
            flwr.wait(timeout)
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"flwr run exceeded {timeout:.0f} s (logs in {logs})") from error
        said = _tail(logs / "flwr-run.log")
        if flwr.returncode != 0:
            raise RuntimeError(f"flwr run exited {flwr.returncode}: {said}")
        if not report_path.exists():
            raise RuntimeError(f"the ServerApp wrote no report; flwr run said: {said}")
        report = json.loads(report_path.read_text())
        report["seconds"] = time.perf_counter() - began
        report["superlink_exit_code"] = superlink.poll()
        return report
    finally:
        for process in reversed(processes):
            _stop(process)
        for file in files:
            file.close()


def _wait_for_port(address: str, process: subprocess.Popen[bytes], limit: float) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited {process.returncode}")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"flower-superlink did not listen on {address} within {limit:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the SecAgg+ federation; prints its JSON report (exit 1 and the reason otherwise)."""
    parser = argparse.ArgumentParser(prog="python -m bench.flower_task.secagg")
    parser.add_argument("--task", required=True, help=".npz written by bench/suites/flower.py")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--logs", required=True, help="scratch folder: app, FLWR_HOME, logs")
    parser.add_argument("--timeout", type=float, default=600.0, help="for flwr run, seconds")
    args = parser.parse_args(argv)
    try:
        task, logs = Path(args.task).resolve(), Path(args.logs).resolve()
        report = run(task, args.rounds, logs, args.timeout)
    except (RuntimeError, OSError, ValueError) as error:
        print(f"SecAgg+ run failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
