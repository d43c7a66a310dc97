"""Command line: ``python -m coordinator --config coordinator.toml [--set section.field=value]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from coordinator.config import ConfigError, describe, load_config
from coordinator.server import serve

_SHORTCUTS = {
    "listen_address": "server.listen_address",
    "metrics_address": "server.metrics_address",
    "state_dir": "state.state_dir",
    "federation_id": "federation.federation_id",
    "profile": "federation.profile",
    "initial_model": "federation.initial_model",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the command line."""
    parser = argparse.ArgumentParser(
        prog="hefl-coordinator",
        description="Run a hefl coordinator. Settings: defaults < --config TOML <"
        " HEFL_<SECTION>__<FIELD> environment < flags.",
    )
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--listen-address", help="gRPC address (port 0: any free port)")
    parser.add_argument("--metrics-address", help="Prometheus address ('' disables)")
    parser.add_argument("--state-dir", help="directory of the SQLite database and blobs")
    parser.add_argument("--federation-id", help="federation identifier")
    parser.add_argument("--profile", help="plaintext | fast | provable | oneshot")
    parser.add_argument("--initial-model", help="initial model payload file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any setting (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-json", action="store_true", help="structured JSON log lines")
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective configuration and exit"
    )
    return parser.parse_args(argv)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def configure_logging(level: str, as_json: bool) -> None:
    """Sets up logging for the process (only here, never in library code)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m coordinator`` and ``hefl-coordinator``."""
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_json)
    overrides: dict[str, str] = {}
    for flag, dotted in _SHORTCUTS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[dotted] = value
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --set expects SECTION.FIELD=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[key.strip()] = value
    try:
        config = load_config(args.config, os.environ, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(describe(config), indent=2))
        return 0
    try:
        return asyncio.run(serve(config))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
