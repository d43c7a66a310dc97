"""The AES-CTR CSPRNG."""

from __future__ import annotations

import numpy as np

from crypto.csprng import Csprng


def test_seeded_streams_are_reproducible_and_separated_by_purpose() -> None:
    a = Csprng.from_seed(b"seed", "rotation").uint64(8)
    b = Csprng.from_seed(b"seed", "rotation").uint64(8)
    c = Csprng.from_seed(b"seed", "mask").uint64(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unseeded_streams_differ() -> None:
    assert Csprng().bytes(32) != Csprng().bytes(32)


def test_uniform_floats_cover_the_unit_interval_evenly() -> None:
    values = Csprng().uniform(200_000)
    assert values.min() >= 0.0 and values.max() < 1.0
    counts, _ = np.histogram(values, bins=10, range=(0.0, 1.0))
    assert np.all(np.abs(counts - 20_000) < 1_000)  # > 7 sigma of the binomial spread
    assert Csprng().uniform_open(1000).min() > 0.0


def test_signs_are_balanced_and_permutations_are_permutations() -> None:
    signs = Csprng().signs(100_001)
    assert set(np.unique(signs).tolist()) == {-1, 1}
    assert abs(int(signs.sum())) < 2_000
    perm = Csprng().permutation(1000)
    assert np.array_equal(np.sort(perm), np.arange(1000))
