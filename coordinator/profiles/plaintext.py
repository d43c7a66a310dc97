"""The plaintext comparison profile: float32 deltas added in the clear. No privacy at all."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from coordinator.profiles.base import (
    Aggregate,
    InvalidPayloadError,
    OpenedAggregate,
    RoundContext,
    RoundProtocol,
    UploadRecord,
)
from crypto import plaintext_update
from hefl.v1 import common_pb2 as common


class PlaintextAggregate(Aggregate):
    """A float64 running sum of decoded deltas."""

    def __init__(self, parameter_count: int) -> None:
        """An empty sum over ``parameter_count`` parameters."""
        self._sum: npt.NDArray[np.float64] = np.zeros(parameter_count)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, payload: bytes, upload: UploadRecord) -> None:
        """Decodes and adds a delta."""
        try:
            delta = plaintext_update.decode(payload, self._sum.size)
        except plaintext_update.PlaintextUpdateError as error:
            raise InvalidPayloadError(str(error)) from error
        with self._lock:
            self._sum += delta
            self._count += 1

    @property
    def count(self) -> int:
        """Deltas added."""
        return self._count

    def mean(self) -> npt.NDArray[np.float64]:
        """The average delta."""
        return self._sum / max(self._count, 1)


class PlaintextProtocol(RoundProtocol):
    """Rounds without a committee: an unsigned descriptor and a plain average."""

    profile = common.CRYPTO_PROFILE_PLAINTEXT
    payload_format_version = plaintext_update.FORMAT_VERSION

    def __init__(self, parameter_count: int) -> None:
        """Aggregates deltas of ``parameter_count`` parameters."""
        self._parameter_count = parameter_count

    async def prepare(self, context: RoundContext) -> common.SignedRoundDescriptor:
        """An unsigned descriptor: there is no committee to sign it."""
        descriptor = common.RoundDescriptor(
            federation_id=context.federation_id,
            round_number=context.round_number,
            seed=os.urandom(32),
            profile=self.profile,
            global_version=context.global_version,
            global_model_sha256=context.global_model_sha256,
            min_contributors=context.min_contributors,
            codec=common.CodecParams(parameter_count=context.parameter_count),
        )
        return common.SignedRoundDescriptor(descriptor=descriptor.SerializeToString())

    def new_aggregate(self, descriptor: common.RoundDescriptor) -> Aggregate:
        """An empty float sum."""
        return PlaintextAggregate(self._parameter_count)

    def validate_statement_extras(
        self, descriptor: common.RoundDescriptor, upload: UploadRecord
    ) -> None:
        """Plaintext uploads carry no sealed shares."""
        if upload.sealed_shares:
            raise InvalidPayloadError("plaintext uploads carry no sealed shares")

    async def open(
        self,
        descriptor: common.SignedRoundDescriptor,
        aggregate: Aggregate,
        uploads: list[UploadRecord],
        set_phase: Callable[[int], None],
    ) -> OpenedAggregate:
        """The mean of the deltas."""
        assert isinstance(aggregate, PlaintextAggregate)
        return OpenedAggregate(aggregate.mean(), aggregate.count, {})
