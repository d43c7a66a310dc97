"""The key-holder role of a worker: answers committee tasks under its durable policy.

A key holder keeps a task stream open to the coordinator and answers each task only after its
own checks (crypto.committee.MemberPolicy) and a durable record of the decision. Its secrets
(the epoch's X25519 sealing key, and for the BGV profiles its key share and the shares others
sent it) stay in its own state directory; what it sends back is public or a share of an
aggregate the committee certified.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from crypto import oneshot
from crypto.committee import (
    MemberLog,
    MemberPolicy,
    RefusalError,
    join_epoch,
    load_roster,
    sign_roster,
)
from crypto.committee.contributions import VerifiedContributorSet
from crypto.committee.roster import Roster
from crypto.durable import write_durable
from crypto.oneshot.committee_input import CommitteeInputError, parse_member_input
from crypto.sealing import SealedMessage, SealingKey
from crypto.signing import SigningKey
from edge_worker.bgv_member import BgvMember
from edge_worker.config import WorkerConfig
from edge_worker.connection import RETRYABLE, Connection
from edge_worker.tls import enrollment_verifier
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import committee_service_pb2_grpc as cmt_grpc
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)

_SERVICE = "/hefl.v1.CommitteeService/"


@dataclass
class EpochState:
    """What a member holds for one key epoch."""

    number: int
    sealing_key: SealingKey
    roster: Roster | None = None
    policy: MemberPolicy | None = None


class MemberRefusal(Exception):  # noqa: N818 - carries a refusal, reported to the coordinator
    """The member declines a task (wire refusal code and detail)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


Handler = Callable[[cmt.CommitteeTask], Awaitable[cmt.SubmitCommitteeResultRequest | None]]


