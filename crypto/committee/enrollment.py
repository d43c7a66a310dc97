"""Enrolment verification: does a credential bind this worker id to this signing key?

Two verifiers implement :class:`EnrollmentVerifier`:

- :class:`SelfCertifyingVerifier` (token-enrolment mode) only checks that the worker id is derived
  from the key. Anyone can mint such identities, so sybil resistance then rests entirely on the
  coordinator's enrolment, which a malicious coordinator controls: it can fill a round with
  identities of its own and isolate one honest update. Use it for trusted-coordinator
  deployments and tests.
- :class:`X509EnrollmentVerifier` (mTLS mode) checks a DER certificate issued by an enrolment
  authority the coordinator does not control; this is what makes ``min_contributors`` mean
  "distinct real clients" against a malicious coordinator.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from crypto.certs import CertificateError, DeviceIdentity, device_identity
from crypto.signing import PUBLIC_KEY_BYTES, worker_id_for
from hefl.v1 import common_pb2


class EnrollmentVerifier(Protocol):
    """Decides whether a credential is an enrolled worker's."""

    def verify(self, credential: common_pb2.WorkerCredential) -> bool:
        """Returns True if the credential binds its worker id to its signing key; never raises."""
        ...


def _self_certifies(credential: common_pb2.WorkerCredential) -> bool:
    key = credential.signing_public_key
    return len(key) == PUBLIC_KEY_BYTES and credential.worker_id == worker_id_for(key)


class SelfCertifyingVerifier:
    """Accepts any credential whose worker id is derived from its signing key (token mode)."""

    def verify(self, credential: common_pb2.WorkerCredential) -> bool:
        """Returns True if ``worker_id == worker_id_for(signing_public_key)``."""
        return _self_certifies(credential)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class X509EnrollmentVerifier:
    """Accepts credentials carrying a certificate that the enrolment CA issued for this key.

    The certificate must be issued directly by the CA (one level, no intermediates), be within
    its validity period, not be a CA itself, and name this worker id and this Ed25519 signing key
    as SAN URIs (``urn:hefl:worker:<id>``, ``urn:hefl:ed25519:<hex key>``; see crypto.certs: the
    certificate's own key is the device's ECDSA TLS key). The worker id must also be derived from
    the key, as everywhere else. Revocation is not checked; rotate the CA or shorten certificate
    lifetimes instead.
    """

    def __init__(
        self,
        ca_certificate: x509.Certificate,
        *,
        clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        """Creates a verifier trusting ``ca_certificate``; ``clock`` gives the current UTC time."""
        self._ca = ca_certificate
        self._clock = clock

    def verify(self, credential: common_pb2.WorkerCredential) -> bool:
        """Returns True if the credential's certificate binds its worker id to its key."""
        if not _self_certifies(credential) or not credential.enrollment_certificate:
            return False
        try:
            certificate = x509.load_der_x509_certificate(credential.enrollment_certificate)
        except ValueError:
            return False
        # Malformed extensions surface as ValueError only when read; they mean "not enrolled".
        try:
            return (
                self._issued_by_ca(certificate)
                and self._currently_valid(certificate)
                and not _is_ca(certificate)
                and device_identity(certificate)
                == DeviceIdentity(credential.worker_id, credential.signing_public_key)
            )
        except (ValueError, CertificateError):
            return False

    def _issued_by_ca(self, certificate: x509.Certificate) -> bool:
        try:
            certificate.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _currently_valid(self, certificate: x509.Certificate) -> bool:
        now = self._clock()
        return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def credential_of(
    signing_public_key: bytes, enrollment_certificate: bytes = b""
) -> common_pb2.WorkerCredential:
    """Builds the credential of a worker from its signing key (and certificate, in mTLS mode)."""
    return common_pb2.WorkerCredential(
        worker_id=worker_id_for(signing_public_key),
        signing_public_key=signing_public_key,
        enrollment_certificate=enrollment_certificate,
    )
