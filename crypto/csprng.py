"""Vectorised randomness from a cryptographically secure generator.

numpy's generators (PCG64, Philox) are not CSPRNGs, and DP noise and mask secrets must not be
predictable from earlier outputs. :class:`Csprng` expands a 256-bit key with AES-256-CTR (through
``cryptography``) into numpy arrays. A fresh instance is keyed from ``os.urandom``; a seeded one
(for public, reproducible values such as rotation signs derived from a round seed) is keyed from
SHA-256 of a domain-separated seed.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_KEY_BYTES = 32


class Csprng:
    """AES-256-CTR keystream as a source of uniform integers and floats."""

    def __init__(self, key: bytes | None = None) -> None:
        """Creates a generator keyed by ``key`` (32 bytes) or by the OS CSPRNG."""
        key = os.urandom(_KEY_BYTES) if key is None else key
        if len(key) != _KEY_BYTES:
            raise ValueError(f"Csprng key must be {_KEY_BYTES} bytes, got {len(key)}")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    @classmethod
    def from_seed(cls, seed: bytes, purpose: str) -> Csprng:
        """A deterministic generator for public randomness derived from a round seed.

        Args:
            seed: Public seed (for example the committee's round seed).
            purpose: Domain separator, so two uses of one seed give independent streams.
        """
        return cls(hashlib.sha256(b"hefl.v1/csprng/" + purpose.encode() + b"\x00" + seed).digest())

    def bytes(self, count: int) -> bytes:
        """Returns ``count`` keystream bytes."""
        return self._encryptor.update(bytes(count))

    def uint64(self, count: int) -> npt.NDArray[np.uint64]:
        """Returns ``count`` uniform 64-bit unsigned integers."""
        return np.frombuffer(self.bytes(8 * count), dtype="<u8").astype(np.uint64)

    def uint32(self, count: int) -> npt.NDArray[np.uint32]:
        """Returns ``count`` uniform 32-bit unsigned integers."""
        return np.frombuffer(self.bytes(4 * count), dtype="<u4").astype(np.uint32)

    def uniform(self, count: int) -> npt.NDArray[np.float64]:
        """Returns ``count`` uniform doubles in [0, 1) with 53 random bits each."""
        return (self.uint64(count) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)

    def uniform_open(self, count: int) -> npt.NDArray[np.float64]:
        """Returns ``count`` uniform doubles in (0, 1), safe for logarithms."""
        # 52 bits: k + 0.5 stays exactly representable up to 2^52 - 0.5, so 1.0 never occurs.
        return ((self.uint64(count) >> np.uint64(12)).astype(np.float64) + 0.5) * (1.0 / 2**52)

    def signs(self, count: int) -> npt.NDArray[np.int8]:
        """Returns ``count`` uniform values in {-1, +1}."""
        bits = np.unpackbits(np.frombuffer(self.bytes((count + 7) // 8), dtype=np.uint8))
        return (bits[:count].astype(np.int8) * 2 - 1).astype(np.int8)

    def permutation(self, count: int) -> npt.NDArray[np.int64]:
        """Returns a uniformly random permutation of ``range(count)``."""
        # Sorting by 64-bit random keys: collisions have probability ~count^2 / 2^65.
        return np.argsort(self.uint64(count), kind="stable").astype(np.int64)
