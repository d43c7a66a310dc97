"""The worker's BGV/BFV encoder: quantize, pack, encrypt under the committee's joint key."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crypto import bgv
from crypto.codec import fields_per_slot, pack_fields, packing_radix
from crypto.committee import (
    CommitteeError,
    EnrollmentVerifier,
    RefusalError,
    verify_joint_public_key,
)
from crypto.committee.roster import Roster
from crypto.durable import write_durable
from edge_worker.encoders import DescriptorRefused, EncodedUpload, SecureEncoder
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)

BGV_PROFILES: dict[int, bgv.BgvProfile] = {
    common.CRYPTO_PROFILE_FAST: bgv.FAST,
    common.CRYPTO_PROFILE_PROVABLE: bgv.PROVABLE,
}
"""The wire profiles served by the threshold-HE facade."""

_contexts: dict[tuple[str, bytes], bgv.HeContext] = {}
_contexts_lock = threading.Lock()


def bgv_profile(profile: int) -> bgv.BgvProfile:
    """The facade profile of a wire profile.

    Raises:
        ValueError: for a profile that is not fast or provable.
    """
    found = BGV_PROFILES.get(profile)
    if found is None:
        raise ValueError(f"crypto profile {profile} is not a BGV profile")
    return found


def shared_context(profile: bgv.BgvProfile, context_bytes: bytes) -> bgv.HeContext:
    """The process's context for received context bytes, checked against the profile once.

    The encoder and the key-holder role of one process share it: loading runs the profile's
    self-test the first time and costs a context generation every time.

    Raises:
        crypto.bgv.ProfileError / SelfTestError: if the bytes are not the profile's context.
    """
    key = (profile.name, bytes(context_bytes))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = bgv.open_context(profile, context_bytes=context_bytes)
            _contexts[key] = ctx
        return ctx


def bgv_params_problem(
    params: common.BgvParams, codec: common.CodecParams, ctx: bgv.HeContext
) -> str | None:
    """Why a descriptor's BgvParams do not fit the epoch's context and codec (None if they do)."""
    t = ctx.plaintext_modulus
    try:
        per_slot = fields_per_slot(codec.bits, codec.max_summands, t)
        radix = packing_radix(codec.bits, codec.max_summands)
    except ValueError as error:
        return str(error)
    if codec.max_summands > ctx.profile.max_summands:
        return f"max_summands {codec.max_summands} exceeds the profile's {ctx.profile.max_summands}"
    expected = (ctx.ring_dimension, t, per_slot, radix, hashlib.sha256(ctx.serialize()).digest())
    actual = (
        params.ring_dimension,
        params.plaintext_modulus,
        params.fields_per_slot,
        params.radix,
        params.crypto_context_sha256,
    )
    if actual != expected:
        return "the descriptor's BGV parameters do not match the epoch's crypto context"
    return None


@dataclass(frozen=True)
class EpochKeys:
    """The public key material of one epoch, checked."""

    ctx: bgv.HeContext
    joint_public_key: bytes


class BgvEncoder(SecureEncoder):
    """Encrypts the packed, quantized update under the joint key; no sealed shares."""

    payload_format_version = bgv.PAYLOAD_FORMAT_VERSION

    def __init__(
        self,
        state_dir: Path,
        profile: int,
        verifier: EnrollmentVerifier,
        rounding_seed: str = "",
    ) -> None:
        """Loads the rosters and the epoch keys the device already verified."""
        self.profile = profile
        self._profile = bgv_profile(profile)
        self._keys_dir = state_dir / "bgv_keys"
        self.keys: dict[int, EpochKeys] = {}
        super().__init__(state_dir, verifier, rounding_seed)
        for path in sorted(self._keys_dir.glob("epoch-*.bin")):
            material = common.KeyEpochMaterial.FromString(path.read_bytes())
            epoch = int(path.stem.split("-", 1)[1])
            roster = self.rosters.get(epoch)
            if roster is None:
                continue
            try:
                self.keys[epoch] = self._check_material(roster, material)
            except DescriptorRefused as refusal:
                logger.warning("stored key material of epoch %d dropped: %s", epoch, refusal)

    def _check_material(self, roster: Roster, material: common.KeyEpochMaterial) -> EpochKeys:
        if roster.profile != self.profile:
            raise DescriptorRefused("the key epoch is for another crypto profile")
        try:
            # A threshold of members vouch for the key: each checked it is the sum of the
            # committed shares, so it includes their own.
            verify_joint_public_key(
                roster,
                material.joint_public_key,
                material.joint_public_key_signatures,
                min_signatures=roster.threshold,
            )
        except (RefusalError, CommitteeError) as error:
            raise DescriptorRefused(f"joint public key refused: {error}") from error
        try:
            ctx = shared_context(self._profile, material.crypto_context)
        except bgv.BgvError as error:
            raise DescriptorRefused(f"crypto context refused: {error}") from error
        return EpochKeys(ctx, bytes(material.joint_public_key))

    def adopt_epoch(self, roster: Roster, key_material: common.KeyEpochMaterial) -> None:
        """Keeps the roster and the epoch's checked joint key and context."""
        keys = self._check_material(roster, key_material)
        write_durable(
            self._keys_dir / f"epoch-{roster.epoch}.bin", key_material.SerializeToString()
        )
        self.keys[roster.epoch] = keys
        super().adopt_epoch(roster, key_material)

    def verify_descriptor(
        self,
        signed: common.SignedRoundDescriptor,
        key_material: common.KeyEpochMaterial | None,
    ) -> common.RoundDescriptor:
        """The committee's checks, then the descriptor's BGV parameters against the epoch."""
        descriptor = super().verify_descriptor(signed, key_material)
        keys = self.keys.get(descriptor.committee_epoch)
        if keys is None:
            raise DescriptorRefused(f"no verified joint key for epoch {descriptor.committee_epoch}")
        if descriptor.codec.WhichOneof("profile_params") != "bgv":
            raise DescriptorRefused("the descriptor carries no BGV parameters")
        problem = bgv_params_problem(descriptor.codec.bgv, descriptor.codec, keys.ctx)
        if problem is not None:
            raise DescriptorRefused(problem)
        return descriptor

    def encode(
        self,
        delta: npt.NDArray[np.float32],
        signed: common.SignedRoundDescriptor,
        worker_id: str,
        spool: Path,
    ) -> EncodedUpload:
        """Quantizes, packs and encrypts; streams payload-v1 frames to ``spool``."""
        descriptor = common.RoundDescriptor.FromString(signed.descriptor)
        keys = self.keys.get(descriptor.committee_epoch)
        if keys is None:
            raise DescriptorRefused(f"no verified joint key for epoch {descriptor.committee_epoch}")
        fields = self.codec_fields(delta, descriptor)
        slots = pack_fields(
            fields,
            bits=descriptor.codec.bits,
            max_summands=descriptor.codec.max_summands,
            plaintext_modulus=keys.ctx.plaintext_modulus,
        )
        ciphertexts = bgv.Encryptor(keys.ctx, keys.joint_public_key).encrypt(slots)
        spool.parent.mkdir(parents=True, exist_ok=True)
        temporary = spool.with_suffix(spool.suffix + ".tmp")
        with open(temporary, "wb") as handle:
            # One ciphertext at a time: memory stays bounded by a frame.
            for frame in bgv.encode_frames(ciphertexts):
                handle.write(frame)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, spool)
        return EncodedUpload(spool, self.payload_format_version, [], fields)
