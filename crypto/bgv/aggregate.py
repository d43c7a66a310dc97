"""Coordinator side: homomorphic sum of uploads, all-or-nothing per upload, one lane per thread.

Holds no secret material. Every ciphertext is shape-checked against a locally made reference
before OpenFHE sees it, so blobs from another context, key layout or ring, and garbage, are
refused without touching the running sum.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from crypto.bgv import native
from crypto.bgv.context import HeContext, disable_crt_precompute
from crypto.bgv.encrypt import upload_shape
from crypto.bgv.errors import AggregationError, CiphertextRejectedError
from crypto.bgv.layout import BlobShape
from crypto.bgv.native import Native
from crypto.bgv.payload import parse_frames, payload_digest


@dataclass(frozen=True)
class AggregateResult:
    """The finished aggregate, as sent to the committee for decryption.

    Attributes:
        ciphertexts: BINARY aggregate ciphertexts, one per N slots.
        digest: SHA-256 over their payload-v1 encoding (see :func:`payload_digest`).
        contributors: The contributor ids added, sorted.
    """

    ciphertexts: tuple[bytes, ...]
    digest: bytes
    contributors: tuple[str, ...]

    @property
    def count(self) -> int:
        """Number of uploads in the sum."""
        return len(self.contributors)


class Aggregator:
    """Sums uploads of one round; create one :class:`AggregationLane` per adding thread."""

    def __init__(
        self,
        ctx: HeContext,
        joint_public_key: bytes,
        *,
        ciphertexts_per_upload: int,
        max_summands: int | None = None,
    ) -> None:
        """Prepares an empty aggregate.

        Args:
            ctx: The round's context.
            joint_public_key: The epoch's joint key (public); fixes the expected blob shape.
            ciphertexts_per_upload: Ciphertexts every upload must have.
            max_summands: Uploads to accept at most; at most the profile's ``max_summands``,
                which the packing radix and the noise budget were sized for.
        """
        limit = ctx.profile.max_summands if max_summands is None else max_summands
        if not 1 <= limit <= ctx.profile.max_summands:
            raise AggregationError(
                f"max_summands {limit} outside [1, {ctx.profile.max_summands}] of the profile"
            )
        if ciphertexts_per_upload < 1:
            raise AggregationError("ciphertexts_per_upload must be positive")
        disable_crt_precompute()
        self.ctx = ctx
        self.shape: BlobShape = upload_shape(ctx, joint_public_key)
        self.ciphertexts_per_upload = ciphertexts_per_upload
        self.max_summands = limit
        self._lock = threading.Lock()
        self._lanes: list[AggregationLane] = []
        self._contributors: set[str] = set()
        self._finished = False

    @property
    def count(self) -> int:
        """Uploads committed so far."""
        with self._lock:
            return len(self._contributors)

    def lane(self) -> AggregationLane:
        """A new accumulator for one thread; lanes are merged by :meth:`finish`."""
        with self._lock:
            if self._finished:
                raise AggregationError("aggregate already finished")
            lane = AggregationLane(self)
            self._lanes.append(lane)
            return lane

    def _reserve(self, contributor: str) -> None:
        with self._lock:
            if self._finished:
                raise AggregationError("aggregate already finished")
            if contributor in self._contributors:
                raise AggregationError(f"contributor {contributor!r} already added")
            if len(self._contributors) >= self.max_summands:
                raise AggregationError(
                    f"aggregate already holds max_summands = {self.max_summands} uploads"
                )
            self._contributors.add(contributor)

    def finish(self) -> AggregateResult:
        """Merges the lanes and serializes the aggregate; no upload is accepted afterwards.

        Waits for uploads already being added by other threads.

        Raises:
            AggregationError: if nothing was added.
        """
        with self._lock:
            if self._finished:
                raise AggregationError("aggregate already finished")
            self._finished = True
            lanes = list(self._lanes)
            contributors = tuple(sorted(self._contributors))
        total: list[Native] | None = None
        for lane in lanes:
            with lane._lock:
                part = lane._accumulators
            if part is None:
                continue
            if total is None:
                total = part
                continue
            for accumulator, ciphertext in zip(total, part, strict=True):
                self.ctx.native.EvalAddInPlace(accumulator, ciphertext)
        if total is None:
            raise AggregationError("no upload was added")
        blobs = tuple(native.serialize(c) for c in total)
        return AggregateResult(blobs, payload_digest(blobs), contributors)


class AggregationLane:
    """One thread's accumulator; a second thread using the same lane is refused."""

    def __init__(self, aggregator: Aggregator) -> None:
        """Use :meth:`Aggregator.lane`."""
        self._aggregator = aggregator
        self._lock = threading.Lock()
        self._accumulators: list[Native] | None = None

    def add_upload(self, contributor: str, ciphertexts: Iterable[bytes]) -> None:
        """Validates every ciphertext of one upload, then adds them all (or none).

        Args:
            contributor: The uploader's id; each id is counted once.
            ciphertexts: The upload's BINARY ciphertexts, in slot order (may be a stream).

        Raises:
            CiphertextRejectedError: if a ciphertext has the wrong shape, or the count is wrong.
            AggregationError: if the lane is busy, the contributor repeats, or the aggregate is
                full or finished. In every case the aggregate is unchanged.
        """
        if not self._lock.acquire(blocking=False):
            raise AggregationError("lane in use by another thread; use one lane per thread")
        try:
            staged = self._stage(ciphertexts)
            self._aggregator._reserve(contributor)
            cc = self._aggregator.ctx.native
            if self._accumulators is None:
                self._accumulators = staged
            else:
                for accumulator, ciphertext in zip(self._accumulators, staged, strict=True):
                    cc.EvalAddInPlace(accumulator, ciphertext)
        finally:
            self._lock.release()

    def add_payload(self, contributor: str, payload: bytes | Iterable[bytes]) -> None:
        """As :meth:`add_upload`, from a payload-v1 byte string or stream of chunks.

        Raises:
            PayloadError: if the framing is broken (nothing is added).
        """
        shape = self._aggregator.shape
        chunks = [payload] if isinstance(payload, bytes) else payload
        frames = parse_frames(
            chunks,
            max_frame_bytes=len(shape.reference),
            max_frames=self._aggregator.ciphertexts_per_upload,
        )
        self.add_upload(contributor, frames)

    def _stage(self, ciphertexts: Iterable[bytes]) -> list[Native]:
        aggregator = self._aggregator
        staged: list[Native] = []
        for position, blob in enumerate(ciphertexts):
            if position >= aggregator.ciphertexts_per_upload:
                raise CiphertextRejectedError(
                    f"upload has more than {aggregator.ciphertexts_per_upload} ciphertexts"
                )
            try:
                aggregator.shape.check(blob)
            except CiphertextRejectedError as error:
                raise CiphertextRejectedError(f"upload ciphertext {position}: {error}") from error
            staged.append(native.load_ciphertext(blob))
        if len(staged) != aggregator.ciphertexts_per_upload:
            raise CiphertextRejectedError(
                f"upload has {len(staged)} ciphertexts, expected "
                f"{aggregator.ciphertexts_per_upload}"
            )
        return staged
