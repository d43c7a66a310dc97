"""The sampling assumption under which a round is accounted: none, or Poisson with rate q."""

from __future__ import annotations

import math
from dataclasses import dataclass

_POISSON_PREFIX = "poisson:"


@dataclass(frozen=True)
class Sampling:
    """How the contributors of a round are drawn from the population, for accounting.

    ``rate is None`` means no amplification is claimed: every round is charged in full, as if
    every user took part in it. That is the default, because cross-device participation
    (devices check in when they are idle, charging and online) is not an independent coin flip
    per user and per round.

    Attributes:
        rate: Poisson inclusion probability q in (0, 1], or None for no amplification.
    """

    rate: float | None = None

    def __post_init__(self) -> None:
        """Checks the rate."""
        if self.rate is not None and not (math.isfinite(self.rate) and 0 < self.rate <= 1):
            raise ValueError(f"Poisson sampling rate must be in (0, 1], got {self.rate}")

    @classmethod
    def none(cls) -> Sampling:
        """No sampling amplification (the default)."""
        return cls(None)

    @classmethod
    def poisson(cls, rate: float) -> Sampling:
        """Each user joins each round independently with probability ``rate``."""
        return cls(float(rate))

    @classmethod
    def parse(cls, text: str) -> Sampling:
        """Parses ``"none"`` or ``"poisson:<q>"`` (the ledger's string form).

        Raises:
            ValueError: If the text is neither form.
        """
        text = text.strip()
        if text == "none":
            return cls.none()
        if text.startswith(_POISSON_PREFIX):
            try:
                rate = float(text[len(_POISSON_PREFIX) :])
            except ValueError:
                raise ValueError(f"bad Poisson rate in sampling {text!r}") from None
            return cls.poisson(rate)
        raise ValueError(f"sampling must be 'none' or 'poisson:<q>', got {text!r}")

    @property
    def amplified(self) -> bool:
        """Whether the accountant may use amplification by sampling."""
        return self.rate is not None and self.rate < 1.0

    def __str__(self) -> str:
        """The string form ``parse`` reads back exactly (``repr`` of a float round-trips)."""
        return "none" if self.rate is None else f"{_POISSON_PREFIX}{self.rate!r}"
