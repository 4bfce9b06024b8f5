"""`store migrate`: steps in order, stamped versions, backups, failures, dry runs, restore."""

from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import weakref
from pathlib import Path
from typing import Any

import pytest

from recordstore import MigrationError, RecordStoreError, Registry, RestoreConflictError, Store, StoreError
from recordstore import migrator as migrator_module
from recordstore.engine import translate_errors, unchecked_foreign_keys
from conftest import tree

REGISTRY_SOURCE = '''
from recordstore import Registry

registry = Registry()
notes = registry.domain("note", version=3, files=["notes/*.json", "notes/*.jsonl"])


@notes.step(1)
def rename_body(record):
    record["text"] = record.pop("body")


@notes.step(2)
def add_tags(record):
    record.setdefault("tags", [])
    if record.get("explode"):
        raise ValueError("cannot tag an exploding note")
    return record
'''


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes_registry.py"
    path.write_text(REGISTRY_SOURCE)
    return path


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A home of notes: three v1 files, one v2, one current, and a JSON-lines file of v1 notes."""
    root = tmp_path / "notes-home"
    (root / "notes").mkdir(parents=True)
    docs = {
        "a.json": {"schema_version": 1, "body": "first", "n": 12345678901234567890123},
        "b.json": {"body": "legacy, no version"},
        "c.json": {"schema_version": 1, "body": "will explode", "explode": True},
        "d.json": {"schema_version": 2, "text": "already renamed", "tags": ["keep"]},
        "e.json": {"schema_version": 3, "text": "current", "tags": []},
    }
    for name, doc in docs.items():
        (root / "notes" / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    lines = [{"schema_version": 1, "body": f"line {i}", "f": i / 7} for i in range(5)]
    (root / "notes" / "log.jsonl").write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))
    return root


@pytest.fixture
def nstore(db_path: Path, registry_file: Path, notes: Path) -> Any:
    with Store(db_path, registry=str(registry_file)) as s:
        s.import_paths([notes])
        yield s


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_records_already_current_are_untouched(nstore: Store, db_path: Path) -> None:
    before = nstore.get("note", "notes/e.json")
    nstore.migrate()
    after = nstore.get("note", "notes/e.json")
    assert after == before
    assert _rows(db_path, "SELECT count(*) FROM backups WHERE key = 'notes/e.json'") == [(0,)]


def test_a_v1_record_runs_every_step_and_is_stamped(nstore: Store) -> None:
    result = nstore.migrate()
    a = nstore.get("note", "notes/a.json")
    assert a.version == 3
    assert a.data == {"schema_version": 3, "text": "first", "n": 12345678901234567890123, "tags": []}
    # A record that had no version field gets one, placed first as writers put it.
    b = nstore.get("note", "notes/b.json")
    assert list(b.data) == ["schema_version", "text", "tags"] and b.version == 3
    # Pretty records stay pretty; JSON lines stay compact.
    assert a.text.startswith('{\n  "schema_version": 3,')
    assert "\n" not in nstore.get("note", "notes/log.jsonl:1").text
    assert result.counts == {"note": {"1->3": 7, "2->3": 1}}


def test_backups_hold_exactly_the_rows_migrated(nstore: Store, db_path: Path) -> None:
    """The v1 batch holds a record that fails (its rows are backed up one by one); the v2
    batch has none (its rows are copied as one span): either way, one backup per record
    migrated, equal to the row before, and none for the failed or current records."""
    before = {r[0]: r for r in _rows(db_path, "SELECT key, domain, version, payload, file_id, position FROM records")}
    result = nstore.migrate()
    backed = _rows(db_path, "SELECT key, domain, version, payload, file_id, position FROM backups ORDER BY key")
    migrated = sorted(k for k, r in before.items() if r[2] < 3 and k != "notes/c.json")
    assert [b[0] for b in backed] == migrated and len(backed) == result.migrated
    assert all(b == before[b[0]] for b in backed)


def test_a_migration_writes_valid_keys_and_leaves_the_store_checking_them(nstore: Store) -> None:
    """The migration's own connection skips the key checks while it writes (every key it
    writes is its run's id); afterwards the keys are valid, and the connection, back in
    the pool, checks them again."""
    nstore.migrate()
    assert nstore.integrity_problems() == []
    with pytest.raises(StoreError, match="database error: FOREIGN KEY constraint failed"), nstore.engine.begin() as conn:
        with translate_errors():
            conn.exec_driver_sql("UPDATE records SET file_id = 999999 WHERE id = (SELECT min(id) FROM records)")


def test_a_connection_left_in_a_transaction_is_discarded_not_pooled_unchecked(nstore: Store) -> None:
    """The key checks cannot be turned back on inside a transaction: such a connection is
    thrown away, and the next one checks keys."""
    with nstore.engine.connect() as conn:
        with unchecked_foreign_keys(conn):
            conn.connection.driver_connection.execute("BEGIN")
        assert conn.invalidated
    with nstore.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_v2_record_runs_only_the_remaining_steps_and_keeps_its_values(nstore: Store) -> None:
    nstore.migrate()
    d = nstore.get("note", "notes/d.json")
    assert d.data == {"schema_version": 3, "text": "already renamed", "tags": ["keep"]}


def test_the_backup_is_the_exact_original_row(nstore: Store, notes: Path, db_path: Path) -> None:
    result = nstore.migrate()
    original = (notes / "notes" / "a.json").read_text()
    rows = _rows(
        db_path, f"SELECT version, payload, reason FROM backups WHERE key = 'notes/a.json' AND run_id = {result.run_id}"
    )
    assert rows == [(1, original, "migrate")]


def test_a_step_failing_mid_chain_leaves_that_record_exactly_as_it_was(nstore: Store, notes: Path) -> None:
    before = nstore.get("note", "notes/c.json")
    result = nstore.migrate()
    (failure,) = result.failures
    assert isinstance(failure, MigrationError)
    assert (failure.domain, failure.key, failure.from_version, failure.to_version) == ("note", "notes/c.json", 2, 3)
    assert failure.step == "add_tags" and "cannot tag an exploding note" in failure.reason
    assert nstore.get("note", "notes/c.json") == before  # same version, same bytes: no half step
    assert nstore.status().domains["note"].versions == {1: 1, 3: 9}
    (run,) = [r for r in nstore.history() if r.kind == "migrate"]
    assert run.outcome == "partial"
    assert run.failures[0]["step"] == "add_tags" and run.failures[0]["source"] == "notes/c.json"


def test_fail_fast_stops_at_the_first_failure(nstore: Store) -> None:
    result = nstore.migrate(fail_fast=True)
    assert result.stopped_early and len(result.failures) == 1
    versions = nstore.status().domains["note"].versions
    # a.json and b.json come before c.json; everything after it is still pending.
    assert nstore.get("note", "notes/a.json").version == 3
    assert nstore.get("note", "notes/log.jsonl:1").version == 1
    assert versions[1] > 1


def _lines_store(tmp_path: Path, step: Any, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A store of 9 JSON lines of 100 bytes, whose migration the byte bound cuts into
    batches of 3 records (each in a span of BATCH_ROWS that holds them all)."""
    registry = Registry()
    registry.domain("log", version=2, files=["logs/*.jsonl"]).add_step(1, step)
    (tmp_path / "home" / "logs").mkdir(parents=True)
    lines = [json.dumps({"n": n, "pad": ""}) for n in range(9)]
    lines = [line.replace('""', '"' + "x" * (100 - len(line)) + '"') for line in lines]
    (tmp_path / "home" / "logs" / "a.jsonl").write_text("".join(line + "\n" for line in lines))
    monkeypatch.setattr(migrator_module, "BATCH_BYTES", 250)
    store = Store(tmp_path / "s.db", registry=registry)
    store.import_paths(tmp_path / "home")
    return store


