"""Round events: persisted with a sequence number and fanned out to live watchers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from coordinator.store import EventRow, Store

logger = logging.getLogger(__name__)

_WATCHER_QUEUE = 1024


class EventBus:
    """Appends events to the store and delivers them to subscribed queues."""

    def __init__(self, store: Store) -> None:
        """Uses the coordinator's store for persistence and replay."""
        self._store = store
        self._watchers: set[asyncio.Queue[EventRow | None]] = set()

    def publish(
        self,
        kind: int,
        round_number: int,
        phase: int,
        contributors: int,
        detail: str,
        round_open_time: float | None = None,
    ) -> EventRow:
        """Records an event and hands it to every watcher (dropping it for a stalled one)."""
        event = self._store.append_event(
            kind, round_number, phase, contributors, detail, round_open_time
        )
        for queue in list(self._watchers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A watcher that stopped reading loses events rather than stalling rounds; it
                # can resume from its last sequence number.
                logger.warning("event watcher is %d events behind; dropping", queue.qsize())
        return event

    def subscribe(self) -> asyncio.Queue[EventRow | None]:
        """A queue that receives every event published from now on."""
        queue: asyncio.Queue[EventRow | None] = asyncio.Queue(_WATCHER_QUEUE)
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[EventRow | None]) -> None:
        """Stops delivering to ``queue``."""
        self._watchers.discard(queue)

    def close(self) -> None:
        """Ends every watch stream (on shutdown)."""
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    def last_sequence(self) -> int:
        """The sequence number of the newest event, 0 before the first."""
        return self._store.last_event_sequence()

    def replay(self, after_sequence: int) -> list[EventRow]:
        """Persisted events newer than ``after_sequence``."""
        return self._store.events_after(after_sequence)
