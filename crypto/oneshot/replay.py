"""Client-side refusal of a round it has already masked for (attack A3b: reused a and s)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from crypto.oneshot.binding import RoundBinding

_FORMAT = "hefl.v1/oneshot/used-rounds"


class RoundReuseError(Exception):
    """The client already masked an update for this (federation, round)."""


class UsedRounds:
    """The (federation, round) pairs a worker has masked for; the worker persists it.

    A second upload for a round reuses that round's a_j. Together with any fault that repeats s
    (a restored snapshot, a broken generator) c - c' then reveals m - m' without any decryption
    (attack A3b), and a worker never needs two uploads for one round. Claim before masking and
    persist :meth:`to_bytes` before the upload leaves the device.
    """

    def __init__(self, used: Iterable[tuple[str, int]] = ()) -> None:
        """Starts from previously persisted pairs."""
        self._used: set[tuple[str, int]] = {(str(f), int(r)) for f, r in used}
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._used

    def __len__(self) -> int:
        return len(self._used)

    def claim(self, binding: RoundBinding) -> None:
        """Records the round of ``binding``.

        Raises:
            RoundReuseError: if this (federation, round) was claimed before.
        """
        key = (binding.federation_id, binding.round_number)
        with self._lock:
            if key in self._used:
                raise RoundReuseError(
                    f"already masked for federation {key[0]!r} round {key[1]}: refusing to reuse "
                    "its public polynomials"
                )
            self._used.add(key)

    def to_bytes(self) -> bytes:
        """Serializes the pairs as canonical JSON (sorted), for the worker's state file."""
        body = {"format": _FORMAT, "used": sorted([f, r] for f, r in self._used)}
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> UsedRounds:
        """Parses :meth:`to_bytes` output.

        Raises:
            ValueError: if the bytes are not a used-rounds record.
        """
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("format") != _FORMAT:
            raise ValueError("not a oneshot used-rounds record")
        pairs = body.get("used")
        if not isinstance(pairs, list) or not all(
            isinstance(p, list)
            and len(p) == 2
            and isinstance(p[0], str)
            and isinstance(p[1], int)
            and not isinstance(p[1], bool)
            for p in pairs
        ):
            raise ValueError("malformed used-rounds list")
        return cls((p[0], p[1]) for p in pairs)
