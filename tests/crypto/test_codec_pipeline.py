"""End to end: encode on workers, sum the fields, decode on the coordinator."""

from __future__ import annotations

import doctest
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import crypto.codec.config
import crypto.codec.pipeline
from crypto.codec import (
    CodecConfig,
    CodecError,
    EncodedUpdate,
    SumMode,
    decode,
    encode,
    inflated_norm_bound,
    local_noise_variance,
    modular_sum_scale,
    rotation_for,
)
from crypto.csprng import Csprng

SEED = b"round-seed"


def _rng(label: str) -> Csprng:
    return Csprng.from_seed(b"codec-pipeline-tests", label)


def _sum(updates: list[EncodedUpdate], config: CodecConfig) -> npt.NDArray[np.int64]:
    total: npt.NDArray[np.int64] = np.sum(
        [update.fields.astype(np.int64) for update in updates], axis=0
    )
    # Mod-mode aggregators (SecAgg, masking) only know the sum mod 2^b.
    return total % config.modulus if config.sum_mode == "mod" else total


def _clip(values: npt.NDArray[np.float64], clip_norm: float) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(values))
    return values * (clip_norm / norm) if norm > clip_norm else values


@settings(max_examples=60, deadline=None)
@given(
    dim=st.integers(1, 400),
    bits=st.integers(4, 16),
    sum_mode=st.sampled_from(["mod", "exact"]),
    clients=st.integers(1, 6),
    clip_norm=st.sampled_from([0.01, 1.0, 50.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_decoded_mean_is_within_the_quantization_bound(
    dim: int, bits: int, sum_mode: SumMode, clients: int, clip_norm: float, seed: int
) -> None:
    # Largest integer magnitude M a rounded coordinate may take so that nothing clamps (exact
    # mode, per client) or wraps (mod mode, the sum): |coordinate| <= clip norm, so s = M / c.
    half = 1 << (bits - 1)
    largest = half - 1 if sum_mode == "exact" else (half - 1) // clients
    assume(largest >= 1)
    config = CodecConfig(
        bits=bits,
        sum_mode=sum_mode,
        clip_norm=clip_norm,
        scale=largest / clip_norm,
        parameter_count=dim,
        max_summands=clients,
    )
    rotation = rotation_for(config, SEED)
    generator = np.random.default_rng(seed)
    deltas = [
        (
            generator.standard_normal(dim) * clip_norm * generator.choice([0.01, 0.3, 3.0]) / 4
        ).astype(np.float32)
        for _ in range(clients)
    ]
    updates = [
        encode(delta, config, rotation, rng=_rng(f"{seed}-{i}")) for i, delta in enumerate(deltas)
    ]
    assert all(update.stats.clamped == 0 and update.stats.wrapped == 0 for update in updates)

    decoded = decode(_sum(updates, config), config, rotation, clients)

    expected = np.mean([_clip(delta.astype(np.float64), clip_norm) for delta in deltas], axis=0)
    # Each client's rounding error is below 1 per coordinate in integer units, so the summed
    # error is below n sqrt(P); the inverse rotation is orthogonal and dropping the padding only
    # shortens it, and unscaling plus averaging divide by s n.
    bound = math.sqrt(config.padded_length) / config.scale
    assert decoded.mean.shape == (dim,)
    assert np.linalg.norm(decoded.mean - expected) <= bound * (1 + 1e-9) + 1e-12 * clip_norm
    assert decoded.contributor_count == clients
    clipped = sum(np.linalg.norm(delta.astype(np.float64)) > clip_norm for delta in deltas)
    assert decoded.clipped_count == clipped
    assert decoded.counters_exact


def test_high_precision_round_trip_is_close_to_the_input() -> None:
    config = CodecConfig(
        bits=16,
        sum_mode="exact",
        clip_norm=10.0,
        scale=3000.0,
        parameter_count=3000,
        max_summands=1,
    )
    rotation = rotation_for(config, SEED)
    delta = np.random.default_rng(1).standard_normal(3000).astype(np.float32) * 0.1
    decoded = decode(
        encode(delta, config, rotation, rng=_rng("hp")).fields.astype(np.int64), config, rotation, 1
    )
    # Unconditional rounding error per coordinate has variance <= 1/4 (integer units).
    rms = float(np.sqrt(np.mean((decoded.mean - delta) ** 2)))
    assert rms < 0.5 / config.scale


def _single_coordinate_config(bits: int, clients: int) -> CodecConfig:
    # d = 1 and B = 1: the rotation is a public sign, so integer inputs round deterministically.
    return CodecConfig(
        bits=bits,
        sum_mode="mod",
        clip_norm=1000.0,
        scale=1.0,
        parameter_count=1,
        max_summands=clients,
        rotation_block_size=1,
    )


def test_mod_mode_sums_wrap_exactly_outside_the_centred_range() -> None:
    config = _single_coordinate_config(bits=4, clients=3)  # centred range [-8, 7]
    rotation = rotation_for(config, SEED)

    def mean_of(values: list[float]) -> float:
        updates = [encode(np.array([v]), config, rotation, rng=_rng(str(v))) for v in values]
        return float(decode(_sum(updates, config), config, rotation, len(values)).mean[0])

    assert mean_of([5.0]) == 5.0
    assert mean_of([2.0, 2.0, 3.0]) == 7.0 / 3  # sum 7: the top of the range
    assert mean_of([-3.0, -3.0, -2.0]) == -8.0 / 3  # sum -8: the bottom of the range
    assert mean_of([5.0, 5.0]) == (10.0 - 16.0) / 2  # sum 10 wraps to -6
    assert mean_of([-5.0, -4.0]) == (-9.0 + 16.0) / 2  # sum -9 wraps to 7


def test_exact_mode_clamps_and_counts_out_of_range_coordinates() -> None:
    config = CodecConfig(
        bits=4,
        sum_mode="exact",
        clip_norm=1000.0,
        scale=1.0,
        parameter_count=1,
        max_summands=2,
        rotation_block_size=1,
    )
    rotation = rotation_for(config, SEED)
    update = encode(np.array([20.0]), config, rotation, rng=_rng("clamp"))
    assert update.stats.clamped == 1
    decoded = decode(update.fields.astype(np.int64), config, rotation, 1)
    assert decoded.mean[0] in (7.0, 8.0)  # clamped to 7 or -8 before the public sign


def test_counters_sum_correctly_and_wrap_in_mod_mode_when_n_max_reaches_2_to_the_b() -> None:
    dim = 64
    for sum_mode, n_max in (("exact", 40), ("mod", 15), ("mod", 40)):
        config = CodecConfig(
            bits=4,
            sum_mode=sum_mode,  # type: ignore[arg-type]
            clip_norm=1.0,
            scale=0.5,
            parameter_count=dim,
            max_summands=n_max,
        )
        rotation = rotation_for(config, SEED)
        clients = min(n_max, 17)
        deltas = [np.full(dim, 0.5 if i % 3 == 0 else 0.01) for i in range(clients)]
        updates = [encode(d, config, rotation, rng=_rng(f"c{i}")) for i, d in enumerate(deltas)]
        assert [u.stats.clipped for u in updates] == [i % 3 == 0 for i in range(clients)]
        decoded = decode(_sum(updates, config), config, rotation, clients)
        clipped = sum(i % 3 == 0 for i in range(clients))
        if config.counters_exact:
            assert (decoded.contributor_count, decoded.clipped_count) == (clients, clipped)
        else:
            assert (decoded.contributor_count, decoded.clipped_count) == (clients % 16, clipped)
        assert decoded.counters_exact == (sum_mode == "exact" or n_max < 16)


def test_conditional_rounding_keeps_the_encoded_norm_within_the_inflated_bound() -> None:
    config = CodecConfig(
        bits=12,
        sum_mode="mod",
        clip_norm=1.0,
        scale=30.0,
        parameter_count=5000,
        max_summands=10,
        conditional_rounding_beta=math.exp(-0.5),
    )
    rotation = rotation_for(config, SEED)
    bound = inflated_norm_bound(config)
    for i in range(5):
        delta = np.random.default_rng(i).standard_normal(5000)
        stats = encode(delta, config, rotation, rng=_rng(f"cond{i}")).stats
        assert stats.clipped and stats.integer_norm <= bound
        assert not stats.rounding_fallback


def test_dp_noise_gives_the_predicted_error_on_the_decoded_mean() -> None:
    dim, clients, bits = 4000, 10, 16
    noise_std = 0.01  # per client, model units
    base = CodecConfig(
        bits=bits, sum_mode="mod", clip_norm=1.0, scale=1.0, parameter_count=dim, max_summands=20
    )
    scale = modular_sum_scale(
        bits, 1.0, base.padded_length, clients, local_noise_std=noise_std, num_std=4.0
    )
    config = CodecConfig(
        bits=bits,
        sum_mode="mod",
        clip_norm=1.0,
        scale=scale,
        parameter_count=dim,
        max_summands=20,
        local_noise_variance=local_noise_variance(noise_std, scale),
    )
    rotation = rotation_for(config, SEED)
    deltas = [np.random.default_rng(i).standard_normal(dim) * 0.01 for i in range(clients)]
    updates = [encode(d, config, rotation, rng=_rng(f"dp{i}")) for i, d in enumerate(deltas)]
    decoded = decode(_sum(updates, config), config, rotation, clients)

    error = decoded.mean - np.mean(deltas, axis=0)
    # Per coordinate of the mean: n Skellam noises of variance (s sigma)^2 plus n rounding errors
    # of variance in [0, 1/4] (integer units), divided by s n. The sample std of 4000 roughly
    # independent coordinates is within a few percent of the truth.
    noise_only = math.sqrt(clients * noise_std**2) / clients
    with_rounding = math.sqrt(clients * (noise_std**2 + 0.25 / scale**2)) / clients
    assert 0.95 * noise_only < float(error.std()) < 1.05 * with_rounding
    assert abs(float(error.mean())) < 6 * with_rounding / math.sqrt(dim)
    assert decoded.near_modulus_fraction < 1e-3


def test_fresh_randomness_makes_encodings_differ() -> None:
    config = CodecConfig(
        bits=16,
        sum_mode="mod",
        clip_norm=1.0,
        scale=100.0,
        parameter_count=500,
        max_summands=10,
        local_noise_variance=8.0,
    )
    rotation = rotation_for(config, SEED)
    delta = np.full(500, 0.01, dtype=np.float32)
    assert not np.array_equal(
        encode(delta, config, rotation).fields, encode(delta, config, rotation).fields
    )


def test_bad_inputs_are_rejected() -> None:
    config = CodecConfig(
        bits=8, sum_mode="exact", clip_norm=1.0, scale=10.0, parameter_count=100, max_summands=3
    )
    rotation = rotation_for(config, SEED)
    with pytest.raises(CodecError, match="shape"):
        encode(np.zeros(99), config, rotation)
    with pytest.raises(CodecError, match="NaN"):
        encode(np.full(100, np.nan), config, rotation)
    other = CodecConfig(
        bits=8, sum_mode="exact", clip_norm=1.0, scale=10.0, parameter_count=101, max_summands=3
    )
    with pytest.raises(CodecError, match="rotation"):
        encode(np.zeros(100), config, rotation_for(other, SEED))

    fields = encode(np.zeros(100), config, rotation, rng=_rng("bad")).fields.astype(np.int64)
    with pytest.raises(CodecError, match="contributor counter"):
        decode(fields, config, rotation, 2)
    with pytest.raises(CodecError, match="contributors must be"):
        decode(fields, config, rotation, 4)
    with pytest.raises(CodecError, match="field sums"):
        decode(fields[:-1], config, rotation, 1)
    corrupted = fields.copy()
    corrupted[0] = 256
    with pytest.raises(CodecError, match="outside"):
        decode(corrupted, config, rotation, 1)


def test_docstring_examples_run() -> None:
    for module in (crypto.codec.config, crypto.codec.pipeline):
        result = doctest.testmod(module, extraglobs={"np": np, "CodecConfig": CodecConfig})
        assert result.attempted > 0 and result.failed == 0, module.__name__
