"""The update codec shared by every crypto profile: clip, rotate, quantize, noise, pack.

A worker calls :func:`encode` on its flat float update and gets b-bit fields; the profile masks
or encrypts them (positional packing for BGV), the coordinator sums them, and :func:`decode`
turns the opened sum into the mean update. See ``docs/codec.md`` for the maths and the layout.
"""

from __future__ import annotations

from crypto.codec.config import COUNTER_FIELDS, CodecConfig, SumMode
from crypto.codec.errors import CodecConfigError, CodecError
from crypto.codec.noise import poisson, skellam
from crypto.codec.packing import (
    fields_per_slot,
    pack_fields,
    packing_radix,
    slots_needed,
    unpack_slots,
)
from crypto.codec.pipeline import (
    DecodedAggregate,
    EncodedUpdate,
    EncodeStats,
    decode,
    encode,
    rotation_for,
)
from crypto.codec.quantize import inflated_norm_bound, rounding_norm_bound
from crypto.codec.rotation import Rotation, choose_block_size
from crypto.codec.scale import exact_mode_scale, local_noise_variance, modular_sum_scale
from crypto.codec.streaming import iter_chunks

__all__ = [
    "COUNTER_FIELDS",
    "CodecConfig",
    "CodecConfigError",
    "CodecError",
    "DecodedAggregate",
    "EncodeStats",
    "EncodedUpdate",
    "Rotation",
    "SumMode",
    "choose_block_size",
    "decode",
    "encode",
    "exact_mode_scale",
    "fields_per_slot",
    "inflated_norm_bound",
    "iter_chunks",
    "local_noise_variance",
    "modular_sum_scale",
    "pack_fields",
    "packing_radix",
    "poisson",
    "rotation_for",
    "rounding_norm_bound",
    "skellam",
    "slots_needed",
    "unpack_slots",
]
