"""The seeded blockwise randomized Hadamard rotation."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.codec import Rotation, choose_block_size
from crypto.codec.rotation import hadamard_blocks, padded_length


def _hadamard_matrix(size: int) -> npt.NDArray[np.float64]:
    matrix: npt.NDArray[np.float64] = np.ones((1, 1))
    while matrix.shape[0] < size:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix / math.sqrt(size)


@pytest.mark.parametrize("size", [1, 2, 4, 64, 512])
def test_fast_transform_matches_the_sylvester_matrix(size: int) -> None:
    rows = np.random.default_rng(size).standard_normal((3, size))
    expected = rows @ _hadamard_matrix(size).T
    assert np.allclose(hadamard_blocks(rows.copy()), expected, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 300_000))
def test_block_size_keeps_padding_small(dim: int) -> None:
    block = choose_block_size(dim)
    assert block & (block - 1) == 0 and 1 <= block <= 4096
    assert padded_length(dim, block) - dim <= max(dim / 32, 16)
    # The next larger block would have padded too much (or is above the cap).
    assert block == 4096 or padded_length(dim, 2 * block) - dim > max(dim / 32, 16)


def test_large_models_use_full_blocks_with_tiny_padding() -> None:
    assert choose_block_size(1_018_174) == 4096
    assert padded_length(1_018_174, 4096) - 1_018_174 < 4096


@settings(max_examples=40, deadline=None)
@given(
    dim=st.integers(1, 3000),
    seed=st.binary(min_size=1, max_size=16),
    data=st.data(),
)
def test_rotation_is_orthogonal_and_exactly_invertible(
    dim: int, seed: bytes, data: st.DataObject
) -> None:
    block = data.draw(st.sampled_from([choose_block_size(dim), 1, 2, 256]))
    rotation = Rotation.from_seed(seed, dim, block)
    values = np.random.default_rng(dim).standard_normal(dim) * data.draw(
        st.sampled_from([1e-6, 1.0, 1e6])
    )
    rotated = rotation.forward(values)
    assert rotated.shape == (padded_length(dim, block),)
    assert np.isclose(np.linalg.norm(rotated), np.linalg.norm(values), rtol=1e-12)
    assert np.allclose(rotation.inverse(rotated), values, rtol=0, atol=1e-12 * np.abs(values).max())


def test_inverse_of_a_padded_vector_drops_padding_exactly() -> None:
    rotation = Rotation.from_seed(b"round-7", 100, 64)
    padded = np.random.default_rng(0).standard_normal(rotation.padded_length)
    back = rotation.inverse(padded)
    assert back.shape == (100,)
    # The inverse is the transpose: <R x, y> = <x, R^T y> for every x, y.
    probe = np.random.default_rng(1).standard_normal(100)
    assert np.isclose(rotation.forward(probe) @ padded, probe @ back, rtol=1e-12)


def test_rotation_is_reproducible_from_the_seed_and_differs_across_seeds() -> None:
    values = np.arange(1.0, 5001.0)
    first = Rotation.from_seed(b"seed", 5000, 1024).forward(values)
    again = Rotation.from_seed(b"seed", 5000, 1024).forward(values)
    other = Rotation.from_seed(b"other", 5000, 1024).forward(values)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_rotation_flattens_a_spike_over_its_block() -> None:
    spike = np.zeros(8192)
    spike[123] = 1.0
    rotated = Rotation.from_seed(b"s", 8192, 4096).forward(spike)
    # All the energy lands in one block, spread evenly: every coordinate there is ±1/64.
    magnitudes = np.sort(np.abs(rotated))
    assert np.allclose(magnitudes[-4096:], 1 / 64)
    assert np.allclose(magnitudes[:-4096], 0.0)


def test_rotation_makes_a_skewed_dense_vector_sub_gaussian() -> None:
    values = np.random.default_rng(3).exponential(size=50_000) ** 3  # heavy-tailed, all positive
    values /= np.linalg.norm(values)
    rotation = Rotation.from_seed(b"s", values.size, choose_block_size(values.size))
    rotated = rotation.forward(values)
    root_p = np.sqrt(rotation.padded_length)
    assert np.abs(values).max() * root_p > 30  # the input is far from flat
    # Given the block energies, each rotated coordinate is a Rademacher sum, so by Hoeffding
    # P(|y| > t * block_rms) <= 2 exp(-t^2 / 2). The permutation leaves every block within 2x of
    # its share of the energy here (0.2x to 1.8x), so the bound 9 / sqrt(P) means t >= 6.4, and a
    # union over 51k coordinates fails with probability < 2e-4.
    assert np.abs(rotated.reshape(-1, rotation.block_size) ** 2).sum(axis=1).max() < (
        2 * rotation.block_size / rotation.padded_length
    )
    assert np.abs(rotated).max() * root_p < 9


def test_bad_shapes_are_rejected() -> None:
    rotation = Rotation.from_seed(b"s", 10, 4)
    with pytest.raises(ValueError, match="shape"):
        rotation.forward(np.zeros(11))
    with pytest.raises(ValueError, match="shape"):
        rotation.inverse(np.zeros(10))
    with pytest.raises(ValueError, match="power of two"):
        Rotation.from_seed(b"s", 10, 3)
