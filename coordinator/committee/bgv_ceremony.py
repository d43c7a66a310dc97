"""The BGV key ceremony at the coordinator: relays commitments, public shares and sealed boxes.

Run by EpochManager once the roster is signed. The coordinator sends the public context and the
roster-derived CRS seed, collects commitments to the members' public-key shares, then the shares
(after every commitment is fixed), sums them into the joint key, and has every member check,
sign and Shamir-share it. Sealed boxes are relayed unopened: the coordinator never holds a
secret key share or an unsealed Shamir share.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from coordinator.committee.epochs import CommitteeUnavailableError, Epoch
from coordinator.committee.hub import CommitteeHub, PendingTask
from coordinator.config import CommitteeConfig
from crypto import bgv
from crypto.bgv.wire import crs_seed_for
from crypto.committee import CommitteeError, RefusalError, verify_joint_public_key
from hefl.v1 import committee_service_pb2 as cmt

logger = logging.getLogger(__name__)


class BgvKeyCeremony:
    """A KeyCeremony for EpochManager: fills ``epoch.material`` for a BGV profile."""

    def __init__(self, ctx: bgv.HeContext, config: CommitteeConfig) -> None:
        """Uses the coordinator's context of the profile and the committee's timeouts."""
        self.ctx = ctx
        self._config = config
        self._context_bytes = ctx.serialize()

    async def __call__(self, epoch: Epoch, hub: CommitteeHub) -> None:
        """Runs the four member steps; raises CommitteeUnavailableError if any member fails."""
        roster = epoch.roster
        committee = bgv.Committee(len(roster.message.members), roster.threshold)
        seed = crs_seed_for(roster)
        # The coordinator derives the same CRS as the members, to check every share's ``a``.
        crs = asyncio.ensure_future(asyncio.to_thread(bgv.derive_crs, self.ctx, seed))
        try:
            generated = await self._step(
                epoch,
                hub,
                "generate a key share",
                lambda _: cmt.CommitteeTask(
                    generate_key_share=cmt.GenerateKeyShareTask(
                        crypto_context=self._context_bytes, crs_seed=seed
                    )
                ),
            )
            commitments = {
                p.member_index: _answer(p).key_share_commitment.commitment for p in generated
            }
            _check_indices(generated, lambda p: _answer(p).key_share_commitment.member_index)
            committed = [
                cmt.KeyShareCommitment(member_index=index, commitment=commitments[index])
                for index in sorted(commitments)
            ]
            revealed = await self._step(
                epoch,
                hub,
                "reveal its key share",
                lambda _: cmt.CommitteeTask(
                    reveal_key_share=cmt.RevealKeyShareTask(commitments=committed)
                ),
            )
            _check_indices(revealed, lambda p: _answer(p).public_key_share.member_index)
            shares = {
                p.member_index: bgv.PublicKeyShare(
                    p.member_index, _answer(p).public_key_share.public_key
                )
                for p in revealed
            }
            try:
                joint = await asyncio.to_thread(
                    bgv.combine_public_shares, self.ctx, committee, await crs, shares, commitments
                )
            except bgv.KeyCeremonyError as error:
                raise CommitteeUnavailableError(f"key shares refused: {error}") from error
        finally:
            crs.cancel()
        public_shares = [
            cmt.PublicKeyShare(member_index=index, public_key=shares[index].key)
            for index in sorted(shares)
        ]
        bundles = await self._step(
            epoch,
            hub,
            "check, sign and share the joint key",
            lambda _: cmt.CommitteeTask(
                distribute_key_shares=cmt.DistributeKeySharesTask(
                    joint_public_key=joint,
                    public_key_shares=public_shares,
                    roster=roster.serialized,
                )
            ),
        )
        signatures = [_answer(p).key_share_bundle.joint_public_key_signature for p in bundles]
        try:
            verify_joint_public_key(roster, joint, signatures)
        except (RefusalError, CommitteeError) as error:
            raise CommitteeUnavailableError(f"joint key signatures: {error}") from error
        relayed: dict[int, list[cmt.RelayedKeyShare]] = {index: [] for index in epoch.members}
        for pending in bundles:
            sender = pending.member_index
            boxes = list(_answer(pending).key_share_bundle.shares)
            recipients = sorted(box.recipient_index for box in boxes)
            if recipients != [index for index in committee.members if index != sender]:
                raise CommitteeUnavailableError(
                    f"member {sender} sealed shares to {recipients}, not to every other member"
                )
            for box in boxes:
                relayed[box.recipient_index].append(
                    cmt.RelayedKeyShare(sender_index=sender, sealed_share=box)
                )
        stored = await self._step(
            epoch,
            hub,
            "store its key shares",
            lambda index: cmt.CommitteeTask(
                receive_key_shares=cmt.ReceiveKeySharesTask(shares=relayed[index])
            ),
        )
        if not all(_answer(p).shares_stored for p in stored):
            raise CommitteeUnavailableError("a member did not confirm its key shares")
        epoch.material.crypto_context = self._context_bytes
        epoch.material.joint_public_key = joint
        del epoch.material.joint_public_key_signatures[:]
        epoch.material.joint_public_key_signatures.extend(
            sorted(signatures, key=lambda s: s.member_index)
        )
        logger.info(
            "key epoch %d: joint %s key of %d members (%d bytes)",
            epoch.number,
            self.ctx.profile.name,
            committee.size,
            len(joint),
        )

    async def _step(
        self,
        epoch: Epoch,
        hub: CommitteeHub,
        what: str,
        make: Callable[[int], cmt.CommitteeTask],
    ) -> list[PendingTask]:
        """One task to every member; the joint key needs all of them, so any gap fails it."""
        pendings = []
        for index, worker in sorted(epoch.members.items()):
            task = make(index)
            task.epoch = epoch.number
            pendings.append(hub.dispatch(worker, index, task))
        try:
            answered = await hub.collect(pendings, len(pendings), self._config.task_timeout_seconds)
        finally:
            hub.forget(pendings)
        if len(answered) < len(pendings):
            accepted = {p.member_index for p in answered}
            problems = []
            for pending in pendings:
                if pending.member_index in accepted:
                    continue
                answer = pending.answer()
                reason = "no answer" if answer is None else answer.refusal.detail
                problems.append(f"member {pending.member_index}: {reason}")
            raise CommitteeUnavailableError(
                f"key ceremony: could not {what} ({'; '.join(problems)})"
            )
        return sorted(answered, key=lambda p: p.member_index)


def _answer(pending: PendingTask) -> cmt.SubmitCommitteeResultRequest:
    answer = pending.answer()
    assert answer is not None  # collect returns answered tasks only
    return answer


def _check_indices(answered: list[PendingTask], claimed: Callable[[PendingTask], int]) -> None:
    for pending in answered:
        if claimed(pending) != pending.member_index:
            raise CommitteeUnavailableError(
                f"member {pending.member_index} answered as member {claimed(pending)}"
            )
