"""Locates RNS tower coefficients inside OpenFHE's BINARY (cereal) blobs and checks blob shapes.

OpenFHE writes each tower of a polynomial as ``u64 N``, then N little-endian u64 coefficients,
then the ``u64`` tower modulus. Everything else in a ciphertext blob (the embedded context
parameters, key tag, metadata) is identical for every ciphertext of one context and key, so a
blob is well formed exactly when its non-coefficient bytes equal those of a locally made
reference and every coefficient is below its modulus.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from crypto.bgv.errors import CiphertextRejectedError

_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class Tower:
    """One tower's coefficient block inside a blob."""

    offset: int
    modulus: int


def _plausible_modulus(modulus: int, ring_dimension: int) -> bool:
    # NTT-friendly tower primes are 1 mod 2N; random coefficient bytes almost never are.
    return 1 << 16 < modulus < 1 << 62 and modulus % (2 * ring_dimension) == 1


def find_towers(blob: bytes, ring_dimension: int) -> tuple[Tower, ...]:
    """Finds every tower block of ring dimension ``ring_dimension``, in blob order."""
    towers: list[Tower] = []
    marker = _U64.pack(ring_dimension)
    block = 8 * ring_dimension
    start = 0
    while (found := blob.find(marker, start)) >= 0:
        data = found + 8
        end = data + block
        if end + 8 <= len(blob):
            modulus = _U64.unpack_from(blob, end)[0]
            if _plausible_modulus(modulus, ring_dimension):
                values = np.frombuffer(blob, dtype="<u8", count=ring_dimension, offset=data)
                if not np.any(values >= np.uint64(modulus)):
                    towers.append(Tower(data, modulus))
                    start = end + 8
                    continue
        start = found + 1
    return tuple(towers)


def describe_blob(blob: bytes) -> str:
    """A short human description of what a (possibly foreign) blob contains."""
    for log_n in range(10, 18):
        towers = find_towers(blob, 1 << log_n)
        if towers:
            bits = [t.modulus.bit_length() for t in towers]
            return (
                f"{len(blob)} bytes, ring dimension {1 << log_n}, coefficient blocks "
                f"(one per polynomial and tower) of bits {bits}"
            )
    return f"{len(blob)} bytes with no recognisable OpenFHE polynomial"


@dataclass(frozen=True)
class BlobShape:
    """The exact shape every blob of one kind (say, an upload ciphertext) must have."""

    kind: str
    reference: bytes
    ring_dimension: int
    towers: tuple[Tower, ...]

    @classmethod
    def of(cls, kind: str, reference: bytes, ring_dimension: int) -> BlobShape:
        """Derives the shape from a locally produced, trusted blob."""
        towers = find_towers(reference, ring_dimension)
        if not towers:
            raise ValueError(f"no tower blocks of ring dimension {ring_dimension} in {kind}")
        return cls(kind, reference, ring_dimension, towers)

    @property
    def expected(self) -> str:
        """What a well-formed blob looks like, for error messages."""
        bits = [t.modulus.bit_length() for t in self.towers]
        return (
            f"{len(self.reference)} bytes, ring dimension {self.ring_dimension}, "
            f"coefficient blocks (one per polynomial and tower) of bits {bits}"
        )

    def check(self, blob: bytes) -> None:
        """Accepts ``blob`` only if it has exactly this shape.

        Raises:
            CiphertextRejectedError: naming what differs.
        """
        if len(blob) != len(self.reference):
            raise CiphertextRejectedError(
                f"{self.kind} refused: got {describe_blob(blob)}; expected {self.expected}"
            )
        block = 8 * self.ring_dimension
        cursor = 0
        for tower in self.towers:
            if blob[cursor : tower.offset] != self.reference[cursor : tower.offset]:
                raise CiphertextRejectedError(
                    f"{self.kind} refused: header bytes {cursor}..{tower.offset} differ from this "
                    f"context and key (another context, parameters or key?); "
                    f"got {describe_blob(blob)}"
                )
            values = np.frombuffer(
                blob, dtype="<u8", count=self.ring_dimension, offset=tower.offset
            )
            if np.any(values >= np.uint64(tower.modulus)):
                raise CiphertextRejectedError(
                    f"{self.kind} refused: coefficients at byte {tower.offset} exceed their modulus"
                )
            cursor = tower.offset + block
        if blob[cursor:] != self.reference[cursor:]:
            raise CiphertextRejectedError(
                f"{self.kind} refused: trailer bytes differ from this context"
            )
