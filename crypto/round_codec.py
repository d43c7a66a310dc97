"""The codec a round uses, as the wire describes it: ``CodecParams`` + ``DpParams`` <-> config.

The coordinator writes these fields into the round descriptor; every worker and the coordinator
rebuild the identical :class:`~crypto.codec.CodecConfig` and rotation from the signed bytes.
"""

from __future__ import annotations

from crypto.codec import CodecConfig, Rotation, rotation_for
from hefl.v1 import common_pb2 as common

_SUM_MODES = {common.SUM_MODE_MOD: "mod", common.SUM_MODE_EXACT: "exact"}
_SUM_MODE_ENUMS = {"mod": common.SUM_MODE_MOD, "exact": common.SUM_MODE_EXACT}


class RoundCodecError(ValueError):
    """The descriptor's codec fields do not form a usable codec."""


def codec_params(config: CodecConfig) -> common.CodecParams:
    """The profile-independent part of ``CodecParams`` for ``config``."""
    return common.CodecParams(
        bits=config.bits,
        sum_mode=_SUM_MODE_ENUMS[config.sum_mode],  # type: ignore[arg-type]
        clip_norm=config.clip_norm,
        scale=config.scale,
        rotation_block_size=config.rotation_block_size,
        parameter_count=config.parameter_count,
        max_summands=config.max_summands,
        conditional_rounding_beta=config.conditional_rounding_beta,
    )


def codec_config(codec: common.CodecParams, dp: common.DpParams) -> CodecConfig:
    """Rebuilds the codec configuration from a descriptor's fields.

    Raises:
        RoundCodecError: for an unknown sum mode or values the codec refuses.
    """
    mode = _SUM_MODES.get(codec.sum_mode)
    if mode is None:
        raise RoundCodecError(f"unsupported sum mode {codec.sum_mode}")
    try:
        return CodecConfig(
            bits=codec.bits,
            sum_mode=mode,  # type: ignore[arg-type]
            clip_norm=codec.clip_norm,
            scale=codec.scale,
            parameter_count=codec.parameter_count,
            max_summands=codec.max_summands,
            rotation_block_size=codec.rotation_block_size,
            conditional_rounding_beta=codec.conditional_rounding_beta,
            local_noise_variance=dp.local_noise_variance if dp.enabled else 0.0,
        )
    except ValueError as error:
        raise RoundCodecError(f"descriptor codec is invalid: {error}") from error


def round_rotation(config: CodecConfig, seed: bytes) -> Rotation:
    """The rotation of a round with committee seed ``seed``."""
    return rotation_for(config, seed)
