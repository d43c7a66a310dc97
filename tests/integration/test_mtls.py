"""Mutual TLS: only devices certified by the federation's CA connect, and the certificate, the
enrolment key and every call's signature must all be the same device.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.config import build_config
from coordinator.server import start
from crypto.call_auth import call_metadata
from crypto.certs import Issued, create_ca, issue_server, issue_worker, write_issued
from crypto.signing import SignatureTag, SigningKey
from edge_worker.runner import enrollment_proof_message
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import federation_service_pb2_grpc as fed_grpc
from tests.support.cluster import FEDERATION, coordinator_settings

SERVICE = "/hefl.v1.FederationService/"


def _settings(tmp_path: Path, ca: Issued) -> dict[str, str]:
    certs = tmp_path / "certs"
    write_issued(certs, "ca", ca)
    write_issued(certs, "coordinator", issue_server(ca, ["127.0.0.1"]))
    settings = coordinator_settings(tmp_path, 1000)
    del settings["server.insecure"]
    settings.update(
        {
            "server.tls_cert": str(certs / "coordinator.pem"),
            "server.tls_key": str(certs / "coordinator.key"),
            "server.tls_client_ca": str(certs / "ca.pem"),
        }
    )
    return settings


def _channel(address: str, ca: Issued, client: Issued | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=None if client is None else client.key_pem,
        certificate_chain=None if client is None else client.cert_pem,
    )
    return grpc.aio.secure_channel(address, credentials)


def _enroll_request(key: SigningKey) -> fed.EnrollWorkerRequest:
    now = int(time.time())
    return fed.EnrollWorkerRequest(
        federation_id=FEDERATION,
        signing_public_key=key.public_bytes,
        request_time=Timestamp(seconds=now),
        proof_of_possession=key.sign(
            SignatureTag.ENROLL, enrollment_proof_message(FEDERATION, key.public_bytes, now)
        ),
    )


async def test_only_certified_devices_connect_and_identities_must_agree(tmp_path: Path) -> None:
    ca = create_ca()
    coordinator = await start(build_config(overrides=_settings(tmp_path, ca)))
    address = coordinator.grpc_address
    alice, bob = SigningKey.generate(), SigningKey.generate()
    alice_cert, bob_cert = issue_worker(ca, alice.public_bytes), issue_worker(ca, bob.public_bytes)
    try:
        # A certified device enrols (its certificate is kept as its credential) and checks in.
        async with _channel(address, ca, alice_cert) as channel:
            stub = fed_grpc.FederationServiceStub(channel)
            enrolled = await stub.EnrollWorker(_enroll_request(alice), timeout=10)
            assert enrolled.worker_id == alice.worker_id
            worker = coordinator.store.get_worker(alice.worker_id)
            assert worker is not None and worker.enrollment_certificate  # DER, from the CA
            await stub.CheckIn(
                fed.CheckInRequest(federation_id=FEDERATION),
                metadata=call_metadata(alice, SERVICE + "CheckIn"),
                timeout=10,
            )
            # Bob's key cannot enrol over Alice's certificate.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.EnrollWorker(_enroll_request(bob), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with _channel(address, ca, bob_cert) as channel:
            stub = fed_grpc.FederationServiceStub(channel)
            await stub.EnrollWorker(_enroll_request(bob), timeout=10)
            # Bob's certificate cannot carry calls signed by Alice.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CheckIn(
                    fed.CheckInRequest(federation_id=FEDERATION),
                    metadata=call_metadata(alice, SERVICE + "CheckIn"),
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "another device" in (refused.value.details() or "")
        # No certificate, or one from another CA: the TLS handshake fails.
        stranger = issue_worker(create_ca(), SigningKey.generate().public_bytes)
        for client in (None, stranger):
            async with _channel(address, ca, client) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await fed_grpc.FederationServiceStub(channel).EnrollWorker(
                        _enroll_request(SigningKey.generate()), timeout=5
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert {w.worker_id for w in coordinator.store.list_workers()} == {
            alice.worker_id,
            bob.worker_id,
        }
    finally:
        await coordinator.stop()


async def test_insecure_mode_must_be_asked_for_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = coordinator_settings(tmp_path, 1000)
    coordinator = await start(build_config(overrides=settings))
    try:
        assert any("WITHOUT TLS" in record.getMessage() for record in caplog.records)
    finally:
        await coordinator.stop()


async def test_the_health_listener_serves_plaintext_probes_and_nothing_else(
    tmp_path: Path,
) -> None:
    ca = create_ca()
    settings = _settings(tmp_path, ca)
    settings["server.health_address"] = "127.0.0.1:0"
    coordinator = await start(build_config(overrides=settings))
    health_address = coordinator.health_address
    try:
        assert health_address and health_address != coordinator.grpc_address
        async with grpc.aio.insecure_channel(health_address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "hefl.v1.FederationService"):
                answer = await health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=5
                )
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            # The federation itself is not reachable without mutual TLS.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await fed_grpc.FederationServiceStub(channel).EnrollWorker(
                    _enroll_request(SigningKey.generate()), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            # A drain shows on the probe port too, before the listener goes away.
            await coordinator.health.enter_graceful_shutdown()
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await coordinator.stop()