def test_fail_fast_in_one_process_runs_no_step_after_the_failing_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch cut at the byte bound ran the steps over the rest of its span before it
    was written: with --fail-fast, records after the failing one went through the step
    (an API call, a file written) that the run says it never reached."""
    called: list[int] = []

    def step(record: dict[str, Any]) -> None:
        called.append(record["n"])
        if record["n"] == 1:
            raise ValueError("no 1")

    with _lines_store(tmp_path, step, monkeypatch) as store:
        result = store.migrate(fail_fast=True, jobs=0)
    assert result.stopped_early and [f.key for f in result.failures] == ["logs/a.jsonl:2"]
    assert called == [0, 1]


def test_in_one_process_a_batch_is_committed_before_the_next_batch_s_steps_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit of a batch cut at the byte bound waited for the steps of the next,
    holding the store's write lock through them (work lost if the process is killed)."""
    committed: dict[int, int] = {}

    def step(record: dict[str, Any]) -> None:
        reader = sqlite3.connect(tmp_path / "s.db")
        try:
            committed[record["n"]] = reader.execute("SELECT count(*) FROM records WHERE version = 2").fetchone()[0]
        finally:
            reader.close()

    with _lines_store(tmp_path, step, monkeypatch) as store:
        assert store.migrate(jobs=0).migrated == 9
    assert committed == {n: n - n % 3 for n in range(9)}  # each batch of 3 sees the ones before it


class _Built:
    """What a step builds from a record (a copy of it, say), that a test can see go."""


