"""Work that must not grow with the size of the store: what a command reads is held to
what it needs, shown by SQLite's query plans (never by time: the machine is shared)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import traced_peak
from sqlalchemy import event

from recordstore import Store


@contextlib.contextmanager
def _statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs run on the store meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", note)


def _plans(store: Store, seen: list[tuple[str, Any]], table: str = "records") -> list[str]:
    """The query plan of each statement in ``seen`` that reads ``table``, one line each."""
    plans = []
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            if f"FROM {table}" not in statement and f"JOIN {table}" not in statement:
                continue
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            plans.append(" / ".join(str(row[-1]) for row in rows))
    return plans


def _events(path: Path, n: int) -> Path:
    """A JSON-lines file of ``n`` records, versions 1 and 2 by turns (so a domain holds
    both, its ids interleaved)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"schema_version": 1 + i % 2, "n": i}) + "\n" for i in range(n)))
    return path


def test_a_page_of_a_domain_is_read_in_id_order_without_sorting_the_whole_domain(store: Store, tmp_path: Path) -> None:
    """The first page of ``store query DOMAIN --limit 5`` sorted every record of the domain,
    payloads and all, before giving one (a million records: 0.3 s, 1.5 s past an offset of
    90,000 five-kB sessions, 1 s behind a filter, the payloads written to a temporary
    file): each stored version's records are read from the index in id order instead."""
    assert store.import_paths(_events(tmp_path / "in" / "events.jsonl", 300), domain="task").ok
    everything = [r.key for r in store.query("task")]
    assert everything == [f"events.jsonl:{i + 1}" for i in range(300)]  # id order, versions interleaved
    with _statements(store) as seen:
        page = [r.key for r in store.query("task").offset(100).limit(5)]
        filtered = [r.data["n"] for r in store.query("task").where("n", ">=", 250).limit(3)]
        at_v2 = [r.data["n"] for r in store.query("task").version(2).offset(1).limit(2)]
        first = store.query("task").first()
    assert page == everything[100:105]
    assert filtered == [250, 251, 252]
    assert at_v2 == [3, 5]
    assert first is not None and first.key == "events.jsonl:1"
    plans = _plans(store, seen)
    assert plans and not [p for p in plans if "TEMP B-TREE" in p], plans


def test_what_an_index_serves_is_still_looked_up_by_it(store: Store, tmp_path: Path) -> None:
    """A key is looked up by its file, and a filter on an indexed path by that index (not
    read in id order through the domain)."""
    assert store.import_paths(_events(tmp_path / "in" / "events.jsonl", 300), domain="task").ok
    store.add_index("task", "n")
    with _statements(store) as seen:
        found = store.get("task", "events.jsonl:7")
        matched = [r.data["n"] for r in store.query("task").where("n", "=", 42)]
    assert found is not None and found.data["n"] == 6
    assert matched == [42]
    by_key, by_path = _plans(store, seen)[-2:]
    assert "ix_records_file_position" in by_key and "ix_json_" in by_path, (by_key, by_path)


def test_exporting_one_domain_reads_only_its_files_records(store: Store, tmp_path: Path) -> None:
    """``store export --domain automation`` read every record of the store, in file order,
    to keep the few of that domain's files (one file beside a million runtime events:
    1.4 s instead of 0.35): it reads those files' records and refused texts only."""
    home = tmp_path / "home"
    _events(home / "tasks" / "runtime" / "events" / "thr_1.jsonl", 300)
    (home / "automations" / "automations").mkdir(parents=True)
    (home / "automations" / "automations" / "a1.json").write_text('{"schema_version": 1, "id": "a1"}')
    (home / "automations" / "automations" / "a2.json").write_text('{"schema_version": 9, "id": "a2"}')  # refused, kept
    store.import_paths(home)
    with _statements(store) as seen:
        result = store.export_to(tmp_path / "out", domains=["automation"])
    assert (result.files, result.records, result.refused) == (2, 1, 1)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["a1.json", "a2.json"]
    plans = _plans(store, seen) + _plans(store, seen, "refused")
    assert len(plans) == 2 and not [p for p in plans if "SCAN records" in p or "SCAN refused" in p], plans


def test_restoring_a_run_holds_a_batch_of_payloads_not_all_of_them(tmp_path: Path, monkeypatch: Any) -> None:
    """``store restore --run N`` of a migration read every backup and every current row,
    payloads and all, before writing (100,000 sessions of 4 kB: 1.06 GB; a million small
    records: 1.7 GB): payloads are compared by SQLite and read a batch at a time."""

    from recordstore import Registry, migrator

    registry = Registry()
    note = registry.domain("note", version=2, files=["notes/*.jsonl"])

    @note.step(1)
    def stamp(record: dict[str, Any]) -> None:
        record["stamped"] = True

    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    n, size = 1500, 8000
    (home / "notes" / "n.jsonl").write_text(
        "".join(json.dumps({"schema_version": 1, "i": i, "text": chr(97 + i % 26) * size}) + "\n" for i in range(n))
    )
    monkeypatch.setattr(migrator, "RESTORE_BATCH", 50)
    with Store(tmp_path / "s.db", registry=registry) as store:
        assert store.import_paths(home).ok
        before = [r.text for r in store.query("note")]
        run = store.migrate(jobs=0).run_id
        assert run is not None
        result, peak = traced_peak(lambda: store.restore(run=run))
        assert result.total == n
        assert [r.text for r in store.query("note")] == before
    assert peak < n * size / 2, f"{peak / 1e6:.1f} MB held for {n * size / 1e6:.1f} MB of payloads"


