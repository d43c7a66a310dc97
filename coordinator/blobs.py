"""Durable blob files: atomic whole-file writes and fsync'd appends for resumable uploads.

The database only ever points at bytes that are already on disk: a blob is fsync'd (and, for a
new file, its directory too) before the row that names it commits. So a crash can leave an
orphan file or a partial file longer than its committed size, never a row without its bytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_READ_BLOCK = 1024 * 1024


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """A directory of blobs addressed by relative names such as ``uploads/<task>.part``."""

    def __init__(self, root: Path) -> None:
        """Uses (and creates) ``root``."""
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """Absolute path of a blob; refuses names that would escape the root."""
        candidate = (self.root / name).resolve()
        if self.root.resolve() not in candidate.parents:
            raise ValueError(f"blob name escapes the store: {name!r}")
        return candidate

    def write_atomic(self, name: str, data: bytes) -> Path:
        """Writes a whole blob so that readers see all of it or nothing."""
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_directory(target.parent)
        return target

    def append_durable(self, name: str, offset: int, data: bytes) -> int:
        """Writes ``data`` at ``offset`` (truncating anything beyond) and fsyncs.

        Anything past ``offset`` was never acknowledged (a crash between the file write and the
        database commit), so it is discarded before the new bytes land.

        Returns:
            The new size of the blob.
        """
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        created = not target.exists()
        with open(target, "r+b" if not created else "wb") as handle:
            handle.truncate(offset)
            handle.seek(offset)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_directory(target.parent)
        return offset + len(data)

    def truncate(self, name: str, size: int) -> None:
        """Cuts a blob back to ``size`` bytes (its last committed size)."""
        target = self.path(name)
        if target.exists():
            with open(target, "r+b") as handle:
                handle.truncate(size)
                os.fsync(handle.fileno())

    def rename(self, source: str, destination: str) -> Path:
        """Renames a blob durably."""
        target = self.path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(source), target)
        _fsync_directory(target.parent)
        return target

    def read(self, name: str, offset: int = 0, size: int = -1) -> bytes:
        """Reads ``size`` bytes from ``offset`` (all remaining bytes for -1)."""
        with open(self.path(name), "rb") as handle:
            handle.seek(offset)
            return handle.read(size)

    def size(self, name: str) -> int:
        """Size of a blob, 0 if it does not exist."""
        target = self.path(name)
        return target.stat().st_size if target.exists() else 0

    def sha256(self, name: str, size: int | None = None) -> bytes:
        """SHA-256 of the first ``size`` bytes of a blob (all of it for None)."""
        digest = hashlib.sha256()
        remaining = self.size(name) if size is None else size
        with open(self.path(name), "rb") as handle:
            while remaining > 0:
                block = handle.read(min(_READ_BLOCK, remaining))
                if not block:
                    break
                digest.update(block)
                remaining -= len(block)
        return digest.digest()

    def delete(self, name: str) -> None:
        """Removes a blob if present."""
        self.path(name).unlink(missing_ok=True)
