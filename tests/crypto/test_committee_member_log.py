"""The member's SQLite log: durability settings, write-once fields, restarts."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path

import pytest

from crypto.committee import MemberLog, MemberLogError, RoundRecord


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    with MemberLog(path) as log, log.transaction() as transaction:
        transaction.put(RoundRecord("fed", 4, descriptor_sha256=b"d" * 32))
        transaction.put(RoundRecord("fed", 9, seed_contribution=b"s" * 32))
    with MemberLog(path) as log:
        with log.transaction() as transaction:
            assert transaction.get("fed", 4).descriptor_sha256 == b"d" * 32
            assert transaction.get("fed", 9).descriptor_sha256 is None
            assert transaction.get("other", 4) == RoundRecord("other", 4)
            assert transaction.highest_signed_round("fed") == 4
            assert transaction.highest_signed_round("other") is None
        assert [record.round_number for record in log.records("fed")] == [4, 9]


def test_the_log_is_durable_by_configuration(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    MemberLog(path).close()
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
    connection.close()


def test_fields_are_write_once(tmp_path: Path) -> None:
    with MemberLog(tmp_path / "log.sqlite") as log:
        with log.transaction() as transaction:
            transaction.put(RoundRecord("fed", 1, certified_set_sha256=b"a" * 32))
        with pytest.raises(MemberLogError), log.transaction() as transaction:
            record = transaction.get("fed", 1)
            transaction.put(dataclasses.replace(record, certified_set_sha256=b"b" * 32))
        with log.transaction() as transaction:
            record = transaction.get("fed", 1)
            transaction.put(dataclasses.replace(record, opened_set_sha256=b"a" * 32))
            assert transaction.get("fed", 1).certified_set_sha256 == b"a" * 32


def test_the_database_itself_refuses_rewrites_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    with MemberLog(path) as log, log.transaction() as transaction:
        transaction.put(RoundRecord("fed", 1, certified_set_sha256=b"a" * 32))
    connection = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("UPDATE member_rounds SET certified_set_sha256 = x'00'")
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("DELETE FROM member_rounds")
    connection.rollback()
    connection.close()


def test_a_failed_decision_records_nothing(tmp_path: Path) -> None:
    with MemberLog(tmp_path / "log.sqlite") as log:
        with pytest.raises(RuntimeError), log.transaction() as transaction:
            transaction.put(RoundRecord("fed", 2, descriptor_sha256=b"d" * 32))
            raise RuntimeError("crash before the answer")
        with log.transaction() as transaction:
            assert transaction.get("fed", 2) == RoundRecord("fed", 2)


def test_a_corrupted_result_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    result = b"opening bytes"
    with MemberLog(path) as log, log.transaction() as transaction:
        transaction.put(
            RoundRecord("fed", 3, result=result, result_sha256=hashlib.sha256(b"other").digest())
        )
    with MemberLog(path) as log, pytest.raises(MemberLogError), log.transaction() as transaction:
        transaction.get("fed", 3)


def test_memory_and_foreign_schemas_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MemberLogError):
        MemberLog(":memory:")
    path = tmp_path / "foreign.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 7")
    connection.close()
    with pytest.raises(MemberLogError):
        MemberLog(path)
