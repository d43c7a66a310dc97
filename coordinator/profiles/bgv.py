"""The fast and provable profiles at the coordinator: add ciphertexts, fuse certified partials.

Uploads are added homomorphically as they arrive (all or nothing per upload). Once the window
closes the coordinator fixes the aggregate, has the committee certify the contributor set
together with the aggregate's digest, and sends the aggregate to every live member that signed
the certificate. Each returns its partial decryptions (plus, for a member that is missing,
distributed-Lagrange partials under its Shamir shares); fusing them gives the packed field sums.
Keys rotate after any opening that covered for a member.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from coordinator.committee.bgv_ceremony import BgvKeyCeremony
from coordinator.committee.epochs import CommitteeUnavailableError, Epoch, EpochManager
from coordinator.committee.hub import CommitteeHub
from coordinator.config import ConfigError, CoordinatorConfig
from coordinator.privacy_plan import RoundPlan
from coordinator.profiles.base import (
    Aggregate,
    InvalidPayloadError,
    OpenedAggregate,
    UploadRecord,
)
from coordinator.profiles.secure import SecureProtocol
from coordinator.store import Store
from coordinator.tls import enrollment_verifier
from crypto import bgv
from crypto.bgv.wire import PartialsFormatError, crs_seed_for, decode_partials
from crypto.codec import fields_per_slot, packing_radix, slots_needed, unpack_slots
from hefl.v1 import common_pb2 as common

logger = logging.getLogger(__name__)

_PROFILES = {
    "fast": (common.CRYPTO_PROFILE_FAST, bgv.FAST),
    "provable": (common.CRYPTO_PROFILE_PROVABLE, bgv.PROVABLE),
}


class AggregateMismatchError(Exception):
    """The aggregate does not hold exactly the accepted uploads (nothing is opened)."""


class BgvAggregate(Aggregate):
    """The running homomorphic sum of one round, one aggregation lane per adding thread."""

    def __init__(self, aggregator: bgv.Aggregator | None, unavailable: str = "") -> None:
        """Wraps an Aggregator; without one every upload is refused with ``unavailable``."""
        self._aggregator = aggregator
        self._unavailable = unavailable
        self._local = threading.local()
        self._lock = threading.Lock()
        self._result: bgv.AggregateResult | None = None

    def _lane(self, aggregator: bgv.Aggregator) -> bgv.AggregationLane:
        lane: bgv.AggregationLane | None = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = aggregator.lane()
        return lane

    def add(self, payload: bytes, upload: UploadRecord) -> None:
        """Validates and adds one upload's ciphertexts (all of them or none)."""
        if self._aggregator is None:
            raise InvalidPayloadError(self._unavailable)
        try:
            self._lane(self._aggregator).add_payload(upload.worker_id, payload)
        except (bgv.CiphertextRejectedError, bgv.PayloadError, bgv.AggregationError) as error:
            raise InvalidPayloadError(str(error)) from error

    @property
    def count(self) -> int:
        """Uploads added."""
        return 0 if self._aggregator is None else self._aggregator.count

    def finish(self) -> bgv.AggregateResult:
        """The final sum; later uploads are refused (the same result on every call)."""
        with self._lock:
            if self._result is None:
                if self._aggregator is None:
                    raise CommitteeUnavailableError(self._unavailable)
                self._result = self._aggregator.finish()
            return self._result


