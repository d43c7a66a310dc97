"""Discrete Gaussian sampling for the mask secret and error, driven only by :class:`Csprng`.

A sample is the inverse of a cumulative distribution table (CDT) at a uniform 128-bit point
u = hi * 2^64 + lo, where hi and lo are 64-bit uniforms. The support is cut at
t = ceil(13 sigma). Table entry T_i = round(2^128 * P[X <= x_i]) over the truncated
distribution, and the sample is x_{#{i : T_i <= u}}. So each probability is off by at most
2^-128 and the statistical distance to D_{Z,sigma} is at most (2t + 1) 2^-129 plus the tail mass
beyond t. :attr:`DiscreteGaussian.statistical_distance` holds the exact figure, computed with
60-digit decimals: 2^-123.5 for sigma 4.5 and 2^-123.2 for sigma 6.36. For a vector of N samples
the distance is at most N times that: below 2^-103 for a million.

Speed: a 2^16-entry guide table indexed by the top 16 bits of hi resolves all but about
(2t)/2^16 of the samples in one lookup. The rest are resolved by a binary search over the table;
lo is drawn only when hi equals a table word exactly (probability below 2^-56 per sample), so a
sample costs 8 bytes of keystream. numpy cannot promise constant time; see docs/oneshot-security.md.
"""

from __future__ import annotations

import bisect
import decimal
import functools
import math

import numpy as np
import numpy.typing as npt

from crypto.csprng import Csprng

TAIL_SIGMAS = 13.0
_GUIDE_BITS = 16
_UNRESOLVED = np.int16(np.iinfo(np.int16).max)
_PRECISION_BITS = 128


class DiscreteGaussian:
    """A discrete Gaussian D_{Z,sigma} truncated to [-t, t], t = ceil(13 sigma), by CDT."""

    def __init__(self, stddev: float) -> None:
        """Builds the 128-bit table for ``stddev`` (between 0.5 and 1000)."""
        if not 0.5 <= stddev <= 1000:
            raise ValueError(f"stddev must be in [0.5, 1000], got {stddev}")
        self.stddev = stddev
        self.tail_bound = math.ceil(TAIL_SIGMAS * stddev)
        boundaries, distance = _cdt(stddev, self.tail_bound)
        self.statistical_distance = distance
        self._boundaries = boundaries
        self._high = np.array([b >> 64 for b in boundaries], dtype=np.uint64)
        self._low = [b & ((1 << 64) - 1) for b in boundaries]
        self._guide = _guide_table(boundaries, self.tail_bound)

    def probabilities(self) -> list[float]:
        """The exact probabilities the table assigns to -t..t (for tests and docs)."""
        edges = [0, *self._boundaries, 1 << _PRECISION_BITS]
        return [(edges[i + 1] - edges[i]) / 2.0**_PRECISION_BITS for i in range(len(edges) - 1)]

    def sample(self, rng: Csprng, count: int) -> npt.NDArray[np.int64]:
        """Draws ``count`` independent samples using ``rng``'s keystream only."""
        high = rng.uint64(count)
        values = self._guide[high >> np.uint64(64 - _GUIDE_BITS)]
        unresolved = np.flatnonzero(values == _UNRESOLVED)
        if unresolved.size:
            words = high[unresolved]
            below = np.searchsorted(self._high, words, side="left")
            equal = np.searchsorted(self._high, words, side="right") - below
            for position in np.flatnonzero(equal):
                # Exact tie with a table word: the low word decides.
                low = int(rng.uint64(1)[0])
                start = int(below[position])
                stop = start + int(equal[position])
                below[position] += sum(1 for t in self._low[start:stop] if t <= low)
            values[unresolved] = below - self.tail_bound
        result: npt.NDArray[np.int64] = values.astype(np.int64)
        return result


def _cdt(stddev: float, tail: int) -> tuple[list[int], float]:
    with decimal.localcontext() as context:
        context.prec = 60
        sigma = decimal.Decimal(stddev)
        two_var = 2 * sigma * sigma

        def weight(x: int) -> decimal.Decimal:
            return (-decimal.Decimal(x * x) / two_var).exp()

        weights = [weight(x) for x in range(-tail, tail + 1)]
        total = sum(weights, decimal.Decimal(0))
        # Mass beyond the cut, up to where it no longer matters at 60 digits.
        beyond = range(tail + 1, tail + int(40 * stddev) + 2)
        far = sum((weight(x) for x in beyond), decimal.Decimal(0))
        full_total = total + 2 * far
        scale = decimal.Decimal(2) ** _PRECISION_BITS
        boundaries: list[int] = []
        cumulative = decimal.Decimal(0)
        for w in weights[:-1]:
            cumulative += w
            boundaries.append(int((cumulative / total * scale).to_integral_value()))
        edges = [0, *boundaries, 1 << _PRECISION_BITS]
        distance = 2 * far / full_total
        for i, w in enumerate(weights):
            table = decimal.Decimal(edges[i + 1] - edges[i]) / scale
            distance += abs(table - w / full_total)
        return boundaries, float(distance / 2)


def _guide_table(boundaries: list[int], tail: int) -> npt.NDArray[np.int16]:
    cell_bits = _PRECISION_BITS - _GUIDE_BITS
    guide = np.empty(1 << _GUIDE_BITS, dtype=np.int16)
    for cell in range(1 << _GUIDE_BITS):
        start = cell << cell_bits
        at_start = bisect.bisect_right(boundaries, start)
        before_end = bisect.bisect_left(boundaries, start + (1 << cell_bits))
        guide[cell] = at_start - tail if at_start == before_end else _UNRESOLVED
    return guide


@functools.lru_cache(maxsize=8)
def discrete_gaussian(stddev: float) -> DiscreteGaussian:
    """The (cached, immutable) sampler for ``stddev``; tables are public, samples are not."""
    return DiscreteGaussian(stddev)
