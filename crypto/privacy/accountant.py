"""RDP accountant that composes rounds of the distributed Skellam mechanism."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crypto.privacy.mechanism import PrivacyKey, SkellamRound
from crypto.privacy.rdp import (
    DEFAULT_ORDERS,
    FloatArray,
    IntArray,
    poisson_subsampled_rdp,
    rdp_to_epsilon,
    skellam_rdp,
    validate_orders,
)
from crypto.privacy.sampling import Sampling
from crypto.privacy.sensitivity import rounded_l1_sensitivity, rounded_l2_sensitivity

ACCOUNTANT_NAME = "rdp"


def round_rdp(mechanism: SkellamRound, orders: Sequence[int] = DEFAULT_ORDERS) -> FloatArray:
    """RDP curve of one round: the Skellam bound, amplified by Zhu-Wang if sampling is Poisson.

    Args:
        mechanism: The round's parameters.
        orders: Integer RDP orders.

    Returns:
        A read-only array of ε(α), one per order.
    """
    return _cached_round_rdp(mechanism.privacy_key(), tuple(int(o) for o in orders))


@functools.lru_cache(maxsize=256)
def _cached_round_rdp(key: PrivacyKey, orders: tuple[int, ...]) -> FloatArray:
    # Keyed on the privacy-relevant fields only, so rounds that differ in `bits` share an entry.
    clip, scale, dim, beta, local_variance, contributors, sampling = key
    d2 = rounded_l2_sensitivity(clip, scale, dim, beta)
    d1 = rounded_l1_sensitivity(d2, dim)
    mu = contributors * local_variance

    def base(alphas: IntArray) -> FloatArray:
        return skellam_rdp(alphas, d2, d1, mu)

    alphas = validate_orders(orders)
    rate = Sampling.parse(sampling).rate
    curve = base(alphas) if rate is None else poisson_subsampled_rdp(alphas, rate, base)
    curve.setflags(write=False)
    return curve


@dataclass
class _Group:
    curve: FloatArray
    count: int


class SkellamAccountant:
    """Composed RDP of a sequence of Skellam rounds, converted to (ε, δ) on demand.

    Rounds with the same privacy parameters are kept as one group with a count, so T identical
    rounds compose as exactly ``T * curve``: the ledger, the calibration and a rebuilt ledger then
    get bit-identical numbers.
    """

    def __init__(self, orders: Sequence[int] = DEFAULT_ORDERS) -> None:
        """Creates an empty accountant over integer ``orders``."""
        self._orders = tuple(int(o) for o in validate_orders(orders))
        self._groups: dict[PrivacyKey, _Group] = {}
        self._rounds = 0

    @property
    def orders(self) -> tuple[int, ...]:
        """The RDP orders."""
        return self._orders

    @property
    def rounds(self) -> int:
        """Number of rounds composed so far."""
        return self._rounds

    def compose(self, mechanism: SkellamRound, count: int = 1) -> None:
        """Adds ``count`` rounds of ``mechanism``."""
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        key = mechanism.privacy_key()
        if key in self._groups:
            self._groups[key].count += count
        else:
            self._groups[key] = _Group(round_rdp(mechanism, self._orders), count)
        self._rounds += count

    def copy(self) -> SkellamAccountant:
        """An independent accountant with the same history."""
        other = SkellamAccountant(self._orders)
        other._groups = {key: _Group(g.curve, g.count) for key, g in self._groups.items()}
        other._rounds = self._rounds
        return other

    def rdp(self) -> FloatArray:
        """The composed RDP curve (sum over rounds), one value per order."""
        total: FloatArray = np.zeros(len(self._orders), dtype=np.float64)
        for group in self._groups.values():
            total = total + float(group.count) * group.curve
        return total

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(ε, optimal order) of the composition at ``delta``; ε = 0 before any round."""
        if self._rounds == 0:
            return 0.0, float(self._orders[0])
        return rdp_to_epsilon(self._orders, self.rdp(), delta)

    def get_epsilon(self, delta: float) -> float:
        """ε of the composition at ``delta``."""
        return self.get_epsilon_and_order(delta)[0]


def composed_epsilon(
    mechanism: SkellamRound, rounds: int, delta: float, orders: Sequence[int] = DEFAULT_ORDERS
) -> float:
    """ε after ``rounds`` identical rounds of ``mechanism`` at ``delta``."""
    accountant = SkellamAccountant(orders)
    accountant.compose(mechanism, rounds)
    return accountant.get_epsilon(delta)