def test_failed_records_are_not_kept_in_memory_until_the_run_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each failure kept its step's traceback, whose frames held the record and what the
    step had built of it: memory grew with the number of failed records (a step with a
    typo fails them all), not with the batch."""
    built: list[weakref.ref[_Built]] = []

    def step(record: dict[str, Any]) -> None:
        copy = _Built()
        built.append(weakref.ref(copy))
        raise ValueError(f"cannot migrate {record['n']}")

    with _lines_store(tmp_path, step, monkeypatch) as store:
        result = store.migrate(jobs=0)
    gc.collect()
    assert len(result.failures) == 9 and len(built) == 9
    assert [ref for ref in built if ref() is not None] == []
    cause = result.failures[4].__cause__
    assert isinstance(cause, ValueError) and str(cause) == "cannot migrate 4"  # still there, without frames


def test_atomic_is_all_or_nothing(nstore: Store, db_path: Path) -> None:
    before = {r.key: r.text for r in nstore.query("note")}
    result = nstore.migrate(atomic=True)
    assert result.rolled_back and result.migrated == 0 and len(result.failures) == 1
    assert {r.key: r.text for r in nstore.query("note")} == before
    assert _rows(db_path, "SELECT count(*) FROM backups") == [(0,)]
    (run,) = [r for r in nstore.history() if r.kind == "migrate"]
    assert run.outcome == "rolled-back" and run.failure_count == 1


def test_atomic_without_failures_migrates_everything(db_path: Path, registry_file: Path, notes: Path) -> None:
    (notes / "notes" / "c.json").unlink()
    with Store(db_path, registry=str(registry_file)) as s:
        s.import_paths([notes])
        result = s.migrate(atomic=True)
        assert result.ok and result.migrated == 8
        assert s.status().domains["note"].pending == 0


def test_a_dry_run_reports_what_a_real_run_does_and_writes_nothing(nstore: Store, db_path: Path) -> None:
    nstore.close()
    files_before = {p.name: p.read_bytes() for p in db_path.parent.glob("store.db*")}
    with Store(db_path, registry=nstore.registry) as s:
        plan = s.plan(diff=2)
    assert {p.name: p.read_bytes() for p in db_path.parent.glob("store.db*")} == files_before
    assert plan.dry_run and plan.run_id is None
    assert len(plan.diffs) == 2 and '"text": "first"' in plan.diffs[0].after and '"body"' in plan.diffs[0].before
    with Store(db_path, registry=nstore.registry) as s:
        real = s.migrate()
    assert real.counts == plan.counts
    assert [str(f) for f in real.failures] == [str(f) for f in plan.failures]


def test_restore_by_run_gives_back_the_original_export_byte_for_byte(nstore: Store, notes: Path, tmp_path: Path) -> None:
    result = nstore.migrate()
    restored = nstore.restore(run=result.run_id)
    assert restored.total == 8
    nstore.export_to(tmp_path / "out")
    assert tree(tmp_path / "out") == tree(notes)
    # The restore is itself a run, and can be undone.
    nstore.restore(run=restored.run_id)
    assert nstore.get("note", "notes/a.json").version == 3


def test_restore_refuses_records_a_later_run_changed_again(nstore: Store, notes: Path) -> None:
    first = nstore.migrate()
    (notes / "notes" / "a.json").write_text(json.dumps({"schema_version": 3, "text": "edited", "tags": []}, indent=2))
    nstore.import_paths([notes])
    with pytest.raises(RestoreConflictError, match=r"changed again by a later run \(note notes/a.json\)"):
        nstore.restore(run=first.run_id)
    assert nstore.get("note", "notes/a.json").data["text"] == "edited"
    nstore.restore(run=first.run_id, force=True)
    assert nstore.get("note", "notes/a.json").data["body"] == "first"


def test_restore_by_domain_and_key_takes_the_latest_backup(nstore: Store, notes: Path) -> None:
    nstore.migrate()
    result = nstore.restore(domain="note", key="notes/b.json")
    assert result.restored == {"note": 1}
    assert nstore.get("note", "notes/b.json").text == (notes / "notes" / "b.json").read_text()
    assert nstore.get("note", "notes/a.json").version == 3


def test_backups_are_only_pruned_when_asked_and_the_count_is_told(nstore: Store, db_path: Path) -> None:
    run = nstore.migrate().run_id
    assert _rows(db_path, "SELECT count(*) FROM backups") == [(8,)]
    assert nstore.prune_backups(before=run) == 0
    # A run that is not there (a typo for an older one) is refused, deleting nothing.
    with pytest.raises(RecordStoreError, match=f"there is no run {run + 3}: the last is run {run + 1}"):
        nstore.prune_backups(before=run + 3)
    assert _rows(db_path, "SELECT count(*) FROM backups") == [(8,)]
    assert nstore.prune_backups(before=run + 2) == 8  # the prune before is run + 1
    assert _rows(db_path, "SELECT count(*) FROM backups") == [(0,)]


def test_a_failing_backup_never_corrupts_anything(nstore: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import recordstore.migrator as migrator

    before = {r.key: r.text for r in nstore.query("note")}

    def broken_backup(*args: Any, **kwargs: Any) -> None:
        raise StoreError("the disk is full: the last batch was rolled back, nothing was lost")

    monkeypatch.setattr(migrator, "backup_rows", broken_backup)
    monkeypatch.setattr(migrator, "backup_span", broken_backup)
    with pytest.raises(StoreError, match="disk is full"):
        nstore.migrate()
    assert {r.key: r.text for r in nstore.query("note")} == before
    assert [r.outcome for r in nstore.history() if r.kind == "migrate"] == ["failed"]
    monkeypatch.undo()
    assert nstore.migrate().migrated == 8  # and a rerun finishes the job


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("return [record]", "step returned list, not a JSON object"),
        ("record['x'] = float('nan')", "not representable as JSON"),
        ("record['x'] = {1, 2}", "not representable as JSON"),
        # Keys 1 and True are written "1" and "true", as json.dumps writes them: beside
        # a "1" or a "true" key, the record would hold the same key twice.
        ("record['1'] = 'b'; record[1] = 'a'", "not representable as JSON: keys '1' and 1 would both be written as '1'"),
        ("record['nested']['true'] = 1; record['nested'][True] = 2", "keys 'true' and True would both be written as 'true'"),
        ("record[2**70] = 1; record[str(2**70)] = 2", f"keys {2**70} and '{2**70}' would both be written as '{2**70}'"),
        ("record['nested']['a'] = 1; raise KeyError('late')", "KeyError: 'late'"),
        # An exception whose message itself raises is still one record's failure.
        ("class Weird(Exception):\n        def __str__(self):\n            raise RuntimeError('no str')\n    raise Weird()",
         "Weird: (its message could not be shown: RuntimeError)"),
        ("raise ValueError()", "ValueError"),
        ("import sys; sys.exit(3)", "SystemExit: 3"),
    ],
)
def test_a_bad_step_result_is_a_failure_and_the_record_is_kept(tmp_path: Path, body: str, reason: str) -> None:
    reg = Registry()
    d = reg.domain("note", version=2, files=["*.json"])
    namespace: dict[str, Any] = {}
    exec(f"def step(record):\n    {body}\n", namespace)
    d.add_step(1, namespace["step"])
    home = tmp_path / "h"
    home.mkdir()
    original = '{"schema_version": 1, "nested": {"a": 0}}'
    (home / "n.json").write_text(original)
    with Store(tmp_path / "s.db", registry=reg) as s:
        s.import_paths([home])
        result = s.migrate()
        assert reason in result.failures[0].reason
        assert result.failures[0].step == "step"  # the step whose record failed, by name
        assert s.get("note", "n.json").text == original


def test_a_step_may_nest_a_record_deeper_than_the_fast_codec_goes(tmp_path: Path) -> None:
    """300 levels: beyond what orjson encodes (255), within what the exact path reads;
    the migrated record is then queried, exported and imported again like any other."""
    reg = Registry()
    reg.domain("note", version=2, files=["*.json"]).add_step(1, lambda r: {**r, "deep": json.loads("[" * 300 + "]" * 300)})
    home = tmp_path / "h"
    home.mkdir()
    (home / "n.json").write_text('{"schema_version": 1}')
    with Store(tmp_path / "s.db", registry=reg) as s:
        s.import_paths([home])
        assert s.migrate().migrated == 1
        [record] = list(s.query("note"))
        assert record.data == {"schema_version": 2, "deep": json.loads("[" * 300 + "]" * 300)}
        s.export_to(tmp_path / "out")
    with Store(tmp_path / "again.db", registry=reg) as s:
        result = s.import_paths([tmp_path / "out"])
        assert result.ok and s.get("note", "n.json").data == record.data


def test_records_newer_than_the_registry_are_never_touched(db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "n.json").write_text('{"schema_version": 3}')
    new = Registry()
    d = new.domain("note", version=3, files=["*.json"])
    d.add_step(1, lambda r: None)
    d.add_step(2, lambda r: None)
    with Store(db_path, registry=new) as s:
        s.import_paths([home])
    old = Registry()
    old.domain("note", version=1, files=["*.json"])
    with Store(db_path, registry=old) as s:
        result = s.migrate()
        assert result.newer == {"note": 1} and result.migrated == 0
        assert s.get("note", "n.json").text == '{"schema_version": 3}'
        assert any("newer than current version 1" in p for p in s.check().problems)


def test_check_reports_steps_whose_code_changed_after_use(nstore: Store, db_path: Path, tmp_path: Path) -> None:
    nstore.migrate()
    assert nstore.check().ok, nstore.check().problems
    changed = tmp_path / "changed.py"
    changed.write_text(REGISTRY_SOURCE.replace('record["text"] = record.pop("body")', 'record["text"] = record.pop("body").strip()'))
    with Store(db_path, registry=str(changed)) as s:
        problems = s.check().problems
    assert len(problems) == 1
    assert "step 1 -> 2 (rename_body) changed since run" in problems[0]


def test_check_says_a_step_is_gone_rather_than_changed(nstore: Store, db_path: Path, tmp_path: Path) -> None:
    nstore.migrate()
    gone = Registry()
    gone.domain("other", version=1, files=["other/*.json"])
    with Store(db_path, registry=gone) as s:
        problems = s.check().problems
    assert any("step 1 -> 2 is no longer in the registry since run" in p for p in problems), problems
    assert not any("changed since" in p for p in problems)


# --------------------------------------------------------------------------- CLI


def test_cli_migrate_reports_failures_and_exits_1(cli: Any, registry_file: Path, notes: Path) -> None:
    cli("import", notes, registry=str(registry_file))
    res = cli("migrate", "--json", registry=str(registry_file))
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert summary["migrated"] == 8 and summary["failures"][0]["step"] == "add_tags"
    hist = json.loads(cli("history", "--json", registry=str(registry_file)).stdout)
    assert [(h["kind"], h["outcome"]) for h in hist] == [("import", "ok"), ("migrate", "partial")]
    assert hist[1]["failures"][0]["key"] == "notes/c.json"
    one = cli("history", str(hist[1]["id"]), registry=str(registry_file))
    assert "notes/c.json v2 -> v3 add_tags: ValueError: cannot tag an exploding note" in one.stdout


def test_cli_dry_run_with_diff_shows_before_and_after(cli: Any, registry_file: Path, notes: Path) -> None:
    cli("import", notes, registry=str(registry_file))
    res = cli("migrate", "--dry-run", "--diff", "1", registry=str(registry_file))
    assert res.exit_code == 1  # the exploding note would fail
    assert '-  "body": "first",' in res.stdout and '+  "text": "first",' in res.stdout
    assert "would migrate 8 record(s), 1 failed" in res.stdout
    status = json.loads(cli("status", "--json", registry=str(registry_file)).stdout)
    assert status["domains"]["note"]["versions"] == {"1": 8, "2": 1, "3": 1}


def test_cli_restore_and_prune(cli: Any, registry_file: Path, notes: Path, tmp_path: Path) -> None:
    cli("import", notes, registry=str(registry_file))
    cli("migrate", registry=str(registry_file))
    res = cli("restore", "--run", "2", registry=str(registry_file))
    assert res.exit_code == 0 and "restored 8 record(s)" in res.stdout
    res = cli("prune-backups", "--before", "3", registry=str(registry_file))
    assert "deleted 8 backup(s)" in res.stdout
    res = cli("restore", registry=str(registry_file))
    assert res.exit_code == 2 and "restore needs a run" in res.stderr  # a usage error


def test_cli_a_registry_with_a_gap_is_one_line_naming_domain_and_step(cli: Any, tmp_path: Path) -> None:
    gap = tmp_path / "gap.py"
    gap.write_text(
        "from recordstore import Registry\nregistry = Registry()\nd = registry.domain('note', version=3)\n"
        "d.add_step(1, lambda r: r)\n"
    )
    res = cli("migrate", registry=str(gap))
    assert res.exit_code == 3
    assert res.stderr.strip() == "store: error: domain 'note': no step 2 -> 3, so the chain cannot reach current version 3"


#: BaseExceptions that are not Ctrl-C, as steps meet them: asyncio's timeout, a closed
#: generator, a library's own (gevent's Timeout, trio's Cancelled derive from it).
BASE_EXCEPTIONS = [
    ("asyncio.CancelledError('timed out talking to the service')", "CancelledError: timed out talking to the service"),
    ("GeneratorExit('closed')", "GeneratorExit: closed"),
    ("type('Timeout', (BaseException,), {})('5 s')", "Timeout: 5 s"),
]


@pytest.mark.parametrize(("raised", "reason"), BASE_EXCEPTIONS, ids=["CancelledError", "GeneratorExit", "own"])
def test_a_step_raising_a_base_exception_fails_only_its_record_in_one_line(
    cli: Any, tmp_path: Path, notes: Path, raised: str, reason: str
) -> None:
    """A step raising asyncio's CancelledError (or any BaseException but Ctrl-C) ended
    the whole migration with a traceback naming no record, exit 1 and nothing migrated."""
    registry = tmp_path / "base_registry.py"
    registry.write_text(REGISTRY_SOURCE.replace(
        'raise ValueError("cannot tag an exploding note")', f"import asyncio; raise {raised}"
    ))
    cli("import", notes, registry=str(registry))
    for dry in (["--dry-run"], []):
        res = cli("migrate", "--jobs", "0", *dry, registry=str(registry))
        assert res.exit_code == 1
        assert res.stderr.splitlines() == [
            f"store: failed: note notes/c.json: v2 -> v3 (add_tags) failed: {reason}"
        ]
        assert "8 record(s), 1 failed" in res.stdout
    hist = json.loads(cli("history", "--json", registry=str(registry)).stdout)
    assert hist[-1]["outcome"] == "partial" and hist[-1]["failures"][0]["reason"] == reason


def test_a_record_whose_file_name_holds_a_line_break_is_reported_on_one_line(
    cli: Any, registry_file: Path, notes: Path
) -> None:
    """The failure, the --diff header and `history N` printed the key raw: a file name
    holding a newline took two lines, one holding ESC reached the terminal as such.
    Import escapes the same names. (The failure named the file a second time, at its end:
    the key names it.)"""
    (notes / "notes" / "bad\nname.json").write_text('{"schema_version": 2, "text": "x", "explode": true}')
    (notes / "notes" / "ok\x1b[2Jname.json").write_text('{"schema_version": 2, "text": "y"}')
    cli("import", notes, registry=str(registry_file))
    res = cli("migrate", "--dry-run", "--diff", "20", registry=str(registry_file))
    assert "--- note notes/ok\\x1b[2Jname.json v2\n+++ note notes/ok\\x1b[2Jname.json v3\n" in res.stdout
    res = cli("migrate", registry=str(registry_file))
    failed = [line for line in res.stderr.splitlines() if "bad" in line]
    assert failed == [
        "store: failed: note notes/bad\\nname.json: v2 -> v3 (add_tags) failed: "
        "ValueError: cannot tag an exploding note"
    ]
    assert all(line.startswith("store: failed: ") for line in res.stderr.splitlines())
    run = json.loads(cli("history", "--json", registry=str(registry_file)).stdout)[-1]
    assert "notes/bad\nname.json" in [f["key"] for f in run["failures"]]  # the key itself, in JSON
    shown = cli("history", str(run["id"]), registry=str(registry_file)).stdout.splitlines()
    assert "note notes/bad\\nname.json v2 -> v3 add_tags: ValueError: cannot tag an exploding note" in shown


STYLES = {
    # file: (as written by its application, as exported after a step added "added": true)
    "crlf.json": (b'{\r\n  "schema_version": 1,\r\n  "a": 1\r\n}\r\n',
                  b'{\r\n  "schema_version": 2,\r\n  "a": 1,\r\n  "added": true\r\n}\r\n'),
    "tabs.json": (b'{\n\t"schema_version": 1,\n\t"a": {\n\t\t"b": [1]\n\t}\n}\n',
                  b'{\n\t"schema_version": 2,\n\t"a": {\n\t\t"b": [\n\t\t\t1\n\t\t]\n\t},\n\t"added": true\n}\n'),
    "spaced.json": (b'{"schema_version": 1, "a": "x: y, z", "b": [1, 2]}',
                    b'{"schema_version": 2, "a": "x: y, z", "b": [1, 2], "added": true}'),
    "four.json": (b'{\n    "schema_version": 1\n}', b'{\n    "schema_version": 2,\n    "added": true\n}'),
    "lines.jsonl": (b'{"schema_version": 1, "q": "\\":, "}\n{"schema_version":1}\n',
                    b'{"schema_version": 2, "q": "\\":, ", "added": true}\n{"schema_version":2,"added":true}\n'),
    "array.json": (b'[\n  {"schema_version": 1}\n]', b'[\n  {"schema_version": 2, "added": true}\n]'),
    # Compact, with strings holding '": ' (stringified JSON in a tool's output): compact.
    "quoting.jsonl": (b'{"detail":"{\\"path\\": \\"src/lib.rs\\"}","n":[1,2]}\n{"p":"explain \\"a\\": b"}\n',
                      b'{"schema_version":2,"detail":"{\\"path\\": \\"src/lib.rs\\"}","n":[1,2],"added":true}\n'
                      b'{"schema_version":2,"p":"explain \\"a\\": b","added":true}\n'),
}


def test_a_migrated_record_keeps_the_style_of_its_text(tmp_path: Path) -> None:
    """CRLF line ends, tab indents and spaced one-line objects used to come back mixed,
    or compact, once migrated."""
    registry = Registry()
    note = registry.domain("note", version=2, files=["notes/*.json", "notes/*.jsonl"])
    note.add_step(1, lambda r: {**r, "added": True})
    home = tmp_path / "h"
    (home / "notes").mkdir(parents=True)
    for name, (before, _) in STYLES.items():
        (home / "notes" / name).write_bytes(before)
    with Store(tmp_path / "s.db", registry=registry) as store:
        assert store.import_paths([home]).ok
        assert store.migrate().migrated == 9
        assert store.export_to(tmp_path / "out").ok
    assert {name: (tmp_path / "out" / "notes" / name).read_bytes() for name in STYLES} == {
        name: after for name, (_, after) in STYLES.items()
    }


def test_check_knows_partial_and_callable_object_steps_across_processes(tmp_path: Path) -> None:
    """A step that is a functools.partial or an object with __call__ is told apart by
    its code and arguments, not by where it sits in memory: a later process does not
    see it as changed, and its name is its function's or class's."""
    import subprocess
    import sys

    source = tmp_path / "reg.py"
    source.write_text(
        "import functools\nfrom recordstore import Registry\n"
        "registry = Registry()\nd = registry.domain('note', version=3, files=['*.json'])\n"
        "def put(record, field, value, how):\n    record[field] = how(value)\n"
        "def same(value):\n    return value\n"
        "class Stamp:\n    def __call__(self, record):\n        record['stamped'] = True\n"
        "d.add_step(1, functools.partial(put, field='x', value=1, how=same))\nd.add_step(2, Stamp())\n"
    )
    home = tmp_path / "h"
    home.mkdir()
    (home / "n.json").write_text('{"schema_version": 1}')
    with Store(tmp_path / "s.db", registry=str(source)) as s:
        s.import_paths([home])
        assert s.migrate().migrated == 1
        assert [st.name for st in s.registry["note"].steps.values()] == ["put", "Stamp"]
    check = [sys.executable, "-m", "recordstore", "--registry", str(source), "--db", str(tmp_path / "s.db"), "check"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok: ") and done.stderr == "", done.stdout + done.stderr
    source.write_text(source.read_text().replace("value=1", "value=2"))
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert "step 1 -> 2 (put) changed since run 2" in done.stdout + done.stderr, done.stdout + done.stderr


def test_check_knows_a_step_made_by_a_factory_and_a_registry_imports_its_neighbours(tmp_path: Path) -> None:
    """A step a factory made (``set_flag("alpha")``) is changed when the value it
    captured is, though its source is not; a set it captured is the same step in every
    process (hash order differs); and a registry file imports a module beside it, as a
    script would."""
    import subprocess
    import sys

    (tmp_path / "helpers.py").write_text("def set_flag(value, tags):\n    def step(record):\n        record['flag'] = value\n    return step\n")
    source = tmp_path / "reg.py"
    source.write_text(
        "from recordstore import Registry\nfrom helpers import set_flag\n"
        "registry = Registry()\nd = registry.domain('note', version=2, files=['*.json'])\n"
        "d.add_step(1, set_flag('alpha', {'a', 'b', 'c', 'd', 'e', 'f'}))\n"
    )
    home = tmp_path / "h"
    home.mkdir()
    (home / "n.json").write_text('{"schema_version": 1}')
    store = [sys.executable, "-m", "recordstore", "--registry", str(source), "--db", str(tmp_path / "s.db")]
    env = {**os.environ, "PYTHONPATH": ""}  # nothing but the registry's own directory
    for args in (["import", str(home)], ["migrate"]):
        done = subprocess.run([*store, *args], capture_output=True, text=True, timeout=120, cwd="/", env=env)
        assert done.returncode == 0, done.stderr
    for seed in ("1", "2", "3"):
        done = subprocess.run([*store, "check"], capture_output=True, text=True, timeout=120, env={**env, "PYTHONHASHSEED": seed})
        assert done.returncode == 0 and done.stdout.startswith("ok: "), done.stdout + done.stderr
    source.write_text(source.read_text().replace("'alpha'", "'beta'"))
    done = subprocess.run([*store, "check"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and "step 1 -> 2 (set_flag.<locals>.step) changed since run 2" in done.stdout, done.stdout + done.stderr


def _log_store(tmp_path: Path, version: int) -> tuple[Store, Path]:
    registry = Registry()
    log = registry.domain("log", version=version, files=["logs/*.jsonl"])
    if version > 1:
        log.add_step(1, lambda r: {**r, "migrated": True})
    (tmp_path / "home" / "logs").mkdir(parents=True)
    return Store(tmp_path / "s.db", registry=registry), tmp_path / "home" / "logs" / "a.jsonl"


def test_a_restore_that_put_removed_records_back_is_undone_by_its_run(tmp_path: Path) -> None:
    """Lines the application dropped, put back by a restore (--domain), go again when
    that restore is undone (--run): before, undoing it restored 0 and kept them."""
    store, log = _log_store(tmp_path, 1)
    with store:
        log.write_text('{"n":1}\n{"n":2}\n{"n":3}\n')
        store.import_paths(tmp_path / "home")
        log.write_text('{"n":1}\n')
        assert store.import_paths(tmp_path / "home").domains["log"].removed == 2
        back = store.restore(domain="log")
        assert back.restored == {"log": 2} and [r.data["n"] for r in store.query("log")] == [1, 2, 3]
        undo = store.restore(run=back.run_id)
        assert undo.removed == {"log": 2} and undo.restored == {}
        assert [r.data["n"] for r in store.query("log")] == [1]
        redo = store.restore(run=undo.run_id)  # and that undo is undone in its turn
        assert redo.restored == {"log": 2} and [r.data["n"] for r in store.query("log")] == [1, 2, 3]
        assert store.check().ok


def test_undoing_a_forced_restore_that_displaced_a_record_needs_no_force(tmp_path: Path) -> None:
    """Line 3 dropped, then a new line 3: a forced `restore --domain` puts the old one
    back in its place, backing the new one up, and says it took that one out (it said
    "restored 1 record(s)" alone). Undoing that restore (--run) brings the new one
    back: before, it was refused, the old record "would go back into a place that now
    holds another record" (the one that restore itself put there)."""
    store, log = _log_store(tmp_path, 1)
    with store:
        log.write_text('{"n":1}\n{"n":2}\n{"n":3}\n')
        store.import_paths(tmp_path / "home")
        log.write_text('{"n":1}\n{"n":2}\n')
        store.import_paths(tmp_path / "home")
        log.write_text('{"n":1}\n{"n":2}\n{"n":33}\n')
        store.import_paths(tmp_path / "home")
        forced = store.restore(domain="log", force=True)
        assert [r.data["n"] for r in store.query("log")] == [1, 2, 3]
        # It says so: the record of line 3 it took out (backed up) is counted.
        assert forced.restored == {"log": 1} and forced.displaced == {"log": 1}
        assert store.history(forced.run_id)[0].counts["displaced"] == {"log": 1}
        undo = store.restore(run=forced.run_id)
        assert undo.restored == {"log": 1} and undo.removed == {"log": 1}
        assert [r.data["n"] for r in store.query("log")] == [1, 2, 33]
        assert store.check().ok


