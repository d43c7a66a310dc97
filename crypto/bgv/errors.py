"""Exceptions raised by the threshold-HE facade."""

from __future__ import annotations


class BgvError(Exception):
    """Base class of every error the threshold-HE facade raises on purpose."""


class ProfileError(BgvError):
    """A profile or context is known to be insecure or to decrypt silently wrong."""

    def __init__(self, profile: str, problems: list[str]) -> None:
        self.profile = profile
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"crypto profile {profile!r} refused:\n{lines}")


class SelfTestError(BgvError):
    """The start-up threshold round did not decrypt exactly."""


class PayloadError(BgvError):
    """A framed payload is truncated, oversized or otherwise malformed."""


class CiphertextRejectedError(BgvError):
    """A serialized ciphertext does not belong to this context, key or layout."""


class AggregationError(BgvError):
    """An upload cannot be added (limit reached, duplicate, lane misuse, finished)."""


class KeyCeremonyError(BgvError):
    """A key-epoch message is inconsistent (wrong CRS, commitment, share or index)."""


class DecryptionError(BgvError):
    """A decryption cannot be planned, computed or fused."""
