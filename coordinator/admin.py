"""Operator command line: ``python -m coordinator.admin [options] status|rounds|workers|...``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hefl.v1 import common_pb2 as common
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc

EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2

# What `python -m crypto.certs demo|worker` writes into a device's state folder; an operator
# reuses such a folder (or any CA-issued client certificate) because the coordinator demands
# mutual TLS from every caller, operators included.
IDENTITY_FILES = {"ca": "ca.pem", "cert": "tls.pem", "key": "tls.key"}


class UsageError(Exception):
    """The command line cannot work as given (exit code 2)."""


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"HEFL_ADMIN_{name}", default)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the command line (defaults from ``HEFL_ADMIN_<NAME>``; TLS: see client_tls)."""
    parser = argparse.ArgumentParser(
        prog="hefl-admin",
        description="Query a hefl coordinator's OperatorService (read-only).",
        epilog="Without TLS options on the command line, HEFL_ADMIN_IDENTITY, HEFL_ADMIN_CA,"
        " HEFL_ADMIN_CERT, HEFL_ADMIN_KEY or HEFL_ADMIN_INSECURE=1 supply them; HEFL_ADMIN_ADDRESS,"
        " HEFL_ADMIN_FEDERATION_ID and HEFL_ADMIN_SERVER_NAME are defaults too. Exit codes:"
        " 0 success, 1 the call failed (status and message on stderr), 2 usage error.",
    )
    parser.add_argument(
        "--address", default=_env("ADDRESS", "127.0.0.1:50051"), help="coordinator HOST:PORT"
    )
    parser.add_argument("--federation-id", default=_env("FEDERATION_ID", "default"))
    # The TLS options fall back to the environment only as a group (see client_tls).
    parser.add_argument(
        "--identity",
        default="",
        metavar="DIR",
        help="folder with ca.pem, tls.pem and tls.key (a device identity from crypto.certs)",
    )
    parser.add_argument("--ca", default="", help="PEM CA of the coordinator certificate")
    parser.add_argument("--cert", default="", help="PEM client certificate")
    parser.add_argument("--key", default="", help="PEM key of the client certificate")
    parser.add_argument(
        "--server-name",
        default=_env("SERVER_NAME"),
        help="name to expect in the coordinator certificate (default: the address host)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC, for a coordinator run with server.insecure (loopback only)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--call-timeout", type=float, default=10.0, help="deadline of each unary call (s)"
    )
    # --json is also accepted after the command; SUPPRESS keeps it from resetting the global one.
    common_options = argparse.ArgumentParser(add_help=False)
    common_options.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[common_options])

    add("status", "state of the federation")
    rounds = add("rounds", "rounds, newest first")
    rounds.add_argument("--limit", type=_positive_int, default=20, help="most rounds to show")
    add("workers", "enrolled workers")
    add("ledger", "the federation's privacy ledger")
    anomalies = add("anomalies", "recorded anomalies, newest first")
    anomalies.add_argument("--limit", type=_positive_int, default=20, help="most to show")
    watch = add("watch", "stream round events as they happen")
    watch.add_argument(
        "--after",
        type=_non_negative_int,
        default=0,
        metavar="SEQ",
        help="first replay events with a sequence number above SEQ (0: new events only)",
    )
    watch.add_argument("--max-events", type=_positive_int, default=None, help="stop after N events")
    watch.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    health = add("health", "grpc.health.v1 check; exit 0 only when SERVING (for probes)")
    health.add_argument("--service", default="", help="service name ('' is the whole server)")
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


@dataclass(frozen=True)
class ClientTls:
    """PEM bytes for a mutual-TLS channel."""

    ca: bytes
    cert: bytes
    key: bytes


