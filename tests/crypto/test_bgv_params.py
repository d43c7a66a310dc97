"""Profiles: packing capacity, static guards, and the empirical self-test behind them."""

from __future__ import annotations

import dataclasses

import pytest

from crypto.bgv import (
    FAST,
    FAST_16K,
    PROVABLE,
    BgvProfile,
    NoiseMode,
    ProfileError,
    Scaling,
    Scheme,
    SelfTestError,
    check_profile,
    create_context,
    open_context,
    profile_problems,
    run_self_test,
)
from crypto.bgv.params import is_prime


def test_shipped_profiles_pass_the_static_guards() -> None:
    for profile in (FAST, FAST_16K, PROVABLE):
        assert profile_problems(profile) == []


@pytest.mark.parametrize(
    ("profile", "bits", "summands", "fields"),
    [
        (FAST, 8, 100, 2),
        (FAST, 4, 100, 2),
        (FAST, 8, 10, 2),
        (FAST, 2, 100, 3),
        (FAST, 8, 1000, 1),
        (FAST, 16, 100, 1),
        (PROVABLE, 8, 100, 3),
        (PROVABLE, 8, 1000, 2),
        (PROVABLE, 4, 100, 4),
    ],
)
def test_fields_per_slot_is_the_largest_k_with_radix_power_below_t(
    profile: BgvProfile, bits: int, summands: int, fields: int
) -> None:
    radix = profile.radix(bits, summands)
    assert radix == summands * (2**bits - 1) + 1
    assert profile.fields_per_slot(bits, summands) == fields
    assert radix**fields <= profile.plaintext_modulus < radix ** (fields + 1)


def test_a_radix_above_t_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        FAST.fields_per_slot(24, 100)


def test_shipped_moduli_are_batching_primes() -> None:
    for t in (FAST.plaintext_modulus, PROVABLE.plaintext_modulus):
        assert is_prime(t) and t % 65536 == 1
    assert not is_prime(FAST.plaintext_modulus + 2)
    assert not is_prime(561)  # a Carmichael number


def test_a_bad_profile_is_refused_with_every_problem_listed() -> None:
    bad = BgvProfile(
        name="bad",
        scheme=Scheme.BGV,
        noise_mode=NoiseMode.FIXED,
        plaintext_modulus=2**36 + 3,  # not prime, not 1 mod 2N, too wide for one tower
        ring_dimension=4096,
        keygen_towers=1,
        wire_towers=1,
        scaling=Scaling.FLEXIBLEAUTO,
        security_level="HEStd_NotSet",
    )
    with pytest.raises(ProfileError) as caught:
        check_profile(bad)
    message = str(caught.value)
    for fragment in (
        "not prime",
        "not 1 mod 2N",
        "FLEXIBLEAUTO",
        ">= 2^33 on one tower",
        "HEStd_NotSet",
        "validated layouts",
    ):
        assert fragment in message
    with pytest.raises(ProfileError):
        create_context(bad)


def test_multi_tower_and_bfv_limits_are_guarded() -> None:
    bgv_three = dataclasses.replace(
        FAST, name="bgv3", keygen_towers=3, wire_towers=3, plaintext_modulus=8589475841
    )
    assert any("2^32" in p for p in profile_problems(bgv_three))
    bfv_wide = dataclasses.replace(PROVABLE, name="bfv52", plaintext_modulus=4503599626321921)
    assert any("2^51" in p for p in profile_problems(bfv_wide))
    flood_two = dataclasses.replace(PROVABLE, name="flood2", wire_towers=2)
    assert any("at least 3 towers" in p for p in profile_problems(flood_two))
    small_ring = dataclasses.replace(PROVABLE, name="small", ring_dimension=8192)
    assert any("128-bit minimum" in p for p in profile_problems(small_ring))


def test_the_self_test_catches_a_bad_t_when_the_static_guard_is_bypassed() -> None:
    # t ~ 2^36 on one 60-bit tower: OpenFHE accepts it and threshold decryption returns
    # garbage without an exception (study §4.1).
    bad = dataclasses.replace(FAST, name="t36", plaintext_modulus=68718428161)
    assert any("2^33" in p for p in profile_problems(bad))
    with pytest.raises(SelfTestError, match="8192 of 8192 slots wrong"):
        open_context(bad, check_static=False)


def test_the_self_test_passes_for_the_shipped_profiles() -> None:
    for profile in (FAST, PROVABLE):
        run_self_test(create_context(profile))