class BgvProtocol(SecureProtocol):
    """Rounds of the fast and provable profiles."""

    payload_format_version = bgv.PAYLOAD_FORMAT_VERSION

    def __init__(
        self,
        config: CoordinatorConfig,
        hub: CommitteeHub,
        plan: RoundPlan,
        store: Store,
        profile: int,
        ctx: bgv.HeContext,
    ) -> None:
        """Wires the protocol to its EpochManager, whose key ceremony is BgvKeyCeremony."""
        self.profile = profile
        self.ctx = ctx
        epochs = EpochManager(
            config.committee,
            store,
            hub,
            config.federation.federation_id,
            profile,
            key_ceremony=BgvKeyCeremony(ctx, config.committee),
            verifier=enrollment_verifier(config.server),
        )
        super().__init__(config.committee, hub, epochs, plan, store)
        codec = plan.codec
        self.fields_per_slot = fields_per_slot(
            codec.bits, codec.max_summands, ctx.plaintext_modulus
        )
        self.radix = packing_radix(codec.bits, codec.max_summands)
        self.ciphertexts_per_upload = bgv.ciphertext_count(
            ctx, slots_needed(codec.field_count, self.fields_per_slot)
        )
        self._context_sha256 = hashlib.sha256(ctx.serialize()).digest()
        self._crs: dict[int, bytes] = {}

    @classmethod
    def create(
        cls, config: CoordinatorConfig, store: Store, hub: CommitteeHub, plan: RoundPlan
    ) -> BgvProtocol:
        """The protocol of ``config.federation.profile`` (fast or provable), after start-up checks.

        Raises:
            ConfigError: if the profile fails its guards or self-test, or the codec does not fit.
        """
        name = config.federation.profile
        profile, params = _PROFILES[name]
        codec = plan.codec
        if codec.max_summands > params.max_summands:
            raise ConfigError(
                f"{name}: goal_contributors * over_selection = {codec.max_summands} exceeds the"
                f" profile's max_summands {params.max_summands} (its noise budget and radix)"
            )
        try:
            fields_per_slot(codec.bits, codec.max_summands, params.plaintext_modulus)
            # Created before any thread pool: the first encode on a fresh thread must follow it.
            ctx = bgv.open_context(params)
        except (ValueError, bgv.BgvError) as error:
            raise ConfigError(f"federation.profile = {name}: {error}") from error
        return cls(config, hub, plan, store, profile, ctx)

    def profile_codec(self) -> common.CodecParams:
        """CodecParams with the packing and the context digest filled in."""
        codec = self.base_codec()
        codec.bgv.CopyFrom(
            common.BgvParams(
                ring_dimension=self.ctx.ring_dimension,
                plaintext_modulus=self.ctx.plaintext_modulus,
                fields_per_slot=self.fields_per_slot,
                radix=self.radix,
                crypto_context_sha256=self._context_sha256,
            )
        )
        return codec

    def _round_epoch(self, descriptor: common.RoundDescriptor) -> Epoch | None:
        epoch = self._epoch_of_round.get(descriptor.round_number) or self.epochs.current
        if epoch is None or epoch.number != descriptor.committee_epoch:
            return None
        return epoch

    def new_aggregate(self, descriptor: common.RoundDescriptor) -> Aggregate:
        """An empty homomorphic sum under the round's joint key."""
        epoch = self._round_epoch(descriptor)
        if epoch is None or not epoch.material.joint_public_key:
            return BgvAggregate(None, f"no joint key for epoch {descriptor.committee_epoch}")
        aggregator = bgv.Aggregator(
            self.ctx,
            epoch.material.joint_public_key,
            ciphertexts_per_upload=self.ciphertexts_per_upload,
            max_summands=self.plan.codec.max_summands,
        )
        return BgvAggregate(aggregator)

    def validate_statement_extras(
        self, descriptor: common.RoundDescriptor, upload: UploadRecord
    ) -> None:
        """BGV uploads carry no sealed shares."""
        if upload.sealed_shares:
            raise InvalidPayloadError(
                f"{len(upload.sealed_shares)} sealed shares in a BGV upload (it takes none)"
            )

    def _crs_of(self, epoch: Epoch) -> bytes:
        crs = self._crs.get(epoch.number)
        if crs is None:
            crs = self._crs[epoch.number] = bgv.derive_crs(self.ctx, crs_seed_for(epoch.roster))
        return crs

    async def open(
        self,
        descriptor: common.SignedRoundDescriptor,
        aggregate: Aggregate,
        uploads: list[UploadRecord],
        set_phase: Callable[[int], None],
    ) -> OpenedAggregate:
        """Certify the set and the aggregate digest, gather partials, fuse, unpack, decode."""
        assert isinstance(aggregate, BgvAggregate)
        set_phase(common.ROUND_PHASE_CERTIFYING)
        result = await asyncio.to_thread(aggregate.finish)
        if sorted(result.contributors) != sorted(u.worker_id for u in uploads):
            raise AggregateMismatchError("the aggregate holds other uploads than the accepted ones")
        epoch, verified, checked, certificate = await self.certify(
            descriptor, uploads, aggregate_sha256=result.digest
        )
        set_phase(common.ROUND_PHASE_OPENING)
        committee = bgv.Committee(len(epoch.members), epoch.threshold)
        # Members that signed the certificate and still hold a task stream are alive now; every
        # other member is covered for by the first t of them.
        signers = {s.member_index for s in certificate.signatures}
        connected = self._hub.connected()
        alive = [i for i, worker in epoch.members.items() if i in signers and worker in connected]
        if len(alive) < epoch.threshold:
            raise CommitteeUnavailableError(
                f"{len(alive)} live members signed the certificate, the threshold is"
                f" {epoch.threshold}"
            )
        plan = bgv.DecryptionPlan.make(committee, alive)
        if plan.dropped:
            logger.info(
                "round %d: members %s open for missing members %s; keys rotate afterwards",
                verified.message.round_number,
                list(plan.points),
                list(plan.dropped),
            )
        payload = bgv.encode_payload(result.ciphertexts)
        pendings = self.open_tasks(
            epoch,
            verified,
            checked,
            certificate,
            descriptor,
            {index: payload for index in plan.participants},
            expects_output=True,
            participants=list(plan.participants),
            lead=plan.lead,
        )
        try:
            answered = await self.gather(pendings, len(pendings), "send partial decryptions")
        finally:
            # Partials under Lagrange-weighted shares went out: those keys must not be reused.
            self.epochs.mark_used(needs_rotation=bool(plan.dropped))
        if len(answered) < len(pendings):
            missing = sorted(set(plan.participants) - {p.member_index for p in answered})
            raise CommitteeUnavailableError(f"members {missing} sent no partial decryptions")
        fields = await asyncio.to_thread(
            self._fuse, epoch, plan, result, {p.member_index: bytes(p.output) for p in answered}
        )
        return self.decode(fields, len(uploads), verified.message)

    def _fuse(
        self,
        epoch: Epoch,
        plan: bgv.DecryptionPlan,
        result: bgv.AggregateResult,
        outputs: dict[int, bytes],
    ) -> npt.NDArray[np.int64]:
        fuser = bgv.Fuser(self.ctx, self._crs_of(epoch), result.ciphertexts)
        frame_limit = len(fuser.partial_shape.reference)
        try:
            partials = {
                member: decode_partials(output, plan, len(result.ciphertexts), frame_limit)
                for member, output in outputs.items()
            }
            slots = fuser.fuse(plan, partials)
        except (PartialsFormatError, bgv.DecryptionError) as error:
            raise CommitteeUnavailableError(f"partial decryptions refused: {error}") from error
        codec = self.plan.codec
        return unpack_slots(
            slots,
            num_fields=codec.field_count,
            bits=codec.bits,
            max_summands=codec.max_summands,
            plaintext_modulus=self.ctx.plaintext_modulus,
        )
