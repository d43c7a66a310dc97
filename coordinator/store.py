"""The coordinator's durable state: one SQLite database beside a blob directory.

Every write that a client is told about (an enrolment, a committed upload offset, an accepted
upload, a published version, a ledger entry) is committed with ``synchronous=FULL`` before the
answer leaves the process, and the blob bytes it names are fsync'd first (see blobs.py). The
store is shared by the event loop and worker threads through one connection guarded by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.blobs import BlobStore

SCHEMA_VERSION = 1
# SQLite integers are signed 64-bit; uint64 request fields above this are clamped before binding.
SQL_INTEGER_MAX = 2**63 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    signing_public_key BLOB NOT NULL,
    display_name TEXT NOT NULL,
    key_holder_capable INTEGER NOT NULL,
    enrollment_certificate BLOB NOT NULL,
    enrolled_time REAL NOT NULL,
    last_seen_time REAL NOT NULL,
    applied_version INTEGER NOT NULL DEFAULT 0,
    contributions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rounds (
    round_number INTEGER PRIMARY KEY,
    phase INTEGER NOT NULL,
    outcome INTEGER NOT NULL DEFAULT 0,
    global_version INTEGER NOT NULL,
    descriptor BLOB NOT NULL,
    open_time REAL NOT NULL,
    deadline_time REAL NOT NULL,
    end_time REAL,
    selected INTEGER NOT NULL DEFAULT 0,
    contributors INTEGER NOT NULL DEFAULT 0,
    published_version INTEGER NOT NULL DEFAULT 0,
    epsilon_increment REAL NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    round_number INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    assigned_time REAL NOT NULL,
    deadline_time REAL NOT NULL,
    UNIQUE (round_number, worker_id)
);
CREATE TABLE IF NOT EXISTS uploads (
    task_id TEXT PRIMARY KEY,
    round_number INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    profile INTEGER NOT NULL,
    format_version INTEGER NOT NULL,
    total_size INTEGER NOT NULL,
    committed_size INTEGER NOT NULL,
    payload_sha256 BLOB,
    statement BLOB,
    signature BLOB,
    sealed_shares BLOB,
    blob_name TEXT NOT NULL,
    accepted_time REAL
);
CREATE INDEX IF NOT EXISTS uploads_by_round ON uploads (round_number, state);
CREATE TABLE IF NOT EXISTS model_versions (
    version INTEGER PRIMARY KEY,
    sha256 BLOB NOT NULL,
    size INTEGER NOT NULL,
    blob_name TEXT NOT NULL,
    round_number INTEGER NOT NULL,
    created_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS corrections (
    to_version INTEGER PRIMARY KEY,
    from_version INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    size INTEGER NOT NULL,
    blob_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    round_number INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    record_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS anomalies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    round_number INTEGER NOT NULL,
    observed REAL NOT NULL,
    threshold REAL NOT NULL,
    detail TEXT NOT NULL,
    record_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    round_number INTEGER NOT NULL,
    phase INTEGER NOT NULL,
    contributors INTEGER NOT NULL,
    detail TEXT NOT NULL,
    event_time REAL NOT NULL,
    round_open_time REAL
);
CREATE TABLE IF NOT EXISTS key_epochs (
    epoch INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    material BLOB NOT NULL,
    record TEXT NOT NULL,
    created_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS committee_tasks (
    task_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    round_number INTEGER NOT NULL,
    member_index INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    task BLOB NOT NULL,
    state TEXT NOT NULL,
    result BLOB,
    created_time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS committee_tasks_by_worker ON committee_tasks (worker_id, state);
CREATE TABLE IF NOT EXISTS reports (
    task_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    round_number INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    applied_version INTEGER NOT NULL,
    update_rejections INTEGER NOT NULL,
    correction_rejections INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    record_time REAL NOT NULL
);
"""


class StoreError(Exception):
    """The database is unusable (wrong schema version, foreign federation)."""


@dataclass(frozen=True)
class WorkerRow:
    """An enrolled worker."""

    worker_id: str
    signing_public_key: bytes
    display_name: str
    key_holder_capable: bool
    enrollment_certificate: bytes
    enrolled_time: float
    last_seen_time: float
    applied_version: int
    contributions: int


@dataclass(frozen=True)
class RoundRow:
    """One round."""

    round_number: int
    phase: int
    outcome: int
    global_version: int
    descriptor: bytes
    open_time: float
    deadline_time: float
    end_time: float | None
    selected: int
    contributors: int
    published_version: int
    epsilon_increment: float
    bytes_in: int
    detail: str


