r"""Ed25519 identities and domain-separated signatures.

Every signature in hefl covers ``b"hefl.v1/" + tag + b"\\x00" + message``, so a signature made
for one purpose (say an upload statement) can never be replayed as another (a round descriptor).
The tags are listed in :class:`SignatureTag` and in docs/protocol.md.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class SignatureTag(enum.Enum):
    """What a signature is for; part of the signed bytes."""

    CALL = "call"
    ENROLL = "enroll"
    ROUND_DESCRIPTOR = "round-descriptor"
    ROSTER = "roster"
    SEALING_KEY = "sealing-key"
    JOINT_PUBLIC_KEY = "joint-public-key"
    UPLOAD_STATEMENT = "upload-statement"
    CONTRIBUTOR_SET = "contributor-set"
    COMMITTEE_OUTPUT = "committee-output"


def signed_bytes(tag: SignatureTag, message: bytes) -> bytes:
    """Returns the exact bytes an Ed25519 signature with ``tag`` covers."""
    return b"hefl.v1/" + tag.value.encode() + b"\x00" + message


def worker_id_for(public_key: bytes) -> str:
    """Derives a worker id from its signing key: hex of the first 16 bytes of SHA-256."""
    return hashlib.sha256(public_key).digest()[:16].hex()


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key with its raw public key."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """Creates a fresh key from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> SigningKey:
        """Loads a key from its 32 raw private bytes."""
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """Returns the 32 raw private bytes (for the device's own key file only)."""
        return self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def public_bytes(self) -> bytes:
        """The 32-byte raw public key."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def worker_id(self) -> str:
        """The worker id derived from the public key."""
        return worker_id_for(self.public_bytes)

    def sign(self, tag: SignatureTag, message: bytes) -> bytes:
        """Signs ``message`` for the purpose ``tag``."""
        return self.private.sign(signed_bytes(tag, message))


def verify(public_key: bytes, tag: SignatureTag, message: bytes, signature: bytes) -> bool:
    """Checks an Ed25519 signature made with :meth:`SigningKey.sign`; never raises."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed_bytes(tag, message))
    except (InvalidSignature, ValueError):
        return False
    return True
