"""Rounds of the secure profiles: the committee signs each round and opens only certified sums.

Per round: every member commits to a seed contribution, reveals it once all commitments are
fixed, and signs the descriptor whose seed is derived from the reveals (so the coordinator can
neither choose the seed nor the public polynomials). After the window closes the coordinator
proposes the contributor set; members sign its hash, and a quorum certificate on that one set is
what lets them open the aggregate. A profile subclass supplies the aggregate and the opening.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

from coordinator.committee.epochs import CommitteeUnavailableError, Epoch, EpochManager
from coordinator.committee.hub import CommitteeHub, PendingTask
from coordinator.config import CommitteeConfig
from coordinator.privacy_plan import BudgetRefusedError, RoundPlan
from coordinator.profiles.base import (
    Aggregate,
    OpenedAggregate,
    RoundContext,
    RoundProtocol,
    RoundRefusedError,
    UploadRecord,
)
from coordinator.store import Store
from crypto.committee import (
    RefusalError,
    build_certificate,
    build_contributor_set,
    build_descriptor,
    check_descriptor,
    credential_of,
    verify_contributor_set,
    verify_signed_descriptor,
)
from crypto.committee.contributions import VerifiedContributorSet
from crypto.committee.descriptor import VerifiedDescriptor
from crypto.round_codec import codec_params
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)

# Once enough members answered, the others get this long before a step goes on without them.
STRAGGLER_GRACE_SECONDS = 2.0


class SecureProtocol(RoundProtocol, abc.ABC):
    """The committee steps every secure profile shares."""

    def __init__(
        self,
        config: CommitteeConfig,
        hub: CommitteeHub,
        epochs: EpochManager,
        plan: RoundPlan,
        store: Store,
    ) -> None:
        """Wires the protocol to the committee and the federation's plan."""
        self._config = config
        self._hub = hub
        self.epochs = epochs
        self.plan = plan
        self._store = store
        self._epoch_of_round: dict[int, Epoch] = {}

    @property
    def key_epoch(self) -> int:
        """Current key epoch."""
        return self.epochs.number

    def committee_indices(self) -> dict[str, int]:
        """Worker id to member index in the current epoch."""
        return self.epochs.member_indices()

    def key_material(self, have_epoch: int) -> common.KeyEpochMaterial | None:
        """The epoch's public material for a device that does not hold it."""
        epoch = self.epochs.current
        if epoch is None or have_epoch == epoch.number:
            return None
        return epoch.material

    async def ensure_ready(self) -> None:
        """Forms the first committee (waits for key holders to connect)."""
        await self.epochs.ensure()

    @abc.abstractmethod
    def profile_codec(self) -> common.CodecParams:
        """The round's CodecParams, with the profile's own parameters filled in."""

    def round_ended(self, round_number: int, published: bool, contributors: int) -> float:
        """Charges the round to the privacy ledger (also when it was abandoned)."""
        entry = self.plan.record(self._store, round_number, published, contributors)
        return 0.0 if entry is None else entry.epsilon_increment

    def privacy_summary(self) -> tuple[float, float, float]:
        """(epsilon spent, budget, delta) from the ledger."""
        return self.plan.summary()

    async def prepare(self, context: RoundContext) -> common.SignedRoundDescriptor:
        """Seed commit-reveal and descriptor signatures among the members."""
        try:
            self.plan.check_budget()
        except BudgetRefusedError as error:
            raise RoundRefusedError(str(error)) from error
        epoch = await self.epochs.ensure()
        members = epoch.members
        # Certification later needs a quorum of members that signed this very descriptor, so a
        # round goes ahead only with that many commitments and signatures.
        quorum = epoch.roster.certificate_quorum
        timeout = self._config.task_timeout_seconds
        commits = self._dispatch_all(
            epoch,
            lambda: cmt.CommitteeTask(
                round_number=context.round_number,
                commit_seed=cmt.CommitSeedTask(federation_id=context.federation_id),
            ),
        )
        committed = await self._gather(commits, quorum, timeout, "commit a seed", want=len(members))
        if len(committed) < quorum:
            raise CommitteeUnavailableError(f"{len(committed)} seed commitments, need {quorum}")
        commitments = [p.answer().seed_commitment for p in committed]  # type: ignore[union-attr]
        reveals_pending = [
            self._hub.dispatch(
                p.worker_id,
                p.member_index,
                cmt.CommitteeTask(
                    epoch=epoch.number,
                    round_number=context.round_number,
                    reveal_seed=cmt.RevealSeedTask(commitments=commitments),
                ),
            )
            for p in committed
        ]
        revealed = await self._gather(reveals_pending, len(committed), timeout, "reveal")
        if len(revealed) < len(committed):
            raise CommitteeUnavailableError("a member that committed did not reveal its seed")
        descriptor = build_descriptor(
            roster=epoch.roster,
            round_number=context.round_number,
            codec=self.profile_codec(),
            dp=self.plan.dp_params(),
            global_version=context.global_version,
            global_model_sha256=context.global_model_sha256,
            min_contributors=context.min_contributors,
            commitments=commitments,
            reveals=[p.answer().seed_reveal for p in revealed],  # type: ignore[union-attr]
        )
        descriptor_bytes = descriptor.SerializeToString()
        check_descriptor(descriptor_bytes, epoch.roster)
        signing = [
            self._hub.dispatch(
                p.worker_id,
                p.member_index,
                cmt.CommitteeTask(
                    epoch=epoch.number,
                    round_number=context.round_number,
                    sign_descriptor=cmt.SignDescriptorTask(descriptor=descriptor_bytes),
                ),
            )
            for p in committed
        ]
        signed = await self._gather(
            signing, quorum, timeout, "sign the descriptor", want=len(signing)
        )
        if len(signed) < quorum:
            raise CommitteeUnavailableError(f"{len(signed)} descriptor signatures, need {quorum}")
        result = common.SignedRoundDescriptor(
            descriptor=descriptor_bytes,
            signatures=[p.answer().signature for p in signed],  # type: ignore[union-attr]
        )
        verify_signed_descriptor(result, epoch.roster)
        self._epoch_of_round[context.round_number] = epoch
        return result

    def _dispatch_all(
        self, epoch: Epoch, make: Callable[[], cmt.CommitteeTask]
    ) -> list[PendingTask]:
        pendings = []
        for index, worker in epoch.members.items():
            task = make()
            task.epoch = epoch.number
            pendings.append(self._hub.dispatch(worker, index, task))
        return pendings

    async def _gather(
        self,
        pendings: list[PendingTask],
        need: int,
        timeout: float,
        what: str,
        want: int | None = None,
    ) -> list[PendingTask]:
        try:
            answered = await self._hub.collect(
                pendings, need, timeout, want=want, grace=STRAGGLER_GRACE_SECONDS
            )
        finally:
            self._hub.forget(pendings)
        if len(answered) < need:
            missing = sorted(
                {p.member_index for p in pendings} - {p.member_index for p in answered}
            )
            logger.info("members %s did not %s", missing, what)
        return sorted(answered, key=lambda p: p.member_index)

    def _epoch_for(
        self, descriptor: common.SignedRoundDescriptor
    ) -> tuple[Epoch, VerifiedDescriptor]:
        parsed = common.RoundDescriptor.FromString(descriptor.descriptor)
        epoch = self._epoch_of_round.get(parsed.round_number) or self.epochs.current
        if epoch is None or epoch.number != parsed.committee_epoch:
            raise CommitteeUnavailableError(
                f"round {parsed.round_number} belongs to epoch {parsed.committee_epoch}, which is"
                " no longer available"
            )
        return epoch, verify_signed_descriptor(descriptor, epoch.roster)

    async def certify(
        self,
        descriptor: common.SignedRoundDescriptor,
        uploads: list[UploadRecord],
        aggregate_sha256: bytes = b"",
    ) -> tuple[Epoch, VerifiedDescriptor, VerifiedContributorSet, common.QuorumCertificate]:
        """Proposes the contributor set and gathers a quorum certificate on it."""
        epoch, verified = self._epoch_for(descriptor)
        contributor_set = build_contributor_set(
            descriptor=verified,
            contributions=[
                (u.signed_statement, credential_of(u.signing_public_key, u.enrollment_certificate))
                for u in uploads
            ],
            aggregate_sha256=aggregate_sha256,
        )
        set_bytes = contributor_set.SerializeToString()
        checked = verify_contributor_set(
            set_bytes, descriptor=verified, enrollment_verifier=self.epochs.verifier
        )
        pendings = self._dispatch_all(
            epoch,
            lambda: cmt.CommitteeTask(
                round_number=verified.message.round_number,
                certify_contributor_set=cmt.CertifyContributorSetTask(
                    contributor_set=set_bytes, descriptor=descriptor
                ),
            ),
        )
        signed = await self._gather(
            pendings,
            epoch.roster.certificate_quorum,
            self._config.task_timeout_seconds,
            "certify the set",
            want=len(pendings),
        )
        try:
            certificate = build_certificate(
                epoch.roster,
                checked.sha256,
                [p.answer().signature for p in signed],  # type: ignore[union-attr]
            )
        except RefusalError as error:
            raise CommitteeUnavailableError(f"no quorum certificate: {error}") from error
        return epoch, verified, checked, certificate

    def open_tasks(
        self,
        epoch: Epoch,
        verified: VerifiedDescriptor,
        checked: VerifiedContributorSet,
        certificate: common.QuorumCertificate,
        descriptor: common.SignedRoundDescriptor,
        inputs: dict[int, bytes],
        expects_output: bool = False,
        participants: list[int] | None = None,
        lead: int = 0,
    ) -> list[PendingTask]:
        """Asks members to open the certified aggregate, each with its own bulk input."""
        pendings = []
        for index, worker in epoch.members.items():
            if participants is not None and index not in participants:
                continue
            data = inputs.get(index, b"")
            task = cmt.CommitteeTask(
                epoch=epoch.number,
                round_number=verified.message.round_number,
                open_aggregate=cmt.OpenAggregateTask(
                    contributor_set=checked.serialized,
                    certificate=certificate,
                    descriptor=descriptor,
                    participant_indices=participants or [],
                    lead=index == lead,
                    input_size_bytes=len(data),
                    input_sha256=_sha256(data),
                ),
            )
            pendings.append(
                self._hub.dispatch(
                    worker, index, task, bulk_input=data, expects_output=expects_output
                )
            )
        return pendings

    async def gather(
        self, pendings: list[PendingTask], need: int, what: str, want: int | None = None
    ) -> list[PendingTask]:
        """Waits for ``need`` accepted answers (``want`` if they come within a short grace)."""
        return await self._gather(pendings, need, self._config.task_timeout_seconds, what, want)

    def decode(
        self, field_sums: object, contributors: int, descriptor: common.RoundDescriptor
    ) -> OpenedAggregate:
        """Turns opened field sums into the mean delta (shared by every profile)."""
        import numpy as np

        from crypto.codec import decode
        from crypto.round_codec import codec_config, round_rotation

        config = codec_config(descriptor.codec, descriptor.dp)
        sums = np.asarray(field_sums).astype(np.int64, copy=False)
        decoded = decode(sums, config, round_rotation(config, descriptor.seed), contributors)
        counters = {
            "contributors": float(decoded.contributor_count),
            "clipped": float(decoded.clipped_count),
            "near_modulus_fraction": float(decoded.near_modulus_fraction),
        }
        return OpenedAggregate(
            decoded.mean.astype(np.float64, copy=False), contributors, counters, sums
        )

    def base_codec(self) -> common.CodecParams:
        """The profile-independent codec fields from the plan."""
        return codec_params(self.plan.codec)

    @abc.abstractmethod
    def new_aggregate(self, descriptor: common.RoundDescriptor) -> Aggregate:
        """An empty aggregate for the round."""

    @abc.abstractmethod
    async def open(
        self,
        descriptor: common.SignedRoundDescriptor,
        aggregate: Aggregate,
        uploads: list[UploadRecord],
        set_phase: Callable[[int], None],
    ) -> OpenedAggregate:
        """Certifies and opens the aggregate."""


def _sha256(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()