@dataclass(frozen=True)
class TaskRow:
    """A task given to one worker in one round."""

    task_id: str
    round_number: int
    worker_id: str
    assigned_time: float
    deadline_time: float


@dataclass(frozen=True)
class UploadRow:
    """The durable state of one upload."""

    task_id: str
    round_number: int
    worker_id: str
    state: int
    profile: int
    format_version: int
    total_size: int
    committed_size: int
    payload_sha256: bytes | None
    statement: bytes | None
    signature: bytes | None
    sealed_shares: bytes | None
    blob_name: str
    accepted_time: float | None


@dataclass(frozen=True)
class VersionRow:
    """A published global model version."""

    version: int
    sha256: bytes
    size: int
    blob_name: str
    round_number: int
    created_time: float


@dataclass(frozen=True)
class CorrectionRow:
    """The compact correction from one version to the next."""

    to_version: int
    from_version: int
    sha256: bytes
    size: int
    blob_name: str


@dataclass(frozen=True)
class EventRow:
    """A persisted round event."""

    sequence: int
    kind: int
    round_number: int
    phase: int
    contributors: int
    detail: str
    event_time: float
    round_open_time: float | None


@dataclass(frozen=True)
class AnomalyRow:
    """A recorded anomaly."""

    kind: str
    round_number: int
    observed: float
    threshold: float
    detail: str
    record_time: float