def client_tls(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> ClientTls | None:
    """The operator's TLS material, or None for plaintext.

    TLS options on the command line are used as a group; without any, the group comes from
    ``HEFL_ADMIN_IDENTITY``/``_CA``/``_CERT``/``_KEY`` or ``HEFL_ADMIN_INSECURE`` (how the
    container image points its health check at the probe certificate). Mixing the two would
    make it unclear which certificate a call used.

    Raises:
        UsageError: options missing, contradictory, or naming unreadable files.
    """
    given = {"identity": args.identity, "ca": args.ca, "cert": args.cert, "key": args.key}
    if args.insecure:
        if any(given.values()):
            raise UsageError("--insecure cannot be combined with --identity/--ca/--cert/--key")
        return None
    if not any(given.values()):
        if environ.get("HEFL_ADMIN_INSECURE", "") in {"1", "true", "yes"}:
            return None
        given = {name: environ.get(f"HEFL_ADMIN_{name.upper()}", "") for name in given}
    paths: dict[str, Path] = {}
    for name in IDENTITY_FILES:
        if given[name]:
            paths[name] = Path(given[name])
        elif given["identity"]:
            paths[name] = Path(given["identity"]) / IDENTITY_FILES[name]
    missing = [f"--{name}" for name in IDENTITY_FILES if name not in paths]
    if missing:
        raise UsageError(
            "the coordinator requires mutual TLS: give --identity DIR (a folder with ca.pem,"
            f" tls.pem, tls.key) or {', '.join(missing)}; --insecure only for a coordinator"
            " started with server.insecure=true"
        )
    material: dict[str, bytes] = {}
    for name, path in paths.items():
        try:
            material[name] = path.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror}") from None
    return ClientTls(material["ca"], material["cert"], material["key"])


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A channel to the coordinator as the options describe."""
    tls = client_tls(args)
    if tls is None:
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)


# ---- formatting -------------------------------------------------------------------------


def enum_label(value: int, enum: Any, prefix: str) -> str:
    """``ROUND_OUTCOME_PUBLISHED`` -> ``published``; unknown numbers print as numbers."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return "-" if name.endswith("_UNSPECIFIED") else name.removeprefix(prefix).lower()


def format_time(stamp: Timestamp, present: bool = True) -> str:
    """UTC time to the second, or ``-`` when unset."""
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return "-"
    moment = datetime.datetime.fromtimestamp(stamp.seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def format_seconds(duration: Duration) -> str:
    """A duration as seconds with one decimal."""
    return f"{duration.ToNanoseconds() / 1e9:.1f}s"


def format_bytes(count: int) -> str:
    """Bytes in B, kB, MB or GB (powers of 1000)."""
    value = float(count)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def format_number(value: float) -> str:
    """A float in at most 4 significant digits."""
    return f"{value:.4g}"


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> str:
    """Aligned columns separated by two spaces; columns listed in ``right`` align right."""
    body = [list(row) for row in rows]
    widths = [len(header) for header in headers]
    for row in body:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    right_set = set(right)

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if index in right_set else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in body)])


