"""The oneshot profile at the coordinator: add masked uploads, open only the certified key sum.

The coordinator adds the rounded masked vectors (an integer add per parameter) as they arrive.
Once a quorum of members certified the contributor set, each member opens its own sealed
shares of exactly those contributions and returns the sum of them; any t such sums give the sum
S of the contributors' mask secrets, which removes the masks from the total in one pass. No
individual secret is ever opened, and the coordinator never sees a share it could open alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from coordinator.committee.epochs import CommitteeUnavailableError
from coordinator.profiles.base import (
    Aggregate,
    InvalidPayloadError,
    OpenedAggregate,
    UploadRecord,
)
from coordinator.profiles.secure import SecureProtocol
from crypto import oneshot
from crypto.oneshot.committee_input import encode_member_input
from hefl.v1 import common_pb2 as common


class OneshotAggregate(Aggregate):
    """The running masked sum mod q'."""

    def __init__(self, params: oneshot.OneshotParams, field_count: int) -> None:
        """An empty sum of ``field_count`` fields."""
        self.masked = oneshot.MaskedSum(params, field_count)
        self._lock = threading.Lock()

    def add(self, payload: bytes, upload: UploadRecord) -> None:
        """Adds a masked upload (all of it or nothing)."""
        with self._lock:
            try:
                self.masked.add(payload)
            except (oneshot.WireError, oneshot.AggregationError) as error:
                raise InvalidPayloadError(str(error)) from error

    @property
    def count(self) -> int:
        """Uploads added."""
        return self.masked.contributors


def member_input(uploads: list[UploadRecord], member_index: int) -> bytes:
    """One member's opening input: its sealed box of every contribution, in worker-id order."""
    return encode_member_input(
        next(b for b in upload.sealed_shares if b.recipient_index == member_index)
        for upload in sorted(uploads, key=lambda u: u.worker_id)
    )


class OneshotProtocol(SecureProtocol):
    """Rounds of the oneshot profile."""

    profile = common.CRYPTO_PROFILE_ONESHOT
    payload_format_version = oneshot.FORMAT_VERSION

    @property
    def params(self) -> oneshot.OneshotParams:
        """The masking parameters that follow from the codec plan."""
        codec = self.plan.codec
        return oneshot.OneshotParams.create(
            oneshot.SumMode.MOD if codec.sum_mode == "mod" else oneshot.SumMode.EXACT,
            codec.bits,
            codec.max_summands,
        )

    def profile_codec(self) -> common.CodecParams:
        """CodecParams with the oneshot parameters."""
        codec = self.base_codec()
        codec.oneshot.CopyFrom(oneshot.params_to_proto(self.params))
        return codec

    def new_aggregate(self, descriptor: common.RoundDescriptor) -> Aggregate:
        """An empty masked sum."""
        return OneshotAggregate(self.params, self.plan.codec.field_count)

    def validate_statement_extras(
        self, descriptor: common.RoundDescriptor, upload: UploadRecord
    ) -> None:
        """One sealed share for each member of the epoch, in member order."""
        epoch = self.epochs.current
        size = 0 if epoch is None else len(epoch.members)
        indices = [box.recipient_index for box in upload.sealed_shares]
        if indices != list(range(1, size + 1)):
            raise InvalidPayloadError(
                f"expected one sealed share per committee member 1..{size}, got {indices}"
            )

    async def open(
        self,
        descriptor: common.SignedRoundDescriptor,
        aggregate: Aggregate,
        uploads: list[UploadRecord],
        set_phase: Callable[[int], None],
    ) -> OpenedAggregate:
        """Certify the set, collect t summed shares of the key sum, unmask, decode."""
        assert isinstance(aggregate, OneshotAggregate)
        set_phase(common.ROUND_PHASE_CERTIFYING)
        epoch, verified, checked, certificate = await self.certify(descriptor, uploads)
        set_phase(common.ROUND_PHASE_OPENING)
        inputs = {index: member_input(uploads, index) for index in epoch.members}
        pendings = self.open_tasks(epoch, verified, checked, certificate, descriptor, inputs)
        # One share beyond the threshold lets combine_key_sum cross-check the others.
        answered = await self.gather(
            pendings, epoch.threshold, "open their key shares", want=epoch.threshold + 1
        )
        params = self.params
        openings = {
            p.member_index: oneshot.decode_share_sum(
                p.answer().key_share_opening.share_sum,  # type: ignore[union-attr]
                ring_dimension=params.ring_dimension,
            )
            for p in answered
        }
        if len(openings) < epoch.threshold:
            raise CommitteeUnavailableError(
                f"{len(openings)} members opened their shares, the threshold is {epoch.threshold}"
            )
        key_sum = oneshot.combine_key_sum(
            openings, threshold=epoch.threshold, contributors=len(uploads), params=params
        )
        binding = oneshot.RoundBinding(descriptor.descriptor)
        sums = await asyncio.to_thread(oneshot.unmask_sum, binding, aggregate.masked, key_sum)
        self.epochs.mark_used()
        return self.decode(np.asarray(sums), len(uploads), verified.message)