class Store:
    """Thread-safe access to the coordinator's SQLite database and blobs."""

    def __init__(self, state_dir: Path) -> None:
        """Opens (creating if needed) the database under ``state_dir``."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.blobs = BlobStore(state_dir / "blobs")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            state_dir / "coordinator.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the call returns, which is what "acknowledged" means.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # executescript commits on its own, so the schema goes in before the first transaction.
        self._db.executescript(_SCHEMA)
        with self.transaction() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(found[0]) != SCHEMA_VERSION:
                raise StoreError(f"database schema {found[0]} != supported {SCHEMA_VERSION}")
        # Reads get their own connection: under WAL they see the last commit without waiting
        # for a writer's fsync, so the event loop never stalls behind a commit in a thread.
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(
            state_dir / "coordinator.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._reader.execute("PRAGMA busy_timeout=5000")
        self._reader.execute("PRAGMA query_only=ON")

    def close(self) -> None:
        """Closes the database."""
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Runs the block in one IMMEDIATE transaction, committed on success."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._read_lock:
            row: tuple[Any, ...] | None = self._reader.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return list(self._reader.execute(sql, args).fetchall())

    # --- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """Reads a metadata value."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Writes a metadata value."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind_federation(self, federation_id: str, profile: str) -> None:
        """Ties the database to one federation and profile; refuses a foreign one."""
        with self.transaction() as db:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            for key, value in (("federation_id", federation_id), ("profile", profile)):
                if key in rows and rows[key] != value:
                    raise StoreError(
                        f"state directory belongs to {key}={rows[key]!r}, configured {value!r}"
                    )
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- workers ----------------------------------------------------------------------------

    def enroll_worker(
        self,
        worker_id: str,
        signing_public_key: bytes,
        display_name: str,
        key_holder_capable: bool,
        enrollment_certificate: bytes,
    ) -> WorkerRow:
        """Enrols a worker, or refreshes the mutable fields of an existing one."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO workers (worker_id, signing_public_key, display_name,"
                " key_holder_capable, enrollment_certificate, enrolled_time, last_seen_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (worker_id) DO UPDATE SET display_name = excluded.display_name,"
                " key_holder_capable = excluded.key_holder_capable,"
                " last_seen_time = excluded.last_seen_time",
                (
                    worker_id,
                    signing_public_key,
                    display_name,
                    int(key_holder_capable),
                    enrollment_certificate,
                    now,
                    now,
                ),
            )
        worker = self.get_worker(worker_id)
        assert worker is not None
        return worker

    def get_worker(self, worker_id: str) -> WorkerRow | None:
        """Looks a worker up."""
        row = self._one("SELECT * FROM workers WHERE worker_id = ?", (worker_id,))
        return None if row is None else _worker(row)

    def list_workers(self) -> list[WorkerRow]:
        """All workers, by id."""
        return [_worker(r) for r in self._all("SELECT * FROM workers ORDER BY worker_id")]

    def touch_workers(self, seen: dict[str, float]) -> None:
        """Flushes last-seen times collected in memory."""
        if not seen:
            return
        with self.transaction() as db:
            db.executemany(
                "UPDATE workers SET last_seen_time = MAX(last_seen_time, ?) WHERE worker_id = ?",
                [(when, worker_id) for worker_id, when in seen.items()],
            )

    def set_applied_version(self, worker_id: str, version: int) -> None:
        """Records the global version a worker reports holding."""
        with self.transaction() as db:
            db.execute(
                "UPDATE workers SET applied_version = ? WHERE worker_id = ?", (version, worker_id)
            )

    # --- rounds and tasks -------------------------------------------------------------------

    def create_round(
        self,
        round_number: int,
        phase: int,
        global_version: int,
        descriptor: bytes,
        open_time: float,
        deadline_time: float,
    ) -> RoundRow:
        """Opens a round."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds (round_number, phase, global_version, descriptor, open_time,"
                " deadline_time) VALUES (?, ?, ?, ?, ?, ?)",
                (round_number, phase, global_version, descriptor, open_time, deadline_time),
            )
        found = self.get_round(round_number)
        assert found is not None
        return found

    def update_round(self, round_number: int, **changes: Any) -> RoundRow:
        """Updates columns of a round (names are checked against the schema)."""
        allowed = {f for f in RoundRow.__dataclass_fields__} - {"round_number"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown round columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self.transaction() as db:
            db.execute(
                f"UPDATE rounds SET {assignments} WHERE round_number = ?",
                (*changes.values(), round_number),
            )
        found = self.get_round(round_number)
        assert found is not None
        return found

    def get_round(self, round_number: int) -> RoundRow | None:
        """Looks a round up."""
        row = self._one("SELECT * FROM rounds WHERE round_number = ?", (round_number,))
        return None if row is None else RoundRow(*row)

    def latest_round(self) -> RoundRow | None:
        """The newest round."""
        row = self._one("SELECT * FROM rounds ORDER BY round_number DESC LIMIT 1")
        return None if row is None else RoundRow(*row)

    def list_rounds(self, limit: int, before: int = 0) -> list[RoundRow]:
        """Rounds, newest first."""
        bound = min(before, SQL_INTEGER_MAX) if before > 0 else SQL_INTEGER_MAX
        rows = self._all(
            "SELECT * FROM rounds WHERE round_number < ? ORDER BY round_number DESC LIMIT ?",
            (bound, limit),
        )
        return [RoundRow(*r) for r in rows]

    def create_task(self, task: TaskRow) -> None:
        """Records a task and counts it as a selection in its round."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO tasks (task_id, round_number, worker_id, assigned_time,"
                " deadline_time) VALUES (?, ?, ?, ?, ?)",
                (
                    task.task_id,
                    task.round_number,
                    task.worker_id,
                    task.assigned_time,
                    task.deadline_time,
                ),
            )
            db.execute(
                "UPDATE rounds SET selected = selected + 1 WHERE round_number = ?",
                (task.round_number,),
            )

    def get_task(self, task_id: str) -> TaskRow | None:
        """Looks a task up."""
        row = self._one("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        return None if row is None else TaskRow(*row)

    def task_for(self, round_number: int, worker_id: str) -> TaskRow | None:
        """The task of a worker in a round, if any."""
        row = self._one(
            "SELECT * FROM tasks WHERE round_number = ? AND worker_id = ?",
            (round_number, worker_id),
        )
        return None if row is None else TaskRow(*row)

    def tasks_in_round(self, round_number: int) -> list[TaskRow]:
        """All tasks of a round."""
        rows = self._all("SELECT * FROM tasks WHERE round_number = ?", (round_number,))
        return [TaskRow(*r) for r in rows]

    # --- uploads ----------------------------------------------------------------------------

    def get_upload(self, task_id: str) -> UploadRow | None:
        """The durable state of an upload."""
        row = self._one("SELECT * FROM uploads WHERE task_id = ?", (task_id,))
        return None if row is None else UploadRow(*row)

    def begin_upload(
        self,
        task: TaskRow,
        state: int,
        profile: int,
        format_version: int,
        total_size: int,
        blob_name: str,
    ) -> UploadRow:
        """Creates the upload row on its first header."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO uploads (task_id, round_number, worker_id, state, profile,"
                " format_version, total_size, committed_size, blob_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    task.task_id,
                    task.round_number,
                    task.worker_id,
                    state,
                    profile,
                    format_version,
                    total_size,
                    blob_name,
                ),
            )
        found = self.get_upload(task.task_id)
        assert found is not None
        return found

    def commit_upload_bytes(self, task_id: str, committed_size: int) -> None:
        """Records how many bytes of an upload are durable (after the blob is fsync'd)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE uploads SET committed_size = ? WHERE task_id = ?",
                (committed_size, task_id),
            )

    def reset_upload(self, task_id: str, state: int) -> None:
        """Forgets the bytes of an upload whose digest did not match."""
        with self.transaction() as db:
            db.execute(
                "UPDATE uploads SET committed_size = 0, state = ? WHERE task_id = ?",
                (state, task_id),
            )

    def accept_upload(
        self,
        task_id: str,
        state: int,
        payload_sha256: bytes,
        statement: bytes,
        signature: bytes,
        sealed_shares: bytes,
        blob_name: str,
        worker_id: str,
        round_number: int,
        size: int,
    ) -> bool:
        """Marks an upload accepted and counts it, exactly once.

        Returns:
            False if it was already accepted (a replay), True if this call accepted it.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE uploads SET state = ?, payload_sha256 = ?, statement = ?, signature = ?,"
                " sealed_shares = ?, blob_name = ?, accepted_time = ?"
                " WHERE task_id = ? AND state != ?",
                (
                    state,
                    payload_sha256,
                    statement,
                    signature,
                    sealed_shares,
                    blob_name,
                    time.time(),
                    task_id,
                    state,
                ),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(
                "UPDATE rounds SET contributors = contributors + 1, bytes_in = bytes_in + ?"
                " WHERE round_number = ?",
                (size, round_number),
            )
            db.execute(
                "UPDATE workers SET contributions = contributions + 1 WHERE worker_id = ?",
                (worker_id,),
            )
        return True

    def accepted_uploads(self, round_number: int, state: int) -> list[UploadRow]:
        """Uploads of a round in the given state, by worker id."""
        rows = self._all(
            "SELECT * FROM uploads WHERE round_number = ? AND state = ? ORDER BY worker_id",
            (round_number, state),
        )
        return [UploadRow(*r) for r in rows]

    def unfinished_uploads(self, state: int) -> list[UploadRow]:
        """Uploads in the given (receiving) state, for trimming after a restart."""
        rows = self._all("SELECT * FROM uploads WHERE state = ?", (state,))
        return [UploadRow(*r) for r in rows]

    # --- model versions and corrections ----------------------------------------------------

    def add_version(
        self,
        version: VersionRow,
        correction: CorrectionRow | None = None,
        round_number: int | None = None,
        round_changes: dict[str, Any] | None = None,
    ) -> None:
        """Publishes a version (and its correction, and the round's end) in one transaction."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO model_versions (version, sha256, size, blob_name, round_number,"
                " created_time) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    version.version,
                    version.sha256,
                    version.size,
                    version.blob_name,
                    version.round_number,
                    version.created_time,
                ),
            )
            if correction is not None:
                db.execute(
                    "INSERT INTO corrections (to_version, from_version, sha256, size, blob_name)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        correction.to_version,
                        correction.from_version,
                        correction.sha256,
                        correction.size,
                        correction.blob_name,
                    ),
                )
            if round_number is not None and round_changes:
                assignments = ", ".join(f"{name} = ?" for name in round_changes)
                db.execute(
                    f"UPDATE rounds SET {assignments} WHERE round_number = ?",
                    (*round_changes.values(), round_number),
                )

    def latest_version(self) -> VersionRow | None:
        """The newest published version."""
        row = self._one("SELECT * FROM model_versions ORDER BY version DESC LIMIT 1")
        return None if row is None else VersionRow(*row)

    def get_version(self, version: int) -> VersionRow | None:
        """A published version."""
        row = self._one("SELECT * FROM model_versions WHERE version = ?", (version,))
        return None if row is None else VersionRow(*row)

    def corrections_between(self, from_version: int, to_version: int) -> list[CorrectionRow]:
        """The correction chain (from, to], in order; empty if any link is missing."""
        rows = [
            CorrectionRow(*r)
            for r in self._all(
                "SELECT * FROM corrections WHERE to_version > ? AND to_version <= ?"
                " ORDER BY to_version",
                (from_version, to_version),
            )
        ]
        expected = list(range(from_version + 1, to_version + 1))
        if [r.to_version for r in rows] != expected:
            return []
        if any(r.from_version != r.to_version - 1 for r in rows):
            return []
        return rows

    # --- events, ledger, anomalies ----------------------------------------------------------

    def last_event_sequence(self) -> int:
        """The sequence number of the newest event, 0 before the first."""
        row = self._all("SELECT COALESCE(MAX(sequence), 0) FROM events", ())
        return int(row[0][0])

    def append_event(
        self,
        kind: int,
        round_number: int,
        phase: int,
        contributors: int,
        detail: str,
        round_open_time: float | None,
    ) -> EventRow:
        """Persists an event with the next sequence number."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT COALESCE(MAX(sequence), 0) FROM events").fetchone()
            sequence = int(row[0]) + 1
            db.execute(
                "INSERT INTO events (sequence, kind, round_number, phase, contributors, detail,"
                " event_time, round_open_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sequence, kind, round_number, phase, contributors, detail, now, round_open_time),
            )
        return EventRow(
            sequence, kind, round_number, phase, contributors, detail, now, round_open_time
        )

    def events_after(self, sequence: int, limit: int = 10_000) -> list[EventRow]:
        """Events with a sequence number above ``sequence``."""
        rows = self._all(
            "SELECT * FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (min(sequence, SQL_INTEGER_MAX), limit),
        )
        return [EventRow(*r) for r in rows]

    def record_ledger_entry(self, round_number: int, entry: dict[str, Any]) -> None:
        """Stores a privacy ledger entry (idempotent per round)."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO ledger (round_number, entry, record_time) VALUES (?, ?, ?)",
                (round_number, json.dumps(entry, sort_keys=True), time.time()),
            )

    def ledger_entries(self) -> list[tuple[dict[str, Any], float]]:
        """All ledger entries, oldest first, with their record times."""
        rows = self._all("SELECT entry, record_time FROM ledger ORDER BY round_number")
        return [(json.loads(entry), float(when)) for entry, when in rows]

    def record_anomaly(
        self, kind: str, round_number: int, observed: float, threshold: float, detail: str
    ) -> AnomalyRow:
        """Stores an anomaly."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO anomalies (kind, round_number, observed, threshold, detail,"
                " record_time) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, round_number, observed, threshold, detail, now),
            )
        return AnomalyRow(kind, round_number, observed, threshold, detail, now)

    def record_report(self, report: ReportRow) -> bool:
        """Stores a task report once; returns False for a repeated report of the same task."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO reports (task_id, worker_id, round_number, outcome,"
                " applied_version, update_rejections, correction_rejections, metrics,"
                " record_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.task_id,
                    report.worker_id,
                    report.round_number,
                    report.outcome,
                    report.applied_version,
                    report.update_rejections,
                    report.correction_rejections,
                    json.dumps(report.metrics, sort_keys=True),
                    report.record_time,
                ),
            )
            if cursor.rowcount == 1:
                db.execute(
                    "UPDATE workers SET applied_version = MAX(applied_version, ?)"
                    " WHERE worker_id = ?",
                    (report.applied_version, report.worker_id),
                )
            return cursor.rowcount == 1

    def reports_for_round(self, round_number: int) -> list[ReportRow]:
        """Reports about tasks of a round."""
        rows = self._all("SELECT * FROM reports WHERE round_number = ?", (round_number,))
        return [
            ReportRow(
                task_id=r[0],
                worker_id=r[1],
                round_number=r[2],
                outcome=r[3],
                applied_version=r[4],
                update_rejections=r[5],
                correction_rejections=r[6],
                metrics=json.loads(r[7]),
                record_time=r[8],
            )
            for r in rows
        ]

    def save_epoch(self, epoch: int, material: bytes, record: dict[str, Any]) -> None:
        """Stores a key epoch's public material (roster, joint key) and its member map."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO key_epochs (epoch, state, material, record, created_time)"
                " VALUES (?, 'ready', ?, ?, ?)",
                (epoch, material, json.dumps(record, sort_keys=True), time.time()),
            )

    def latest_epoch(self) -> tuple[int, bytes, dict[str, Any]] | None:
        """The newest key epoch: (number, public material, record)."""
        row = self._one(
            "SELECT epoch, material, record FROM key_epochs ORDER BY epoch DESC LIMIT 1"
        )
        return None if row is None else (int(row[0]), bytes(row[1]), json.loads(row[2]))

    def list_anomalies(self, limit: int) -> list[AnomalyRow]:
        """Anomalies, newest first."""
        rows = self._all(
            "SELECT kind, round_number, observed, threshold, detail, record_time FROM anomalies"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AnomalyRow(*r) for r in rows]


@dataclass(frozen=True)
class ReportRow:
    """A device's report on how a task ended."""

    task_id: str
    worker_id: str
    round_number: int
    outcome: int
    applied_version: int
    update_rejections: int
    correction_rejections: int
    metrics: dict[str, float]
    record_time: float


def _worker(row: tuple[Any, ...]) -> WorkerRow:
    values = list(row)
    values[3] = bool(values[3])
    return WorkerRow(*values)
