"""Command line: ``python -m edge_worker --coordinator HOST:PORT --shard I/N [options]``.

Runs one device of the digits demo task (examples/digits.py). Integrating your own model is
done in Python with :class:`edge_worker.WorkerRuntime` (docs/integration.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from prometheus_client import start_http_server

from edge_worker.config import WorkerConfig
from edge_worker.metrics import WorkerMetrics
from edge_worker.runner import WorkerRuntime

logger = logging.getLogger(__name__)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"HEFL_WORKER_{name}", default)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses flags; every flag also reads a HEFL_WORKER_<NAME> environment default."""
    parser = argparse.ArgumentParser(prog="hefl-worker", description=__doc__)
    parser.add_argument("--coordinator", default=_env("COORDINATOR", "127.0.0.1:50051"))
    parser.add_argument("--federation-id", default=_env("FEDERATION_ID", "default"))
    parser.add_argument("--state-dir", default=_env("STATE_DIR", "var/worker"))
    parser.add_argument("--display-name", default=_env("DISPLAY_NAME", ""))
    parser.add_argument("--enrollment-token", default=_env("ENROLLMENT_TOKEN", ""))
    parser.add_argument(
        "--key-holder",
        action="store_true",
        default=_env("KEY_HOLDER", "") in {"1", "true", "yes"},
        help="offer to serve on the key committee",
    )
    parser.add_argument("--shard", default=_env("SHARD", "0/1"), help="I/N: this device's split")
    parser.add_argument("--seed", type=int, default=int(_env("SEED", "0")))
    parser.add_argument("--learning-rate", type=float, default=float(_env("LEARNING_RATE", "0.1")))
    parser.add_argument("--local-epochs", type=int, default=int(_env("LOCAL_EPOCHS", "1")))
    parser.add_argument("--batch-size", type=int, default=int(_env("BATCH_SIZE", "16")))
    parser.add_argument(
        "--model-width", type=int, default=int(_env("MODEL_WIDTH", "128")), help="MLP width"
    )
    parser.add_argument("--max-rounds", type=int, default=int(_env("MAX_ROUNDS", "0")))
    parser.add_argument("--tls-ca", default=_env("TLS_CA", ""), help="default: STATE/ca.pem")
    parser.add_argument("--tls-cert", default=_env("TLS_CERT", ""), help="default: STATE/tls.pem")
    parser.add_argument("--tls-key", default=_env("TLS_KEY", ""), help="default: STATE/tls.key")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=_env("INSECURE", "") in {"1", "true", "yes"},
        help="connect without TLS (loopback demos and tests only)",
    )
    parser.add_argument(
        "--privacy-budget",
        type=float,
        default=float(_env("PRIVACY_BUDGET", "0")),
        help="this device's own epsilon budget (0: keep a ledger, no limit of its own)",
    )
    parser.add_argument(
        "--reproducible-rounding",
        default=_env("REPRODUCIBLE_ROUNDING", ""),
        metavar="SEED",
        help="seeded stochastic rounding for DP-free test runs (refused with DP)",
    )
    parser.add_argument(
        "--record-updates",
        default=_env("RECORD_UPDATES", ""),
        help="write each round's quantized fields to this folder (audits, tests)",
    )
    parser.add_argument(
        "--metrics-address",
        default=_env("METRICS_ADDRESS", ""),
        metavar="HOST:PORT",
        help="serve Prometheus /metrics there (port 0: any free port; default: off)",
    )
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-json",
        action="store_true",
        default=_env("LOG_JSON", "") in {"1", "true", "yes"},
        help="structured JSON log lines",
    )
    return parser.parse_args(argv)


class _JsonFormatter(logging.Formatter):
    """The coordinator's JSON line format, plus the task record of progress lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        task = getattr(record, "task", None)
        if task is not None:
            entry["task"] = task
        return json.dumps(entry)


def configure_logging(level: str, as_json: bool) -> None:
    """Sets up logging for the process (only here, never in library code)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _address(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m edge_worker`` and ``hefl-worker``."""
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_json)
    metrics_address = _address(args.metrics_address) if args.metrics_address else None
    if args.metrics_address and metrics_address is None:
        print(
            f"error: --metrics-address expects HOST:PORT, got {args.metrics_address!r}",
            file=sys.stderr,
        )
        return 2
    try:
        index_text, count_text = args.shard.split("/")
        shard, shards = int(index_text), int(count_text)
        if not 0 <= shard < shards:
            raise ValueError
    except ValueError:
        print(f"error: --shard expects I/N with 0 <= I < N, got {args.shard!r}", file=sys.stderr)
        return 2
    # Imported here so `--help` stays fast (torch and scikit-learn load slowly).
    from examples.digits import make_trainer

    config = WorkerConfig(
        coordinator=args.coordinator,
        federation_id=args.federation_id,
        state_dir=args.state_dir,
        display_name=args.display_name,
        enrollment_token=args.enrollment_token,
        key_holder=args.key_holder,
        max_rounds=args.max_rounds,
        record_updates_dir=args.record_updates,
        privacy_budget_epsilon=args.privacy_budget,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        insecure=args.insecure,
        reproducible_rounding_seed=args.reproducible_rounding,
    )
    trainer = make_trainer(
        shard,
        shards,
        seed=args.seed,
        learning_rate=args.learning_rate,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        width=args.model_width,
    )
    metrics = WorkerMetrics.create()
    runtime = WorkerRuntime(config, trainer, metrics=metrics)
    metrics_server = None
    if metrics_address is not None:
        host, port = metrics_address
        metrics_server, _ = start_http_server(port, addr=host, registry=metrics.registry)
        logger.info("metrics on http://%s:%d/metrics", host, metrics_server.server_port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        counters = await runtime.run(stop)
        logger.info(
            "worker %s stopping after %d contributions",
            runtime.worker_id,
            counters.rounds_contributed,
        )

    try:
        asyncio.run(run())
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
