"""Clients in other languages against a real coordinator process on loopback.

The operator clients in examples/clients/ (Node with @grpc/grpc-js and @grpc/proto-loader, Go in
GOPATH mode on Debian's grpc-go, C++ on Debian's libgrpc++, Java on Debian's grpc-java) are built
from the repository's protos exactly as examples/clients/README.md says, then run against
``python -m coordinator``. Their JSON lines are checked field by field and compared with what the
Python stubs read from the same coordinator, so every language decodes the same bytes to the same
values. The TypeScript stubs of scripts/gen-stubs.sh are type-checked with tsc.

The coordinator runs the plaintext profile with 1 s collect windows every 1.5 s and no workers,
so rounds keep opening and being abandoned: a steady stream of OPENED, WINDOW_CLOSED and
ABANDONED events with consecutive sequence numbers.

A language skips, with the reason, only when its toolchain is missing (scripts/install-stub-tools.sh
installs them all) or npm cannot fetch its packages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from examples.processes import CoordinatorProcess, start_coordinator
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc
from tests.support.cluster import FEDERATION, coordinator_settings

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "examples" / "clients"
GEN_STUBS = ROOT / "scripts" / "gen-stubs.sh"
INSTALL_HINT = "run scripts/install-stub-tools.sh (as root, with Debian and npm reachable)"
REPLAYED = 5  # events 2..6, replayed with after_sequence=1
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 60

JsonObject = dict[str, Any]


def _missing(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def _run(
    command: list[str], cwd: Path = ROOT, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _build(command: list[str], cwd: Path = ROOT) -> str:
    """Runs a build step and returns its stdout; a failing build fails the test."""
    started = time.monotonic()
    built = _run(command, cwd=cwd, timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, (
        f"{' '.join(command)} failed ({built.returncode}):\n{built.stdout}\n{built.stderr}"
    )
    print(f"{' '.join(command)}: {time.monotonic() - started:.1f} s")
    return built.stdout


def _offline(npm_stderr: str) -> bool:
    """True when npm failed for want of network rather than because of the project."""
    marks = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "network")
    return any(mark in npm_stderr for mark in marks)


def _lines(output: str) -> list[JsonObject]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "type" in line for line in lines), output
    return lines


def _without_nulls(value: JsonObject) -> JsonObject:
    """Drops null fields: Node and Go print an unset message field as null; C++ and Java omit it."""
    return {key: item for key, item in value.items() if item is not None}


# --- the coordinator and what Python reads from it -------------------------------------------


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    workdir = tmp_path_factory.mktemp("coordinator")
    settings = coordinator_settings(
        workdir, 1000, **{"round.collect_seconds": "1", "round.interval_seconds": "1.5"}
    )
    process = start_coordinator(workdir, settings)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def replayed(coordinator: CoordinatorProcess) -> list[JsonObject]:
    """Events 2..6 as the Python stubs decode them (waiting until the coordinator has them)."""
    with grpc.insecure_channel(coordinator.grpc_address) as channel:
        stub = ops_grpc.OperatorServiceStub(channel)
        stream = stub.WatchRoundEvents(
            ops.WatchRoundEventsRequest(federation_id=FEDERATION, after_sequence=1), timeout=30
        )
        events: list[JsonObject] = []
        for frame in stream:
            events.append(
                json_format.MessageToDict(
                    frame.event,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            )
            if len(events) == REPLAYED:
                break  # closing the channel ends the stream
    assert [event["sequence"] for event in events] == ["2", "3", "4", "5", "6"]
    return events


# --- building the clients --------------------------------------------------------------------


@pytest.fixture(scope="module")
def stubs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stubs-out")


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    missing = _missing("node", "npm")
    if missing:
        pytest.skip(f"Node client: {', '.join(missing)} not installed; {INSTALL_HINT}")
    version = _run(["node", "--version"]).stdout.strip()
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    if (major, minor) < (18, 3):
        pytest.skip(f"Node client: needs Node.js >= 18.3 (util.parseArgs), found {version}")
    directory = CLIENTS / "node"
    # npm ci installs exactly package-lock.json and never rewrites it.
    installed = _run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        timeout=BUILD_TIMEOUT,
    )
    if installed.returncode != 0 and _offline(installed.stderr):
        pytest.skip(f"Node client: npm cannot reach its registry: {installed.stderr}")
    assert installed.returncode == 0, installed.stderr
    return ["node", str(directory / "client.js")]


@pytest.fixture(scope="module")
def go_client(stubs_dir: Path) -> list[str]:
    missing = _missing("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
    if not Path("/usr/share/gocode/src/google.golang.org/grpc").is_dir():
        missing.append("golang-google-grpc-dev")
    if missing:
        pytest.skip(f"Go client: {', '.join(missing)} not installed; {INSTALL_HINT}")
    binary = _build([str(CLIENTS / "go" / "build.sh"), str(stubs_dir)]).strip().splitlines()[-1]
    return [binary]


@pytest.fixture(scope="module")
def cpp_client(stubs_dir: Path) -> list[str]:
    missing = _missing("g++", "pkg-config", "protoc", "grpc_cpp_plugin")
    if not missing and _run(["pkg-config", "--exists", "grpc++", "protobuf"]).returncode != 0:
        missing.append("libgrpc++-dev")
    if missing:
        pytest.skip(f"C++ client: {', '.join(missing)} not installed; {INSTALL_HINT}")
    binary = _build([str(CLIENTS / "cpp" / "build.sh"), str(stubs_dir)]).strip().splitlines()[-1]
    return [binary]


@pytest.fixture(scope="module")
def java_client(stubs_dir: Path) -> list[str]:
    missing = _missing("java", "javac", "protoc", "grpc_java_plugin")
    jars = ("grpc-netty", "netty-codec-http2", "perfmark-api", "gson", "protobuf-util")
    missing += [f"{jar}.jar" for jar in jars if not Path(f"/usr/share/java/{jar}.jar").is_file()]
    if missing:
        pytest.skip(f"Java client: {', '.join(missing)} not installed; {INSTALL_HINT}")
    launcher = _build([str(CLIENTS / "java" / "build.sh"), str(stubs_dir)])
    return [launcher.strip().splitlines()[-1]]


@pytest.fixture(params=["node", "go", "cpp", "java"])
def client(request: pytest.FixtureRequest) -> list[str]:
    """The command that runs one language's client (building it once per module)."""
    command: list[str] = request.getfixturevalue(f"{request.param}_client")
    return command


