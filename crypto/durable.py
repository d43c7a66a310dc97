"""Durable file writes: atomic replace, fsync'd, owner-only for secrets (device state, keys)."""

from __future__ import annotations

import os
from pathlib import Path


def write_durable(path: Path, data: bytes, *, private: bool = False) -> None:
    """Writes ``data`` so that readers see the old or the new file, never a torn one.

    Args:
        path: Destination; its parent folders are created.
        data: The bytes.
        private: Readable by the owner only (0600 file in a 0700 folder), for key material.
    """
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
