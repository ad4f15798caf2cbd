"""The one SQLite helper (gun_contract/sqlite.py): how every store opens and writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gun_contract.sqlite import open_database, open_read_only, transaction


def test_a_database_opens_in_wal_mode_with_its_folder_made(tmp_path: Path) -> None:
    db = open_database(tmp_path / "new" / "store.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


def test_a_store_that_is_the_only_copy_keeps_full_sync_and_zeroes_what_it_deletes(
    tmp_path: Path,
) -> None:
    db = open_database(tmp_path / "queue.sqlite", synchronous="FULL", secure_delete=True)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert db.execute("PRAGMA secure_delete").fetchone() == (1,)


def test_a_transaction_commits_what_its_block_wrote(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite")
    db.execute("CREATE TABLE t (x INTEGER)")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        assert db.in_transaction
    assert not db.in_transaction
    assert open_read_only(tmp_path / "s.sqlite").execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_block_that_raises_leaves_nothing_written(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite")
    db.execute("CREATE TABLE t (x INTEGER)")

    def fails_half_way() -> None:
        with transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        fails_half_way()
    assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    assert not db.in_transaction


def test_a_transaction_inside_another_joins_it(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite")
    db.execute("CREATE TABLE t (x INTEGER)")

    def outer_fails() -> None:
        with transaction(db):
            with transaction(db):
                db.execute("INSERT INTO t VALUES (1)")
            assert db.in_transaction  # the inner block did not commit
            raise RuntimeError("the outer one fails")

    with pytest.raises(RuntimeError):
        outer_fails()
    assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)


def test_an_immediate_transaction_takes_the_write_lock_at_once(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite")
    other = open_database(tmp_path / "s.sqlite", busy_timeout_s=0.0)
    db.execute("CREATE TABLE t (x INTEGER)")

    def other_writes() -> None:
        with transaction(other):
            other.execute("INSERT INTO t VALUES (1)")

    with transaction(db), pytest.raises(sqlite3.OperationalError, match="locked"):
        other_writes()
    with transaction(db, immediate=False):
        other_writes()  # a deferred transaction has taken no lock before it writes


def test_a_read_only_connection_writes_nothing(tmp_path: Path) -> None:
    open_database(tmp_path / "s.sqlite").execute("CREATE TABLE t (x INTEGER)")
    reader = open_read_only(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO t VALUES (1)")
