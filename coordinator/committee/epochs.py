"""Key epochs: choosing the committee among connected key holders and running the ceremony.

An epoch starts when enough key-holder-capable workers are connected: each chosen member
publishes a fresh X25519 sealing key signed with its enrolment key, every member signs the
roster, and (BGV profiles) the members generate the joint key and share their key material with
each other sealed point to point; the coordinator only relays. Keys rotate every
``key_epoch_rounds`` rounds and after any round in which a member had to be covered for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from coordinator.committee.hub import CommitteeHub, PendingTask
from coordinator.config import CommitteeConfig
from coordinator.store import Store, WorkerRow
from crypto.committee import (
    EnrollmentVerifier,
    SelfCertifyingVerifier,
    build_roster,
    credential_of,
    member_entry,
    verify_signed_roster,
)
from crypto.committee.roster import Roster
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)


class CommitteeUnavailableError(Exception):
    """Not enough key holders answered to form or use a committee."""


@dataclass
class Epoch:
    """A ready key epoch."""

    number: int
    roster: Roster
    material: common.KeyEpochMaterial
    members: dict[int, str]
    rounds_used: int = 0
    needs_rotation: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def threshold(self) -> int:
        """Shares needed to open."""
        return self.roster.threshold

    def worker_of(self, index: int) -> str:
        """Worker id of a member."""
        return self.members[index]


KeyCeremony = Callable[[Epoch, CommitteeHub], Awaitable[None]]
"""Profile-specific key generation run after the roster is signed (fills ``material``)."""


class EpochManager:
    """Keeps a ready committee for the federation's rounds."""

    def __init__(
        self,
        config: CommitteeConfig,
        store: Store,
        hub: CommitteeHub,
        federation_id: str,
        profile: int,
        key_ceremony: KeyCeremony | None = None,
        verifier: EnrollmentVerifier | None = None,
    ) -> None:
        """Loads the latest epoch from the store, if any."""
        self._config = config
        self._store = store
        self._hub = hub
        self._federation_id = federation_id
        self._profile = profile
        self._key_ceremony = key_ceremony
        self.verifier = verifier or SelfCertifyingVerifier()
        self.current: Epoch | None = None
        stored = store.latest_epoch()
        if stored is not None:
            number, material_bytes, record = stored
            material = common.KeyEpochMaterial.FromString(material_bytes)
            roster = verify_signed_roster(material.roster, enrollment_verifier=self.verifier)
            self.current = Epoch(
                number=number,
                roster=roster,
                material=material,
                members={int(k): v for k, v in record["members"].items()},
                rounds_used=int(record.get("rounds_used", 0)),
                needs_rotation=bool(record.get("needs_rotation", False)),
            )

    @property
    def number(self) -> int:
        """Current epoch number (0 before the first ceremony)."""
        return 0 if self.current is None else self.current.number

    def member_indices(self) -> dict[str, int]:
        """Worker id to member index in the current epoch."""
        if self.current is None:
            return {}
        return {worker: index for index, worker in self.current.members.items()}

    def _persist(self, epoch: Epoch) -> None:
        self._store.save_epoch(
            epoch.number,
            epoch.material.SerializeToString(),
            {
                "members": {str(k): v for k, v in epoch.members.items()},
                "rounds_used": epoch.rounds_used,
                "needs_rotation": epoch.needs_rotation,
            },
        )

    def mark_used(self, needs_rotation: bool = False) -> None:
        """Counts a round against the epoch; a covered-for dropout forces rotation."""
        if self.current is None:
            return
        self.current.rounds_used += 1
        self.current.needs_rotation = self.current.needs_rotation or needs_rotation
        self._persist(self.current)

    async def ensure(self) -> Epoch:
        """The current epoch, or a new one when there is none, it is used up, or it must rotate.

        Raises:
            CommitteeUnavailableError: if no committee could be formed in time.
        """
        epoch = self.current
        if (
            epoch is not None
            and not epoch.needs_rotation
            and epoch.rounds_used < self._config.key_epoch_rounds
        ):
            return epoch
        if epoch is not None:
            logger.info(
                "rotating keys after epoch %d (%d rounds, rotation forced: %s)",
                epoch.number,
                epoch.rounds_used,
                epoch.needs_rotation,
            )
        self.current = await self._ceremony(self.number + 1)
        return self.current

    def _candidates(self) -> list[WorkerRow]:
        connected = self._hub.connected()
        workers = [
            w
            for w in self._store.list_workers()
            if w.key_holder_capable and w.worker_id in connected
        ]
        # Most available first: recently seen, then long-serving.
        workers.sort(key=lambda w: (-w.last_seen_time, -w.contributions, w.worker_id))
        return workers

    async def _ceremony(self, number: int) -> Epoch:
        size = self._config.size
        await self._hub.wait_for_members(size, self._config.wait_for_members_seconds)
        candidates = self._candidates()
        if len(candidates) < size:
            raise CommitteeUnavailableError(
                f"{len(candidates)} key holders connected, the committee needs {size}"
            )
        chosen = candidates[:size]
        members = {index: worker for index, worker in enumerate(chosen, start=1)}
        joins = [
            self._hub.dispatch(
                worker.worker_id,
                index,
                cmt.CommitteeTask(
                    epoch=number,
                    join_epoch=cmt.JoinEpochTask(
                        federation_id=self._federation_id,
                        profile=self._profile,  # type: ignore[arg-type]
                        member_index=index,
                        committee_size=size,
                        threshold=self._config.threshold or size // 2 + 1,
                    ),
                ),
            )
            for index, worker in members.items()
        ]
        answered = await self._all(joins, "join the epoch")
        entries = []
        for pending in answered:
            worker = members[pending.member_index]
            answer = pending.answer()
            assert answer is not None
            entries.append(
                member_entry(
                    pending.member_index,
                    credential_of(worker.signing_public_key, worker.enrollment_certificate),
                    answer.epoch_join,
                )
            )
        roster = build_roster(
            federation_id=self._federation_id,
            epoch=number,
            profile=self._profile,  # type: ignore[arg-type]
            members=entries,
            threshold=self._config.threshold or None,
        )
        roster_bytes = roster.SerializeToString()
        signing = [
            self._hub.dispatch(
                worker.worker_id,
                index,
                cmt.CommitteeTask(
                    epoch=number, sign_roster=cmt.SignRosterTask(roster=roster_bytes)
                ),
            )
            for index, worker in members.items()
        ]
        signed_answers = await self._all(signing, "sign the roster")
        signed = common.SignedCommitteeRoster(
            roster=roster_bytes,
            signatures=[p.answer().signature for p in signed_answers],  # type: ignore[union-attr]
        )
        checked = verify_signed_roster(signed, enrollment_verifier=self.verifier)
        epoch = Epoch(
            number=number,
            roster=checked,
            material=common.KeyEpochMaterial(roster=signed),
            members={index: worker.worker_id for index, worker in members.items()},
        )
        if self._key_ceremony is not None:
            await self._key_ceremony(epoch, self._hub)
        self._persist(epoch)
        logger.info(
            "key epoch %d ready: %d members, threshold %d, certificate quorum %d",
            number,
            size,
            checked.threshold,
            checked.certificate_quorum,
        )
        return epoch

    async def _all(self, pendings: list[PendingTask], what: str) -> list[PendingTask]:
        try:
            answered = await self._hub.collect(
                pendings, len(pendings), self._config.task_timeout_seconds
            )
        finally:
            self._hub.forget(pendings)
        if len(answered) < len(pendings):
            missing = sorted(
                {p.member_index for p in pendings} - {p.member_index for p in answered}
            )
            raise CommitteeUnavailableError(f"members {missing} did not {what}")
        return answered
