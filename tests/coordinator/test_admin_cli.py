"""The operator CLI against real coordinator processes: plaintext on loopback, and mutual TLS."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from coordinator import admin
from crypto.certs import create_ca, enrol_device, write_issued
from examples.processes import CoordinatorProcess, start_coordinator
from tests.support.cluster import FEDERATION, Device, coordinator_settings, plaintext_upload

ROOT = Path(__file__).resolve().parents[2]
PARAMETERS = 1000


def _run(*argv: str) -> tuple[int, str]:
    """Runs the CLI in this process and returns (exit code, stdout)."""
    out = io.StringIO()
    code = admin.main(list(argv), out=out)
    return code, out.getvalue()


def _run_process(
    *argv: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m coordinator.admin`` as an operator would."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEFL_ADMIN_")}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "protos")])
    environ.update(environment or {})
    return subprocess.run(
        [sys.executable, "-m", "coordinator.admin", *argv],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _play_one_round(address: str, spool: Path) -> list[str]:
    """Two devices contribute to round 1; the first also replays its upload three times."""
    devices = [Device.connect(address) for _ in range(2)]
    try:
        for device in devices:
            await device.enroll()
        tasks = []
        for device in devices:
            response = await device.check_in()
            assert response.WhichOneof("outcome") == "task", response
            tasks.append(response.task)
        uploads = [
            plaintext_upload(device, task, np.full(PARAMETERS, 0.01), spool / f"{index}.payload")[1]
            for index, (device, task) in enumerate(zip(devices, tasks, strict=True))
        ]
        await devices[0].upload_frames(uploads[0])
        for _ in range(3):
            # Each replay is refused with ALREADY_EXISTS; three make a replayed_uploads anomaly.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await devices[0].upload_frames(uploads[0])
            assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        await devices[1].upload_frames(uploads[1])
        return [device.key.worker_id for device in devices]
    finally:
        for device in devices:
            await device.close()


def _wait_for_published_round(*connection: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, out = _run(*connection, "--json", "rounds")
        if code == 0 and any(
            json.loads(line)["outcome"] == "ROUND_OUTCOME_PUBLISHED" for line in out.splitlines()
        ):
            return
        time.sleep(0.2)
    raise AssertionError("no round was published")


class PlayedFederation:
    """A plaintext coordinator process after one published round."""

    def __init__(self, process: CoordinatorProcess, worker_ids: list[str]) -> None:
        self.process = process
        self.worker_ids = worker_ids
        self.connection = ("--address", process.grpc_address, "--insecure")
        self.fed = ("--federation-id", FEDERATION)

    def run(self, *argv: str) -> tuple[int, str]:
        return _run(*self.connection, *self.fed, *argv)


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlayedFederation]:
    tmp_path = tmp_path_factory.mktemp("admin")
    settings = coordinator_settings(
        tmp_path, PARAMETERS, **{"round.goal_contributors": 2, "round.min_contributors": 2}
    )
    process = start_coordinator(tmp_path, settings)
    try:
        worker_ids = asyncio.run(_play_one_round(process.grpc_address, tmp_path))
        federation = PlayedFederation(process, worker_ids)
        _wait_for_published_round(*federation.connection, *federation.fed)
        yield federation
    finally:
        process.stop()


def test_status_shows_the_published_version(played: PlayedFederation) -> None:
    code, out = played.run("status")
    assert code == 0
    # Keys and values are separated by at least two spaces (keys contain single spaces).
    pairs = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())
    assert pairs["federation"] == "test-fed"
    assert pairs["profile"] == "plaintext"
    assert pairs["global version"] == "2"
    assert pairs["enrolled workers"] == "2"
    assert pairs["epsilon"] == "off (no differential privacy)"
    assert pairs["parameters"] == "1000"
    # The values start in one column.
    assert len({len(line) - len(line.split("  ")[-1].lstrip()) for line in out.splitlines()}) == 1
    code, out = played.run("--json", "status")
    status = json.loads(out)
    assert status["global_version"] == 2 and isinstance(status["global_version"], int)
    assert status["profile"] == "CRYPTO_PROFILE_PLAINTEXT"
    assert status["enrolled_workers"] == 2


def test_rounds_table_and_json(played: PlayedFederation) -> None:
    code, out = played.run("rounds", "--limit", "5")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["ROUND", "PHASE", "OUTCOME", "SELECTED"]
    first = next(row for row in rows if row.split()[0] == "1")
    # round, phase, outcome, selected, contributors, dropouts, version
    assert first.split()[:7] == ["1", "done", "published", "2", "2", "0", "2"]
    # Columns line up: every row is as wide as the header's cell boundaries allow.
    assert header.index("OUTCOME") == first.index("published")
    code, out = played.run("rounds", "--json", "--limit", "1")
    assert code == 0
    (only,) = [json.loads(line) for line in out.splitlines()]
    assert only["round_number"] >= 1


def test_workers_lists_both_devices(played: PlayedFederation) -> None:
    code, out = played.run("workers")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[0] == "WORKER"
    assert sorted(row.split()[0] for row in rows) == sorted(played.worker_ids)
    assert all(row.split()[1] == "test" for row in rows)  # the display name
    code, out = played.run("--json", "workers")
    workers = [json.loads(line) for line in out.splitlines()]
    assert {w["worker_id"] for w in workers} == set(played.worker_ids)
    assert all(w["contributions"] == 1 for w in workers)


def test_ledger_says_privacy_is_off(played: PlayedFederation) -> None:
    code, out = played.run("ledger")
    assert code == 0
    assert out.splitlines()[0] == "differential privacy is off: nothing is charged"
    code, out = played.run("ledger", "--json")
    assert json.loads(out)["epsilon_budget"] == 0.0


def test_anomalies_show_the_replayed_uploads(played: PlayedFederation) -> None:
    code, out = played.run("anomalies", "--limit", "10")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["RECORDED", "ROUND", "KIND", "OBSERVED", "THRESHOLD", "DETAIL"]
    replayed = [row for row in rows if "replayed_uploads" in row]
    assert len(replayed) == 1, out
    assert replayed[0].split()[2:6] == ["1", "replayed_uploads", "3", "3"]
    assert "refused as replayed" in replayed[0]
    code, out = played.run("--json", "anomalies")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert "replayed_uploads" in kinds


def test_watch_replays_events_after_a_cursor(played: PlayedFederation) -> None:
    code, out = played.run(
        "--json", "watch", "--after", "1", "--max-events", "50", "--timeout", "3"
    )
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(sequences) and sequences[0] == 2
    kinds = {e["kind"] for e in events}
    assert {"ROUND_EVENT_KIND_UPLOAD_ACCEPTED", "ROUND_EVENT_KIND_PUBLISHED"} <= kinds
    code, out = played.run("watch", "--after", "1", "--max-events", "3")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["SEQ", "TIME", "ROUND"]
    assert len(lines) == 3
    assert [line.split()[0] for line in lines] == ["2", "3", "4"]


def test_watch_timeout_ends_normally_without_events(played: PlayedFederation) -> None:
    code, out = played.run("watch", "--timeout", "0.5")
    assert code == 0
    assert out.splitlines()[0].startswith("   SEQ")


def test_errors_and_exit_codes_of_the_process(played: PlayedFederation) -> None:
    unknown = _run_process(*played.connection, "--federation-id", "nope", "status")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "hefl-admin: error: NOT_FOUND: unknown federation 'nope'"
    assert unknown.stdout == ""
    no_tls = _run_process("--address", played.process.grpc_address, "status")
    assert no_tls.returncode == 2
    assert "--identity DIR" in no_tls.stderr
    both = _run_process(*played.connection, "--identity", "somewhere", "status")
    assert both.returncode == 2
    bad_limit = _run_process(*played.connection, "rounds", "--limit", "0")
    assert bad_limit.returncode == 2
    assert "positive integer" in bad_limit.stderr
    no_command = _run_process(*played.connection)
    assert no_command.returncode == 2
    ok = _run_process(*played.connection, *played.fed, "health")
    assert ok.returncode == 0 and ok.stdout.strip() == "(server): SERVING"


def test_unreachable_coordinator_is_an_rpc_error(played: PlayedFederation) -> None:
    # The coordinator's own port with the wrong federation is covered above; a closed port
    # fails with UNAVAILABLE.
    code = admin.main(["--address", "127.0.0.1:1", "--insecure", "--call-timeout", "5", "status"])
    assert code == 1


@pytest.fixture(scope="module")
def tls_coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp_path = tmp_path_factory.mktemp("admin-tls")
    certs = tmp_path / "certs"
    made = subprocess.run(
        [sys.executable, "-m", "crypto.certs", "demo", str(certs), "--workers", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "protos")])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    settings = coordinator_settings(tmp_path, PARAMETERS)
    del settings["server.insecure"]
    settings.update(
        {
            "server.tls_cert": str(certs / "coordinator.pem"),
            "server.tls_key": str(certs / "coordinator.key"),
            "server.tls_client_ca": str(certs / "ca.pem"),
        }
    )
    process = start_coordinator(tmp_path, settings)
    try:
        yield process.grpc_address, certs
    finally:
        process.stop()


def test_tls_operator_with_a_device_identity(tls_coordinator: tuple[str, Path]) -> None:
    address, certs = tls_coordinator
    identity = certs / "workers" / "worker-0"
    code, out = _run(
        "--address", address, "--identity", str(identity), "--federation-id", FEDERATION, "status"
    )
    assert code == 0, out
    assert "test-fed" in out and "plaintext" in out
    code, out = _run(
        "--address",
        address,
        "--ca",
        str(certs / "ca.pem"),
        "--cert",
        str(identity / "tls.pem"),
        "--key",
        str(identity / "tls.key"),
        "--federation-id",
        FEDERATION,
        "--json",
        "rounds",
    )
    assert code == 0
    assert json.loads(out.splitlines()[0])["round_number"] == 1
    # The probe form: the server name is checked against the certificate (localhost is in it).
    probe = _run_process(
        "--address",
        address,
        "--identity",
        str(identity),
        "--server-name",
        "localhost",
        "health",
        "--service",
        "hefl.v1.OperatorService",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "hefl.v1.OperatorService: SERVING"


def test_tls_coordinator_refuses_callers_without_a_ca_issued_certificate(
    tls_coordinator: tuple[str, Path], tmp_path: Path
) -> None:
    address, certs = tls_coordinator
    plaintext = _run_process("--address", address, "--insecure", "--call-timeout", "5", "status")
    assert plaintext.returncode == 1
    assert plaintext.stderr.startswith("hefl-admin: error: UNAVAILABLE: ")
    # A device identity from another authority: the TLS handshake fails.
    stranger = tmp_path / "stranger"
    other_ca = create_ca("another authority")
    enrol_device(other_ca, stranger)
    write_issued(stranger, "other-ca", other_ca)
    refused = _run_process(
        "--address",
        address,
        "--ca",
        str(certs / "ca.pem"),
        "--cert",
        str(stranger / "tls.pem"),
        "--key",
        str(stranger / "tls.key"),
        "--call-timeout",
        "5",
        "status",
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("hefl-admin: error: UNAVAILABLE: ")
    missing = _run_process("--address", address, "--identity", str(tmp_path / "nothing"), "status")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_tls_options_come_from_the_environment_as_a_group(
    tls_coordinator: tuple[str, Path],
) -> None:
    """How the container image configures its health check: HEFL_ADMIN_* and no flags."""
    address, certs = tls_coordinator
    identity = certs / "workers" / "worker-0"
    environment = {
        "HEFL_ADMIN_ADDRESS": address,
        "HEFL_ADMIN_FEDERATION_ID": FEDERATION,
        "HEFL_ADMIN_CA": str(certs / "ca.pem"),
        "HEFL_ADMIN_CERT": str(identity / "tls.pem"),
        "HEFL_ADMIN_KEY": str(identity / "tls.key"),
    }
    from_environment = _run_process("--json", "status", environment=environment)
    assert from_environment.returncode == 0, from_environment.stderr
    assert json.loads(from_environment.stdout)["federation_id"] == FEDERATION
    # Flags replace the whole group: --insecure is not mixed with the environment's certificate.
    plaintext = _run_process("--insecure", "--call-timeout", "5", "status", environment=environment)
    assert plaintext.returncode == 1
    assert "UNAVAILABLE" in plaintext.stderr
    # ... and HEFL_ADMIN_INSECURE does not override a certificate given on the command line.
    flags_win = _run_process(
        "--identity",
        str(identity),
        "health",
        environment={"HEFL_ADMIN_ADDRESS": address, "HEFL_ADMIN_INSECURE": "1"},
    )
    assert flags_win.returncode == 0, flags_win.stderr
