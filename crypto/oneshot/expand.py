r"""The public polynomials a_j: SHAKE-128 of the round descriptor digest and the block index.

Input to SHAKE-128 for block j (all integers little-endian)::

    b"hefl.v1/oneshot/public-a\x00"   25 bytes, domain separator
    descriptor_sha256                  32 bytes, SHA-256 of the signed RoundDescriptor bytes
    n                                  u32, ring dimension
    k                                  u8, log2 q
    j                                  u64, block index

The first n * ceil(k/8) output bytes are read as n little-endian ceil(k/8)-byte integers and
reduced mod 2^k (exactly uniform: 2^k divides 2^(8 ceil(k/8))). The a_j are never sent; the
client and the coordinator expand them from the same signed descriptor.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import numpy.typing as npt

from crypto.oneshot.binding import RoundBinding
from crypto.oneshot.params import OneshotParams

DOMAIN = b"hefl.v1/oneshot/public-a\x00"


def expand_public(
    binding: RoundBinding, params: OneshotParams, first_block: int, count: int
) -> npt.NDArray[np.uint64]:
    """Expands a_j for j in [first_block, first_block + count).

    Args:
        binding: The verified round.
        params: The parameter set (n and k).
        first_block: Index of the first block.
        count: Number of blocks.

    Returns:
        Shape (count, n), uniform values in [0, 2^k).
    """
    if first_block < 0 or count < 0:
        raise ValueError(f"bad block range {first_block} + {count}")
    n, k = params.ring_dimension, params.modulus_bits
    width = -(-k // 8)
    prefix = hashlib.shake_128(DOMAIN + binding.descriptor_sha256 + struct.pack("<IB", n, k))
    chunks = []
    for j in range(first_block, first_block + count):
        xof = prefix.copy()
        xof.update(struct.pack("<Q", j))
        chunks.append(xof.digest(n * width))
    raw = b"".join(chunks)
    if width in (1, 2, 4, 8):
        values = np.frombuffer(raw, dtype=f"<u{width}").astype(np.uint64)
    else:
        padded = np.zeros((count * n, 8), dtype=np.uint8)
        padded[:, :width] = np.frombuffer(raw, dtype=np.uint8).reshape(count * n, width)
        values = padded.view("<u8").reshape(count * n).astype(np.uint64)
    if k < 64:
        values &= np.uint64((1 << k) - 1)
    return values.reshape(count, n)
