"""The CRS is derived from a public seed: deterministic, checkable, and usable for keys."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crypto.bgv import (
    FAST,
    PROVABLE,
    HeContext,
    KeyCeremonyError,
    check_crs,
    combine_seed_contributions,
    derive_crs,
    open_context,
)
from crypto.bgv.crs import a_polynomial, expand_uniform
from crypto.bgv.layout import find_towers

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fast() -> HeContext:
    return open_context(FAST)


def test_the_crs_is_a_deterministic_function_of_the_seed(fast: HeContext) -> None:
    seed = b"committee seed, 32 bytes long..."
    first = derive_crs(fast, seed)
    assert derive_crs(fast, seed) == first
    assert derive_crs(fast, seed[:-1] + b"!") != first
    towers = find_towers(first, fast.ring_dimension)
    assert len(towers) == 2
    a = np.frombuffer(a_polynomial(fast, first), dtype="<u8").astype(np.float64)
    q = fast.tower_moduli[0]
    assert abs(a.mean() / q - 0.5) < 0.02  # uniform mod q, not small or zero


def test_another_process_derives_the_same_crs_bytes(fast: HeContext) -> None:
    seed = os.urandom(32)
    script = (
        "import hashlib, sys\n"
        "from crypto.bgv import FAST, create_context, derive_crs\n"
        "ctx = create_context(FAST)\n"
        "print(hashlib.sha256(derive_crs(ctx, bytes.fromhex(sys.argv[1]))).hexdigest())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script, seed.hex()],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert out.stdout.strip() == hashlib.sha256(derive_crs(fast, seed)).hexdigest()


def test_a_tampered_or_chosen_crs_is_detected(fast: HeContext) -> None:
    seed = os.urandom(32)
    crs = derive_crs(fast, seed)
    check_crs(fast, seed, crs)
    a_tower = find_towers(crs, fast.ring_dimension)[1]
    tampered = bytearray(crs)
    tampered[a_tower.offset : a_tower.offset + 8] = (12345).to_bytes(8, "little")
    with pytest.raises(KeyCeremonyError, match="does not match"):
        check_crs(fast, seed, bytes(tampered))
    zero_a = bytearray(crs)
    zero_a[a_tower.offset : a_tower.offset + 8 * fast.ring_dimension] = bytes(
        8 * fast.ring_dimension
    )
    with pytest.raises(KeyCeremonyError):
        check_crs(fast, seed, bytes(zero_a))
    with pytest.raises(KeyCeremonyError):
        check_crs(fast, os.urandom(32), crs)
    with pytest.raises(KeyCeremonyError, match="128 bits"):
        derive_crs(fast, b"short")


def test_expansion_follows_the_documented_shake_128_rule() -> None:
    # An independent reading of docs/crypto-bgv.md: block (p, i) comes from
    # SHAKE-128("hefl.v1/bgv-crs" 0x00 label 0x00 p i seed), u64 LE words masked and rejected.
    q = (1 << 20) + 7 * (1 << 14) + 1  # a small modulus makes rejections frequent
    seed, n = b"s" * 32, 64
    blocks = expand_uniform(seed, b"fast", (q,), n, polys=2)
    for poly in range(2):
        stream = hashlib.shake_128(b"hefl.v1/bgv-crs\x00fast\x00" + bytes([poly, 0]) + seed)
        words = np.frombuffer(stream.digest(8 * 4 * n), dtype="<u8") & np.uint64((1 << 21) - 1)
        expected = words[words < q][:n]
        assert np.array_equal(blocks[poly], expected)
        assert blocks[poly].max() < q


def test_provable_crs_covers_all_four_towers() -> None:
    ctx = open_context(PROVABLE)
    crs = derive_crs(ctx, b"p" * 32)
    assert len(find_towers(crs, ctx.ring_dimension)) == 8
    assert crs == derive_crs(ctx, b"p" * 32)


def test_seed_contributions_combine_independently_of_order() -> None:
    one = combine_seed_contributions({1: b"a" * 32, 2: b"b" * 32})
    two = combine_seed_contributions({2: b"b" * 32, 1: b"a" * 32})
    assert one == two and len(one) == 32
    assert combine_seed_contributions({1: b"a" * 32, 2: b"c" * 32}) != one
    with pytest.raises(KeyCeremonyError):
        combine_seed_contributions({})
