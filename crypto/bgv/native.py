"""The only module of the facade that touches raw openfhe calls for (de)serialization."""

from __future__ import annotations

from typing import Any

import openfhe

# openfhe ships no type information; every native object crosses the facade as this alias and
# is wrapped in a typed dataclass before it leaves crypto.bgv.
Native = Any


def serialize(obj: Native) -> bytes:
    """Serializes any OpenFHE object (context, key, ciphertext) in the BINARY format."""
    data = openfhe.Serialize(obj, openfhe.BINARY)
    if isinstance(data, str):  # some wheel builds return str for BINARY; never seen here
        return data.encode("latin-1")
    return bytes(data)


def load_ciphertext(blob: bytes) -> Native:
    """Deserializes a BINARY ciphertext (its shape must have been checked first)."""
    return openfhe.DeserializeCiphertextString(blob, openfhe.BINARY)


def load_public_key(blob: bytes) -> Native:
    """Deserializes a BINARY public key."""
    return openfhe.DeserializePublicKeyString(blob, openfhe.BINARY)


def load_private_key(blob: bytes) -> Native:
    """Deserializes a BINARY private key."""
    return openfhe.DeserializePrivateKeyString(blob, openfhe.BINARY)


def load_context(blob: bytes) -> Native:
    """Deserializes a BINARY crypto context."""
    return openfhe.DeserializeCryptoContextString(blob, openfhe.BINARY)


def empty_private_key(native_context: Native) -> Native:
    """An empty private-key container bound to ``native_context``."""
    return openfhe.PrivateKey(native_context)


def canonical_ciphertext(obj: Native) -> bytes:
    """BINARY bytes of a ciphertext-like object in the one form every party reproduces.

    cereal writes a polynomial's parameters in full or as a back-reference depending on whether
    they are shared in memory with an object written earlier, which varies with how the inputs
    were obtained (generated or deserialized). After one deserialization they never are, so a
    round trip yields a canonical encoding whose shape the receiver can check byte for byte.
    """
    return serialize(load_ciphertext(serialize(obj)))