def test_restoring_an_import_takes_away_the_records_it_added(tmp_path: Path) -> None:
    """Undoing an import gives back the store as it was before it: the records it
    updated go back, and the records it added go. Before, a line prepended to a log
    left the old last line in the store twice after the undo (and in the exported
    file), and undoing an import that only appended lines did nothing."""
    store, log = _log_store(tmp_path, 1)
    out = tmp_path / "out" / "logs" / "a.jsonl"
    with store:
        log.write_text('{"id":"A"}\n{"id":"B"}\n')
        store.import_paths(tmp_path / "home")
        log.write_text('{"id":"N"}\n{"id":"A"}\n{"id":"B"}\n')
        prepended = store.import_paths(tmp_path / "home")
        undo = store.restore(run=prepended.run_id)
        assert undo.restored == {"log": 2} and undo.removed == {"log": 1}
        assert [(r.key, r.data["id"]) for r in store.query("log")] == [("logs/a.jsonl:1", "A"), ("logs/a.jsonl:2", "B")]
        store.export_to(tmp_path / "out")
        assert out.read_text() == '{"id":"A"}\n{"id":"B"}\n'
        assert store.check().ok
        redo = store.restore(run=undo.run_id)  # the undo undone: the import's records again
        assert [r.data["id"] for r in store.query("log")] == ["N", "A", "B"] and redo.restored == {"log": 3}

        log.write_text('{"id":"N"}\n{"id":"A"}\n{"id":"B"}\n{"id":"C"}\n')
        appended = store.import_paths(tmp_path / "home")
        assert appended.domains["log"].imported == 1
        assert store.restore(run=appended.run_id).removed == {"log": 1}
        assert [r.data["id"] for r in store.query("log")] == ["N", "A", "B"]
        # The file is read again by the next import, which finds the line it holds.
        assert store.import_paths(tmp_path / "home").domains["log"].imported == 1
        assert [r.data["id"] for r in store.query("log")] == ["N", "A", "B", "C"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('[{"n":1}]\n', '{"n":1}\n'),  # an array become one object
        ('{"n":1}\n', '[{"n":1},{"n":2}]\n'),  # one object become an array
        ('[{"n":1}, {"n":2}]\n', '[{"n":1}]'),  # its last newline gone, an element too
        ('{"n":1}\n', '\ufeff{"n":2}\n'),  # a byte order mark
    ],
)
def test_restoring_an_import_writes_its_files_back_in_the_layout_they_had(tmp_path: Path, before: str, after: str) -> None:
    """Undoing an import that found a file in another layout gives the file back as it
    was: before, the records went back into the import's layout (an array of one
    record where the file held one object, the last newline missing), and undoing that
    restore brings the import's layout back."""
    registry = Registry()
    registry.domain("note", version=1, files=["notes/*.json"])
    source = tmp_path / "home" / "notes" / "a.json"
    source.parent.mkdir(parents=True)
    out = tmp_path / "out" / "notes" / "a.json"
    with Store(tmp_path / "s.db", registry=registry) as store:
        source.write_text(before)
        store.import_paths(tmp_path / "home")
        source.write_text(after)
        changed = store.import_paths(tmp_path / "home")
        undo = store.restore(run=changed.run_id)
        store.export_to(tmp_path / "out")
        assert out.read_text() == before
        store.restore(run=undo.run_id)
        store.export_to(tmp_path / "out", overwrite=True)
        assert out.read_text() == after
        assert store.check().ok
        source.write_text(before)  # the application's newer text is read again
        store.import_paths(tmp_path / "home")
        store.export_to(tmp_path / "out", overwrite=True)
        assert out.read_text() == before


