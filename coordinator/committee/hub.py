"""Dispatches committee tasks to connected key holders and collects their answers.

Key holders connect out and keep a ``WatchCommitteeTasks`` stream open; a task addressed to a
member is queued for it and re-sent whenever it reconnects, until it is answered or cancelled.
The hub holds no key material: answers are signatures, commitments, sealed boxes and (for
openings) shares of aggregates that the committee agreed to open.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from coordinator.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    WrongPhaseError,
)
from hefl.v1 import committee_service_pb2 as cmt

logger = logging.getLogger(__name__)

_RETIRED_TASKS = 4096

# Which result kinds answer which task kind (a refusal answers any task).
_EXPECTED_RESULT = {
    "join_epoch": "epoch_join",
    "sign_roster": "signature",
    "generate_key_share": "key_share_commitment",
    "reveal_key_share": "public_key_share",
    "distribute_key_shares": "key_share_bundle",
    "receive_key_shares": "shares_stored",
    "commit_seed": "seed_commitment",
    "reveal_seed": "seed_reveal",
    "sign_descriptor": "signature",
    "certify_contributor_set": "signature",
    "open_aggregate": "key_share_opening",
}


@dataclass
class PendingTask:
    """A task sent to one member, with its answer once it arrives."""

    worker_id: str
    member_index: int
    task: cmt.CommitteeTask
    result: asyncio.Future[cmt.SubmitCommitteeResultRequest]
    bulk_input: bytes = b""
    expects_output: bool = False
    output: bytearray = field(default_factory=bytearray)
    created: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> str:
        """The task's oneof case."""
        return str(self.task.WhichOneof("kind"))

    def answer(self) -> cmt.SubmitCommitteeResultRequest | None:
        """The answer if one arrived (None while pending or after cancellation)."""
        if self.result.done() and not self.result.cancelled():
            return self.result.result()
        return None


