"""Per-profile update encoders: check the round descriptor, turn a delta into a spooled payload."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crypto import oneshot, plaintext_update
from crypto.codec import encode as codec_encode
from crypto.committee import (
    CommitteeError,
    EnrollmentVerifier,
    RefusalError,
    verify_signed_descriptor,
    verify_signed_roster,
)
from crypto.committee.roster import Roster
from crypto.csprng import Csprng
from crypto.durable import write_durable
from crypto.round_codec import RoundCodecError, codec_config, round_rotation
from hefl.v1 import common_pb2 as common


class DescriptorRefused(Exception):  # noqa: N818 - the device's decision, reported as an outcome
    """The device will not work for this round descriptor (bad signatures, reused round...)."""


@dataclass(frozen=True)
class EncodedUpload:
    """A payload spooled to disk plus the trailer parts the encoder produced."""

    payload_path: Path
    payload_format_version: int
    sealed_shares: list[common.SealedBox] = field(default_factory=list)
    fields: npt.NDArray[np.uint16] | None = None
    """The quantized fields before encryption (kept only if the device records its updates)."""


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
        signed: common.SignedRoundDescriptor,
        worker_id: str,
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
        signed: common.SignedRoundDescriptor,
        worker_id: str,
        spool: Path,
    ) -> EncodedUpload:
        """Writes the float32 delta."""
        write_durable(spool, plaintext_update.encode(delta))
        return EncodedUpload(spool, self.payload_format_version)


class SecureEncoder(UpdateEncoder):
    """What the secure encoders share: rosters per epoch and the signed-descriptor check."""

    def __init__(
        self, state_dir: Path, verifier: EnrollmentVerifier, rounding_seed: str = ""
    ) -> None:
        """Loads the rosters the device already verified.

        Args:
            state_dir: The device's state folder.
            verifier: Checks the committee members' enrolment credentials.
            rounding_seed: Reproducible stochastic rounding for DP-free test runs (crash tests
                compare models bit for bit); refused in any round with DP. Empty: a CSPRNG.
        """
        self._directory = state_dir / "rosters"
        self._verifier = verifier
        self._rounding_seed = rounding_seed
        self.rosters: dict[int, Roster] = {}
        for path in self._directory.glob("epoch-*.bin"):
            signed = common.SignedCommitteeRoster.FromString(path.read_bytes())
            roster = verify_signed_roster(signed, enrollment_verifier=self._verifier)
            self.rosters[roster.epoch] = roster

    def verify_descriptor(
        self,
        signed: common.SignedRoundDescriptor,
        key_material: common.KeyEpochMaterial | None,
    ) -> common.RoundDescriptor:
        """Checks the roster (once per epoch) and the committee's signatures on the descriptor."""
        try:
            if key_material is not None and key_material.HasField("roster"):
                roster = verify_signed_roster(
                    key_material.roster, enrollment_verifier=self._verifier
                )
                self.adopt_epoch(roster, key_material)
            epoch = common.RoundDescriptor.FromString(signed.descriptor).committee_epoch
            known = self.rosters.get(epoch)
            if known is None:
                raise DescriptorRefused(f"no verified roster for key epoch {epoch}")
            verified = verify_signed_descriptor(signed, known)
        except (RefusalError, CommitteeError) as error:
            raise DescriptorRefused(f"round descriptor refused: {error}") from error
        if verified.message.profile != self.profile:
            raise DescriptorRefused("descriptor is for another crypto profile")
        return verified.message

    def adopt_epoch(self, roster: Roster, key_material: common.KeyEpochMaterial) -> None:
        """Keeps a verified roster (and, in subclasses, the epoch's public keys)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        (self._directory / f"epoch-{roster.epoch}.bin").write_bytes(
            key_material.roster.SerializeToString()
        )
        self.rosters[roster.epoch] = roster

    def codec_fields(
        self, delta: npt.NDArray[np.float32], descriptor: common.RoundDescriptor
    ) -> npt.NDArray[np.uint16]:
        """Clips, rotates, quantizes and noises the delta as the descriptor says."""
        try:
            config = codec_config(descriptor.codec, descriptor.dp)
        except RoundCodecError as error:
            raise DescriptorRefused(str(error)) from error
        rng = None
        if self._rounding_seed:
            if descriptor.dp.enabled:
                # Seeded randomness would make the DP noise predictable: never with DP.
                raise DescriptorRefused("reproducible rounding is for rounds without DP only")
            rng = Csprng.from_seed(
                f"{self._rounding_seed}/{descriptor.round_number}".encode(), "test-rounding"
            )
        encoded = codec_encode(delta, config, round_rotation(config, descriptor.seed), rng=rng)
        return encoded.fields


class OneshotEncoder(SecureEncoder):
    """Masks the quantized update with a fresh RLWE mask; the key goes as sealed shares."""

    profile = common.CRYPTO_PROFILE_ONESHOT
    payload_format_version = oneshot.FORMAT_VERSION

    def __init__(
        self, state_dir: Path, verifier: EnrollmentVerifier, rounding_seed: str = ""
    ) -> None:
        """Loads rosters and the record of rounds already masked."""
        super().__init__(state_dir, verifier, rounding_seed)
        self._used_path = state_dir / "used_rounds.bin"
        self.used_rounds = (
            oneshot.UsedRounds.from_bytes(self._used_path.read_bytes())
            if self._used_path.exists()
            else oneshot.UsedRounds()
        )

    def encode(
        self,
        delta: npt.NDArray[np.float32],
        signed: common.SignedRoundDescriptor,
        worker_id: str,
        spool: Path,
    ) -> EncodedUpload:
        """Quantizes, masks and seals; records the round as used before anything is sent."""
        descriptor = common.RoundDescriptor.FromString(signed.descriptor)
        roster = self.rosters[descriptor.committee_epoch]
        binding = oneshot.RoundBinding(signed.descriptor)
        try:
            params = binding.params()
            fields = self.codec_fields(delta, descriptor)
            members = [
                oneshot.MemberKey(m.member_index, m.sealing_public_key)
                for m in roster.message.members
            ]
            masked = oneshot.mask_update(
                binding,
                params,
                fields,
                self.used_rounds,
                members=members,
                threshold=roster.threshold,
                worker_id=worker_id,
            )
        except (oneshot.ParameterError, oneshot.RoundReuseError) as error:
            raise DescriptorRefused(str(error)) from error
        write_durable(self._used_path, self.used_rounds.to_bytes())
        write_durable(spool, masked.payload)
        boxes = [
            common.SealedBox(
                recipient_index=share.member_index,
                ephemeral_public_key=share.sealed.ephemeral_public_key,
                nonce=share.sealed.nonce,
                ciphertext=share.sealed.ciphertext,
            )
            for share in masked.sealed_shares
        ]
        return EncodedUpload(spool, self.payload_format_version, boxes, fields)


def encoder_for(
    profile: int, state_dir: Path, verifier: EnrollmentVerifier, rounding_seed: str = ""
) -> UpdateEncoder:
    """The encoder of a federation's crypto profile (``verifier`` checks committee members).

    Raises:
        DescriptorRefused: for a profile this build cannot encode.
    """
    if profile == common.CRYPTO_PROFILE_PLAINTEXT:
        return PlaintextEncoder()
    if profile == common.CRYPTO_PROFILE_ONESHOT:
        return OneshotEncoder(state_dir, verifier, rounding_seed)
    if profile in (common.CRYPTO_PROFILE_FAST, common.CRYPTO_PROFILE_PROVABLE):
        # Imported here: bgv_encoder builds on this module (and loads OpenFHE only when needed).
        from edge_worker.bgv_encoder import BgvEncoder

        return BgvEncoder(state_dir, profile, verifier, rounding_seed)
    raise DescriptorRefused(f"crypto profile {profile} is not supported by this worker")
