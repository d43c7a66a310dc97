"""Per-profile update encoders: check the round descriptor, turn a delta into a spooled payload."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crypto import plaintext_update
from hefl.v1 import common_pb2 as common


class DescriptorRefused(Exception):  # noqa: N818 - the device's decision, reported as an outcome
    """The device will not work for this round descriptor (bad signatures, reused round...)."""


@dataclass(frozen=True)
class EncodedUpload:
    """A payload spooled to disk plus the trailer parts the encoder produced."""

    payload_path: Path
    payload_format_version: int
    sealed_shares: list[common.SealedBox] = field(default_factory=list)


class UpdateEncoder(abc.ABC):
    """Turns a model delta into the payload of one crypto profile."""

    profile: int
    payload_format_version: int

    @abc.abstractmethod
    def verify_descriptor(
        self,
        signed: common.SignedRoundDescriptor,
        key_material: common.KeyEpochMaterial | None,
    ) -> common.RoundDescriptor:
        """Checks the descriptor before any work is done for it.

        Raises:
            DescriptorRefused: if the device must not contribute to this round.
        """

    @abc.abstractmethod
    def encode(
        self,
        delta: npt.NDArray[np.float32],
        descriptor: common.RoundDescriptor,
        descriptor_sha256: bytes,
        spool: Path,
    ) -> EncodedUpload:
        """Encodes (and, for secure profiles, encrypts) the delta into ``spool``."""


class PlaintextEncoder(UpdateEncoder):
    """The comparison profile: the delta in the clear."""

    profile = common.CRYPTO_PROFILE_PLAINTEXT
    payload_format_version = plaintext_update.FORMAT_VERSION

    def verify_descriptor(
        self,
        signed: common.SignedRoundDescriptor,
        key_material: common.KeyEpochMaterial | None,
    ) -> common.RoundDescriptor:
        """Parses the unsigned descriptor of a plaintext round."""
        descriptor = common.RoundDescriptor.FromString(signed.descriptor)
        if descriptor.profile != self.profile:
            raise DescriptorRefused("descriptor is not for the plaintext profile")
        return descriptor

    def encode(
        self,
        delta: npt.NDArray[np.float32],
        descriptor: common.RoundDescriptor,
        descriptor_sha256: bytes,
        spool: Path,
    ) -> EncodedUpload:
        """Writes the float32 delta."""
        spool.parent.mkdir(parents=True, exist_ok=True)
        with open(spool, "wb") as handle:
            handle.write(plaintext_update.encode(delta))
            handle.flush()
            os.fsync(handle.fileno())
        return EncodedUpload(spool, self.payload_format_version)


def encoder_for(profile: int, state_dir: Path) -> UpdateEncoder:
    """The encoder of a federation's crypto profile.

    Raises:
        DescriptorRefused: for a profile this build cannot encode.
    """
    if profile == common.CRYPTO_PROFILE_PLAINTEXT:
        return PlaintextEncoder()
    raise DescriptorRefused(f"crypto profile {profile} is not supported by this worker")