class MemberRuntime:
    """Serves the committee tasks of one key-holding worker."""

    def __init__(self, config: WorkerConfig, key: SigningKey, state_dir: Path) -> None:
        """Loads the member's epochs and opens its durable log."""
        self.config = config
        self.key = key
        self.directory = state_dir / "member"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = MemberLog(self.directory / "log.sqlite3")
        self.verifier = enrollment_verifier(config)
        self.epochs: dict[int, EpochState] = {}
        self.connection: Connection | None = None
        self.handlers: dict[str, Handler] = {
            "join_epoch": self._join_epoch,
            "sign_roster": self._sign_roster,
            "commit_seed": self._commit_seed,
            "reveal_seed": self._reveal_seed,
            "sign_descriptor": self._sign_descriptor,
            "certify_contributor_set": self._certify,
            "open_aggregate": self._open_aggregate,
        }
        # The fast and provable profiles: key ceremony tasks, and their openings (routed below).
        self.bgv = BgvMember(self)
        self.handlers.update(self.bgv.handlers())
        self._load_epochs()

    def _epoch_dir(self, number: int) -> Path:
        return self.directory / f"epoch-{number}"

    def _load_epochs(self) -> None:
        for path in sorted(self.directory.glob("epoch-*")):
            number = int(path.name.split("-", 1)[1])
            sealing_path = path / "sealing.key"
            if not sealing_path.exists():
                continue
            state = EpochState(number, SealingKey.from_private_bytes(sealing_path.read_bytes()))
            roster_path = path / "roster.bin"
            if roster_path.exists():
                self._adopt_roster(state, roster_path.read_bytes())
            self.epochs[number] = state

    def _adopt_roster(self, state: EpochState, roster_bytes: bytes) -> None:
        roster = load_roster(roster_bytes, self.verifier)
        state.roster = roster
        state.policy = MemberPolicy(
            log=self.log,
            signing_key=self.key,
            roster=roster,
            enrollment_verifier=self.verifier,
            min_contributors_floor=max(2, self.config.min_contributors_floor),
            reproducible_seed=self.config.reproducible_rounding_seed.encode(),
        )

    def _policy(self, epoch: int) -> MemberPolicy:
        state = self.epochs.get(epoch)
        if state is None or state.policy is None:
            raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, f"not a member of epoch {epoch}")
        return state.policy

    # --- the task loop ------------------------------------------------------------------------

    async def run(self, connection: Connection, stop: asyncio.Event) -> None:
        """Keeps the task stream open (reconnecting with backoff) until ``stop`` is set."""
        self.connection = connection
        stub = cmt_grpc.CommitteeServiceStub(connection.channel)
        attempt = 0
        while not stop.is_set():
            try:
                call = stub.WatchCommitteeTasks(
                    cmt.WatchCommitteeTasksRequest(federation_id=self.config.federation_id),
                    metadata=connection.metadata(_SERVICE + "WatchCommitteeTasks"),
                )
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    async for response in _until(call, stopper):
                        attempt = 0
                        await self._handle(stub, response.task)
                finally:
                    stopper.cancel()
                    call.cancel()
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE and error.code() != grpc.StatusCode.CANCELLED:
                    logger.error("committee stream refused: %s %s", error.code(), error.details())
            if stop.is_set():
                return
            attempt += 1
            await connection.backoff(attempt)

    async def _handle(
        self, stub: cmt_grpc.CommitteeServiceAsyncStub, task: cmt.CommitteeTask
    ) -> None:
        kind = str(task.WhichOneof("kind"))
        handler = self.handlers.get(kind)
        try:
            if handler is None:
                raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, f"unsupported task {kind}")
            answer = await handler(task)
        except RefusalError as refusal:
            answer = cmt.SubmitCommitteeResultRequest(refusal=refusal.to_proto())
        except MemberRefusal as refusal:
            answer = cmt.SubmitCommitteeResultRequest(
                refusal=cmt.Refusal(code=refusal.code, detail=refusal.detail)  # type: ignore[arg-type]
            )
        except Exception as error:  # noqa: BLE001 - any failure is reported, never silent
            logger.exception("committee task %s failed", kind)
            answer = cmt.SubmitCommitteeResultRequest(
                refusal=cmt.Refusal(code=cmt.REFUSAL_CODE_MALFORMED, detail=str(error)[:500])
            )
        if answer is None:
            return  # answered through a bulk upload
        answer.task_id = task.task_id
        assert self.connection is not None
        connection = self.connection
        try:
            await connection.retry(
                "SubmitCommitteeResult",
                lambda: stub.SubmitCommitteeResult(
                    answer,
                    metadata=connection.metadata(_SERVICE + "SubmitCommitteeResult"),
                    timeout=self.config.call_timeout_seconds,
                ),
            )
        except grpc.aio.AioRpcError as error:
            logger.warning("answer to %s not delivered: %s", kind, error.details())

    # --- epoch tasks --------------------------------------------------------------------------

    async def _join_epoch(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        join = task.join_epoch
        if join.federation_id != self.config.federation_id:
            raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, "task for another federation")
        state = self.epochs.get(task.epoch)
        if state is None:
            # A fresh sealing key per epoch; earlier epochs' boxes stay sealed to earlier keys.
            state = EpochState(task.epoch, SealingKey.generate())
            write_durable(
                self._epoch_dir(task.epoch) / "sealing.key",
                state.sealing_key.private_bytes(),
                private=True,
            )
            self.epochs[task.epoch] = state
        return cmt.SubmitCommitteeResultRequest(
            epoch_join=join_epoch(
                self.key, state.sealing_key.public_bytes, join.federation_id, task.epoch
            )
        )

    async def _sign_roster(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        state = self.epochs.get(task.epoch)
        if state is None:
            raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, f"never joined epoch {task.epoch}")
        roster_bytes = task.sign_roster.roster
        signature = sign_roster(
            self.key,
            roster_bytes,
            sealing_public_key=state.sealing_key.public_bytes,
            enrollment_verifier=self.verifier,
        )
        write_durable(self._epoch_dir(task.epoch) / "roster.bin", roster_bytes, private=True)
        self._adopt_roster(state, roster_bytes)
        return cmt.SubmitCommitteeResultRequest(signature=signature)

    # --- round tasks --------------------------------------------------------------------------

    async def _commit_seed(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        policy = self._policy(task.epoch)
        return cmt.SubmitCommitteeResultRequest(
            seed_commitment=policy.commit_seed(task.round_number)
        )

    async def _reveal_seed(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        policy = self._policy(task.epoch)
        return cmt.SubmitCommitteeResultRequest(
            seed_reveal=policy.reveal_seed(task.round_number, list(task.reveal_seed.commitments))
        )

    async def _sign_descriptor(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        policy = self._policy(task.epoch)
        return cmt.SubmitCommitteeResultRequest(
            signature=policy.sign_descriptor(task.sign_descriptor.descriptor)
        )

    async def _certify(self, task: cmt.CommitteeTask) -> cmt.SubmitCommitteeResultRequest:
        policy = self._policy(task.epoch)
        certify = task.certify_contributor_set
        signature = await asyncio.to_thread(
            policy.certify, certify.contributor_set, certify.descriptor
        )
        return cmt.SubmitCommitteeResultRequest(signature=signature)

    async def _open_aggregate(
        self, task: cmt.CommitteeTask
    ) -> cmt.SubmitCommitteeResultRequest | None:
        profile = common.RoundDescriptor.FromString(
            task.open_aggregate.descriptor.descriptor
        ).profile
        if profile in (common.CRYPTO_PROFILE_FAST, common.CRYPTO_PROFILE_PROVABLE):
            await self.bgv.open_aggregate(task)
            return None  # the partials went up with UploadCommitteeOutput
        policy = self._policy(task.epoch)
        state = self.epochs[task.epoch]
        opening = task.open_aggregate
        data = await self.download_input(task.task_id, opening.input_sha256)
        descriptor = common.RoundDescriptor.FromString(opening.descriptor.descriptor)
        if descriptor.profile != common.CRYPTO_PROFILE_ONESHOT:
            raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, "this member opens oneshot rounds")

        def compute(verified: VerifiedContributorSet) -> bytes:
            try:
                boxes = parse_member_input(data)
            except CommitteeInputError as error:
                raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, str(error)) from error
            if len(boxes) != len(verified.statements):
                raise MemberRefusal(
                    cmt.REFUSAL_CODE_AGGREGATE_MISMATCH,
                    f"{len(boxes)} sealed shares for {len(verified.statements)} contributions",
                )
            binding = oneshot.RoundBinding(opening.descriptor.descriptor)
            contributions = []
            for statement, box in zip(verified.statements, boxes, strict=True):
                if box.recipient_index != policy.member_index:
                    raise MemberRefusal(
                        cmt.REFUSAL_CODE_AGGREGATE_MISMATCH, "a sealed share is for another member"
                    )
                contributions.append(
                    oneshot.Contribution(
                        statement.worker_id,
                        statement.payload_sha256,
                        SealedMessage(box.ephemeral_public_key, box.nonce, box.ciphertext),
                    )
                )
            try:
                share = oneshot.open_share_sum(
                    state.sealing_key,
                    policy.member_index,
                    binding,
                    contributions,
                    ring_dimension=descriptor.codec.oneshot.ring_dimension,
                )
            except oneshot.ShareOpenError as error:
                raise MemberRefusal(cmt.REFUSAL_CODE_BAD_CONTRIBUTION, str(error)) from error
            return cmt.KeyShareOpening(
                member_index=policy.member_index, share_sum=oneshot.encode_share_sum(share)
            ).SerializeToString()

        result = await asyncio.to_thread(
            policy.open,
            opening.contributor_set,
            opening.certificate,
            opening.descriptor,
            compute,
        )
        return cmt.SubmitCommitteeResultRequest(
            key_share_opening=cmt.KeyShareOpening.FromString(result)
        )

    async def download_input(self, task_id: str, expected_sha256: bytes) -> bytes:
        """Downloads a task's bulk input, resuming after breaks, and checks its digest."""
        assert self.connection is not None
        connection = self.connection
        stub = cmt_grpc.CommitteeServiceStub(connection.channel)
        buffer = bytearray()
        attempt = 0
        while True:
            try:
                call = stub.DownloadCommitteeInput(
                    cmt.DownloadCommitteeInputRequest(task_id=task_id, offset_bytes=len(buffer)),
                    metadata=connection.metadata(_SERVICE + "DownloadCommitteeInput"),
                    timeout=connection.config.transfer_timeout_seconds,
                )
                async for frame in call:
                    kind = frame.WhichOneof("frame")
                    if kind == "header" and frame.header.payload_sha256 != expected_sha256:
                        raise MemberRefusal(
                            cmt.REFUSAL_CODE_MALFORMED,
                            "committee input digest differs from the task",
                        )
                    if kind == "chunk":
                        if frame.chunk.offset_bytes != len(buffer):
                            raise MemberRefusal(
                                cmt.REFUSAL_CODE_MALFORMED, "input chunk out of order"
                            )
                        buffer.extend(frame.chunk.data)
                break
            except grpc.aio.AioRpcError as error:
                attempt += 1
                if error.code() not in RETRYABLE or attempt > 8:
                    raise
                await connection.backoff(attempt)
        data = bytes(buffer)
        if hashlib.sha256(data).digest() != expected_sha256:
            raise MemberRefusal(cmt.REFUSAL_CODE_MALFORMED, "committee input fails its digest")
        return data


async def _until(
    call: AsyncIterable[cmt.WatchCommitteeTasksResponse], stopper: asyncio.Future[Any]
) -> AsyncIterator[cmt.WatchCommitteeTasksResponse]:
    """Iterates a server stream until it ends or ``stopper`` completes."""
    iterator = call.__aiter__()
    while True:
        step = asyncio.ensure_future(iterator.__anext__())
        done, _ = await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if step not in done:
            step.cancel()
            return
        try:
            yield step.result()
        except StopAsyncIteration:
            return
