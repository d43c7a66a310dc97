"""The device's TLS credentials and how it checks other devices' enrolment credentials."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from crypto.committee import EnrollmentVerifier, SelfCertifyingVerifier, X509EnrollmentVerifier
from edge_worker.config import WorkerConfig

logger = logging.getLogger(__name__)

# What `python -m crypto.certs worker --ca DIR STATE_DIR` writes into a device's state folder.
DEFAULT_FILES = {"ca": "ca.pem", "cert": "tls.pem", "key": "tls.key"}


class TlsConfigError(ValueError):
    """The device has neither TLS credentials nor an explicit permission to run without."""


@dataclass(frozen=True)
class ClientTls:
    """PEM bytes of the device CA, the device certificate and its key."""

    ca: bytes
    cert: bytes
    key: bytes


def _path(explicit: str, state_dir: Path, name: str) -> Path:
    return Path(explicit) if explicit else state_dir / DEFAULT_FILES[name]


def client_tls(config: WorkerConfig) -> ClientTls | None:
    """The device's mutual-TLS credentials, or None when it runs insecure by explicit choice.

    Raises:
        TlsConfigError: if credentials are missing and ``insecure`` was not asked for.
    """
    state = Path(config.state_dir)
    paths = {
        "ca": _path(config.tls_ca, state, "ca"),
        "cert": _path(config.tls_cert, state, "cert"),
        "key": _path(config.tls_key, state, "key"),
    }
    if config.insecure:
        logger.warning("connecting WITHOUT TLS (--insecure): for loopback demos and tests only")
        return None
    missing = [str(path) for path in paths.values() if not path.exists()]
    if missing:
        raise TlsConfigError(
            f"no TLS credentials ({', '.join(missing)} missing): have the federation's enrolment"
            " authority certify this device (python -m crypto.certs worker --ca CA_DIR"
            f" {state}), or pass --insecure on a trusted loopback network"
        )
    return ClientTls(
        paths["ca"].read_bytes(), paths["cert"].read_bytes(), paths["key"].read_bytes()
    )


def enrollment_verifier(config: WorkerConfig) -> EnrollmentVerifier:
    """Checks other devices' credentials against the device CA when the device has one."""
    tls = None if config.insecure else client_tls(config)
    if tls is None:
        return SelfCertifyingVerifier()
    return X509EnrollmentVerifier(x509.load_pem_x509_certificate(tls.ca))
