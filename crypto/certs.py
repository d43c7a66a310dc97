"""A small enrolment authority: a local CA, the coordinator's TLS certificate, device certificates.

A device certificate carries an ECDSA P-256 key for mutual TLS (gRPC's TLS stack does not take
Ed25519 client certificates) and binds the device's hefl identity through two SAN URIs:
``urn:hefl:worker:<worker id>`` and ``urn:hefl:ed25519:<hex signing key>``. The coordinator
matches every call's TLS identity to its signed-call identity, and committee members check that
each contributor's credential was issued by the CA, so the coordinator cannot invent devices.

``python -m crypto.certs demo DIR --workers N`` writes a CA, a coordinator certificate for
localhost and N device identities; ``python -m crypto.certs worker --ca DIR STATE_DIR`` issues a
certificate for an existing device key.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.durable import write_durable
from crypto.signing import PUBLIC_KEY_BYTES, SigningKey, worker_id_for

WORKER_URI_PREFIX = "urn:hefl:worker:"
SIGNING_KEY_URI_PREFIX = "urn:hefl:ed25519:"
SIGNING_KEY_FILE = "signing.key"
"""Where a device keeps its signing key in its state folder (edge_worker.identity)."""
_VALIDITY = datetime.timedelta(days=365)


class CertificateError(ValueError):
    """A certificate does not carry a well-formed hefl identity."""


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate, both PEM."""

    key_pem: bytes
    cert_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def create_ca(common_name: str = "hefl enrolment authority") -> Issued:
    """A self-signed CA for one federation."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(common_name), _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(ca: Issued) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the CA key must be an ECDSA key")
    return key, x509.load_pem_x509_certificate(ca.cert_pem)


def issue_server(ca: Issued, hosts: Sequence[str]) -> Issued:
    """The coordinator's TLS certificate for ``hosts`` (DNS names or IP addresses)."""
    ca_key, ca_cert = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        _builder(_name(hosts[0]), ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def issue_worker(ca: Issued, signing_public_key: bytes) -> Issued:
    """A device certificate binding its hefl signing key (and worker id) to a TLS key."""
    if len(signing_public_key) != PUBLIC_KEY_BYTES:
        raise CertificateError("a device's signing key is 32 bytes (Ed25519)")
    ca_key, ca_cert = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    worker_id = worker_id_for(signing_public_key)
    cert = (
        _builder(_name(worker_id), ca_cert.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(WORKER_URI_PREFIX + worker_id),
                    x509.UniformResourceIdentifier(
                        SIGNING_KEY_URI_PREFIX + signing_public_key.hex()
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class DeviceIdentity:
    """The hefl identity a device certificate names."""

    worker_id: str
    signing_public_key: bytes


def device_identity(cert: x509.Certificate) -> DeviceIdentity:
    """Reads the worker id and signing key from a device certificate's SAN URIs.

    Raises:
        CertificateError: if either is missing, malformed, or they do not belong together.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as error:
        raise CertificateError("the certificate has no subject alternative names") from error
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    worker_ids = [u[len(WORKER_URI_PREFIX) :] for u in uris if u.startswith(WORKER_URI_PREFIX)]
    keys = [u[len(SIGNING_KEY_URI_PREFIX) :] for u in uris if u.startswith(SIGNING_KEY_URI_PREFIX)]
    if len(worker_ids) != 1 or len(keys) != 1:
        raise CertificateError("a device certificate names exactly one worker id and one key")
    try:
        signing_key = bytes.fromhex(keys[0])
    except ValueError as error:
        raise CertificateError("the signing-key URI is not hex") from error
    if len(signing_key) != PUBLIC_KEY_BYTES or worker_id_for(signing_key) != worker_ids[0]:
        raise CertificateError("the certificate's worker id does not derive from its key")
    return DeviceIdentity(worker_ids[0], signing_key)


def device_identity_from_pem(cert_pem: bytes) -> DeviceIdentity:
    """:func:`device_identity` of a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as error:
        raise CertificateError(f"not a PEM certificate: {error}") from error
    return device_identity(cert)


def write_issued(directory: Path, stem: str, issued: Issued) -> None:
    """Writes ``stem.pem`` and ``stem.key`` (the key readable by the owner only)."""
    from crypto.durable import write_durable

    write_durable(directory / f"{stem}.pem", issued.cert_pem)
    write_durable(directory / f"{stem}.key", issued.key_pem, private=True)


def read_issued(directory: Path, stem: str) -> Issued:
    """Reads what :func:`write_issued` wrote."""
    return Issued(
        (directory / f"{stem}.key").read_bytes(), (directory / f"{stem}.pem").read_bytes()
    )


def enrol_device(ca: Issued, state_dir: Path) -> DeviceIdentity:
    """Issues a certificate for the device key in ``state_dir`` (creating the key if needed)."""
    key_path = state_dir / SIGNING_KEY_FILE
    if key_path.exists():
        key = SigningKey.from_private_bytes(key_path.read_bytes())
    else:
        key = SigningKey.generate()
        write_durable(key_path, key.private_bytes(), private=True)
    issued = issue_worker(ca, key.public_bytes)
    write_issued(state_dir, "tls", issued)
    (state_dir / "ca.pem").write_bytes(ca.cert_pem)
    return DeviceIdentity(key.worker_id, key.public_bytes)


def demo(directory: Path, workers: int, hosts: Sequence[str]) -> None:
    """A CA, a coordinator certificate and ``workers`` enrolled device state folders."""
    ca = create_ca()
    write_issued(directory, "ca", ca)
    write_issued(directory, "coordinator", issue_server(ca, hosts))
    for index in range(workers):
        enrol_device(ca, directory / "workers" / f"worker-{index}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crypto.certs demo|worker ...``."""
    parser = argparse.ArgumentParser(prog="python -m crypto.certs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="CA, coordinator cert, N device identities")
    demo_parser.add_argument("directory", type=Path)
    demo_parser.add_argument("--workers", type=int, default=10)
    demo_parser.add_argument("--hosts", default="localhost,127.0.0.1")
    worker_parser = commands.add_parser("worker", help="certify an existing device key")
    worker_parser.add_argument("--ca", type=Path, required=True, help="folder of ca.pem/ca.key")
    worker_parser.add_argument("state_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.directory, args.workers, [h.strip() for h in args.hosts.split(",") if h.strip()])
        print(
            f"wrote a CA, a coordinator certificate and {args.workers} devices to {args.directory}"
        )
    else:
        identity = enrol_device(read_issued(args.ca, "ca"), args.state_dir)
        print(f"certified worker {identity.worker_id} in {args.state_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
