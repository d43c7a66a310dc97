"""The oneshot crypto profile: one-shot RLWE masking with sealed Shamir key shares."""

from __future__ import annotations

from crypto.oneshot.aggregate import AggregationError, MaskedSum, unmask_sum
from crypto.oneshot.binding import BindingError, RoundBinding, params_to_proto
from crypto.oneshot.keyshares import (
    Contribution,
    KeyShareError,
    MemberKey,
    SealedShare,
    ShareContext,
    ShareOpenError,
    combine_key_sum,
    decode_share_sum,
    encode_share_sum,
    open_share_sum,
    seal_secret_shares,
)
from crypto.oneshot.mask import MaskedUpload, MaskingError, MaskingSession, mask_update
from crypto.oneshot.params import OneshotParams, ParameterError, SumMode
from crypto.oneshot.replay import RoundReuseError, UsedRounds
from crypto.oneshot.wire import FORMAT_VERSION, PayloadHeader, PayloadLayout, WireError

__all__ = [
    "FORMAT_VERSION",
    "AggregationError",
    "BindingError",
    "Contribution",
    "KeyShareError",
    "MaskedSum",
    "MaskedUpload",
    "MaskingError",
    "MaskingSession",
    "MemberKey",
    "OneshotParams",
    "ParameterError",
    "PayloadHeader",
    "PayloadLayout",
    "RoundBinding",
    "RoundReuseError",
    "SealedShare",
    "ShareContext",
    "ShareOpenError",
    "SumMode",
    "UsedRounds",
    "WireError",
    "combine_key_sum",
    "decode_share_sum",
    "encode_share_sum",
    "mask_update",
    "open_share_sum",
    "params_to_proto",
    "seal_secret_shares",
    "unmask_sum",
]
