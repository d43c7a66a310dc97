"""The common reference string (the public polynomial ``a``) derived from a public seed.

Whoever picks ``a`` can break privacy (``a = 0`` makes encryption transparent), so no party
picks it: every member expands the committee's public seed with SHAKE-128 into uniform
coefficients, writes them over the coefficient blocks of a local ``KeyGen`` public key, and
round-trips the result through OpenFHE once so the bytes are canonical. Every member therefore
computes the same CRS bytes and can check anyone else's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from crypto.bgv import native
from crypto.bgv.context import HeContext
from crypto.bgv.errors import KeyCeremonyError
from crypto.bgv.layout import Tower, find_towers

CRS_KEY_TAG = "hefl-crs"
_DOMAIN = b"hefl.v1/bgv-crs\x00"


def combine_seed_contributions(contributions: Mapping[int, bytes]) -> bytes:
    """The CRS seed from every member's revealed random contribution (commit-then-reveal).

    Members first exchange SHA-256 commitments of 32 random bytes, then reveal them; as long as
    one member is honest the seed is uniform and nobody chose it.
    """
    if not contributions:
        raise KeyCeremonyError("no seed contributions")
    digest = hashlib.sha256(b"hefl.v1/bgv-crs-seed\x00")
    for index in sorted(contributions):
        value = contributions[index]
        digest.update(index.to_bytes(4, "little") + len(value).to_bytes(4, "little") + value)
    return digest.digest()


def expand_uniform(
    seed: bytes, label: bytes, moduli: tuple[int, ...], ring_dimension: int, polys: int
) -> list[npt.NDArray[np.uint64]]:
    """Expands ``seed`` into ``polys`` polynomials uniform mod each tower modulus.

    Block (p, i), polynomial p and tower i, is read from its own stream
    SHAKE-128(``_DOMAIN`` || label || 0x00 || u8 p || u8 i || seed) as little-endian u64 words;
    each word is masked to the bit length of q_i and kept if below q_i (rejection sampling, so
    the block is exactly uniform). The first N kept words are the block.

    Returns:
        One array of N coefficients per (polynomial, tower), polynomial-major.
    """
    blocks: list[npt.NDArray[np.uint64]] = []
    for poly in range(polys):
        for tower, modulus in enumerate(moduli):
            stream = hashlib.shake_128(_DOMAIN + label + b"\x00" + bytes([poly, tower]) + seed)
            mask = np.uint64((1 << modulus.bit_length()) - 1)
            words = 2 * ring_dimension + 64
            while True:
                # SHAKE output is prefix-stable: reading more words never changes earlier ones.
                raw = np.frombuffer(stream.digest(8 * words), dtype="<u8") & mask
                kept = raw[raw < np.uint64(modulus)]
                if kept.size >= ring_dimension:
                    blocks.append(kept[:ring_dimension].astype(np.uint64))
                    break
                words *= 2
    return blocks


def _overwrite(
    blob: bytearray, towers: tuple[Tower, ...], blocks: list[npt.NDArray[np.uint64]]
) -> None:
    for tower, block in zip(towers, blocks, strict=True):
        blob[tower.offset : tower.offset + 8 * block.size] = block.astype("<u8").tobytes()


def derive_crs(ctx: HeContext, seed: bytes) -> bytes:
    """The canonical CRS public-key bytes for ``seed`` in this context.

    Both polynomials (``b`` and ``a``) come from the seed; only ``a`` is used by star key
    generation, and a uniform ``b`` keeps the CRS from being a transparent key by mistake.
    """
    if len(seed) < 16:
        raise KeyCeremonyError("CRS seed must have at least 128 bits")
    template = ctx.native.KeyGen().publicKey
    template.SetKeyTag(CRS_KEY_TAG)
    blob = bytearray(native.serialize(template))
    towers = find_towers(bytes(blob), ctx.ring_dimension)
    if len(towers) != 2 * len(ctx.tower_moduli):
        raise KeyCeremonyError(f"public key template has {len(towers)} tower blocks")
    label = ctx.profile.name.encode()
    blocks = expand_uniform(seed, label, ctx.tower_moduli, ctx.ring_dimension, polys=2)
    _overwrite(blob, towers, blocks)
    # One round trip makes the bytes canonical (deserialization unshares the polynomials'
    # parameter objects, which changes their encoding once and then never again).
    return native.serialize(native.load_public_key(bytes(blob)))


def a_polynomial(ctx: HeContext, public_key_blob: bytes) -> bytes:
    """The coefficient bytes of the ``a`` polynomial of a serialized public key."""
    towers = find_towers(public_key_blob, ctx.ring_dimension)
    count = len(ctx.tower_moduli)
    if len(towers) != 2 * count:
        raise KeyCeremonyError(f"public key has {len(towers)} tower blocks, expected {2 * count}")
    block = 8 * ctx.ring_dimension
    return b"".join(public_key_blob[t.offset : t.offset + block] for t in towers[count:])


def check_crs(ctx: HeContext, seed: bytes, crs_blob: bytes) -> None:
    """Accepts a CRS only if it is exactly the one derived from ``seed``.

    Raises:
        KeyCeremonyError: if the bytes differ (a tampered or coordinator-chosen ``a``).
    """
    if crs_blob != derive_crs(ctx, seed):
        raise KeyCeremonyError("CRS does not match the one derived from the committee seed")
