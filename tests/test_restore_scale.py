"""Restore at scale: its memory does not grow with the records it restores, and what it
reads is what it restores, shown by tracemalloc and SQLite's query plans (never by time:
the machine is shared)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import stamping_registry, traced_peak
from sqlalchemy import event

from recordstore import Store


def _notes(home: Path, name: str, n: int, start: int = 0) -> Path:
    (home / "notes").mkdir(parents=True, exist_ok=True)
    (home / "notes" / name).write_text(
        "".join(json.dumps({"schema_version": 1, "i": i}) + "\n" for i in range(start, start + n))
    )
    return home


@contextlib.contextmanager
def _plans(store: Store) -> Iterator[list[str]]:
    """The query plan of every statement run on the store meanwhile that reads or writes
    records or backups, one line each, taken as it runs (a restore's own temporary tables
    are gone once it ends)."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        words = statement.split()
        if not words or words[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            return
        if "records" not in statement and "backups" not in statement:
            return
        params = parameters[0] if executemany and parameters else parameters
        rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        seen.append(" / ".join(str(row[-1]) for row in rows))

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", note)


def test_restoring_a_large_migration_holds_no_row_per_record(tmp_path: Path) -> None:
    """``store restore --run N`` of a migration held every chosen backup and every current
    row before writing (1,000,000 records: 1.2 GB, about 1.2 kB a record): the restore's
    plan is kept by SQLite, and Python holds a batch at a time."""
    n = 20_000
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        assert store.import_paths(_notes(tmp_path / "home", "n.jsonl", n)).ok
        before = [r.text for r in store.query("note")]
        run = store.migrate(jobs=0).run_id
        assert run is not None
        result, peak = traced_peak(lambda: store.restore(run=run))
        assert result.restored == {"note": n}
        assert [r.text for r in store.query("note")] == before
        # Undone in its turn: the migrated rows come back, as much memory held.
        again, peak_again = traced_peak(lambda: store.restore(run=result.run_id))
        assert again.restored == {"note": n}
        assert all(r.version == 2 for r in store.query("note"))
    # A batch of 500 records of ~30 bytes, and what SQLAlchemy caches, is well under 4 MB;
    # a row held per record was 1.2 kB: 24 MB here.
    assert max(peak, peak_again) < 4_000_000, f"{peak / 1e6:.1f} MB, {peak_again / 1e6:.1f} MB held for {n} records"


def test_restoring_a_small_migration_reads_only_its_records(tmp_path: Path) -> None:
    """Restoring a migration of one record read every record of the store, looking for
    records the run had added (``records.run_id`` has no index: in a store of 1,000,000
    records, 1.0 s): a migration adds none, and its records are found by its backups."""
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        home = _notes(tmp_path / "home", "big.jsonl", 2000)
        assert store.import_paths(home).ok
        assert store.migrate(jobs=0).migrated == 2000
        assert store.import_paths(_notes(home, "small.jsonl", 1, start=5000)).ok
        run = store.migrate(jobs=0).run_id
        assert run is not None
        with _plans(store) as plans:
            result = store.restore(run=run)
        assert result.restored == {"note": 1}
        assert store.get("note", "notes/small.jsonl:1").version == 1  # type: ignore[union-attr]
    scans = [p for p in plans if "SCAN records" in p or "SCAN backups" in p]
    assert plans and not scans, scans


def test_restoring_a_key_reads_the_backups_of_its_place_only(tmp_path: Path) -> None:
    """``store restore --domain D --key K`` read the whole backups table twice (once to tell
    a key without backups, once to choose them: 0.45 s a million backups, for one
    record): a key's backups are looked up by its file and place, as Store.get finds a
    record, a record a re-import removed too."""
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        home = _notes(tmp_path / "home", "n.jsonl", 300)
        assert store.import_paths(home).ok
        assert store.migrate(jobs=0).migrated == 300
        _notes(home, "n.jsonl", 200)  # the last 100 lines removed: backed up
        assert store.import_paths(home).domains["note"].removed == 100
        assert store.get("note", "notes/n.jsonl:250") is None
        with _plans(store) as plans:
            kept = store.restore(domain="note", key="notes/n.jsonl:7")
            removed = store.restore(domain="note", key="notes/n.jsonl:250")
        assert kept.restored == removed.restored == {"note": 1}
        # Each back as its latest backup holds it: before the migration; before the removal.
        assert [store.get("note", k).version for k in ("notes/n.jsonl:7", "notes/n.jsonl:250")] == [1, 2]  # type: ignore[union-attr]
        assert store.get("note", "notes/n.jsonl:8").version == 2  # type: ignore[union-attr]
    scans = [p for p in plans if "SCAN records" in p or "SCAN backups" in p]
    assert plans and not scans, scans
