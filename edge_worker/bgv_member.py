"""The key-holder side of the BGV profiles: key ceremony tasks and partial decryptions.

Per key epoch the member generates its key share against a CRS it derives itself from the signed
roster, commits to it, reveals it once every commitment is fixed, checks that the coordinator's
joint key is the sum of the committed shares, signs it, and Shamir-shares its secret sealed to
the other members. Everything secret stays in ``member/epoch-N/bgv-<roster>/`` (mode 0600), one
directory per roster so that a retried ceremony never mixes keys. When a certified aggregate is
opened it partial-decrypts once per round (the member's durable policy records the bytes) and
uploads the partials with UploadCommitteeOutput.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from crypto import bgv
from crypto.bgv.wire import crs_seed_for, encode_partials, partials_plan
from crypto.codec import slots_needed
from crypto.committee import RefusalError, sha256, sign_joint_public_key
from crypto.committee.contributions import VerifiedContributorSet
from crypto.committee.digests import committee_output_message
from crypto.committee.errors import (
    AGGREGATE_MISMATCH,
    BAD_TRANSCRIPT,
    CONFLICT,
    MALFORMED,
)
from crypto.committee.roster import Roster
from crypto.committee.signatures import sign_as_member
from crypto.durable import write_durable
from crypto.round_codec import RoundCodecError, codec_config
from crypto.sealing import SealedMessage
from crypto.signing import SignatureTag
from edge_worker.bgv_encoder import BGV_PROFILES, bgv_params_problem, bgv_profile, shared_context
from edge_worker.connection import RETRYABLE
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import committee_service_pb2_grpc as cmt_grpc
from hefl.v1 import common_pb2 as common

if TYPE_CHECKING:
    from edge_worker.member import MemberRuntime

logger = logging.getLogger(__name__)

_SERVICE = "/hefl.v1.CommitteeService/"
_PARTIALS_MAGIC = b"HEFLBGVP\x01"
_U32 = struct.Struct("<I")
_MAX_UPLOAD_ATTEMPTS = 8

BgvHandler = Callable[[cmt.CommitteeTask], Awaitable[cmt.SubmitCommitteeResultRequest | None]]


# --- member state ------------------------------------------------------------------------------


@dataclass
class _EpochKeys:
    """One epoch's key material of this member, with where it lives."""

    directory: Path
    roster: Roster
    ctx: bgv.HeContext
    secrets: bgv.MemberSecrets

    @property
    def secrets_path(self) -> Path:
        return self.directory / "secrets.bin"

    @property
    def commitments_path(self) -> Path:
        return self.directory / "commitments.bin"

    @property
    def bundle_path(self) -> Path:
        return self.directory / "bundle.bin"

    def save(self) -> None:
        """Persists the secrets (owner-only, atomic, as MemberSecrets.save writes them)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secrets.save(self.secrets_path)


def _committee(roster: Roster) -> bgv.Committee:
    return bgv.Committee(len(roster.message.members), roster.threshold)


class BgvMember:
    """The BGV handlers of one key holder; registered into its MemberRuntime."""

    def __init__(self, runtime: MemberRuntime) -> None:
        """Uses the runtime's epochs (roster, sealing key, policy), connection and key."""
        self._runtime = runtime
        self._keys: dict[tuple[int, bytes], _EpochKeys] = {}

    def handlers(self) -> dict[str, BgvHandler]:
        """The task kinds this role answers."""
        return {
            "generate_key_share": self.generate_key_share,
            "reveal_key_share": self.reveal_key_share,
            "distribute_key_shares": self.distribute_key_shares,
            "receive_key_shares": self.receive_key_shares,
        }

    # --- state --------------------------------------------------------------------------------

    def _roster(self, epoch: int) -> Roster:
        state = self._runtime.epochs.get(epoch)
        if state is None or state.roster is None:
            raise RefusalError(MALFORMED, f"not a member of epoch {epoch}")
        if state.roster.profile not in BGV_PROFILES:
            raise RefusalError(MALFORMED, f"epoch {epoch} is not a BGV epoch")
        return state.roster

    def _directory(self, roster: Roster) -> Path:
        # One directory per roster: a ceremony retried with other members starts afresh.
        return self._runtime.directory / f"epoch-{roster.epoch}" / f"bgv-{roster.sha256.hex()[:16]}"

    def _index(self, roster: Roster) -> int:
        index = roster.index_of(self._runtime.key.public_bytes)
        if index is None:
            raise RefusalError(MALFORMED, "this key is not in the roster")
        return index

    def _stored(self, roster: Roster) -> _EpochKeys | None:
        """This roster's key material, from memory or (after a restart) from disk."""
        cached = self._keys.get((roster.epoch, roster.sha256))
        if cached is not None:
            return cached
        directory = self._directory(roster)
        context_path, secrets_path = directory / "context.bin", directory / "secrets.bin"
        if not secrets_path.exists() or not context_path.exists():
            return None
        ctx = shared_context(bgv_profile(roster.profile), context_path.read_bytes())
        keys = _EpochKeys(directory, roster, ctx, bgv.MemberSecrets.load(ctx, secrets_path))
        self._keys[(roster.epoch, roster.sha256)] = keys
        return keys

    def _load(self, epoch: int) -> _EpochKeys:
        keys = self._stored(self._roster(epoch))
        if keys is None:
            raise RefusalError(MALFORMED, f"no key share generated for epoch {epoch}")
        return keys

    def _generate(self, roster: Roster, context_bytes: bytes, seed: bytes) -> _EpochKeys:
        """The roster's key material, generated and persisted the first time only."""
        stored = self._stored(roster)
        if stored is not None:
            return stored
        ctx = shared_context(bgv_profile(roster.profile), context_bytes)
        secrets = bgv.MemberSecrets.generate(ctx, _committee(roster), self._index(roster), seed)
        keys = _EpochKeys(self._directory(roster), roster, ctx, secrets)
        # Context first: secrets without a context to load them with would be unusable.
        write_durable(keys.directory / "context.bin", ctx.serialize(), private=True)
        keys.save()
        self._keys[(roster.epoch, roster.sha256)] = keys
        return keys

    # --- key ceremony -------------------------------------------------------------------------

    async def generate_key_share(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        """Generates (once per roster) the key share and answers with its commitment."""
        roster = self._roster(task.epoch)
        generate = task.generate_key_share
        if generate.crs_seed != crs_seed_for(roster):
            raise RefusalError(BAD_TRANSCRIPT, "the CRS seed is not the one the roster fixes")
        try:
            keys = await asyncio.to_thread(
                self._generate, roster, generate.crypto_context, generate.crs_seed
            )
        except bgv.BgvError as error:
            raise RefusalError(MALFORMED, f"crypto context refused: {error}") from error
        share = keys.secrets.public_share
        return cmt.SubmitCommitteeResultRequest(
            key_share_commitment=cmt.KeyShareCommitment(
                member_index=share.member, commitment=share.commitment()
            )
        )

    async def reveal_key_share(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        """Reveals the public-key share once every member's commitment is fixed (one set only)."""
        keys = self._load(task.epoch)
        commitments = list(task.reveal_key_share.commitments)
        indices = [c.member_index for c in commitments]
        if sorted(indices) != list(keys.secrets.committee.members):
            raise RefusalError(BAD_TRANSCRIPT, f"need one commitment per member, got {indices}")
        share = keys.secrets.public_share
        own = next(c for c in commitments if c.member_index == share.member)
        if own.commitment != share.commitment():
            raise RefusalError(BAD_TRANSCRIPT, "the set lacks this member's commitment")
        canonical = cmt.RevealKeyShareTask(
            commitments=sorted(commitments, key=lambda c: c.member_index)
        ).SerializeToString()
        if keys.commitments_path.exists():
            if keys.commitments_path.read_bytes() != canonical:
                raise RefusalError(CONFLICT, "this member revealed against another commitment set")
        else:
            write_durable(keys.commitments_path, canonical, private=True)
        return cmt.SubmitCommitteeResultRequest(
            public_key_share=cmt.PublicKeyShare(member_index=share.member, public_key=share.key)
        )

    async def distribute_key_shares(
        self, task: cmt.CommitteeTask
    ) -> cmt.SubmitCommitteeResultRequest:
        """Checks and signs the joint key, then seals Shamir shares of the secret to the others."""
        keys = self._load(task.epoch)
        distribute = task.distribute_key_shares
        if distribute.roster != keys.roster.serialized:
            raise RefusalError(MALFORMED, "the task names another roster")
        if not keys.commitments_path.exists():
            raise RefusalError(BAD_TRANSCRIPT, "this member has not revealed its share")
        if keys.bundle_path.exists():
            # Answered before (a lost answer or a restart): the same shares, never fresh ones.
            if keys.secrets.joint_public_key != distribute.joint_public_key:
                raise RefusalError(CONFLICT, "this member already signed another joint key")
            return cmt.SubmitCommitteeResultRequest(
                key_share_bundle=cmt.KeyShareBundle.FromString(keys.bundle_path.read_bytes())
            )
        committed = cmt.RevealKeyShareTask.FromString(keys.commitments_path.read_bytes())
        commitments = {c.member_index: c.commitment for c in committed.commitments}
        shares = {
            s.member_index: bgv.PublicKeyShare(s.member_index, s.public_key)
            for s in distribute.public_key_shares
        }
        if len(shares) != len(distribute.public_key_shares):
            raise RefusalError(MALFORMED, "a member's public-key share appears twice")
        try:
            await asyncio.to_thread(
                keys.secrets.accept_joint_key, shares, distribute.joint_public_key, commitments
            )
        except bgv.KeyCeremonyError as error:
            raise RefusalError(BAD_TRANSCRIPT, str(error)) from error
        index = keys.secrets.index
        recipients = {
            m.member_index: m.sealing_public_key
            for m in keys.roster.message.members
            if m.member_index != index
        }
        # The roster digest names federation, epoch and members; the box also binds both ends.
        sealed = await asyncio.to_thread(keys.secrets.seal_shares, recipients, keys.roster.sha256)
        bundle = cmt.KeyShareBundle(
            joint_public_key_signature=sign_joint_public_key(
                self._runtime.key, keys.roster, distribute.joint_public_key
            ),
            shares=[
                common.SealedBox(
                    recipient_index=recipient,
                    ephemeral_public_key=box.ephemeral_public_key,
                    nonce=box.nonce,
                    ciphertext=box.ciphertext,
                )
                for recipient, box in sorted(sealed.items())
            ],
        )
        await asyncio.to_thread(keys.save)
        write_durable(keys.bundle_path, bundle.SerializeToString(), private=True)
        return cmt.SubmitCommitteeResultRequest(key_share_bundle=bundle)

    async def receive_key_shares(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        """Opens and stores the share of every other member's secret (all of them or none)."""
        keys = self._load(task.epoch)
        if keys.secrets.joint_public_key is None:
            raise RefusalError(BAD_TRANSCRIPT, "this member has not accepted a joint key")
        index = keys.secrets.index
        relayed = list(task.receive_key_shares.shares)
        senders = sorted(r.sender_index for r in relayed)
        others = [m for m in keys.secrets.committee.members if m != index]
        if senders != others:
            raise RefusalError(MALFORMED, f"need one share from each of {others}, got {senders}")
        if any(r.sealed_share.recipient_index != index for r in relayed):
            raise RefusalError(MALFORMED, "a relayed share is addressed to another member")
        sealing_key = self._runtime.epochs[task.epoch].sealing_key

        def store() -> bgv.MemberSecrets:
            # Staged on a copy, so one bad box leaves the stored state untouched.
            staged = bgv.MemberSecrets.from_bytes(keys.ctx, keys.secrets.to_bytes())
            for share in relayed:
                box = share.sealed_share
                staged.receive_share(
                    share.sender_index,
                    SealedMessage(box.ephemeral_public_key, box.nonce, box.ciphertext),
                    sealing_key,
                    keys.roster.sha256,
                )
            staged.save(keys.secrets_path)
            return staged

        try:
            keys.secrets = await asyncio.to_thread(store)
        except bgv.KeyCeremonyError as error:
            raise RefusalError(BAD_TRANSCRIPT, str(error)) from error
        self._forget_old_epochs(task.epoch)
        return cmt.SubmitCommitteeResultRequest(shares_stored=True)

    def _forget_old_epochs(self, current: int) -> None:
        """Deletes key material two epochs back: rounds only ever use the last two epochs."""
        for path in self._runtime.directory.glob("epoch-*/bgv-*"):
            number = int(path.parent.name.split("-", 1)[1])
            if number < current - 1:
                shutil.rmtree(path, ignore_errors=True)
                self._keys = {k: v for k, v in self._keys.items() if k[0] != number}

    # --- opening ------------------------------------------------------------------------------

    async def open_aggregate(self, task: cmt.CommitteeTask) -> None:
        """Partial-decrypts a certified aggregate once per round and uploads the partials."""
        state = self._runtime.epochs.get(task.epoch)
        if state is None or state.policy is None:
            raise RefusalError(MALFORMED, f"not a member of epoch {task.epoch}")
        policy = state.policy
        keys = self._load(task.epoch)
        opening = task.open_aggregate
        try:
            plan = bgv.DecryptionPlan.make(keys.secrets.committee, opening.participant_indices)
        except bgv.DecryptionError as error:
            raise RefusalError(MALFORMED, str(error)) from error
        index = keys.secrets.index
        if index not in plan.participants or opening.lead != (index == plan.lead):
            raise RefusalError(MALFORMED, "the task's plan does not match its lead flag")
        descriptor = common.RoundDescriptor.FromString(opening.descriptor.descriptor)
        expected_ciphertexts = self._ciphertexts(descriptor, keys.ctx)
        data = await self._runtime.download_input(task.task_id, opening.input_sha256)

        def compute(verified: VerifiedContributorSet) -> bytes:
            digest = verified.message.aggregate_sha256
            if sha256(data) != digest:
                raise RefusalError(
                    AGGREGATE_MISMATCH, "the aggregate is not the one the set certifies"
                )
            shape = bgv.upload_shape(keys.ctx, keys.secrets.joint_public_key or b"")
            try:
                ciphertexts = list(
                    bgv.parse_frames(
                        [data],
                        max_frame_bytes=len(shape.reference),
                        max_frames=expected_ciphertexts,
                    )
                )
            except bgv.PayloadError as error:
                raise RefusalError(AGGREGATE_MISMATCH, str(error)) from error
            if len(ciphertexts) != expected_ciphertexts:
                raise RefusalError(
                    AGGREGATE_MISMATCH,
                    f"{len(ciphertexts)} ciphertexts, the round needs {expected_ciphertexts}",
                )
            try:
                partials = bgv.partial_decrypt(keys.secrets, plan, ciphertexts, digest)
            except (bgv.DecryptionError, bgv.KeyCeremonyError) as error:
                raise RefusalError(AGGREGATE_MISMATCH, str(error)) from error
            return encode_partials(plan, partials)

        output = await asyncio.to_thread(
            policy.open, opening.contributor_set, opening.certificate, opening.descriptor, compute
        )
        _, recorded, _ = partials_plan(output)
        if recorded != plan.participants:
            # Partials under a second plan would release more than one opening's worth.
            raise RefusalError(
                CONFLICT, f"this round was already opened with participants {list(recorded)}"
            )
        await self._upload(task.task_id, output, index)

    def _ciphertexts(self, descriptor: common.RoundDescriptor, ctx: bgv.HeContext) -> int:
        if descriptor.codec.WhichOneof("profile_params") != "bgv":
            raise RefusalError(MALFORMED, "the descriptor carries no BGV parameters")
        problem = bgv_params_problem(descriptor.codec.bgv, descriptor.codec, ctx)
        if problem is not None:
            raise RefusalError(BAD_TRANSCRIPT, problem)
        try:
            config = codec_config(descriptor.codec, descriptor.dp)
        except RoundCodecError as error:
            raise RefusalError(BAD_TRANSCRIPT, str(error)) from error
        slots = slots_needed(config.field_count, descriptor.codec.bgv.fields_per_slot)
        return bgv.ciphertext_count(ctx, slots)

    async def _upload(self, task_id: str, output: bytes, member_index: int) -> None:
        """UploadCommitteeOutput, resuming from the offset the coordinator committed."""
        runtime = self._runtime
        assert runtime.connection is not None
        connection = runtime.connection
        stub = cmt_grpc.CommitteeServiceStub(connection.channel)
        signature = sign_as_member(
            runtime.key,
            member_index,
            SignatureTag.COMMITTEE_OUTPUT,
            committee_output_message(task_id, output),
        )
        chunk = runtime.config.chunk_size_bytes
        attempt = 0

        def header(start: int) -> cmt.UploadCommitteeOutputRequest:
            return cmt.UploadCommitteeOutputRequest(
                header=cmt.CommitteeOutputHeader(
                    task_id=task_id, total_size_bytes=len(output), start_offset_bytes=start
                )
            )

        async def probe() -> AsyncIterator[cmt.UploadCommitteeOutputRequest]:
            yield header(0)

        async def frames(start: int) -> AsyncIterator[cmt.UploadCommitteeOutputRequest]:
            yield header(start)
            for position in range(start, len(output), chunk):
                yield cmt.UploadCommitteeOutputRequest(
                    chunk=common.Chunk(
                        offset_bytes=position, data=output[position : position + chunk]
                    )
                )
            yield cmt.UploadCommitteeOutputRequest(
                trailer=cmt.CommitteeOutputTrailer(
                    payload_sha256=sha256(output), signature=signature
                )
            )

        metadata = _SERVICE + "UploadCommitteeOutput"
        timeout = runtime.config.transfer_timeout_seconds
        while True:
            try:
                # A header-only stream is a status probe: it answers the committed offset.
                status = await stub.UploadCommitteeOutput(
                    probe(), metadata=connection.metadata(metadata), timeout=timeout
                )
                if status.complete:
                    return
                response = await stub.UploadCommitteeOutput(
                    frames(status.committed_size_bytes),
                    metadata=connection.metadata(metadata),
                    timeout=timeout,
                )
            except grpc.aio.AioRpcError as error:
                attempt += 1
                code = error.code()
                if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                    # The task expired or was answered: nothing more is wanted from us.
                    logger.info("output of %s no longer wanted: %s", task_id, error.details())
                    return
                if attempt > _MAX_UPLOAD_ATTEMPTS or code not in (
                    *RETRYABLE,
                    grpc.StatusCode.INVALID_ARGUMENT,  # bytes that did not hash: probe, resend
                ):
                    raise
                await connection.backoff(attempt)
                continue
            if response.complete:
                return