def message_json(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: proto field names, every field, 64-bit ints as numbers."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def _phase(value: int) -> str:
    return enum_label(value, common.RoundPhase, "ROUND_PHASE_")


def _outcome(value: int) -> str:
    return enum_label(value, common.RoundOutcome, "ROUND_OUTCOME_")


# ---- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What every command needs."""

    stub: ops_grpc.OperatorServiceStub
    channel: grpc.Channel
    args: argparse.Namespace
    out: TextIO

    def emit_json(self, message: Message) -> None:
        """Writes one JSON line."""
        print(json.dumps(message_json(message), sort_keys=True), file=self.out, flush=True)


def status(ctx: Context) -> int:
    """GetFederationStatus as a key/value listing."""
    response = ctx.stub.GetFederationStatus(
        ops.GetFederationStatusRequest(federation_id=ctx.args.federation_id),
        timeout=ctx.args.call_timeout,
    )
    if ctx.args.json:
        ctx.emit_json(response)
        return EXIT_OK
    if response.epsilon_budget > 0:
        privacy = (
            f"{format_number(response.epsilon_spent)} of {format_number(response.epsilon_budget)}"
            f" spent (delta {response.delta:g})"
        )
    else:
        privacy = "off (no differential privacy)"
    pairs = [
        ("federation", response.federation_id),
        ("profile", enum_label(response.profile, common.CryptoProfile, "CRYPTO_PROFILE_")),
        ("global version", str(response.global_version)),
        ("current round", f"{response.current_round} ({_phase(response.current_phase)})"),
        ("enrolled workers", str(response.enrolled_workers)),
        ("active workers", str(response.active_workers)),
        ("key epoch", str(response.key_epoch)),
        ("epsilon", privacy),
        ("parameters", str(response.parameter_count)),
    ]
    width = max(len(key) for key, _ in pairs)
    for key, value in pairs:
        print(f"{key.ljust(width)}  {value}", file=ctx.out)
    return EXIT_OK


def rounds(ctx: Context) -> int:
    """ListRounds as a table, newest first."""
    response = ctx.stub.ListRounds(
        ops.ListRoundsRequest(federation_id=ctx.args.federation_id, page_size=ctx.args.limit),
        timeout=ctx.args.call_timeout,
    )
    if ctx.args.json:
        for summary in response.rounds:
            ctx.emit_json(summary)
        return EXIT_OK
    rows = []
    for r in response.rounds:
        ended = r.HasField("end_time")
        duration = "-"
        if ended:
            seconds = (r.end_time.ToNanoseconds() - r.open_time.ToNanoseconds()) / 1e9
            duration = f"{seconds:.1f}s"
        rows.append(
            [
                str(r.round_number),
                _phase(r.phase),
                _outcome(r.outcome),
                str(r.selected),
                str(r.contributors),
                str(r.dropouts),
                str(r.published_version) if r.published_version else "-",
                format_number(r.epsilon_increment),
                format_bytes(r.bytes_in),
                format_time(r.open_time),
                duration,
            ]
        )
    headers = [
        "ROUND",
        "PHASE",
        "OUTCOME",
        "SELECTED",
        "CONTRIBUTORS",
        "DROPOUTS",
        "VERSION",
        "EPSILON+",
        "BYTES IN",
        "OPENED",
        "DURATION",
    ]
    print(render_table(headers, rows, right=(0, 3, 4, 5, 6, 7, 8, 10)), file=ctx.out)
    return EXIT_OK


def workers(ctx: Context) -> int:
    """ListWorkers as a table."""
    response = ctx.stub.ListWorkers(
        ops.ListWorkersRequest(federation_id=ctx.args.federation_id),
        timeout=ctx.args.call_timeout,
    )
    if ctx.args.json:
        for worker in response.workers:
            ctx.emit_json(worker)
        return EXIT_OK
    rows = [
        [
            w.worker_id,
            w.display_name,
            "yes" if w.key_holder_capable else "no",
            str(w.committee_index) if w.committee_index else "-",
            str(w.contributions),
            str(w.applied_version),
            format_time(w.last_seen_time),
        ]
        for w in response.workers
    ]
    headers = ["WORKER", "NAME", "KEY HOLDER", "MEMBER", "CONTRIBUTIONS", "VERSION", "LAST SEEN"]
    print(render_table(headers, rows, right=(3, 4, 5)), file=ctx.out)
    return EXIT_OK


def ledger(ctx: Context) -> int:
    """GetPrivacyLedger: the budget, then one row per round charged."""
    response = ctx.stub.GetPrivacyLedger(
        ops.GetPrivacyLedgerRequest(federation_id=ctx.args.federation_id),
        timeout=ctx.args.call_timeout,
    )
    if ctx.args.json:
        ctx.emit_json(response)
        return EXIT_OK
    if response.epsilon_budget > 0:
        print(
            f"epsilon spent {format_number(response.epsilon_spent)} of"
            f" {format_number(response.epsilon_budget)} at delta {response.delta:g}",
            file=ctx.out,
        )
    else:
        print("differential privacy is off: nothing is charged", file=ctx.out)
    rows = [
        [
            str(e.round_number),
            e.mechanism,
            str(e.calibrated_contributors),
            str(e.actual_contributors),
            str(e.bits),
            e.sampling,
            format_number(e.epsilon_increment),
            format_number(e.epsilon_cumulative),
            e.accountant,
            format_time(e.record_time),
        ]
        for e in response.entries
    ]
    headers = [
        "ROUND",
        "MECHANISM",
        "CALIBRATED",
        "ACTUAL",
        "BITS",
        "SAMPLING",
        "EPSILON+",
        "EPSILON",
        "ACCOUNTANT",
        "RECORDED",
    ]
    print(render_table(headers, rows, right=(0, 2, 3, 4, 6, 7)), file=ctx.out)
    return EXIT_OK


def anomalies(ctx: Context) -> int:
    """ListAnomalies as a table, newest first."""
    response = ctx.stub.ListAnomalies(
        ops.ListAnomaliesRequest(federation_id=ctx.args.federation_id, page_size=ctx.args.limit),
        timeout=ctx.args.call_timeout,
    )
    if ctx.args.json:
        for anomaly in response.anomalies:
            ctx.emit_json(anomaly)
        return EXIT_OK
    rows = [
        [
            format_time(a.record_time),
            str(a.round_number) if a.round_number else "-",
            a.kind,
            format_number(a.observed),
            format_number(a.threshold),
            a.detail,
        ]
        for a in response.anomalies
    ]
    headers = ["RECORDED", "ROUND", "KIND", "OBSERVED", "THRESHOLD", "DETAIL"]
    print(render_table(headers, rows, right=(1, 3, 4)), file=ctx.out)
    return EXIT_OK


# Fixed widths: a stream cannot be measured before it is printed.
_WATCH_COLUMNS = (("SEQ", 6), ("TIME", 20), ("ROUND", 6), ("EVENT", 16), ("PHASE", 10))


def watch_line(event: ops.RoundEvent) -> str:
    """One aligned line per round event."""
    kind = enum_label(event.kind, ops.RoundEventKind, "ROUND_EVENT_KIND_")
    cells = [
        str(event.sequence).rjust(_WATCH_COLUMNS[0][1]),
        format_time(event.event_time).ljust(_WATCH_COLUMNS[1][1]),
        (str(event.round_number) if event.round_number else "-").rjust(_WATCH_COLUMNS[2][1]),
        kind.ljust(_WATCH_COLUMNS[3][1]),
        _phase(event.phase).ljust(_WATCH_COLUMNS[4][1]),
        f"contributors={event.contributors}",
    ]
    if event.HasField("elapsed"):
        cells.append(f"elapsed={format_seconds(event.elapsed)}")
    if event.detail:
        cells.append(event.detail)
    return "  ".join(cells)


def watch(ctx: Context) -> int:
    """WatchRoundEvents until --max-events, --timeout or Ctrl-C; the timeout is a normal end."""
    call = ctx.stub.WatchRoundEvents(
        ops.WatchRoundEventsRequest(
            federation_id=ctx.args.federation_id, after_sequence=ctx.args.after
        ),
        timeout=ctx.args.timeout,
    )
    if not ctx.args.json:
        header = [
            name.rjust(width) if name in ("SEQ", "ROUND") else name.ljust(width)
            for name, width in _WATCH_COLUMNS
        ]
        print("  ".join([*header, "DETAIL"]), file=ctx.out, flush=True)
    seen = 0
    try:
        for frame in call:
            if ctx.args.json:
                ctx.emit_json(frame.event)
            else:
                print(watch_line(frame.event), file=ctx.out, flush=True)
            seen += 1
            if ctx.args.max_events is not None and seen >= ctx.args.max_events:
                break
    except grpc.RpcError as error:
        if ctx.args.timeout is not None and _code(error) == grpc.StatusCode.DEADLINE_EXCEEDED:
            return EXIT_OK
        raise
    # Leaving early needs no explicit cancel: main() closes the channel, which ends the stream.
    return EXIT_OK


def health(ctx: Context) -> int:
    """grpc.health.v1 Check; exit 0 only when the service is SERVING."""
    stub = health_pb2_grpc.HealthStub(ctx.channel)
    response = stub.Check(
        health_pb2.HealthCheckRequest(service=ctx.args.service), timeout=ctx.args.call_timeout
    )
    state = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if ctx.args.json:
        print(json.dumps({"service": ctx.args.service, "status": state}), file=ctx.out)
    else:
        print(f"{ctx.args.service or '(server)'}: {state}", file=ctx.out)
    return EXIT_OK if response.status == health_pb2.HealthCheckResponse.SERVING else 1


COMMANDS: Mapping[str, Callable[[Context], int]] = {
    "status": status,
    "rounds": rounds,
    "workers": workers,
    "ledger": ledger,
    "anomalies": anomalies,
    "watch": watch,
    "health": health,
}


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    return str(details()) if callable(details) else str(error)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``python -m coordinator.admin`` and ``hefl-admin``."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:
        # argparse exits 2 on usage errors and 0 after --help.
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        channel = open_channel(args)
    except UsageError as error:
        print(f"hefl-admin: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    ctx = Context(ops_grpc.OperatorServiceStub(channel), channel, args, out or sys.stdout)
    try:
        return COMMANDS[args.command](ctx)
    except grpc.RpcError as error:
        code = _code(error)
        name = code.name if code is not None else "UNKNOWN"
        print(f"hefl-admin: error: {name}: {_details(error)}", file=sys.stderr)
        return EXIT_RPC_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
