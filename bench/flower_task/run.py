"""``python -m bench.flower_task.run``: Flower FedAvg on digits, real processes on loopback.

Server mode (the default) starts a Flower server, spawns one client process per shard, runs the
rounds and prints one JSON line: per-round wall time (from ``configure_fit`` to the end of
``aggregate_fit``: instructions out, local training, results in, aggregation) and the global
model's test accuracy after each round. ``client`` mode is one device. Only numpy and flwr are
imported (run it with .venv-flower's python).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.flower_task import common


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _flwr() -> Any:
    # flwr lives only in .venv-flower and ships no type stubs: an untyped handle, as tenseal.
    return importlib.import_module("flwr")


def _client(args: argparse.Namespace) -> int:
    fl = _flwr()

    task = np.load(args.task)
    # One long-lived process per device: one generator carries on across rounds.
    rng = np.random.default_rng(common.device_seed(task, args.shard))
    fl.client.start_client(
        server_address=args.address,
        client=common.digits_client(fl, task, args.shard, lambda config: rng).to_client(),
        insecure=True,
        max_retries=60,
        max_wait_time=60.0,
    )
    return 0


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _server(args: argparse.Namespace) -> int:
    fl = _flwr()

    task = np.load(args.task)
    clients = int(task["clients"])
    address = f"127.0.0.1:{_free_port()}"
    report: dict[str, Any] = {
        "flwr": fl.__version__,
        "clients": clients,
        "rounds": args.rounds,
        "round_seconds": {},
        "accuracy": {},
    }
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "bench.flower_task.run", "client", "--task", args.task]
    logs = [open(Path(args.logs) / f"client{i}.log", "w") for i in range(clients)]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            [*command, "--address", address, "--shard", str(i)],
            env=env,
            stdout=logs[i],
            stderr=subprocess.STDOUT,
        )
        for i in range(clients)
    ]
    began = time.perf_counter()
    finished = False
    try:
        fl.server.start_server(
            server_address=address,
            config=fl.server.ServerConfig(num_rounds=args.rounds),
            strategy=common.timed_fedavg(fl, task, report),
        )
        finished = True
    finally:
        # Clients leave when the server ends the run; after a failure nobody tells them to.
        for process in processes:
            _stop(process, 30.0 if finished else 0.0)
        for log in logs:
            log.close()
    report["seconds"] = time.perf_counter() - began
    report["client_exit_codes"] = [p.returncode for p in processes]
    print(json.dumps(report), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Server (default) or ``client`` mode."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = argparse.ArgumentParser(prog="python -m bench.flower_task.run")
    parser.add_argument("mode", nargs="?", choices=("server", "client"), default="server")
    parser.add_argument("--task", required=True, help=".npz written by bench/suites/flower.py")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--logs", default=".", help="folder for the client logs")
    parser.add_argument("--address", help="client mode: the server")
    parser.add_argument("--shard", type=int, default=0, help="client mode: the shard")
    args = parser.parse_args(argv)
    return _client(args) if args.mode == "client" else _server(args)


if __name__ == "__main__":
    sys.exit(main())
