"""Encode one worker's update into b-bit fields, and decode a sum of them into the mean update."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto.codec.config import CodecConfig
from crypto.codec.errors import CodecError
from crypto.codec.noise import skellam
from crypto.codec.quantize import (
    FieldArray,
    FloatArray,
    centre_sums,
    clip_l2,
    conditional_round,
    inflated_norm_bound,
    integer_norm,
    to_fields,
)
from crypto.codec.rotation import Rotation
from crypto.csprng import Csprng

# Fraction of the half range, from the edge, that counts as "near the modulus" when estimating
# how close an aggregate came to wrapping.
_EDGE_BAND = 1.0 / 8.0


@dataclass(frozen=True)
class EncodeStats:
    """What happened to one update on the way to fields; stays on the worker (local metrics)."""

    norm: float
    """L2 norm of the update before clipping (model units)."""
    clipped: bool
    """Whether the update was scaled down to the clip norm."""
    rounding_retries: int
    """Rejected conditional-rounding draws (0 when the first draw met the bound)."""
    rounding_fallback: bool
    """True if every draw was rejected and the update was rounded toward zero instead."""
    integer_norm: float
    """L2 norm of the rounded integer vector before noise (integer units)."""
    clamped: int
    """Exact mode: coordinates clamped into [-2^(b-1), 2^(b-1) - 1]; 0 in mod mode."""
    wrapped: int
    """Mod mode: noised coordinates outside [-2^(b-1), 2^(b-1)) that wrapped; 0 in exact mode."""


@dataclass(frozen=True)
class EncodedUpdate:
    """An update ready for masking or encryption."""

    fields: FieldArray
    """``config.field_count`` unsigned fields in [0, 2^b): P coordinates, then the counters."""
    stats: EncodeStats
    """Local statistics; not part of what is uploaded."""


@dataclass(frozen=True)
class DecodedAggregate:
    """The coordinator's view of an opened aggregate."""

    mean: FloatArray
    """Mean update over the contributors, float64 of length d (model units)."""
    contributor_count: int
    """Sum of the contributor counters (mod 2^b if not ``counters_exact``)."""
    clipped_count: int
    """Sum of the clipped counters (mod 2^b if not ``counters_exact``)."""
    counters_exact: bool
    """Whether the counter sums are exact rather than reduced mod 2^b."""
    near_modulus_fraction: float
    """Mod mode: fraction of coordinate sums in the outer eighth of the centred range, a proxy
    for the wrap rate (a few 1e-4 is normal at 4 standard deviations); 0 in exact mode."""


def rotation_for(config: CodecConfig, seed: bytes) -> Rotation:
    """The rotation a round with public seed ``seed`` uses for this configuration."""
    return Rotation.from_seed(seed, config.parameter_count, config.rotation_block_size)


