"""Coordinator side, no secrets: add masked uploads mod q', then remove a * S and decode the sum.

C = sum_i c_i mod q'. Once the committee has opened S = sum_i s_i:
Y = C 2^(k-kp) - a S mod q = Delta' 2^(k-kp) sum m + 2^(k-kp) sum r_i + sum e_i, with
|2^(k-kp) sum r_i + sum e_i| < Delta' 2^(k-kp) / 2 for every valid parameter set, so
sum m = floor((Y + step/2) / step) mod 2^sum_bits, step = Delta' 2^(k-kp), exactly (integer
arithmetic only).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from crypto.oneshot.binding import RoundBinding
from crypto.oneshot.expand import expand_public
from crypto.oneshot.params import OneshotParams
from crypto.oneshot.ring import NegacyclicMultiplier
from crypto.oneshot.wire import HEADER_BYTES, PayloadLayout, WireError, unpack_parts

DEFAULT_BATCH_BLOCKS = 32


class AggregationError(ValueError):
    """An aggregate cannot be formed or opened with these inputs."""


class MaskedSum:
    """The running sum mod q' of masked uploads for one round."""

    def __init__(self, params: OneshotParams, parameter_count: int) -> None:
        """Starts an empty sum for ``parameter_count`` fields."""
        self.params = params
        self.layout = PayloadLayout(params, parameter_count)
        self.contributors = 0
        # Low bytes and top bits are summed apart and combined on read (saves a pass per add).
        self._low = np.zeros(parameter_count, dtype=np.uint64)
        self._high = np.zeros(parameter_count, dtype=np.uint64)
        self._high_shift = np.uint64(8 * self.layout.low_bytes)
        self._mask = np.uint64((1 << params.rounded_modulus_bits) - 1)

    @property
    def total(self) -> npt.NDArray[np.uint64]:
        """C, the sum so far, reduced mod q' (a copy)."""
        # uint64 wraps mod 2^64, a multiple of q'.
        return (self._low + (self._high << self._high_shift)) & self._mask

    def add(self, payload: bytes | memoryview) -> None:
        """Adds one complete v1 payload; nothing is added unless all of it decodes.

        Raises:
            WireError: if the payload has the wrong size, a foreign header or garbled bits.
        """
        if len(payload) != self.layout.size:
            raise WireError(f"payload has {len(payload)} bytes, expected {self.layout.size}")
        self.layout.check_header(payload)
        low, high = unpack_parts(self.layout, 0, memoryview(payload)[HEADER_BYTES:])
        self._reserve(1)
        self._low += low
        if high is not None:
            self._high += high
        self.contributors += 1

    def merge(self, other: MaskedSum) -> None:
        """Adds another partial sum of the same round (tree aggregation)."""
        same_count = other.layout.parameter_count == self.layout.parameter_count
        if other.params != self.params or not same_count:
            raise AggregationError("partial sums of different parameter sets")
        self._reserve(other.contributors)
        self._low += other.total
        self.contributors += other.contributors

    def _reserve(self, contributors: int) -> None:
        if self.contributors + contributors > self.params.max_summands:
            raise AggregationError(
                f"more than max_summands = {self.params.max_summands} uploads would not decode"
            )


def unmask_sum(
    binding: RoundBinding,
    masked_sum: MaskedSum,
    key_sum: npt.NDArray[np.int64],
    *,
    batch_blocks: int = DEFAULT_BATCH_BLOCKS,
) -> npt.NDArray[np.uint64]:
    """Removes a * S from C and decodes sum m mod 2^sum_bits.

    Args:
        binding: The round (a_j are expanded from its descriptor digest).
        masked_sum: C over exactly the contributors whose secrets S sums.
        key_sum: S as opened by the committee (signed integers, length n).
        batch_blocks: Blocks per batch; bounds the temporary memory.

    Returns:
        The D decoded sums: mod 2^b in mod mode, the integer sum in exact mode.
    """
    params = masked_sum.params
    n = params.ring_dimension
    if masked_sum.contributors < 1:
        raise AggregationError("an empty sum has nothing to open")
    if key_sum.shape != (n,):
        raise AggregationError(f"key sum must have shape ({n},), got {key_sum.shape}")
    k, gap, d = params.modulus_bits, params.gap_bits, params.shift_bits
    mask_k = np.uint64((1 << k) - 1)
    half_step = np.uint64(1 << (gap + d - 1))
    sum_mask = np.uint64((1 << params.sum_bits) - 1)
    multiplier = NegacyclicMultiplier(key_sum.astype(np.int64), k)
    total = masked_sum.total
    layout = masked_sum.layout
    result = np.empty(layout.parameter_count, dtype=np.uint64)
    for first in range(0, layout.block_count, batch_blocks):
        count = min(batch_blocks, layout.block_count - first)
        start = first * n
        stop = start + layout.run_values(first, count)
        mask = multiplier.multiply(expand_public(binding, params, first, count))
        y = (total[start:stop] << np.uint64(gap)) - mask.reshape(count * n)[: stop - start]
        y += half_step
        y &= mask_k
        result[start:stop] = (y >> np.uint64(gap + d)) & sum_mask
    return result
