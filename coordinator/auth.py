"""Verifies signed-call metadata against enrolled workers and refuses replays."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from coordinator.errors import UnauthenticatedError
from coordinator.store import WorkerRow
from crypto.call_auth import CallAuthError, parse_claim, verify_claim

DEFAULT_TOLERANCE_SECONDS = 300.0


class CallAuthenticator:
    """Checks that a call comes from an enrolled worker and has not been seen before."""

    def __init__(
        self,
        lookup: Callable[[str], WorkerRow | None],
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Uses ``lookup`` to find enrolled workers by id."""
        self._lookup = lookup
        self._tolerance = tolerance_seconds
        self._clock = clock
        # Nonces are remembered as long as their timestamp is acceptable; older calls are
        # refused by the time check, so the cache stays bounded by the call rate.
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def authenticate(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, method: str
    ) -> WorkerRow:
        """Returns the calling worker.

        Raises:
            UnauthenticatedError: missing/bad metadata, unknown worker, stale time, replay or
                bad signature; the message says which.
        """
        try:
            claim = parse_claim(dict(metadata or ()))
        except CallAuthError as error:
            raise UnauthenticatedError(f"{error}; sign each call with the enrolled key") from None
        worker = self._lookup(claim.worker_id)
        if worker is None:
            raise UnauthenticatedError(f"unknown worker {claim.worker_id}: call EnrollWorker first")
        now = self._clock()
        skew = abs(now - claim.time_ms / 1000.0)
        if skew > self._tolerance:
            raise UnauthenticatedError(
                f"call time is {skew:.0f} s away from the coordinator's clock"
                f" (tolerance {self._tolerance:.0f} s): check the device clock"
            )
        if not verify_claim(claim, method, worker.signing_public_key):
            raise UnauthenticatedError("call signature does not verify with the enrolled key")
        with self._lock:
            self._expire(now)
            key = (claim.worker_id, claim.nonce)
            if key in self._seen:
                raise UnauthenticatedError("replayed call (nonce already used)")
            self._seen[key] = now
        return worker

    def _expire(self, now: float) -> None:
        horizon = now - 2 * self._tolerance
        while self._seen:
            oldest_key, seen_at = next(iter(self._seen.items()))
            if seen_at >= horizon:
                break
            del self._seen[oldest_key]