def test_undoing_the_first_import_leaves_an_empty_store_that_exports_nothing(tmp_path: Path) -> None:
    store, log = _log_store(tmp_path, 1)
    with store:
        log.write_text('{"n":1}\n{"n":2}\n')
        first = store.import_paths(tmp_path / "home")
        assert store.restore(run=first.run_id).removed == {"log": 2}
        assert store.query("log").count() == 0
        assert store.export_to(tmp_path / "out").files == 0 and not (tmp_path / "out" / "logs").exists()
        assert store.import_paths(tmp_path / "home").domains["log"].imported == 2


def test_a_prune_that_deleted_nothing_does_not_stop_undoing_an_earlier_import(tmp_path: Path) -> None:
    """After a prune that deleted no backup, undoing the import before it was refused,
    "prune run 3 deleted those of the runs before run 2", though it had deleted none."""
    store, log = _log_store(tmp_path, 1)
    with store:
        log.write_text('{"n":1}\n')
        first = store.import_paths(tmp_path / "home")
        (log.parent / "b.jsonl").write_text('{"n":2}\n')
        second = store.import_paths(tmp_path / "home")
        assert store.prune_backups(before=second.run_id) == 0
        assert store.restore(run=first.run_id).removed == {"log": 1}
        assert [r.data for r in store.query("log")] == [{"n": 2}]
        (log.parent / "b.jsonl").write_text('{"n":3}\n')
        third = store.import_paths(tmp_path / "home")
        store.prune_backups(before=third.run_id + 1)  # this one deletes run 3's backup
        with pytest.raises(RecordStoreError, match=f"prune run {third.run_id + 1} deleted those"):
            store.restore(run=third.run_id)


