"""JSON-path indexes, `store check` and `store history` through their lifecycle: a
store edited by hand, indexes gone, long failure lists."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from recordstore import Store


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _imported(db_path: Path, home: Path) -> None:
    with Store(db_path) as store:
        store.import_paths(home)


def test_check_reports_a_json_path_index_that_is_gone(cli: Any, db_path: Path, home: Path) -> None:
    """An index dropped by hand leaves filters on its path scanning every record, with
    `index list` still listing it: check says so, naming the domain and the path as the
    user gave it, and how to build it again."""
    _imported(db_path, home)
    assert cli("index", "add", "task", "status").exit_code == 0
    assert cli("check").exit_code == 0
    with sqlite3.connect(db_path) as db:
        (name,) = db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'ix_json_%'").fetchone()
        db.execute(f"DROP INDEX {name}")
    before = _digest(db_path)
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    problems = [line for line in res.stdout.splitlines() if line.startswith("problem:")]
    assert problems == [
        (
            "problem: domain 'task': the index on status is listed but not in the store, so filters on it scan "
            "every record; `store index add task status` builds it again"
        )
    ]
    assert _digest(db_path) == before  # check changes nothing
    assert cli("index", "add", "task", "status").exit_code == 0
    assert cli("check").exit_code == 0


def test_check_reports_a_payload_that_is_not_json(cli: Any, db_path: Path, home: Path) -> None:
    _imported(db_path, home)
    with sqlite3.connect(db_path) as db:
        (key,) = db.execute("SELECT key FROM records WHERE domain = 'task' ORDER BY id LIMIT 1").fetchone()
        db.execute("UPDATE records SET payload = '{not json' WHERE key = ?", (key,))
    before = _digest(db_path)
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    assert f"problem: domain 'task' record {key}: its stored payload is not JSON" in res.stdout.splitlines()
    assert _digest(db_path) == before


def test_check_reports_a_version_column_that_disagrees_with_the_payload(cli: Any, db_path: Path, home: Path) -> None:
    """A record put back to version 0 by hand would be migrated from a version it is
    not at (and one set above the current version would never be): named, one line each."""
    _imported(db_path, home)
    with sqlite3.connect(db_path) as db:
        (key,) = db.execute("SELECT key FROM records WHERE domain = 'task' ORDER BY id LIMIT 1").fetchone()
        db.execute("UPDATE records SET version = 0 WHERE key = ?", (key,))
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    assert f"problem: domain 'task' record {key}: stored as version 0, but its schema_version is 1" in res.stdout.splitlines()
