"""Typed facade over OpenFHE threshold BGV/BFV: the "fast" and "provable" crypto profiles.

Nothing outside :mod:`crypto` imports ``openfhe``; the rest of hefl uses the names below. The
protocol, byte formats and security notes are in docs/crypto-bgv.md.
"""

from __future__ import annotations

from crypto.bgv.aggregate import AggregateResult, AggregationLane, Aggregator
from crypto.bgv.context import HeContext, create_context, disable_crt_precompute, load_context
from crypto.bgv.crs import check_crs, combine_seed_contributions, derive_crs
from crypto.bgv.decrypt import (
    DecryptionPlan,
    Fuser,
    MemberPartials,
    fuse_partials,
    partial_decrypt,
)
from crypto.bgv.encrypt import Encryptor, ciphertext_count, upload_shape
from crypto.bgv.errors import (
    AggregationError,
    BgvError,
    CiphertextRejectedError,
    DecryptionError,
    KeyCeremonyError,
    PayloadError,
    ProfileError,
    SelfTestError,
)
from crypto.bgv.keys import Committee, MemberSecrets, PublicKeyShare, combine_public_shares
from crypto.bgv.packing import pack_fields, unpack_fields
from crypto.bgv.params import (
    FAST,
    FAST_16K,
    PROFILES,
    PROVABLE,
    BgvProfile,
    NoiseMode,
    Scaling,
    Scheme,
    check_profile,
    profile_problems,
)
from crypto.bgv.payload import (
    PAYLOAD_FORMAT_VERSION,
    FrameParser,
    encode_frames,
    encode_payload,
    parse_frames,
    payload_digest,
)
from crypto.bgv.selftest import open_context, run_self_test

__all__ = [
    "FAST",
    "FAST_16K",
    "PAYLOAD_FORMAT_VERSION",
    "PROFILES",
    "PROVABLE",
    "AggregateResult",
    "AggregationError",
    "AggregationLane",
    "Aggregator",
    "BgvError",
    "BgvProfile",
    "CiphertextRejectedError",
    "Committee",
    "DecryptionError",
    "DecryptionPlan",
    "Encryptor",
    "FrameParser",
    "Fuser",
    "HeContext",
    "KeyCeremonyError",
    "MemberPartials",
    "MemberSecrets",
    "NoiseMode",
    "PayloadError",
    "ProfileError",
    "PublicKeyShare",
    "Scaling",
    "Scheme",
    "SelfTestError",
    "check_crs",
    "check_profile",
    "ciphertext_count",
    "combine_public_shares",
    "combine_seed_contributions",
    "create_context",
    "derive_crs",
    "disable_crt_precompute",
    "encode_frames",
    "encode_payload",
    "fuse_partials",
    "load_context",
    "open_context",
    "pack_fields",
    "parse_frames",
    "partial_decrypt",
    "payload_digest",
    "profile_problems",
    "run_self_test",
    "unpack_fields",
    "upload_shape",
]
