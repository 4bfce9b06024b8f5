"""JSON-path indexes, `store check` and `store history` through their lifecycle: a
store edited by hand, indexes gone, long failure lists."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
    assert cli("index", "add", "task", "[0]").exit_code == 0  # SQLite's $[0], which check read again as a path
    res = cli("check")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert cli("index", "drop", "task", "[0]").exit_code == 0
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


def test_check_judges_payloads_by_the_store_s_decoder_not_by_sqlite_s(db_path: Path, home: Path) -> None:
    """SQLite's JSON parser only picks out the payloads to look at: a newer SQLite nests
    1,000 levels at most where a record may nest 1,024, and such a record is no problem
    (simulated: a json_valid that refuses everything). One that is not JSON still is."""
    from sqlalchemy import event

    _imported(db_path, home)
    with sqlite3.connect(db_path) as db:
        (key,) = db.execute("SELECT key FROM records WHERE domain = 'task' ORDER BY id LIMIT 1").fetchone()
        db.execute("UPDATE records SET payload = '{not json' WHERE key = ?", (key,))
    db.close()
    with Store(db_path) as store:
        event.listen(store.engine, "connect", lambda conn, _: conn.create_function("json_valid", 1, lambda text: 0))
        store.engine.dispose()  # (connections made from here on refuse every payload)
        problems = store.check().problems
    assert [p for p in problems if "payload" in p] == [f"domain 'task' record {key}: its stored payload is not JSON"]


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


_PEAK = """
import sys, tracemalloc
from recordstore.cli import main
tracemalloc.start()
sys.argv = ["store", "--db", sys.argv[1], "history", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
finally:
    sys.stderr.write(str(tracemalloc.get_traced_memory()[1]))
"""


def _history(db_path: Path, *args: str) -> tuple[list[str], int]:
    """What `store history ARGS...` prints, and the most memory it held meanwhile."""
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, str(db_path), *args], capture_output=True, text=True, timeout=300, check=False
    )
    return run.stdout.splitlines(), int(run.stderr.strip().splitlines()[-1])


def _failed_run(db_path: Path, run_id: int, n: int) -> None:
    """A migrate run with ``n`` failures, as the history keeps them."""
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO runs (id, kind, started_at, finished_at, outcome) "
            "VALUES (?, 'migrate', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', 'partial')",
            (run_id,),
        )
        db.execute(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
            "INSERT INTO failures (run_id, domain, key, reason) "
            "SELECT ?, 'task', 'k' || i, 'step raised: ' || hex(randomblob(100)) FROM c",
            (n, run_id),
        )


def test_history_of_a_run_with_many_failures_is_shown_without_holding_them_all(db_path: Path, home: Path) -> None:
    """`store history N` of a run with 30,000 failures prints every one, in order, while
    what it holds stays that of a page of them (it held all of them, ~15 MB more than
    for a run without failures here, and printed them one call at a time)."""
    _imported(db_path, home)
    n = 30_000
    _failed_run(db_path, 50, n)
    _, held_for_none = _history(db_path, "1")  # the import: no failures; what opening the store and printing hold
    lines, held = _history(db_path, "50")
    assert lines[0].startswith("run 50: migrate, partial")
    failures = lines[2:]
    assert len(failures) == n
    assert [line.split(":")[0] for line in failures[:2] + failures[-1:]] == ["task k1", "task k2", f"task k{n}"]
    assert held - held_for_none < 4_000_000, (held, held_for_none)
    with Store(db_path) as store:
        assert [f["key"] for f in store.failures(50, batch=7)][-3:] == [f"k{n - 2}", f"k{n - 1}", f"k{n}"]
        assert sum(1 for _ in store.failures(50, batch=7)) == n


def test_index_list_shows_each_path_as_it_was_given(cli: Any, db_path: Path, home: Path) -> None:
    """`index add task status` is listed as `status` (what --where and `index drop` take),
    not as SQLite spells it (`$.status`); `$.status` given names the same index. Domain
    and path are separated by a tab, as `store query` separates its columns."""
    _imported(db_path, home)
    for path in ("status", "$.status", "messages[0].role"):
        assert cli("index", "add", "task", path).exit_code == 0
    res = cli("index", "list")
    assert res.exit_code == 0
    listed = [line.split("\t") for line in res.stdout.splitlines()]
    assert listed == [["task", "messages[0].role"], ["task", "status"]]
    for domain, path in listed:
        assert cli("index", "drop", domain, path).exit_code == 0
    assert cli("index", "list").stdout == ""


def test_check_names_the_record_whose_file_row_is_gone(cli: Any, db_path: Path, home: Path) -> None:
    """A foreign key violation says which row refers to what is not there, and for a
    record which record (it said only "foreign key violation in records")."""
    _imported(db_path, home)
    with sqlite3.connect(db_path) as db:
        row, key, file_id = db.execute(
            "SELECT id, key, file_id FROM records WHERE domain = 'task' ORDER BY id LIMIT 1"
        ).fetchone()
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DELETE FROM files WHERE id = ?", (file_id,))
    before = _digest(db_path)
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    assert (
        f"problem: SQLite integrity check: foreign key violation in records: record {key} of domain 'task' "
        f"(row {row}) has file_id {file_id}, which is in no row of files"
    ) in res.stdout.splitlines(), res.stdout
    assert _digest(db_path) == before


def test_check_names_the_first_bad_records_of_each_kind_and_counts_the_rest(
    cli: Any, db_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose version column was rewritten by hand printed a line for every record
    (219,369 lines, 105 MB and 10 s for the benchmark's store), burying a problem of any
    other kind. Each kind now names its first records, then counts the rest in one line,
    and the other kinds are still there."""
    from recordstore import store as store_module

    monkeypatch.setattr(store_module, "CHECK_NAMED", 2)
    _imported(db_path, home)
    with sqlite3.connect(db_path) as db:
        ids = [r[0] for r in db.execute("SELECT id FROM records ORDER BY id")]
        db.executemany("UPDATE records SET payload = '{not json' WHERE id = ?", [(i,) for i in ids[:3]])
        db.execute("UPDATE records SET version = version + 7 WHERE id > ?", (ids[2],))
        # (a record without the field is at version 1, and so disagrees with no column)
        (disagreeing,) = db.execute(
            "SELECT count(*) FROM records WHERE id > ? AND json_type(payload, '$.schema_version') = 'integer'", (ids[2],)
        ).fetchone()
        (file_id, in_file) = db.execute(
            "SELECT file_id, count(*) FROM records GROUP BY file_id HAVING count(*) >= 3 ORDER BY file_id LIMIT 1"
        ).fetchone()
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DELETE FROM files WHERE id = ?", (file_id,))
    db.close()
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    problems = [line for line in res.stdout.splitlines() if line.startswith("problem:")]

    def of_kind(text: str) -> list[str]:
        return [p for p in problems if text in p]

    assert len(of_kind("its stored payload is not JSON")) == 2, problems
    assert of_kind("whose stored payload is not JSON") == ["problem: ... and 1 more record(s) whose stored payload is not JSON"]
    assert disagreeing > 3
    assert len(of_kind(", but its schema_version is ")) == 2, problems
    assert of_kind("disagrees with") == [
        f"problem: ... and {disagreeing - 2} more record(s) stored as a version their version field disagrees with"
    ]
    assert len(of_kind("foreign key violation in records: record ")) == 2, problems
    assert of_kind("more foreign key violation(s)") == [
        f"problem: SQLite integrity check: ... and {in_file - 2} more foreign key violation(s)"
    ]
    assert of_kind("newer than current version"), problems  # the domains' counts, as before
    assert len(problems) < 20


def test_check_reports_a_writer_that_left_the_store_held(cli: Any, db_path: Path, home: Path) -> None:
    """A writer killed mid-run leaves its run "running" and the store held; one from
    another host (a store copied from another machine) keeps every writer here out
    until `unlock --force`. Check said "ok" to both; it names the run and what to do."""
    _imported(db_path, home)
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT INTO runs (id, kind, started_at, outcome) VALUES (9, 'migrate', '2026-01-01T00:00:00Z', 'running')")
        db.execute(
            "INSERT INTO lock (id, operation, run_id, pid, host, acquired_at) "
            "VALUES (1, 'migrate', 9, 2147483647, ?, '2026-01-01T00:00:00Z')",
            (socket.gethostname(),),
        )
    before = _digest(db_path)
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    assert [line for line in res.stdout.splitlines() if "run 9" in line] == [
        (
            "problem: migrate (run 9) stopped before it finished: process 2147483647 is gone, and left the store held "
            "since 2026-01-01T00:00:00Z; the next writer takes it over, and 'store unlock' releases it now "
            "(run 9 marked interrupted)"
        )
    ]
    assert _digest(db_path) == before
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE lock SET host = 'elsewhere.example'")
    res = cli("check")
    assert res.exit_code == 1, res.stdout
    (line,) = [line for line in res.stdout.splitlines() if "run 9" in line]
    assert line.startswith("problem: the store is held by migrate (run 9), process 2147483647 on host elsewhere.example")
    assert line.endswith("'store unlock --force' releases the store")
    assert cli("unlock", "--force").exit_code == 0
    assert cli("check").exit_code == 0


def test_history_json_with_many_failures_keeps_its_shape_without_holding_them_all(db_path: Path, home: Path) -> None:
    """`store history --json` and `history N --json` print what they printed (each run's
    as_dict(), failures included, in one list), while what they hold stays that of a
    page of failures: they held every failure, as objects and as one text."""
    _imported(db_path, home)
    _failed_run(db_path, 50, 1)
    n = 30_000
    _failed_run(db_path, 51, n)
    with Store(db_path) as store:
        expected = [r.as_dict() for r in store.history()]
    assert [r["failure_count"] for r in expected] == [0, 1, n]
    lines, held_for_none = _history(db_path, "1", "--json")
    assert json.loads("\n".join(lines)) == expected[:1]
    lines, held = _history(db_path, "--json")
    assert json.loads("\n".join(lines)) == expected
    assert held - held_for_none < 4_000_000, (held, held_for_none)
    lines, held = _history(db_path, "51", "--json")
    assert json.loads("\n".join(lines)) == expected[2:]
    assert held - held_for_none < 4_000_000, (held, held_for_none)
