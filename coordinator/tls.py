"""Mutual TLS for the coordinator: server credentials, and the device identity of a caller."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from coordinator.config import ConfigError, ServerConfig
from crypto.certs import CertificateError, DeviceIdentity, device_identity
from crypto.committee import EnrollmentVerifier, SelfCertifyingVerifier, X509EnrollmentVerifier

logger = logging.getLogger(__name__)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error}") from error


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """Credentials that require a client certificate from the device CA."""
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key, "server.tls_key"), _read(config.tls_cert, "server.tls_cert"))],
        root_certificates=_read(config.tls_client_ca, "server.tls_client_ca"),
        require_client_auth=True,
    )


def enrollment_verifier(config: ServerConfig) -> EnrollmentVerifier:
    """How the coordinator checks contributor credentials: against the device CA under TLS."""
    if config.insecure:
        return SelfCertifyingVerifier()
    ca = x509.load_pem_x509_certificate(_read(config.tls_client_ca, "server.tls_client_ca"))
    return X509EnrollmentVerifier(ca)


def peer_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> x509.Certificate | None:
    """The client certificate TLS verified for this call (None on a plaintext server)."""
    chain = list(context.auth_context().get("x509_pem_cert", ()))
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0])


def peer_identity(
    context: grpc.aio.ServicerContext[Any, Any],
) -> tuple[DeviceIdentity, bytes] | None:
    """The device identity of the caller's certificate and the certificate (DER).

    Raises:
        CertificateError: if the certificate names no well-formed hefl identity.
    """
    certificate = peer_certificate(context)
    if certificate is None:
        return None
    return device_identity(certificate), certificate.public_bytes(serialization.Encoding.DER)


__all__ = [
    "CertificateError",
    "enrollment_verifier",
    "peer_certificate",
    "peer_identity",
    "server_credentials",
]
