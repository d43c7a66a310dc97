"""Reading a LocalFederation's on-disk state from a test: device identities, the coordinator's
SQLite store, and polling until a condition on them holds."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from crypto.signing import SigningKey
from examples.federation import LocalFederation


def worker_id(federation: LocalFederation, index: int) -> str:
    """The enrolled identity of device ``index`` (from its signing key)."""
    raw = (federation.worker_dir(index) / "state" / "signing.key").read_bytes()
    return SigningKey.from_private_bytes(raw).worker_id


def worker_ids(federation: LocalFederation) -> dict[str, Path]:
    """Every device's identity -> its folder."""
    return {
        worker_id(federation, index): federation.worker_dir(index)
        for index in range(federation.spec.workers)
    }


def query(state: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of ``sql`` against the coordinator store in the state folder ``state``."""
    with sqlite3.connect(state / "coordinator.sqlite3") as db:
        return db.execute(sql, args).fetchall()


async def until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Polls ``condition`` every 0.2 s; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)