def test_restoring_an_import_whose_new_records_a_later_run_changed_is_a_conflict(tmp_path: Path) -> None:
    store, log = _log_store(tmp_path, 2)
    with store:
        log.write_text('{"n":1}\n')
        store.import_paths(tmp_path / "home")
        with log.open("a") as fh:
            fh.write('{"n":2}\n')
        appended = store.import_paths(tmp_path / "home")
        store.migrate()
        with pytest.raises(RestoreConflictError, match=r"1 record\(s\) were changed again by a later run \(log logs/a.jsonl:2\)"):
            store.restore(run=appended.run_id)
        assert store.query("log").count() == 2
        forced = store.restore(run=appended.run_id, force=True)
        assert forced.removed == {"log": 1}
        assert [r.key for r in store.query("log")] == ["logs/a.jsonl:1"]


def test_runs_undone_newest_first_need_no_force(tmp_path: Path) -> None:
    """Restoring the last migration, then the one before: the second restore found the
    records "changed again by a later run" (the first restore wrote them last), though
    they held exactly what that run had left; only --force got through."""
    registry = Registry()
    log = registry.domain("log", version=3, files=["logs/*.jsonl"])
    log.add_step(1, lambda r: {**r, "one": True})
    log.add_step(2, lambda r: {**r, "two": True})
    (tmp_path / "home" / "logs").mkdir(parents=True)
    (tmp_path / "home" / "logs" / "a.jsonl").write_text('{"n":1}\n')
    with Store(tmp_path / "s.db", registry=registry) as store:
        store.import_paths(tmp_path / "home")
        first = store.migrate(["log"])
        with (tmp_path / "home" / "logs" / "a.jsonl").open("a") as fh:
            fh.write('{"n":2}\n')
        added = store.import_paths(tmp_path / "home")
        second = store.migrate(["log"])
        assert first.migrated == 1 and second.migrated == 1
        store.restore(run=second.run_id)  # line 2 back as the import added it
        store.restore(run=added.run_id)  # line 2 gone again
        store.restore(run=first.run_id)  # line 1 back as imported
        assert [r.data for r in store.query("log")] == [{"n": 1}]
        assert store.check().ok