class CommitteeHub:
    """Queues tasks per member and matches answers to tasks."""

    def __init__(self, disconnect_grace_seconds: float = 3.0) -> None:
        """An empty hub; members appear when they open their task streams.

        Args:
            disconnect_grace_seconds: How long a disconnected member's pending tasks wait for
                it to come back before they count as refused.
        """
        self.disconnect_grace_seconds = disconnect_grace_seconds
        self._pending: dict[str, PendingTask] = {}
        self._queues: dict[str, asyncio.Queue[cmt.CommitteeTask | None]] = {}
        self._streams: defaultdict[str, int] = defaultdict(int)
        self._connected_event = asyncio.Event()
        # Tasks whose answers stopped mattering (the step went on with enough members); a
        # late answer to one is acknowledged, not treated as an error.
        self._retired: OrderedDict[str, str] = OrderedDict()

    # --- members ----------------------------------------------------------------------------

    def connected(self) -> set[str]:
        """Workers whose task stream is open now."""
        return {worker for worker, count in self._streams.items() if count > 0}

    async def wait_for_members(self, count: int, timeout: float) -> set[str]:
        """Waits until ``count`` members are connected or the timeout passes."""
        deadline = time.monotonic() + timeout
        while len(self.connected()) < count and time.monotonic() < deadline:
            self._connected_event.clear()
            try:
                await asyncio.wait_for(
                    self._connected_event.wait(), timeout=deadline - time.monotonic()
                )
            except asyncio.TimeoutError:
                break
        return self.connected()

    async def stream(self, worker_id: str) -> AsyncIterator[cmt.CommitteeTask]:
        """The tasks of one member: every unanswered one first, then new ones as they come."""
        queue = self._queues.get(worker_id)
        if queue is None:
            queue = self._queues[worker_id] = asyncio.Queue()
        self._streams[worker_id] += 1
        self._connected_event.set()
        delivered: set[str] = set()
        try:
            for pending in list(self._pending.values()):
                if pending.worker_id == worker_id and not pending.result.done():
                    delivered.add(pending.task.task_id)
                    yield pending.task
            while True:
                task = await queue.get()
                if task is None:
                    return
                queued = self._pending.get(task.task_id)
                if queued is None or queued.result.done() or task.task_id in delivered:
                    continue
                delivered.add(task.task_id)
                yield task
        finally:
            self._streams[worker_id] -= 1
            if self._streams[worker_id] == 0 and not any(
                p.worker_id == worker_id for p in self._pending.values()
            ):
                # Nothing waits for this worker: forget it (non-members would pile up).
                self._queues.pop(worker_id, None)
                del self._streams[worker_id]
            elif self._streams[worker_id] == 0:
                asyncio.get_running_loop().call_later(
                    self.disconnect_grace_seconds, self._give_up_on, worker_id
                )

    def _give_up_on(self, worker_id: str) -> None:
        """Refuses, on its behalf, the pending tasks of a member that stayed disconnected.

        A committee step then goes on (or fails) at once instead of waiting out its timeout; a
        member that reconnects within the grace period still gets and answers its tasks.
        """
        if self._streams[worker_id] > 0:
            return
        for pending in self._pending.values():
            if pending.worker_id == worker_id and not pending.result.done():
                pending.result.set_result(
                    cmt.SubmitCommitteeResultRequest(
                        task_id=pending.task.task_id,
                        refusal=cmt.Refusal(
                            code=cmt.REFUSAL_CODE_UNSPECIFIED,
                            detail="member disconnected",
                        ),
                    )
                )

    def close(self) -> None:
        """Ends every task stream (shutdown)."""
        for queue in self._queues.values():
            queue.put_nowait(None)
        for pending in self._pending.values():
            if not pending.result.done():
                pending.result.cancel()

    # --- tasks ------------------------------------------------------------------------------

    def dispatch(
        self,
        worker_id: str,
        member_index: int,
        task: cmt.CommitteeTask,
        *,
        bulk_input: bytes = b"",
        expects_output: bool = False,
    ) -> PendingTask:
        """Queues ``task`` (its task_id is assigned here) for one member."""
        task.task_id = f"{task.WhichOneof('kind')}-{secrets.token_hex(8)}"
        pending = PendingTask(
            worker_id=worker_id,
            member_index=member_index,
            task=task,
            result=asyncio.get_running_loop().create_future(),
            bulk_input=bulk_input,
            expects_output=expects_output,
        )
        self._pending[task.task_id] = pending
        queue = self._queues.get(worker_id)
        if queue is None:
            queue = self._queues[worker_id] = asyncio.Queue()
        queue.put_nowait(task)
        return pending

    def forget(self, pendings: Sequence[PendingTask]) -> None:
        """Drops tasks whose answers are no longer needed."""
        for pending in pendings:
            if not pending.result.done():
                pending.result.cancel()
            self._pending.pop(pending.task.task_id, None)
            self._retired[pending.task.task_id] = pending.worker_id
        while len(self._retired) > _RETIRED_TASKS:
            self._retired.popitem(last=False)

    def is_retired(self, worker_id: str, task_id: str) -> bool:
        """Whether ``task_id`` was this member's and no longer needs an answer."""
        return self._retired.get(task_id) == worker_id

    def _owned(self, worker_id: str, task_id: str) -> PendingTask:
        pending = self._pending.get(task_id)
        if pending is None:
            raise NotFoundError(f"unknown or expired committee task {task_id!r}")
        if pending.worker_id != worker_id:
            raise PermissionDeniedError(f"committee task {task_id} is addressed to another member")
        return pending

    def submit(self, worker_id: str, request: cmt.SubmitCommitteeResultRequest) -> None:
        """Records a member's answer.

        Raises:
            NotFoundError / PermissionDeniedError: not this member's pending task.
            InvalidRequestError: the answer does not fit the task.
            WrongPhaseError: the task was already answered.
        """
        pending = self._owned(worker_id, request.task_id)
        kind = request.WhichOneof("result")
        if kind is None:
            raise InvalidRequestError("result must be set")
        if pending.expects_output and kind != "refusal":
            raise InvalidRequestError(
                f"a {pending.kind} task is answered with UploadCommitteeOutput (or a refusal)"
            )
        if kind != "refusal" and kind != _EXPECTED_RESULT[pending.kind]:
            raise InvalidRequestError(f"a {kind} does not answer a {pending.kind} task")
        if pending.result.done():
            raise WrongPhaseError(f"committee task {request.task_id} was already answered")
        if kind == "refusal":
            logger.warning(
                "member %d refused %s: %s %s",
                pending.member_index,
                pending.kind,
                cmt.RefusalCode.Name(request.refusal.code),
                request.refusal.detail,
            )
        pending.result.set_result(request)

    def bulk_input(self, worker_id: str, task_id: str) -> bytes:
        """The bulk input of a member's task, for DownloadCommitteeInput."""
        return self._owned(worker_id, task_id).bulk_input

    def output_task(self, worker_id: str, task_id: str) -> PendingTask:
        """A member's task that expects bulk output (UploadCommitteeOutput)."""
        pending = self._owned(worker_id, task_id)
        if not pending.expects_output:
            raise InvalidRequestError(f"committee task {task_id} takes no bulk output")
        if pending.result.done():
            raise WrongPhaseError(f"committee task {task_id} was already answered")
        return pending

    def complete_output(self, pending: PendingTask) -> None:
        """Marks a bulk-output task answered once its whole output is verified."""
        if not pending.result.done():
            pending.result.set_result(
                cmt.SubmitCommitteeResultRequest(task_id=pending.task.task_id)
            )

    async def collect(
        self,
        pendings: Sequence[PendingTask],
        need: int,
        timeout: float,
        *,
        want: int | None = None,
        grace: float = 0.0,
    ) -> list[PendingTask]:
        """Waits for answers.

        Returns once ``want`` (default ``need``) tasks are answered without refusal, every task
        is answered, ``grace`` seconds have passed since ``need`` were, or ``timeout`` passed.

        Returns:
            The tasks answered without refusal (possibly fewer than ``need``).
        """
        want = need if want is None else max(want, need)
        deadline = time.monotonic() + timeout
        while True:
            accepted = [p for p in pendings if _accepted(p)]
            undecided = [p.result for p in pendings if not p.result.done()]
            if len(accepted) >= want or not undecided:
                return accepted
            if len(accepted) >= need:
                deadline = min(deadline, time.monotonic() + grace)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return accepted
            await asyncio.wait(undecided, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)


def _accepted(pending: PendingTask) -> bool:
    answer = pending.answer()
    return answer is not None and answer.WhichOneof("result") != "refusal"
