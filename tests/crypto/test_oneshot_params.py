"""Oneshot parameter sets: the modes, the defaults the note measured, and the validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.oneshot import BindingError, OneshotParams, ParameterError, RoundBinding, SumMode
from crypto.oneshot.params import decode_noise_bound, default_shift_bits
from hefl.v1 import common_pb2
from tests.crypto.test_oneshot_fixtures import make_descriptor


def test_mod_mode_b16_is_the_measured_23_bit_set() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 100)
    assert (params.shift_bits, params.modulus_bits) == (7, 32)
    assert (params.sum_bits, params.rounded_modulus_bits, params.gap_bits) == (16, 23, 9)
    assert params.ring_dimension == 2048
    assert params.secret_stddev == 4.5
    assert params.error_stddev == pytest.approx(6.36, abs=0.01)
    assert params.share_field_modulus == 2**31 - 1
    assert params.decode_margin > 10


def test_exact_mode_b16_needs_headroom_and_q_2_39() -> None:
    params = OneshotParams.create(SumMode.EXACT, 16, 100)
    assert params.sum_bits == math.ceil(math.log2(100 * (2**16 - 1) + 1)) == 23
    assert (params.rounded_modulus_bits, params.modulus_bits) == (30, 39)


def test_approx_mode_needs_the_explicit_flag() -> None:
    with pytest.raises(ParameterError, match="allow_approx"):
        OneshotParams.create(SumMode.APPROX, 16, 100)
    params = OneshotParams.create(SumMode.APPROX, 16, 100, allow_approx=True)
    assert (params.shift_bits, params.rounded_modulus_bits, params.modulus_bits) == (2, 18, 32)


def test_too_small_a_shift_is_rejected_with_the_bound() -> None:
    with pytest.raises(ParameterError, match=r"do not decode 100 summands exactly"):
        OneshotParams(SumMode.MOD, bits=16, max_summands=100, shift_bits=6, modulus_bits=32)


def test_too_small_a_gap_is_rejected() -> None:
    # d = 7 for 100 summands but q/q' = 2: the error sum is not absorbed.
    with pytest.raises(ParameterError, match="exactly"):
        OneshotParams(SumMode.MOD, bits=16, max_summands=100, shift_bits=7, modulus_bits=24)


def test_q_beyond_the_he_standard_bound_is_rejected() -> None:
    with pytest.raises(ParameterError, match="HE-standard"):
        OneshotParams(SumMode.MOD, bits=16, max_summands=100, shift_bits=7, modulus_bits=57)
    with pytest.raises(ParameterError, match="HE-standard"):
        OneshotParams.create(SumMode.EXACT, 32, 1000)
    with pytest.raises(ParameterError, match="HE-standard"):
        OneshotParams(
            SumMode.MOD,
            bits=16,
            max_summands=100,
            shift_bits=7,
            modulus_bits=32,
            ring_dimension=1024,
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("secret_stddev", 3.19, "secret stddev"),
        ("error_stddev", 4.5, "sqrt\\(2\\)"),
        ("error_stddev", float("nan"), "finite"),
        ("ring_dimension", 3000, "power of two"),
        ("bits", 0, "bits"),
        ("max_summands", 0, "max_summands"),
    ],
)
def test_invalid_fields_are_named(field: str, value: float, message: str) -> None:
    fields: dict[str, object] = {
        "mode": SumMode.MOD,
        "bits": 16,
        "max_summands": 100,
        "shift_bits": 7,
        "modulus_bits": 32,
    }
    fields[field] = value
    with pytest.raises(ParameterError, match=message):
        OneshotParams(**fields)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    mode=st.sampled_from([SumMode.MOD, SumMode.EXACT]),
    bits=st.integers(1, 20),
    max_summands=st.integers(1, 5000),
)
def test_create_always_yields_a_set_that_decodes_exactly(
    mode: SumMode, bits: int, max_summands: int
) -> None:
    params = OneshotParams.create(mode, bits, max_summands)
    assert (
        params.shift_bits
        == default_shift_bits(max_summands)
        == math.ceil(math.log2(max_summands + 4))
    )
    noise = decode_noise_bound(max_summands, params.gap_bits)
    assert noise < 2 ** (params.shift_bits - 1)
    assert params.modulus_bits <= 56


def test_descriptor_parameters_must_be_consistent() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 100)
    descriptor = common_pb2.RoundDescriptor.FromString(make_descriptor(params, 10))
    descriptor.codec.oneshot.rounded_modulus_bits = 22
    with pytest.raises(ParameterError, match="descriptor states"):
        RoundBinding(descriptor.SerializeToString()).params()


def test_approx_descriptor_needs_the_callers_flag() -> None:
    params = OneshotParams.create(SumMode.APPROX, 16, 100, allow_approx=True)
    binding = RoundBinding(make_descriptor(params, 10))
    with pytest.raises(ParameterError, match="allow_approx"):
        binding.params()
    assert binding.params(allow_approx=True) == params


def test_binding_rejects_descriptors_that_are_not_oneshot_rounds() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 100)
    with pytest.raises(BindingError, match="parse"):
        RoundBinding(b"\xff\xff\xff")
    wrong_profile = common_pb2.RoundDescriptor.FromString(make_descriptor(params, 10))
    wrong_profile.profile = common_pb2.CRYPTO_PROFILE_FAST
    with pytest.raises(BindingError, match="oneshot"):
        RoundBinding(wrong_profile.SerializeToString())
    with pytest.raises(BindingError, match="seed"):
        RoundBinding(make_descriptor(params, 10, seed=b"short"))
    with pytest.raises(BindingError, match="federation"):
        RoundBinding(make_descriptor(params, 10, federation_id=""))