def test_restoring_a_run_does_not_bring_back_records_a_later_run_removed(tmp_path: Path) -> None:
    """A migration, then an import that finds lines 2-3 gone: restoring the migration is
    a conflict for those lines (the file no longer holds them), as a record changed by
    a later run is; --force puts them back."""
    store, log = _log_store(tmp_path, 2)
    with store:
        log.write_text('{"n":1}\n{"n":2}\n{"n":3}\n')
        store.import_paths(tmp_path / "home")
        migrated = store.migrate()
        log.write_text('{"n":1}\n')
        assert store.import_paths(tmp_path / "home").domains["log"].removed == 2
        with pytest.raises(RestoreConflictError, match="2 record.* were removed by a later run"):
            store.restore(run=migrated.run_id)
        assert [r.data for r in store.query("log")] == [{"schema_version": 2, "n": 1, "migrated": True}]
        forced = store.restore(run=migrated.run_id, force=True)
        assert forced.restored == {"log": 3} and [r.data for r in store.query("log")] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_appending_to_a_migrated_log_after_a_prune_leaves_the_migrated_lines_alone(tmp_path: Path) -> None:
    """What a re-import takes for "the file did not change this line" survives a prune
    of the backups that held it: before, all the migrated lines went back to their old
    text (updated 2)."""
    store, log = _log_store(tmp_path, 2)
    with store:
        log.write_text('{"n":1}\n{"n":2}\n')
        store.import_paths(tmp_path / "home")
        store.migrate()
        store.prune_backups(before=store.history()[-1].id + 1)
        with log.open("a") as fh:
            fh.write('{"n":3}\n{"n":4}\n')
        counts = store.import_paths(tmp_path / "home").domains["log"]
        assert (counts.imported, counts.unchanged, counts.updated) == (2, 2, 0)
        assert [r.data for r in store.query("log")] == [
            {"schema_version": 2, "n": 1, "migrated": True}, {"schema_version": 2, "n": 2, "migrated": True}, {"n": 3}, {"n": 4}
        ]
        log.write_text('{"n":1}\n{"n":20}\n{"n":3}\n{"n":4}\n')  # a line the application did change
        counts = store.import_paths(tmp_path / "home").domains["log"]
        assert (counts.unchanged, counts.updated) == (3, 1)
        assert store.get("log", "logs/a.jsonl:2").data == {"n": 20}


