"""Sealed boxes: messages only their recipient can open, relayed by an untrusted coordinator.

Construction: an ephemeral X25519 key per box, HKDF-SHA256 over the shared secret (salted with
both public keys), and ChaCha20-Poly1305 with caller-chosen associated data that binds the box to
its context (epoch, round, sender, recipient, upload digest). Tampering with the ciphertext or
presenting it in another context makes :func:`open_sealed` fail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
_HKDF_INFO = b"hefl.v1/sealed-box"


class SealingError(Exception):
    """A sealed box could not be opened: wrong key, wrong context or tampered bytes."""


@dataclass(frozen=True)
class SealedMessage:
    """The parts of a sealed box, as carried by ``hefl.v1.SealedBox``."""

    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class SealingKey:
    """A private X25519 key used to open boxes sealed to its public key."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> SealingKey:
        """Creates a fresh key from the operating system's CSPRNG."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> SealingKey:
        """Loads a key from its 32 raw private bytes."""
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """Returns the 32 raw private bytes (for the holder's own storage only)."""
        return self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def public_bytes(self) -> bytes:
        """The 32-byte raw public key that senders seal to."""
        return _raw_public(self.private.public_key())


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=_HKDF_INFO,
    )
    return hkdf.derive(shared)


def seal(recipient_public_key: bytes, plaintext: bytes, associated_data: bytes) -> SealedMessage:
    """Seals ``plaintext`` to the holder of ``recipient_public_key``.

    Args:
        recipient_public_key: The recipient's raw X25519 public key.
        plaintext: The message.
        associated_data: Context bound to the box; the recipient must present the same bytes.

    Returns:
        The ephemeral public key, nonce and ciphertext (with tag).
    """
    recipient = X25519PublicKey.from_public_bytes(recipient_public_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral.public_key())
    key = _derive_key(ephemeral.exchange(recipient), ephemeral_public, recipient_public_key)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated_data)
    return SealedMessage(ephemeral_public, nonce, ciphertext)


def open_sealed(key: SealingKey, sealed: SealedMessage, associated_data: bytes) -> bytes:
    """Opens a box sealed to ``key``.

    Raises:
        SealingError: if the box was not sealed to this key, was sealed for another context,
            or was altered.
    """
    if len(sealed.nonce) != NONCE_BYTES or len(sealed.ephemeral_public_key) != 32:
        raise SealingError("malformed sealed box")
    try:
        ephemeral = X25519PublicKey.from_public_bytes(sealed.ephemeral_public_key)
        shared = key.private.exchange(ephemeral)
    except ValueError as error:
        raise SealingError(f"bad ephemeral key: {error}") from error
    aead_key = _derive_key(shared, sealed.ephemeral_public_key, key.public_bytes)
    try:
        return ChaCha20Poly1305(aead_key).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
    except InvalidTag as error:
        raise SealingError("sealed box does not open with this key and context") from error
