"""Client side: mask a quantized update block by block under a fresh RLWE secret.

For block j: u_j = a_j s + e_j mod q, c_j = round(u_j q'/q) + Delta' m_j mod q'. The secret s and
the errors come from a :class:`Csprng` keyed by the operating system, created inside the
session; nothing here accepts a generator, a secret, a seed or a public polynomial from outside,
and the session can be neither pickled nor copied. Temporary memory is bounded by one batch of
blocks, not by the update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from crypto.csprng import Csprng
from crypto.oneshot.binding import RoundBinding
from crypto.oneshot.expand import expand_public
from crypto.oneshot.keyshares import MemberKey, SealedShare, ShareContext, seal_secret_shares
from crypto.oneshot.params import OneshotParams
from crypto.oneshot.replay import UsedRounds
from crypto.oneshot.ring import NegacyclicMultiplier
from crypto.oneshot.sampling import discrete_gaussian
from crypto.oneshot.wire import PayloadLayout, pack_blocks

DEFAULT_BATCH_BLOCKS = 32


class MaskingError(Exception):
    """The session was used out of order, after sealing, or with out-of-range fields."""


@dataclass(frozen=True)
class MaskedUpload:
    """A finished upload: the v1 payload and the secret's sealed shares."""

    payload: bytes
    payload_sha256: bytes
    sealed_shares: tuple[SealedShare, ...]


