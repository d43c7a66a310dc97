"""The member's durable decision log: one SQLite file on the member's own disk.

Per (federation, round) it records the seed contribution the member drew, the commitment set it
revealed against, the descriptor digest it signed, the contributor-set digest it certified, the
set it opened and the result it returned. Every field is write-once (enforced by a trigger as
well as by :meth:`LogTransaction.put`), rows are never deleted, and each decision is committed
with ``synchronous=FULL`` before its answer leaves the member, so a crash or restart can never
make the member contradict an answer it gave.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from crypto.committee.digests import sha256
from crypto.committee.errors import MemberLogError

SCHEMA_VERSION = 1
_FIELDS = (
    "seed_contribution",
    "revealed_commitments_sha256",
    "descriptor_sha256",
    "certified_set_sha256",
    "opened_set_sha256",
    "result_sha256",
    "result",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS member_rounds ("
    " federation_id TEXT NOT NULL, round_number INTEGER NOT NULL, "
    + ", ".join(f"{field} BLOB" for field in _FIELDS)
    + ", PRIMARY KEY (federation_id, round_number)) STRICT",
    "CREATE TRIGGER IF NOT EXISTS member_rounds_write_once BEFORE UPDATE ON member_rounds WHEN "
    + " OR ".join(f"(OLD.{f} IS NOT NULL AND NEW.{f} IS NOT OLD.{f})" for f in _FIELDS)
    + " BEGIN SELECT RAISE(ABORT, 'member log fields are write-once'); END",
    "CREATE TRIGGER IF NOT EXISTS member_rounds_keep BEFORE DELETE ON member_rounds"
    " BEGIN SELECT RAISE(ABORT, 'member log rows are never deleted'); END",
)


@dataclass(frozen=True)
class RoundRecord:
    """What a member decided in one round; None where it has not decided yet."""

    federation_id: str
    round_number: int
    seed_contribution: bytes | None = None
    revealed_commitments_sha256: bytes | None = None
    descriptor_sha256: bytes | None = None
    certified_set_sha256: bytes | None = None
    opened_set_sha256: bytes | None = None
    result_sha256: bytes | None = None
    result: bytes | None = None

    def committed_set(self) -> bytes | None:
        """The set digest this member is bound to for the round (certified or opened)."""
        return self.certified_set_sha256 or self.opened_set_sha256


class LogTransaction:
    """Reads and writes inside one exclusive transaction of a :class:`MemberLog`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def get(self, federation_id: str, round_number: int) -> RoundRecord:
        """Returns the record of a round (empty if the member never acted in it).

        Raises:
            MemberLogError: if a stored result does not match its recorded digest.
        """
        row = self._connection.execute(
            f"SELECT {', '.join(_FIELDS)} FROM member_rounds "
            "WHERE federation_id = ? AND round_number = ?",
            (federation_id, round_number),
        ).fetchone()
        if row is None:
            return RoundRecord(federation_id, round_number)
        record = RoundRecord(federation_id, round_number, *row)
        if record.result is not None and sha256(record.result) != record.result_sha256:
            raise MemberLogError(f"stored result of round {round_number} is corrupt")
        return record

    def put(self, record: RoundRecord) -> None:
        """Stores a record; fields already set may not change.

        Raises:
            MemberLogError: if the record would change a field that was already written.
        """
        stored = self.get(record.federation_id, record.round_number)
        for field in _FIELDS:
            old, new = getattr(stored, field), getattr(record, field)
            if old is not None and new != old:
                raise MemberLogError(f"{field} of round {record.round_number} is write-once")
        values = [getattr(record, field) for field in _FIELDS]
        self._connection.execute(
            f"INSERT INTO member_rounds (federation_id, round_number, {', '.join(_FIELDS)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in _FIELDS)}) "
            "ON CONFLICT (federation_id, round_number) DO UPDATE SET "
            + ", ".join(f"{field} = excluded.{field}" for field in _FIELDS),
            (record.federation_id, record.round_number, *values),
        )

    def highest_signed_round(self, federation_id: str) -> int | None:
        """The highest round of the federation for which the member signed a descriptor."""
        row = self._connection.execute(
            "SELECT MAX(round_number) FROM member_rounds "
            "WHERE federation_id = ? AND descriptor_sha256 IS NOT NULL",
            (federation_id,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


class MemberLog:
    """A member's decision log in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Opens (or creates) the log at ``path``.

        Raises:
            MemberLogError: for an in-memory path, an unreadable file, or another schema.
        """
        if os.fspath(path) in ("", ":memory:"):
            raise MemberLogError("the member log must live in a file to survive restarts")
        self._lock = threading.Lock()
        try:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
            self._connection = sqlite3.connect(
                os.fspath(path), isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise MemberLogError(f"cannot open member log {path}: {error}") from error
        try:
            self._configure()
        except sqlite3.Error as error:
            self._connection.close()
            raise MemberLogError(f"cannot open member log {path}: {error}") from error
        except MemberLogError:
            self._connection.close()
            raise

    def _configure(self) -> None:
        connection = self._connection
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        if connection.execute("PRAGMA synchronous").fetchone()[0] != 2:
            raise MemberLogError("SQLite refused synchronous = FULL")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise MemberLogError(f"member log schema {version}, expected {SCHEMA_VERSION}")
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[LogTransaction]:
        """An exclusive transaction, committed durably when the block exits normally.

        Raises:
            MemberLogError: if SQLite fails; the transaction is then rolled back.
        """
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise MemberLogError(f"cannot start a log transaction: {error}") from error
            try:
                yield LogTransaction(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            try:
                self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                self._connection.execute("ROLLBACK")
                raise MemberLogError(f"cannot commit a log transaction: {error}") from error

    def records(self, federation_id: str) -> list[RoundRecord]:
        """Every record of a federation, by round (for audits and tests)."""
        with self.transaction() as transaction:
            rounds = self._connection.execute(
                "SELECT round_number FROM member_rounds WHERE federation_id = ? "
                "ORDER BY round_number",
                (federation_id,),
            ).fetchall()
            return [transaction.get(federation_id, int(row[0])) for row in rounds]

    def close(self) -> None:
        """Closes the file; the log must not be used afterwards."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> MemberLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