def test_a_page_past_an_offset_sorts_ids_not_payloads(store: Store, tmp_path: Path) -> None:
    """``store query session --order-by metadata.created_at --offset 50000 --limit 5`` carried
    the payloads of all 50,005 records through the sort (100,000 sessions of 4 kB: 3.1 s;
    by key, 1.2 s): the ids are sorted, and only the page's records read whole."""
    assert store.import_paths(_events(tmp_path / "in" / "events.jsonl", 300), domain="task").ok
    queries = {
        "by path": store.query("task").order_by("n", descending=True).offset(200).limit(3),
        "by key": store.query("task").order_by("key").offset(150).limit(2),
        "by both": store.query("task").where("n", ">", 10).order_by("schema_version").order_by("key").offset(140).limit(4),
    }
    with store.engine.connect() as conn:  # each as written, sorted whole
        expected = {name: [row[1] for row in conn.execute(q.statement())] for name, q in queries.items()}
    assert expected == {
        "by path": ["events.jsonl:100", "events.jsonl:99", "events.jsonl:98"],
        "by key": ["events.jsonl:151", "events.jsonl:152"],
        "by both": ["events.jsonl:293", "events.jsonl:295", "events.jsonl:297", "events.jsonl:299"],
    }
    for name, q in queries.items():
        with _statements(store) as seen:
            assert [r.key for r in q] == expected[name], name
        (plan,) = _plans(store, seen)
        # The page's records are read by id, after the sort that chose them.
        assert "SEARCH records USING INTEGER PRIMARY KEY" in plan, (name, plan)


@contextlib.contextmanager
def _vm_steps(store: Store) -> Iterator[list[int]]:
    """How many thousands of SQLite's virtual machine instructions run meanwhile (its
    work, counted the same on a busy machine as on an idle one)."""
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0  # go on

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        dbapi_conn.set_progress_handler(tick, 1000)

    def on_checkin(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.set_progress_handler(None, 0)

    event.listen(store.engine, "checkout", on_checkout)
    event.listen(store.engine, "checkin", on_checkin)
    try:
        yield counted
    finally:
        event.remove(store.engine, "checkout", on_checkout)
        event.remove(store.engine, "checkin", on_checkin)


def test_getting_a_record_reads_its_place_not_its_whole_file(store: Store, tmp_path: Path) -> None:
    """``store.get("runtime", "events.jsonl:999990")`` read every record of the file to
    find the one (a million lines: 0.15 s a lookup, hit or miss): a record is looked up
    from the last place its line allows, back to where the record found there puts it."""
    src = tmp_path / "in"
    lines = []
    for i in range(20_000):
        lines.append(json.dumps({"schema_version": 1, "n": i}))
        if i % 7000 == 3:
            lines += ["", "   "]  # blank lines: records further on sit at places before their lines
        if i % 9000 == 5:
            lines.append('{"schema_version": 99}')  # refused: kept in its place
    src.mkdir()
    (src / "big.jsonl").write_text("\n".join(lines) + "\n")
    (src / "a.json").write_text(json.dumps([{"n": i} if i != 2 else 7 for i in range(6)]))  # [2]: refused
    (src / "x:2.jsonl").write_text('{"n": 1}\n\n{"n": 2}\n')  # a name that looks like a key
    (src / "x:2.jsonl:3").write_text('{"n": 3}')
    store.import_paths(src, domain="task")
    keys = [r.key for r in store.query("task")]
    near_gaps = [k for k in keys if k.startswith("big.jsonl:") and int(k.rpartition(":")[2]) % 7000 in range(2, 10)]
    probes = keys[::499] + keys[-12:] + near_gaps + ["big.jsonl:0", "big.jsonl:5", f"big.jsonl:{len(lines) + 1}", "a.json[2]", "a.json[6]", "a.json",
                     "x:2.jsonl:2", "x:2.jsonl:4", "nope:1", "big.jsonl:01"]
    for key in probes:
        expected = store.query("task").key(key).first()
        got = store.get("task", key)
        assert (got and (got.key, got.text)) == (expected and (expected.key, expected.text)), key  # "x:2.jsonl:3": two
    assert store.get("session", keys[0]) is None  # another domain's
    last = keys.index("big.jsonl:1") + 19_999  # the file's last record
    for key in (keys[last], keys[last - 5], f"big.jsonl:{len(lines) + 7}"):
        with _vm_steps(store) as steps:
            store.get("task", key)
        assert steps[0] < 10, (key, steps[0])  # it was ~200 (200,000 instructions) for the file's 20,000 records


def test_counting_a_domain_reads_its_records_not_their_files(store: Store, tmp_path: Path) -> None:
    """``Query.count()`` joined every record to its file row, which no count needs (every
    record has one): a million records counted in 0.18 s instead of 0.04 s. Only a count
    by key, whose filter names the file, still reads files."""
    assert store.import_paths(_events(tmp_path / "in" / "events.jsonl", 300), domain="task").ok
    with _statements(store) as seen:
        counts = [
            store.query("task").count(),
            store.query("task").version(2).count(),
            store.query("task").where("n", ">=", 290).count(),
            store.query(None).limit(1).count(),
        ]
    by_key = store.query("task").key("events.jsonl:7").count()
    assert counts == [300, 150, 10, 300]
    assert by_key == 1 and store.query("task").key("events.jsonl:301").count() == 0
    assert len(seen) == 4 and not [s for s, _ in seen if "files" in s], seen
