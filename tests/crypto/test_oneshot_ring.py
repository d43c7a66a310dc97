"""The FFT negacyclic product is exact: checked against an integer reference."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.oneshot.ring import (
    EXACTNESS_LIMIT,
    NegacyclicMultiplier,
    RingError,
    choose_limbs,
    fft_error_factor,
)
from crypto.oneshot.sampling import discrete_gaussian

N = 2048
SECRET_TAIL = discrete_gaussian(4.5).tail_bound


def reference_product(
    uniform: npt.NDArray[np.uint64], short: npt.NDArray[np.int64], modulus_bits: int
) -> npt.NDArray[np.uint64]:
    """Schoolbook negacyclic product mod 2^k, exact in int64 per 16-bit limb."""
    n = short.size
    total = np.zeros(n, dtype=np.uint64)
    for shift in range(0, modulus_bits, 16):
        limb = ((uniform >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
        full = np.convolve(limb, short)
        wrapped = full[:n].copy()
        wrapped[: n - 1] -= full[n:]
        total += wrapped.view(np.uint64) << np.uint64(shift)
    return total & np.uint64((1 << modulus_bits) - 1)


def check_rows(
    uniform: npt.NDArray[np.uint64], short: npt.NDArray[np.int64], modulus_bits: int
) -> NegacyclicMultiplier:
    multiplier = NegacyclicMultiplier(short, modulus_bits)
    product = multiplier.multiply(uniform)
    for row in range(uniform.shape[0]):
        expected = reference_product(uniform[row], short, modulus_bits)
        np.testing.assert_array_equal(product[row], expected)
    return multiplier


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    modulus_bits=st.sampled_from([32, 39]),
    width=st.sampled_from([4.5, 45.0, 450.0]),
)
def test_random_products_match_the_integer_reference(
    seed: int, modulus_bits: int, width: float
) -> None:
    rng = np.random.default_rng(seed)
    short = np.rint(rng.normal(0, width, N)).astype(np.int64)
    uniform = rng.integers(0, 1 << modulus_bits, size=(2, N), dtype=np.uint64)
    multiplier = check_rows(uniform, short, modulus_bits)
    assert multiplier.error_bound < EXACTNESS_LIMIT


@pytest.mark.parametrize("modulus_bits", [32, 39])
@pytest.mark.parametrize("pattern", ["max", "zero", "half"])
def test_worst_case_magnitudes_are_exact(modulus_bits: int, pattern: str) -> None:
    # Coefficient 0 of a * y is a_0 y_0 - sum_{i>0} a_i y_{n-i}: with a at its extreme and y
    # = (+B, -B, ..., -B) every term adds up, the largest value any output can take.
    top = (1 << modulus_bits) - 1
    value = {"max": top, "zero": 0, "half": 1 << (modulus_bits - 1)}[pattern]
    uniform = np.full((1, N), value, dtype=np.uint64)
    for bound in (SECRET_TAIL, 100 * SECRET_TAIL):
        aligned = np.full(N, -bound, dtype=np.int64)
        aligned[0] = bound
        check_rows(uniform, aligned, modulus_bits)
        check_rows(uniform, np.full(N, bound, dtype=np.int64), modulus_bits)


def test_limbs_follow_the_short_operands_norm() -> None:
    secret = discrete_gaussian(4.5)
    from crypto.csprng import Csprng

    typical = secret.sample(Csprng(), N)
    # A sigma-4.5 secret has norm about 204: one 32-bit limb stays below the bound.
    assert NegacyclicMultiplier(typical, 32).limb_count == 1
    # The sampler's extreme (every coefficient at the tail cut) needs a second limb.
    extreme = np.full(N, SECRET_TAIL, dtype=np.int64)
    assert NegacyclicMultiplier(extreme, 32).limb_count == 2
    # A 100-client key sum: two limbs of 16 bits (q = 2^32) or 20 bits (q = 2^39).
    key_sum = np.sum([secret.sample(Csprng(), N) for _ in range(100)], axis=0)
    assert (
        NegacyclicMultiplier(key_sum, 32).limb_count,
        NegacyclicMultiplier(key_sum, 39).limb_bits,
    ) == (2, 20)


def test_the_guard_bound_matches_its_derivation() -> None:
    delta = fft_error_factor(N)
    # 3 transforms of 10 levels plus the pointwise product and 3 twists: about 134 eps.
    assert 1e-14 < delta < 2e-14
    count, width = choose_limbs(32, N, short_norm=204.0, short_max=20)
    assert (count, width) == (1, 32)
    assert delta * np.sqrt(N) * 2.0**31 * 204.0 < EXACTNESS_LIMIT
    with pytest.raises(RingError, match="too long"):
        choose_limbs(32, N, short_norm=1e15, short_max=2**40)


def test_multiplier_rejects_bad_shapes() -> None:
    with pytest.raises(RingError):
        NegacyclicMultiplier(np.zeros(1000, dtype=np.int64), 32)
    multiplier = NegacyclicMultiplier(np.ones(N, dtype=np.int64), 32)
    with pytest.raises(RingError):
        multiplier.multiply(np.zeros((2, 1024), dtype=np.uint64))
