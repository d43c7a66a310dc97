"""A real committee (keys, SQLite logs, signatures) for the committee tests, and a full round."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto.committee import (
    EnrollmentVerifier,
    MemberLog,
    MemberPolicy,
    Roster,
    SelfCertifyingVerifier,
    VerifiedContributorSet,
    VerifiedDescriptor,
    build_certificate,
    build_contributor_set,
    build_descriptor,
    build_roster,
    build_upload_statement,
    credential_of,
    join_epoch,
    member_entry,
    sign_roster,
    sign_upload_statement,
    verify_signed_descriptor,
    verify_signed_roster,
)
from crypto.sealing import SealingKey
from crypto.signing import SigningKey
from hefl.v1 import common_pb2

FEDERATION = "federation-a"
EPOCH = 3
ONESHOT = common_pb2.CRYPTO_PROFILE_ONESHOT

Contribution = tuple[common_pb2.SignedUploadStatement, common_pb2.WorkerCredential]


def oneshot_codec(max_summands: int = 100) -> common_pb2.CodecParams:
    return common_pb2.CodecParams(
        bits=16,
        sum_mode=common_pb2.SUM_MODE_MOD,
        clip_norm=1.0,
        scale=1024.0,
        rotation_block_size=1024,
        parameter_count=1000,
        max_summands=max_summands,
        oneshot=common_pb2.OneshotParams(
            ring_dimension=2048,
            modulus_bits=32,
            rounded_modulus_bits=26,
            message_shift_bits=8,
            sum_bits=16,
            secret_stddev=4.5,
            error_stddev=6.36,
            share_field_modulus=2**31 - 1,
        ),
    )


def dp_params(calibrated_contributors: int = 3) -> common_pb2.DpParams:
    return common_pb2.DpParams(
        enabled=True,
        local_noise_variance=2.0,
        calibrated_contributors=calibrated_contributors,
        target_delta=1e-5,
        epsilon_increment=0.5,
        epsilon_after_round=0.5,
    )


@dataclass
class Member:
    key: SigningKey
    sealing: SealingKey
    path: Path
    log: MemberLog
    policy: MemberPolicy


class World:
    """k members with durable logs, n enrolled workers, and a coordinator's view of them."""

    def __init__(
        self,
        directory: Path,
        *,
        members: int = 5,
        workers: int = 6,
        floor: int = 3,
        verifier: EnrollmentVerifier | None = None,
    ) -> None:
        self.directory = directory
        self.floor = floor
        self.verifier = verifier or SelfCertifyingVerifier()
        keys = [SigningKey.generate() for _ in range(members)]
        sealings = [SealingKey.generate() for _ in range(members)]
        entries = [
            member_entry(
                index,
                credential_of(key.public_bytes),
                join_epoch(key, sealing.public_bytes, FEDERATION, EPOCH),
            )
            for index, (key, sealing) in enumerate(zip(keys, sealings, strict=True), start=1)
        ]
        roster_bytes = build_roster(
            federation_id=FEDERATION, epoch=EPOCH, profile=ONESHOT, members=entries
        ).SerializeToString()
        signatures = [
            sign_roster(key, roster_bytes, sealing_public_key=sealing.public_bytes)
            for key, sealing in zip(keys, sealings, strict=True)
        ]
        self.roster: Roster = verify_signed_roster(
            common_pb2.SignedCommitteeRoster(roster=roster_bytes, signatures=signatures)
        )
        self.members: dict[int, Member] = {}
        for index, (key, sealing) in enumerate(zip(keys, sealings, strict=True), start=1):
            path = directory / f"member-{index}.sqlite"
            log = MemberLog(path)
            self.members[index] = Member(key, sealing, path, log, self._policy(log, key))
        self.workers = [SigningKey.generate() for _ in range(workers)]

    def _policy(self, log: MemberLog, key: SigningKey) -> MemberPolicy:
        return MemberPolicy(
            log=log,
            signing_key=key,
            roster=self.roster,
            enrollment_verifier=self.verifier,
            min_contributors_floor=self.floor,
        )

    def policy(self, index: int) -> MemberPolicy:
        return self.members[index].policy

    def restart(self, index: int) -> MemberPolicy:
        """Closes member ``index``'s log and builds a fresh policy over the same file."""
        member = self.members[index]
        member.log.close()
        member.log = MemberLog(member.path)
        member.policy = self._policy(member.log, member.key)
        return member.policy

    def clone_member(self, index: int, name: str) -> MemberPolicy:
        """A copy of member ``index`` with a copy of its log as it is now (another history)."""
        member = self.members[index]
        member.log.close()
        target = self.directory / f"clone-{name}.sqlite"
        shutil.copyfile(member.path, target)
        member.log = MemberLog(member.path)
        member.policy = self._policy(member.log, member.key)
        return self._policy(MemberLog(target), member.key)

    def close(self) -> None:
        for member in self.members.values():
            member.log.close()

    def seed_transcript(
        self, round_number: int, indices: Sequence[int] | None = None
    ) -> tuple[list[common_pb2.SeedCommitment], list[common_pb2.SeedReveal]]:
        chosen = list(self.members) if indices is None else list(indices)
        commitments = [self.policy(i).commit_seed(round_number) for i in chosen]
        reveals = [self.policy(i).reveal_seed(round_number, commitments) for i in chosen]
        return commitments, reveals

    def descriptor(
        self,
        round_number: int,
        *,
        min_contributors: int = 3,
        transcript: tuple[list[common_pb2.SeedCommitment], list[common_pb2.SeedReveal]]
        | None = None,
        codec: common_pb2.CodecParams | None = None,
        dp: common_pb2.DpParams | None = None,
        global_version: int = 7,
    ) -> common_pb2.RoundDescriptor:
        commitments, reveals = transcript or self.seed_transcript(round_number)
        return build_descriptor(
            roster=self.roster,
            round_number=round_number,
            codec=codec or oneshot_codec(),
            dp=dp or dp_params(),
            global_version=global_version,
            global_model_sha256=hashlib.sha256(b"model %d" % global_version).digest(),
            min_contributors=min_contributors,
            commitments=commitments,
            reveals=reveals,
        )

    def sign(
        self, descriptor: common_pb2.RoundDescriptor, indices: Sequence[int] | None = None
    ) -> common_pb2.SignedRoundDescriptor:
        serialized = descriptor.SerializeToString()
        chosen = list(self.members) if indices is None else list(indices)
        return common_pb2.SignedRoundDescriptor(
            descriptor=serialized,
            signatures=[self.policy(i).sign_descriptor(serialized) for i in chosen],
        )

    def prepare_round(
        self, round_number: int, *, min_contributors: int = 3
    ) -> common_pb2.SignedRoundDescriptor:
        """Commit, reveal and sign a descriptor with every member."""
        return self.sign(self.descriptor(round_number, min_contributors=min_contributors))

    def verified(self, signed: common_pb2.SignedRoundDescriptor) -> VerifiedDescriptor:
        return verify_signed_descriptor(signed, self.roster)

    def upload(self, worker: SigningKey, signed: common_pb2.SignedRoundDescriptor) -> Contribution:
        """An honest upload: a statement signed for this descriptor, and the credential."""
        statement = build_upload_statement(
            descriptor=self.verified(signed),
            worker_id=worker.worker_id,
            payload_format_version=1,
            payload_size_bytes=64,
            payload_sha256=hashlib.sha256(os.urandom(64)).digest(),
            sealed_shares_sha256=hashlib.sha256(os.urandom(64)).digest(),
        )
        return sign_upload_statement(worker, statement), credential_of(worker.public_bytes)

    def contributor_set(
        self,
        signed: common_pb2.SignedRoundDescriptor,
        contributions: Sequence[Contribution],
    ) -> bytes:
        return build_contributor_set(
            descriptor=self.verified(signed), contributions=contributions
        ).SerializeToString()

    def certify(
        self,
        contributor_set: bytes,
        signed: common_pb2.SignedRoundDescriptor,
        indices: Sequence[int] | None = None,
    ) -> common_pb2.QuorumCertificate:
        chosen = list(self.members) if indices is None else list(indices)
        signatures = [self.policy(i).certify(contributor_set, signed) for i in chosen]
        return build_certificate(self.roster, hashlib.sha256(contributor_set).digest(), signatures)


def opening(member_index: int) -> Callable[[VerifiedContributorSet], bytes]:
    """A stand-in for the member's real opening: fresh random bytes each time it is computed."""

    def compute(verified: VerifiedContributorSet) -> bytes:
        return bytes([member_index]) + verified.sha256 + os.urandom(16)

    return compute


def test_a_full_round_runs_from_roster_to_opening(tmp_path: Path) -> None:
    world = World(tmp_path)
    assert (world.roster.threshold, world.roster.certificate_quorum) == (3, 4)

    signed = world.prepare_round(1)
    descriptor = world.verified(signed)
    assert descriptor.message.round_number == 1
    assert len(descriptor.message.seed) == 32

    contributions = [world.upload(worker, signed) for worker in world.workers]
    contributor_set = world.contributor_set(signed, contributions)
    certificate = world.certify(contributor_set, signed)
    assert len(certificate.signatures) == 5

    def workers_seen(verified: VerifiedContributorSet) -> bytes:
        return ",".join(verified.worker_ids).encode()

    results = {
        world.policy(index).open(contributor_set, certificate, signed, workers_seen)
        for index in (1, 2, 3)
    }
    assert results == {",".join(sorted(worker.worker_id for worker in world.workers)).encode()}
    world.close()
