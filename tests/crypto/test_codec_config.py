"""CodecConfig validation and derived layout."""

from __future__ import annotations

import dataclasses

import pytest

import crypto.codec
from crypto.codec import COUNTER_FIELDS, CodecConfig, CodecConfigError, CodecError


def _config(**overrides: object) -> CodecConfig:
    base: dict[str, object] = {
        "bits": 8,
        "sum_mode": "mod",
        "clip_norm": 1.0,
        "scale": 100.0,
        "parameter_count": 1000,
        "max_summands": 10,
    }
    base.update(overrides)
    return CodecConfig(**base)  # type: ignore[arg-type]


def test_valid_config_resolves_the_block_size_and_layout() -> None:
    config = _config()
    assert config.rotation_block_size == 1024
    assert config.padded_length == 1024
    assert config.field_count == 1024 + len(COUNTER_FIELDS)
    assert (config.contributor_field, config.clipped_field) == (1024, 1025)
    assert (config.modulus, config.offset) == (256, 128)


def test_explicit_block_size_is_kept() -> None:
    config = _config(rotation_block_size=64)
    assert config.rotation_block_size == 64
    assert config.padded_length == 1024


def test_config_is_frozen_and_keyword_only() -> None:
    config = _config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.bits = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        CodecConfig(8, "mod", 1.0, 1.0, 10, 10)  # type: ignore[misc]


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(CodecConfigError) as caught:
        _config(
            bits=3,
            sum_mode="sum",
            clip_norm=-1.0,
            scale=float("nan"),
            parameter_count=0,
            max_summands=0,
            rotation_block_size=48,
            conditional_rounding_beta=1.0,
            rounding_max_attempts=0,
            local_noise_variance=-2.0,
        )
    problems = caught.value.problems
    assert len(problems) == 10
    for name in (
        "bits",
        "sum_mode",
        "clip_norm",
        "scale",
        "parameter_count",
        "max_summands",
        "rotation_block_size",
        "conditional_rounding_beta",
        "rounding_max_attempts",
        "local_noise_variance",
    ):
        assert any(problem.startswith(name) for problem in problems), name
        assert name in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, CodecError)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"bits": 17}, "bits"),
        ({"bits": True}, "bits"),
        ({"bits": 8.0}, "bits"),
        ({"clip_norm": float("inf")}, "clip_norm"),
        ({"scale": 0.0}, "scale"),
        ({"scale": 2.0**41}, "clip_norm * scale"),
        ({"rotation_block_size": 2**21}, "rotation_block_size"),
        ({"conditional_rounding_beta": -0.1}, "conditional_rounding_beta"),
        ({"local_noise_variance": float("nan")}, "local_noise_variance"),
    ],
)
def test_single_bad_value_is_rejected(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(CodecConfigError) as caught:
        _config(**overrides)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(field)


def test_noise_is_refused_in_exact_mode() -> None:
    with pytest.raises(CodecConfigError, match="exact mode"):
        _config(sum_mode="exact", local_noise_variance=10.0)
    assert _config(sum_mode="mod", local_noise_variance=10.0).noise_lambda == 5.0


def test_counters_are_exact_unless_mod_mode_can_wrap_them() -> None:
    assert _config(sum_mode="exact", bits=4, max_summands=1000).counters_exact
    assert _config(sum_mode="mod", bits=4, max_summands=15).counters_exact
    assert not _config(sum_mode="mod", bits=4, max_summands=16).counters_exact


def test_package_exports_exactly_its_public_api() -> None:
    assert sorted(crypto.codec.__all__) == sorted(
        name
        for name in vars(crypto.codec)
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(vars(crypto.codec)[name], type(crypto.codec))
    )