def _client(
    command: list[str], coordinator: CoordinatorProcess, *flags: str
) -> subprocess.CompletedProcess[str]:
    return _run(
        [*command, "--address", coordinator.grpc_address, "--federation-id", FEDERATION, *flags]
    )


# --- the tests -------------------------------------------------------------------------------


def test_status_and_rounds(client: list[str], coordinator: CoordinatorProcess) -> None:
    ran = _client(client, coordinator, "--max-events", "0", "--page-size", "3")
    assert ran.returncode == 0, ran.stderr
    status, rounds, end = _lines(ran.stdout)

    assert status["type"] == "status"
    body = status["status"]
    assert body["federation_id"] == FEDERATION
    assert body["profile"] == "CRYPTO_PROFILE_PLAINTEXT"
    assert body["global_version"] == "1"  # uint64 as a string, as in the proto3 JSON mapping
    assert body["parameter_count"] == "1000"
    assert body["enrolled_workers"] == 0
    assert int(body["current_round"]) >= 1
    assert body["current_phase"].startswith("ROUND_PHASE_")

    assert rounds["type"] == "rounds"
    numbers = [int(summary["round_number"]) for summary in rounds["rounds"]]
    assert 1 <= len(numbers) <= 3
    assert numbers == sorted(numbers, reverse=True)  # newest first
    assert numbers[0] >= int(body["current_round"])
    for summary in rounds["rounds"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", summary["open_time"])
        assert summary["published_version"] == "0"

    assert end == {"type": "end", "events": 0, "reason": "max-events"}


def test_replayed_events_match_python(
    client: list[str], coordinator: CoordinatorProcess, replayed: list[JsonObject]
) -> None:
    ran = _client(
        client,
        coordinator,
        "--after-sequence",
        "1",
        "--max-events",
        str(REPLAYED),
        "--timeout",
        "30",
    )
    assert ran.returncode == 0, ran.stderr
    lines = _lines(ran.stdout)
    events = [line["event"] for line in lines if line["type"] == "event"]
    assert [_without_nulls(event) for event in events] == replayed
    assert events[0]["kind"] == "ROUND_EVENT_KIND_WINDOW_CLOSED"
    assert events[0]["round_number"] == "1"
    assert {event["kind"] for event in events} >= {
        "ROUND_EVENT_KIND_OPENED",
        "ROUND_EVENT_KIND_WINDOW_CLOSED",
        "ROUND_EVENT_KIND_ABANDONED",
    }
    assert lines[-1] == {"type": "end", "events": REPLAYED, "reason": "max-events"}


def test_live_events_until_timeout(
    client: list[str], coordinator: CoordinatorProcess, replayed: list[JsonObject]
) -> None:
    started = time.monotonic()
    ran = _client(client, coordinator, "--max-events", "1000", "--timeout", "2.5")
    elapsed = time.monotonic() - started
    assert ran.returncode == 0, ran.stderr
    lines = _lines(ran.stdout)
    sequences = [int(line["event"]["sequence"]) for line in lines if line["type"] == "event"]
    # No replay (after_sequence 0): only events published while watching, in order, none lost.
    assert sequences, "no live event within 2.5 s although one is published at least every second"
    assert sequences[0] > int(replayed[-1]["sequence"])
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert lines[-1] == {"type": "end", "events": len(sequences), "reason": "timeout"}
    assert 2.0 < elapsed < 30


def test_unknown_federation_is_not_found(
    client: list[str], coordinator: CoordinatorProcess
) -> None:
    ran = _run([*client, "--address", coordinator.grpc_address, "--federation-id", "nope"])
    assert ran.returncode == 1
    assert ran.stdout == ""
    error = json.loads(ran.stderr.strip().splitlines()[-1])
    assert error["type"] == "error"
    assert error["stage"] == "GetFederationStatus"
    assert error["code"] == "NOT_FOUND"
    assert "nope" in error["message"]


def test_typescript_stubs_type_check(tmp_path: Path) -> None:
    # Go, C++ and Java stubs are compiled by the client builds above (the Go and Java builds
    # compile every generated file); ts-proto's output has no client here, so tsc checks it.
    missing = _missing("protoc", "node", "npm")
    if missing:
        pytest.skip(f"TypeScript stubs: {', '.join(missing)} not installed; {INSTALL_HINT}")
    ran = _run([str(GEN_STUBS), "--lang", "ts", "--check", str(tmp_path)], timeout=BUILD_TIMEOUT)
    if ran.returncode != 0 and _offline(ran.stderr):
        pytest.skip(f"TypeScript stubs: npm cannot reach its registry: {ran.stderr}")
    assert ran.returncode == 0, ran.stderr
    assert "ts: checked, tsc --strict --noEmit finds no error" in ran.stderr
    service = (tmp_path / "ts/ts-proto/hefl/v1/operator_service.ts").read_text()
    assert "export const OperatorServiceService" in service
    assert "watchRoundEvents" in service
    assert (tmp_path / "ts/proto-loader-types/hefl/v1/RoundEvent.ts").is_file()
