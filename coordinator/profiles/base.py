"""The interface between the profile-agnostic round engine and a crypto profile."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hefl.v1 import common_pb2 as common


class RoundRefusedError(Exception):
    """The next round must not start (for example: it would exceed the privacy budget)."""


class InvalidPayloadError(ValueError):
    """An upload's bytes do not form a valid payload for the round (corrupt, wrong key...)."""


@dataclass(frozen=True)
class RoundContext:
    """What a profile needs to know about the round being prepared."""

    federation_id: str
    round_number: int
    global_version: int
    global_model_sha256: bytes
    parameter_count: int
    min_contributors: int
    max_contributors: int


@dataclass(frozen=True)
class UploadRecord:
    """An accepted (or about to be accepted) upload, without its payload bytes."""

    worker_id: str
    signing_public_key: bytes
    enrollment_certificate: bytes
    signed_statement: common.SignedUploadStatement
    sealed_shares: tuple[common.SealedBox, ...]


@dataclass(frozen=True)
class OpenedAggregate:
    """The result of opening a round's aggregate."""

    mean_delta: npt.NDArray[np.float64]
    contributors: int
    counters: dict[str, float]
    field_sums: npt.NDArray[np.int64] | None = None
    """The opened sum of the quantized fields (secure profiles), kept for audit."""


class Aggregate(abc.ABC):
    """A running aggregate of one round; add() is all-or-nothing."""

    @abc.abstractmethod
    def add(self, payload: bytes, upload: UploadRecord) -> None:
        """Validates and adds one upload's payload.

        Raises:
            InvalidPayloadError: if the payload is malformed; the aggregate is then unchanged.
        """

    @property
    @abc.abstractmethod
    def count(self) -> int:
        """Uploads added so far."""


class RoundProtocol(abc.ABC):
    """Profile-specific steps of a round."""

    profile: int
    payload_format_version: int

    async def ensure_ready(self) -> None:  # noqa: B027 - optional hook
        """Runs any setup the profile needs before the first round (e.g. a key ceremony)."""

    @abc.abstractmethod
    async def prepare(self, context: RoundContext) -> common.SignedRoundDescriptor:
        """Produces the (committee-signed, where the profile has a committee) descriptor."""

    @abc.abstractmethod
    def new_aggregate(self, descriptor: common.RoundDescriptor) -> Aggregate:
        """An empty aggregate for the round."""

    @abc.abstractmethod
    def validate_statement_extras(
        self, descriptor: common.RoundDescriptor, upload: UploadRecord
    ) -> None:
        """Checks profile-specific trailer parts (e.g. sealed shares) before the payload is added.

        Raises:
            InvalidPayloadError: if they are malformed.
        """

    @abc.abstractmethod
    async def open(
        self,
        descriptor: common.SignedRoundDescriptor,
        aggregate: Aggregate,
        uploads: list[UploadRecord],
        set_phase: Callable[[int], None],
    ) -> OpenedAggregate:
        """Opens the aggregate of the accepted uploads and decodes the mean delta.

        Args:
            descriptor: The round's signed descriptor.
            aggregate: The running aggregate holding exactly ``uploads``.
            uploads: The accepted uploads, sorted by worker id.
            set_phase: Reports phase changes (certifying, opening) to the engine.
        """

    def key_material(self, have_epoch: int) -> common.KeyEpochMaterial | None:
        """Public key material a device without epoch ``have_epoch`` needs (None: nothing)."""
        return None

    def round_ended(self, round_number: int, published: bool, contributors: int) -> float:
        """Charges a round whose descriptor went out; returns its epsilon increment."""
        return 0.0

    def privacy_summary(self) -> tuple[float, float, float]:
        """(epsilon spent, epsilon budget, delta); zeros without DP."""
        return 0.0, 0.0, 0.0

    def committee_indices(self) -> dict[str, int]:
        """Worker id to member index in the current epoch (empty without a committee)."""
        return {}

    @property
    def key_epoch(self) -> int:
        """Current key epoch (0 when the profile has no keys)."""
        return 0