def encode(
    delta: npt.NDArray[np.floating],
    config: CodecConfig,
    rotation: Rotation,
    *,
    rng: Csprng | None = None,
) -> EncodedUpdate:
    """Clips, rotates, scales, rounds, noises and maps one update to b-bit fields.

    Example:
        >>> config = CodecConfig(bits=8, sum_mode="exact", clip_norm=1.0, scale=400.0,
        ...                      parameter_count=1000, max_summands=100)
        >>> update = encode(np.zeros(1000, np.float32), config, rotation_for(config, b"seed"))
        >>> update.fields.shape, int(update.fields[config.contributor_field])
        ((1026,), 1)

    Args:
        delta: Flat update of length d (float32 from the worker; any float dtype works).
        config: Codec parameters.
        rotation: The round's rotation, from :func:`rotation_for`.
        rng: Secret randomness for rounding and noise; a fresh OS-seeded one by default.

    Returns:
        The fields and local statistics.

    Raises:
        CodecError: If the update has the wrong shape or non-finite values, the rotation does
            not match the configuration, or the rounded norm exceeds the inflated bound.
    """
    _check_rotation(config, rotation)
    values = np.asarray(delta, dtype=np.float64)
    if values.shape != (config.parameter_count,):
        raise CodecError(
            f"expected an update of shape ({config.parameter_count},), got {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise CodecError("the update contains NaN or infinite values")
    rng = Csprng() if rng is None else rng

    clipped_values, norm, clipped = clip_l2(values, config.clip_norm)
    scaled = rotation.forward(clipped_values)
    scaled *= config.scale
    # Clipping and rotation are exact only up to float rounding; never let that loosen the bound.
    scaled_norm = min(float(np.linalg.norm(scaled)), config.clip_norm * config.scale)
    rounding = conditional_round(
        scaled,
        config.conditional_rounding_beta,
        rng,
        config.rounding_max_attempts,
        norm=scaled_norm,
    )
    rounded_norm = integer_norm(rounding.values)
    bound = inflated_norm_bound(config)
    if rounded_norm > bound:
        raise CodecError(
            f"rounded update norm {rounded_norm:.6g} exceeds the inflated bound {bound:.6g}"
        )
    noised = rounding.values
    if config.local_noise_variance > 0:
        noised = noised + skellam(config.local_noise_variance, noised.size, rng)
    coordinates, outside = to_fields(noised, config.bits, config.sum_mode)

    fields = np.empty(config.field_count, dtype=np.uint16)
    fields[: config.padded_length] = coordinates
    fields[config.contributor_field] = 1
    fields[config.clipped_field] = int(clipped)
    stats = EncodeStats(
        norm=norm,
        clipped=clipped,
        rounding_retries=rounding.attempts - 1,
        rounding_fallback=rounding.fell_back,
        integer_norm=rounded_norm,
        clamped=outside if config.sum_mode == "exact" else 0,
        wrapped=outside if config.sum_mode == "mod" else 0,
    )
    return EncodedUpdate(fields=fields, stats=stats)


def decode(
    field_sums: npt.NDArray[np.integer],
    config: CodecConfig,
    rotation: Rotation,
    contributors: int,
) -> DecodedAggregate:
    """Turns the opened sum of ``contributors`` encoded updates into their mean update.

    Args:
        field_sums: Per-field sums, length ``config.field_count``: any representative mod 2^b
            in mod mode, the exact integer sums in exact mode.
        config: Codec parameters used by every contributor.
        rotation: The round's rotation.
        contributors: Number of updates in the sum (the certified contributor set's size).

    Returns:
        The mean update and the secure counters.

    Raises:
        CodecError: If shapes or counts do not match, or the sums are impossible for
            ``contributors`` updates (a wrong count or a corrupted aggregate).
    """
    _check_rotation(config, rotation)
    sums = np.asarray(field_sums, dtype=np.int64)
    if sums.shape != (config.field_count,):
        raise CodecError(f"expected {config.field_count} field sums, got shape {sums.shape}")
    if not 1 <= contributors <= config.max_summands:
        raise CodecError(f"contributors must be in [1, {config.max_summands}], got {contributors}")
    coordinate_sums = sums[: config.padded_length]
    contributor_count = int(sums[config.contributor_field])
    clipped_count = int(sums[config.clipped_field])
    if config.sum_mode == "exact":
        largest = contributors * (config.modulus - 1)
        if coordinate_sums.size and (
            int(coordinate_sums.min()) < 0 or int(coordinate_sums.max()) > largest
        ):
            raise CodecError(f"exact-mode field sums outside [0, {largest}]")
        expected_count = contributors
    else:
        contributor_count %= config.modulus
        clipped_count %= config.modulus
        expected_count = contributors % config.modulus
    if contributor_count != expected_count:
        raise CodecError(
            f"the contributor counter reads {contributor_count}, expected {expected_count}"
        )
    if not 0 <= clipped_count <= contributors:
        raise CodecError(f"clipped counter {clipped_count} exceeds {contributors} contributors")

    centred = centre_sums(coordinate_sums, config.bits, config.sum_mode, contributors)
    near_modulus = 0.0
    if config.sum_mode == "mod" and centred.size:
        edge = config.offset * (1.0 - _EDGE_BAND)
        near_modulus = float(np.count_nonzero(np.abs(centred) >= edge)) / centred.size
    total = rotation.inverse(centred.astype(np.float64) / config.scale)
    return DecodedAggregate(
        mean=total / contributors,
        contributor_count=contributor_count,
        clipped_count=clipped_count,
        counters_exact=config.counters_exact,
        near_modulus_fraction=near_modulus,
    )


def _check_rotation(config: CodecConfig, rotation: Rotation) -> None:
    if (rotation.dim, rotation.block_size) != (
        config.parameter_count,
        config.rotation_block_size,
    ):
        raise CodecError(
            f"rotation for d={rotation.dim}, B={rotation.block_size} does not match the "
            f"configuration's d={config.parameter_count}, B={config.rotation_block_size}"
        )