def _stamp_one(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "stamp": 1}


def _stamp_two(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "stamp": 2}


def test_check_forgets_a_changed_step_once_its_run_is_undone(tmp_path: Path) -> None:
    """A step edited after it migrated records is reported until that migration is
    restored (no record comes from the old code then); undoing the restore brings the
    report back. Before, it was reported for ever, whatever was restored or redone."""

    def registry(step: Any) -> Registry:
        reg = Registry()
        reg.domain("log", version=2, files=["logs/*.jsonl"]).add_step(1, step)
        return reg

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text('{"n":1}\n{"n":2}\n')
    with Store(tmp_path / "s.db", registry=registry(_stamp_one)) as store:
        store.import_paths(tmp_path)
        first = store.migrate().run_id
    with Store(tmp_path / "s.db", registry=registry(_stamp_two)) as store:
        said = f"step 1 -> 2 (_stamp_two) changed since run {first} used it"
        assert [p for p in store.check().problems if said in p]
        undo = store.restore(run=first).run_id
        assert store.check().ok, store.check().problems
        redo = store.restore(run=undo).run_id  # the old code's rows are back
        assert [p for p in store.check().problems if said in p]
        store.restore(run=redo)
        assert store.check().ok
        store.migrate()
        assert store.check().ok and {r.data["stamp"] for r in store.query("log")} == {2}


def test_a_step_s_message_reaches_the_terminal_without_its_control_characters(tmp_path: Path) -> None:
    """A message quoting a record's text could carry an escape sequence (clearing the
    screen) or NUL to the terminal; paths on the same line were already escaped."""
    registry = Registry()
    thing = registry.domain("thing", version=2, files=["things/*.json"])

    def fails(record: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad value: " + record["k"])

    thing.add_step(1, fails)
    (tmp_path / "home" / "things").mkdir(parents=True)
    (tmp_path / "home" / "things" / "a.json").write_text('{"k": "\\u001b[2J\\u001b[31mred\\u0000"}')
    with Store(tmp_path / "s.db", registry=registry) as store:
        store.import_paths(tmp_path / "home")
        (failure,) = store.migrate().failures
    assert failure.reason.endswith("ValueError: bad value: \\x1b[2J\\x1b[31mred\\x00"), failure.reason
    assert str(failure).isprintable()


_STOP_AT: list[Any] = []


def test_an_atomic_migration_stopped_midway_records_that_it_migrated_nothing(tmp_path: Path) -> None:
    """Stopped by Ctrl-C (or a full disk), an --atomic migration rolled every record back
    but its run kept the counts of that work, so once the step was edited, `store check`
    said records had come from the old code, though none had."""

    def registry_tagging(tag: str, stop_at: int | None) -> Registry:
        _STOP_AT[:] = [stop_at, 0]  # (outside the step: what it captures is its fingerprint)

        def tagged(record: dict[str, Any]) -> dict[str, Any]:
            _STOP_AT[1] += 1
            if _STOP_AT[1] == _STOP_AT[0]:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the run stops at its next record
            return {**record, "tag": tag}

        registry = Registry()
        registry.domain("log", version=2, files=["logs/*.jsonl"]).add_step(1, tagged)
        return registry

    (tmp_path / "home" / "logs").mkdir(parents=True)
    (tmp_path / "home" / "logs" / "a.jsonl").write_text("".join(f'{{"n":{i}}}\n' for i in range(3000)))
    with Store(tmp_path / "s.db", registry=registry_tagging("old", 2500)) as store:
        store.import_paths(tmp_path / "home")
        with pytest.raises(KeyboardInterrupt):
            store.migrate(atomic=True, jobs=0)
        run = store.history()[-1]
        assert run.outcome == "interrupted" and run.counts.get("migrated") == {}
        assert store.query("log").version(2).count() == 0
    with Store(tmp_path / "s.db", registry=registry_tagging("new", None)) as store:  # the step edited
        assert store.migrate(jobs=0).migrated == 3000
        assert store.check().ok, store.check().problems
