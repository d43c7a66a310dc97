"""Scale selection for the DP-off and DP cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.codec import (
    CodecConfig,
    decode,
    encode,
    exact_mode_scale,
    local_noise_variance,
    modular_sum_scale,
    rotation_for,
)
from crypto.csprng import Csprng


@settings(max_examples=100, deadline=None)
@given(
    bits=st.integers(4, 24),
    clip_norm=st.floats(1e-3, 1e3),
    padded_length=st.integers(1, 1 << 24),
    clients=st.integers(1, 1000),
    noise_std=st.sampled_from([0.0, 1e-4, 0.1, 10.0]),
    num_std=st.sampled_from([2.0, 3.9, 4.0]),
    flatness=st.sampled_from([1.0, 2.0]),
)
def test_modular_scale_solves_the_ddg_heuristic(
    bits: int,
    clip_norm: float,
    padded_length: int,
    clients: int,
    noise_std: float,
    num_std: float,
    flatness: float,
) -> None:
    try:
        scale = modular_sum_scale(
            bits,
            clip_norm,
            padded_length,
            clients,
            local_noise_std=noise_std,
            num_std=num_std,
            flatness=flatness,
        )
    except ValueError:
        assert (1 << bits) <= num_std * math.sqrt(clients)
        return
    gamma = 1 / scale
    variance = flatness * (clip_norm * clients) ** 2 / padded_length + clients * (
        gamma**2 / 4 + noise_std**2
    )
    assert (2 * num_std / gamma) * math.sqrt(variance) == pytest.approx(1 << bits, rel=1e-9)


def test_more_noise_or_clients_means_a_coarser_grid() -> None:
    base = modular_sum_scale(16, 1.0, 1 << 20, 100)
    assert modular_sum_scale(16, 1.0, 1 << 20, 100, local_noise_std=1e-3) < base
    assert modular_sum_scale(16, 1.0, 1 << 20, 1000) < base
    assert modular_sum_scale(18, 1.0, 1 << 20, 100) > base


def test_exact_mode_scale_puts_num_std_at_the_field_edge() -> None:
    scale = exact_mode_scale(8, 2.0, 4096, num_std=4.0)
    assert scale * 4.0 * 2.0 / math.sqrt(4096) == pytest.approx(127)


def test_exact_mode_scale_clamps_only_the_far_tail_of_a_dense_update() -> None:
    dim = 20_000
    probe = CodecConfig(
        bits=8, sum_mode="exact", clip_norm=1.0, scale=1.0, parameter_count=dim, max_summands=1
    )
    config = CodecConfig(
        bits=8,
        sum_mode="exact",
        clip_norm=1.0,
        scale=exact_mode_scale(8, 1.0, probe.padded_length, num_std=3.0),
        parameter_count=dim,
        max_summands=1,
    )
    rotation = rotation_for(config, b"seed")
    delta = np.random.default_rng(0).standard_normal(dim)
    update = encode(delta, config, rotation, rng=Csprng.from_seed(b"scale", "tail"))
    # Rotated coordinates are close to N(0, 1/P); P(|N| > 3 sigma) = 0.0027, i.e. about 55 of
    # 20480. Between 20 and 110 allows for the binomial spread and the flatness of the rotation.
    assert 20 <= update.stats.clamped <= 110
    decoded = decode(update.fields.astype(np.int64), config, rotation, 1)
    clipped = delta / np.linalg.norm(delta)
    assert np.linalg.norm(decoded.mean - clipped) < 0.1


def test_bits_too_few_for_the_rounding_error_are_reported() -> None:
    with pytest.raises(ValueError, match="2\\^b > k sqrt\\(n\\)"):
        modular_sum_scale(4, 1.0, 1024, 16, num_std=4.0)
    with pytest.raises(ValueError, match="must be positive"):
        modular_sum_scale(8, 0.0, 1024, 10)


def test_noise_variance_is_converted_to_quantized_units() -> None:
    assert local_noise_variance(0.01, 300.0) == pytest.approx(9.0)
    assert local_noise_variance(0.0, 300.0) == 0.0
    with pytest.raises(ValueError):
        local_noise_variance(-1.0, 300.0)
