"""Clipping, (conditional) stochastic rounding and the integer <-> field map."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.codec import CodecConfig, inflated_norm_bound, rounding_norm_bound
from crypto.codec.quantize import (
    centre_sums,
    clip_l2,
    conditional_round,
    integer_norm,
    stochastic_round,
    to_fields,
)
from crypto.csprng import Csprng

BETA = math.exp(-0.5)


def _rng(label: str) -> Csprng:
    return Csprng.from_seed(b"codec-quantize-tests", label)


def test_clip_scales_long_vectors_to_the_clip_norm_and_keeps_short_ones() -> None:
    long = np.array([3.0, 4.0])
    clipped, norm, was_clipped = clip_l2(long, 1.0)
    assert was_clipped and norm == 5.0
    assert np.allclose(clipped, [0.6, 0.8])
    short, norm, was_clipped = clip_l2(long, 5.0)
    assert not was_clipped and np.array_equal(short, long)
    assert short is not long


def test_stochastic_rounding_is_unbiased_and_picks_a_neighbour() -> None:
    values = np.repeat(np.array([-2.75, -0.5, 0.1, 3.0, 7.9]), 40_000)
    rounded = stochastic_round(values, _rng("unbiased"))
    assert np.all((rounded == np.floor(values)) | (rounded == np.ceil(values)))
    means = rounded.reshape(5, -1).mean(axis=1)
    # Each mean is a Bernoulli average with standard error <= 0.5 / sqrt(40000) = 0.0025.
    assert np.allclose(means, [-2.75, -0.5, 0.1, 3.0, 7.9], atol=6 * 0.0025)


@settings(max_examples=60, deadline=None)
@given(
    dim=st.integers(1, 2000),
    magnitude=st.sampled_from([0.1, 3.0, 1000.0]),
    beta=st.sampled_from([BETA, 0.01, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_conditional_rounding_keeps_the_norm_within_the_ddg_bound(
    dim: int, magnitude: float, beta: float, seed: int
) -> None:
    values = np.random.default_rng(seed).standard_normal(dim) * magnitude
    result = conditional_round(values, beta, _rng(str(seed)), max_attempts=50)
    bound = rounding_norm_bound(float(np.linalg.norm(values)), dim, beta)
    assert integer_norm(result.values) <= bound
    assert np.all(np.abs(result.values - values) < 1)
    assert 1 <= result.attempts <= 50


def test_conditional_bound_is_tighter_than_the_unconditional_one_for_large_d() -> None:
    norm, dim = 1000.0, 1 << 20
    assert rounding_norm_bound(norm, dim, 0.0) == norm + 1024
    conditional = rounding_norm_bound(norm, dim, BETA)
    assert conditional == pytest.approx(math.sqrt(norm**2 + dim / 4 + (norm + 512)))
    assert conditional < norm + 1024


def test_rejected_draws_are_retried_and_the_fallback_rounds_toward_zero() -> None:
    # Every fractional part is 1/2, so ||round(x)||^2 = ||x||^2 + d/4 + 2 <e, x>: with beta
    # close to 1 the bound is ||x||^2 + d/4 plus almost nothing and about half the draws fail.
    values = np.arange(-50, 50, dtype=np.float64) + 0.5
    beta = 1 - 1e-9
    outcomes = [conditional_round(values, beta, _rng(f"f{i}"), max_attempts=1) for i in range(40)]
    fallbacks = [result for result in outcomes if result.fell_back]
    assert 5 <= len(fallbacks) <= 35
    for result in fallbacks:
        assert np.array_equal(result.values, np.trunc(values))
    bound = rounding_norm_bound(float(np.linalg.norm(values)), values.size, beta)
    assert all(integer_norm(result.values) <= bound for result in outcomes)
    retried = [conditional_round(values, beta, _rng(f"r{i}"), max_attempts=60) for i in range(20)]
    assert not any(result.fell_back for result in retried)
    assert any(result.attempts > 1 for result in retried)
    assert all(integer_norm(result.values) <= bound for result in retried)


def test_unconditional_rounding_is_one_draw() -> None:
    result = conditional_round(np.array([0.5, 1.5]), 0.0, _rng("one"), max_attempts=5)
    assert (result.attempts, result.fell_back) == (1, False)


def test_inflated_bound_agrees_with_the_privacy_module() -> None:
    sensitivity = pytest.importorskip("crypto.privacy.sensitivity")
    for beta in (0.0, BETA):
        config = CodecConfig(
            bits=16,
            sum_mode="mod",
            clip_norm=0.7,
            scale=3000.0,
            parameter_count=100_000,
            max_summands=100,
            conditional_rounding_beta=beta,
        )
        expected = sensitivity.rounded_l2_sensitivity(0.7, 3000.0, config.padded_length, beta)
        assert inflated_norm_bound(config) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    bits=st.integers(4, 16),
    clients=st.lists(
        st.lists(st.integers(-(2**20), 2**20), min_size=3, max_size=3), min_size=1, max_size=20
    ),
)
def test_mod_fields_sum_to_the_integer_sum_mod_two_to_the_b(
    bits: int, clients: list[list[int]]
) -> None:
    values = np.array(clients, dtype=np.int64)
    field_sums = sum(to_fields(row, bits, "mod")[0].astype(np.int64) for row in values)
    centred = centre_sums(np.asarray(field_sums), bits, "mod", len(clients))
    modulus, half = 1 << bits, 1 << (bits - 1)
    true_sum = values.sum(axis=0)
    assert np.array_equal(centred, (true_sum + half) % modulus - half)
    in_range = (true_sum >= -half) & (true_sum < half)
    assert np.array_equal(centred[in_range], true_sum[in_range])


@settings(max_examples=100, deadline=None)
@given(
    bits=st.integers(4, 16),
    clients=st.lists(
        st.lists(st.integers(-(2**17), 2**17), min_size=4, max_size=4), min_size=1, max_size=20
    ),
)
def test_exact_fields_clamp_and_sum_without_wrapping(bits: int, clients: list[list[int]]) -> None:
    half = 1 << (bits - 1)
    values = np.array(clients, dtype=np.int64)
    encoded = [to_fields(row, bits, "exact") for row in values]
    for (fields, clamped), row in zip(encoded, values, strict=True):
        assert fields.dtype == np.uint16 and int(fields.max()) < 1 << bits
        assert clamped == int(np.count_nonzero((row < -half) | (row > half - 1)))
    field_sums = np.sum([fields.astype(np.int64) for fields, _ in encoded], axis=0)
    centred = centre_sums(field_sums, bits, "exact", len(clients))
    assert np.array_equal(centred, np.clip(values, -half, half - 1).sum(axis=0))


def test_mod_fields_are_twos_complement() -> None:
    fields, wrapped = to_fields(np.array([-1, -8, 7, 8, 0]), 4, "mod")
    assert fields.tolist() == [15, 8, 7, 8, 0]
    assert wrapped == 1
