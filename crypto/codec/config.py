"""The codec's parameters, validated once and shared by worker and coordinator."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from crypto.codec.errors import CodecConfigError
from crypto.codec.rotation import choose_block_size, padded_length

SumMode = Literal["mod", "exact"]

MIN_BITS = 4
MAX_BITS = 16
AUTO_BLOCK_SIZE = 0
MAX_BLOCK_SIZE = 1 << 20
# Stochastic rounding needs the fractional part of every scaled coordinate, which float64 keeps
# exactly only while magnitudes stay far below 2^53; TFF caps the scale for the same reason.
MAX_SCALED_CLIP = float(1 << 40)
MAX_NOISE_VARIANCE = float(1 << 50)
COUNTER_FIELDS = ("contributor", "clipped")


@dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """Everything both sides must agree on to encode an update and decode an aggregate.

    Example:
        >>> config = CodecConfig(bits=8, sum_mode="exact", clip_norm=1.0, scale=400.0,
        ...                      parameter_count=1000, max_summands=100)
        >>> config.rotation_block_size, config.padded_length, config.field_count
        (1024, 1024, 1026)
    """

    bits: int
    """Field width b in bits, 4..16; every field is an unsigned integer in [0, 2^b)."""
    sum_mode: SumMode
    """``"mod"``: fields are two's complement mod 2^b and sums are read mod 2^b (the DP analysis'
    modular secure sum). ``"exact"``: fields carry an offset of 2^(b-1) and sums are exact
    integers; DP noise is not allowed."""
    clip_norm: float
    """L2 clipping norm c, in model units."""
    scale: float
    """Scale s = 1/gamma applied to the rotated update before rounding to integers."""
    parameter_count: int
    """Number of model parameters d."""
    max_summands: int
    """Largest number of updates n_max that will ever be summed into one aggregate."""
    rotation_block_size: int = AUTO_BLOCK_SIZE
    """Hadamard block size B, a power of two; 0 picks one from ``parameter_count``."""
    conditional_rounding_beta: float = 0.0
    """beta of conditional stochastic rounding (DDG Theorem 1); 0 turns conditioning off."""
    rounding_max_attempts: int = 100
    """Rounding draws before falling back to rounding toward zero (counted, never silent)."""
    local_noise_variance: float = 0.0
    """Variance 2*lambda of each client's Skellam noise per coordinate, in quantized (integer)
    units; 0 means no DP noise."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise CodecConfigError(problems)
        if self.rotation_block_size == AUTO_BLOCK_SIZE:
            # Frozen dataclass: resolving the default once keeps equality and repr explicit.
            object.__setattr__(self, "rotation_block_size", choose_block_size(self.parameter_count))

    @property
    def modulus(self) -> int:
        """2^b, the number of values a field can take."""
        return 1 << self.bits

    @property
    def offset(self) -> int:
        """2^(b-1): the exact-mode offset, and the half range of a centred mod-mode value."""
        return 1 << (self.bits - 1)

    @property
    def padded_length(self) -> int:
        """P: number of coordinate fields, d rounded up to a whole number of rotation blocks."""
        return padded_length(self.parameter_count, self.rotation_block_size)

    @property
    def field_count(self) -> int:
        """Total fields per update: P coordinates followed by the counters."""
        return self.padded_length + len(COUNTER_FIELDS)

    @property
    def contributor_field(self) -> int:
        """Index of the contributor counter field (always 1)."""
        return self.padded_length

    @property
    def clipped_field(self) -> int:
        """Index of the clipped counter field (1 if the update was clipped, else 0)."""
        return self.padded_length + 1

    @property
    def counters_exact(self) -> bool:
        """Whether counter sums are exact; in mod mode they are only known mod 2^b."""
        return self.sum_mode == "exact" or self.max_summands < self.modulus

    @property
    def noise_lambda(self) -> float:
        """Poisson rate lambda of each of the two Poisson draws that make the Skellam noise."""
        return self.local_noise_variance / 2.0


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _problems(config: CodecConfig) -> list[str]:
    """Every rule ``config`` breaks, so one error message can list them all."""
    problems: list[str] = []
    if not _is_int(config.bits) or not MIN_BITS <= config.bits <= MAX_BITS:
        problems.append(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {config.bits!r}")
    if config.sum_mode not in ("mod", "exact"):
        problems.append(f"sum_mode must be 'mod' or 'exact', got {config.sum_mode!r}")
    if not _is_positive_finite(config.clip_norm):
        problems.append(f"clip_norm must be positive and finite, got {config.clip_norm!r}")
    if not _is_positive_finite(config.scale):
        problems.append(f"scale must be positive and finite, got {config.scale!r}")
    elif (
        _is_positive_finite(config.clip_norm) and config.clip_norm * config.scale > MAX_SCALED_CLIP
    ):
        problems.append(
            f"clip_norm * scale must be at most 2^40 for exact float64 rounding, "
            f"got {config.clip_norm * config.scale:.3g}"
        )
    if not _is_int(config.parameter_count) or config.parameter_count < 1:
        problems.append(
            f"parameter_count must be a positive integer, got {config.parameter_count!r}"
        )
    if not _is_int(config.max_summands) or config.max_summands < 1:
        problems.append(f"max_summands must be a positive integer, got {config.max_summands!r}")
    block = config.rotation_block_size
    if not _is_int(block) or not (
        block == AUTO_BLOCK_SIZE or (1 <= block <= MAX_BLOCK_SIZE and block & (block - 1) == 0)
    ):
        problems.append(
            f"rotation_block_size must be 0 (automatic) or a power of two up to 2^20, got {block!r}"
        )
    beta = config.conditional_rounding_beta
    if not isinstance(beta, (int, float)) or not 0 <= beta < 1:
        problems.append(f"conditional_rounding_beta must be in [0, 1), got {beta!r}")
    attempts = config.rounding_max_attempts
    if not _is_int(attempts) or attempts < 1:
        problems.append(f"rounding_max_attempts must be a positive integer, got {attempts!r}")
    variance = config.local_noise_variance
    if not isinstance(variance, (int, float)) or not 0 <= variance <= MAX_NOISE_VARIANCE:
        problems.append(f"local_noise_variance must be in [0, 2^50], got {variance!r}")
    elif variance > 0 and config.sum_mode == "exact":
        problems.append(
            "local_noise_variance must be 0 in exact mode: clamping noised values per client "
            "would break the distributed DP analysis, which assumes a modular sum (use 'mod')"
        )
    return problems