class MaskingSession:
    """One client's masked upload for one round.

    Use: create (claims the round), feed blocks in order with :meth:`mask_blocks` or
    :meth:`iter_payload` (the header first), then :meth:`seal_key_shares`, which wipes the
    secret. The payload's SHA-256 is computed as bytes are produced, so the sealed shares are
    bound to exactly the bytes that were emitted.
    """

    def __init__(
        self,
        binding: RoundBinding,
        params: OneshotParams,
        parameter_count: int,
        used_rounds: UsedRounds,
    ) -> None:
        """Claims the round and samples a fresh secret.

        Args:
            binding: The round, from the committee-signed descriptor the caller verified.
            params: The round's parameters.
            parameter_count: Number D of quantized fields to mask.
            used_rounds: The worker's persistent record of masked rounds.

        Raises:
            RoundReuseError: if the worker already masked for this round.
        """
        self.layout = PayloadLayout(params, parameter_count)
        used_rounds.claim(binding)
        self.binding = binding
        self.params = params
        self._rng = Csprng()
        self._secret = discrete_gaussian(params.secret_stddev).sample(
            self._rng, params.ring_dimension
        )
        self._error = discrete_gaussian(params.error_stddev)
        self._multiplier: NegacyclicMultiplier | None = NegacyclicMultiplier(
            self._secret, params.modulus_bits
        )
        self._digest = hashlib.sha256()
        self._header_sent = False
        self._next_block = 0
        self._sealed = False

    def __reduce__(self) -> NoReturn:
        raise TypeError("a masking session holds a secret and cannot be pickled or copied")

    @property
    def complete(self) -> bool:
        """True once the header and every block have been produced."""
        return self._header_sent and self._next_block == self.layout.block_count

    @property
    def payload_sha256(self) -> bytes:
        """SHA-256 of the whole payload; only once it is complete."""
        if not self.complete:
            raise MaskingError("the payload is not complete")
        return self._digest.digest()

    def header(self) -> bytes:
        """The 16-byte payload header; must be taken before the first block."""
        if self._header_sent:
            raise MaskingError("header already produced")
        self._header_sent = True
        self._digest.update(self.layout.header)
        return self.layout.header

    def mask_blocks(self, first_block: int, fields: npt.NDArray[np.integer]) -> bytes:
        """Masks the fields of consecutive blocks from ``first_block`` and encodes them.

        Args:
            first_block: Must be the next block not yet produced.
            fields: The quantized values of those blocks: unsigned b-bit fields in
                [0, 2^b), n per block (fewer in the last block).

        Returns:
            The payload bytes of those blocks.
        """
        multiplier = self._multiplier
        if multiplier is None:
            raise MaskingError("the session's secret was sealed and wiped")
        if not self._header_sent or first_block != self._next_block:
            raise MaskingError(f"expected block {self._next_block} after the header")
        params, layout, n = self.params, self.layout, self.params.ring_dimension
        count = -(-fields.size // n)
        if fields.ndim != 1 or fields.size == 0 or first_block + count > layout.block_count:
            raise MaskingError(f"{fields.size} fields do not fit the blocks from {first_block}")
        if fields.size != layout.run_values(first_block, count):
            raise MaskingError(f"{fields.size} fields do not fill blocks {first_block}+{count}")
        if fields.dtype.kind not in "iu":
            raise MaskingError(f"fields must be integers, got {fields.dtype}")
        if int(fields.min()) < 0 or int(fields.max()) >= 1 << params.bits:
            raise MaskingError(f"fields must lie in [0, 2^{params.bits})")
        k, kp, gap = params.modulus_bits, params.rounded_modulus_bits, params.gap_bits
        masked = multiplier.multiply(expand_public(self.binding, params, first_block, count))
        masked = masked.reshape(count * n)[: fields.size]
        masked += self._error.sample(self._rng, fields.size).view(np.uint64)
        if k < 64:
            masked &= np.uint64((1 << k) - 1)
        # Round u q'/q to nearest (ties up): add half a q'-step, drop the gap bits.
        masked += np.uint64(1 << (gap - 1))
        masked >>= np.uint64(gap)
        masked += fields.astype(np.uint64) << np.uint64(params.shift_bits)
        masked &= np.uint64((1 << kp) - 1)
        data = pack_blocks(layout, first_block, masked)
        self._digest.update(data)
        self._next_block += count
        return data

    def iter_payload(
        self, fields: npt.NDArray[np.integer], *, batch_blocks: int = DEFAULT_BATCH_BLOCKS
    ) -> Iterator[bytes]:
        """Yields the whole payload: the header, then one piece per batch of blocks.

        Args:
            fields: All D quantized fields.
            batch_blocks: Blocks per piece; bounds the temporary memory.
        """
        if fields.shape != (self.layout.parameter_count,):
            raise MaskingError(f"expected {self.layout.parameter_count} fields, got {fields.shape}")
        yield self.header()
        n = self.params.ring_dimension
        for first in range(0, self.layout.block_count, batch_blocks):
            yield self.mask_blocks(first, fields[first * n : (first + batch_blocks) * n])

    def seal_key_shares(
        self, *, members: Sequence[MemberKey], threshold: int, worker_id: str
    ) -> tuple[SealedShare, ...]:
        """Seals the secret's shares to the committee and wipes the secret.

        Args:
            members: The epoch's committee (indices 1..k) with their sealing keys.
            threshold: t of the epoch.
            worker_id: This worker's id (bound into every box).

        Returns:
            One sealed share per member, in member order.
        """
        if self._sealed:
            raise MaskingError("the key shares were already sealed")
        context = ShareContext.for_upload(self.binding, worker_id, self.payload_sha256)
        try:
            return seal_secret_shares(
                self._secret, members=members, threshold=threshold, context=context
            )
        finally:
            self._wipe()

    def _wipe(self) -> None:
        # Best effort in Python: the only copies are this array and the multiplier's tables.
        self._secret[:] = 0
        if self._multiplier is not None:
            self._multiplier.wipe()
        self._multiplier = None
        self._sealed = True


def mask_update(
    binding: RoundBinding,
    params: OneshotParams,
    fields: npt.NDArray[np.integer],
    used_rounds: UsedRounds,
    *,
    members: Sequence[MemberKey],
    threshold: int,
    worker_id: str,
) -> MaskedUpload:
    """Masks a whole update in one call (the streaming session, collected in memory).

    Args:
        binding: The verified round.
        params: The round's parameters.
        fields: The D quantized fields, in [0, 2^b).
        used_rounds: The worker's record of masked rounds.
        members: The committee with sealing keys.
        threshold: t of the epoch.
        worker_id: This worker's id.
    """
    session = MaskingSession(binding, params, fields.size, used_rounds)
    payload = b"".join(session.iter_payload(fields))
    shares = session.seal_key_shares(members=members, threshold=threshold, worker_id=worker_id)
    return MaskedUpload(payload, session.payload_sha256, shares)
