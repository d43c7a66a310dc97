"""Enrolment verifiers: self-certifying ids and X.509 certificates from an enrolment CA."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from crypto.certs import SIGNING_KEY_URI_PREFIX, WORKER_URI_PREFIX
from crypto.committee import (
    RefusalError,
    SelfCertifyingVerifier,
    X509EnrollmentVerifier,
    build_roster,
    check_roster,
    credential_of,
    join_epoch,
    member_entry,
)
from crypto.committee.errors import BAD_SIGNATURE
from crypto.sealing import SealingKey
from crypto.signing import SigningKey
from hefl.v1 import common_pb2

NOW = datetime.datetime(2030, 6, 1, tzinfo=datetime.timezone.utc)


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class Authority:
    """An enrolment CA with an Ed25519 key."""

    def __init__(self, label: str = "hefl enrolment CA") -> None:
        self.label = label
        self.key = Ed25519PrivateKey.generate()
        self.certificate = (
            self._builder(name(label), self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, None)
        )

    def _builder(
        self, subject: x509.Name, public_key: Ed25519PublicKey | ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(name(self.label))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
        )

    def issue(
        self, worker: SigningKey, *, worker_id: str | None = None, use_san: bool = True
    ) -> bytes:
        """A device certificate as crypto.certs issues it: a TLS key, identity in SAN URIs."""
        named = worker_id or worker.worker_id
        tls_key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(name(named), tls_key.public_key()).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if use_san:
            uris = [
                x509.UniformResourceIdentifier(WORKER_URI_PREFIX + named),
                x509.UniformResourceIdentifier(SIGNING_KEY_URI_PREFIX + worker.public_bytes.hex()),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(uris), critical=False)
        return builder.sign(self.key, None).public_bytes(serialization.Encoding.DER)


def verifier(authority: Authority, now: datetime.datetime = NOW) -> X509EnrollmentVerifier:
    return X509EnrollmentVerifier(authority.certificate, clock=lambda: now)


def test_self_certifying_ids_must_be_derived_from_the_key() -> None:
    worker = SigningKey.generate()
    verify = SelfCertifyingVerifier().verify
    assert verify(credential_of(worker.public_bytes))
    mismatched = credential_of(worker.public_bytes)
    mismatched.worker_id = SigningKey.generate().worker_id
    assert not verify(mismatched)
    assert not verify(common_pb2.WorkerCredential(worker_id="ab", signing_public_key=b"ab"))


def test_a_certificate_issued_by_the_ca_for_the_key_is_accepted() -> None:
    authority = Authority()
    worker = SigningKey.generate()
    assert verifier(authority).verify(credential_of(worker.public_bytes, authority.issue(worker)))
    # A name alone does not bind the signing key: the SAN URIs must name both.
    by_name = authority.issue(worker, use_san=False)
    assert not verifier(authority).verify(credential_of(worker.public_bytes, by_name))


def test_a_certificate_from_another_ca_is_refused() -> None:
    worker = SigningKey.generate()
    impostor = Authority()  # same subject name as the real CA, other key
    certificate = impostor.issue(worker)
    assert not verifier(Authority()).verify(credential_of(worker.public_bytes, certificate))


def test_a_certificate_for_another_key_or_worker_is_refused() -> None:
    authority = Authority()
    worker, other = SigningKey.generate(), SigningKey.generate()
    check = verifier(authority).verify
    assert not check(credential_of(worker.public_bytes, authority.issue(other)))
    wrong_name = authority.issue(worker, worker_id=other.worker_id)
    assert not check(credential_of(worker.public_bytes, wrong_name))


def test_expired_missing_garbage_and_ca_certificates_are_refused() -> None:
    authority = Authority()
    worker = SigningKey.generate()
    certificate = authority.issue(worker)
    later = NOW + datetime.timedelta(days=31)
    assert not verifier(authority, later).verify(credential_of(worker.public_bytes, certificate))
    assert not verifier(authority).verify(credential_of(worker.public_bytes))
    assert not verifier(authority).verify(credential_of(worker.public_bytes, b"\x30\x03junk"))
    ca_der = authority.certificate.public_bytes(serialization.Encoding.DER)
    ca_public = authority.key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert not verifier(authority).verify(credential_of(ca_public, ca_der))


def test_a_roster_checked_against_the_ca_needs_every_member_enrolled() -> None:
    authority = Authority()
    keys = [SigningKey.generate() for _ in range(3)]
    certificates = [authority.issue(key) for key in keys[:2]] + [b""]
    entries = [
        member_entry(
            index + 1,
            credential_of(key.public_bytes, certificates[index]),
            join_epoch(key, SealingKey.generate().public_bytes, "fed", 1),
        )
        for index, key in enumerate(keys)
    ]
    roster = build_roster(
        federation_id="fed", epoch=1, profile=common_pb2.CRYPTO_PROFILE_ONESHOT, members=entries
    )
    with pytest.raises(RefusalError) as caught:
        check_roster(roster, verifier(authority))
    assert caught.value.code == BAD_SIGNATURE
    assert "member 3" in caught.value.detail
