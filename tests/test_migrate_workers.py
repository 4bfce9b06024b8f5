"""`store migrate` with worker processes running the steps: the same store, the same
report and the same guarantees as running them in the migrating process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from recordstore import RecordStoreError, Store
from recordstore import migrator as migrator_module

pytestmark = pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="workers are forked"
)

REGISTRY_SOURCE = '''
import os

from recordstore import Registry

registry = Registry()
notes = registry.domain("note", version=3, files=["notes/*.json", "notes/*.jsonl"])


@notes.step(1)
def rename_body(record):
    record["text"] = record.pop("body")


@notes.step(2)
def add_tags(record):
    if record.get("explode"):
        raise ValueError("cannot tag an exploding note")
    record["tags"] = [record["text"][:3]]
    record["ran_in"] = os.getpid()
'''

#: 60 files (30 at v1, 30 at v2) and 400 JSON lines at v1, 10 of which explode.
MIGRATED = 30 + 30 + 400 - 10
#: Small batches, so a migration of a few hundred records has many batches in flight.
BATCH_ROWS = 7


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes_registry.py"
    path.write_text(REGISTRY_SOURCE)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Notes at v1 and v2 in pretty files and JSON lines: text beyond the BMP, integers
    beyond 64 bits, floats; one v1 note in every 40 explodes in its second step."""
    root = tmp_path / "home"
    (root / "notes").mkdir(parents=True)
    for i in range(60):
        doc: dict[str, Any] = {"schema_version": 1 + i % 2, "n": 2**70 + i, "f": i / 7}
        doc["body" if i % 2 == 0 else "text"] = f"note {i} 🚀 日本語"
        (root / "notes" / f"n{i:03}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    lines = [
        {"schema_version": 1, "body": f"line {i} ✓", "explode": i % 40 == 39, "big": -(2**65) - i}
        for i in range(400)
    ]
    (root / "notes" / "log.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    return root


def _migrated(db: Path, registry: Path, home: Path, jobs: int, **options: Any) -> tuple[Any, dict[str, list[Any]]]:
    with Store(db, registry=str(registry)) as store:
        store.import_paths([home], jobs=0)
        result = store.migrate(jobs=jobs, **options)
    conn = sqlite3.connect(db)
    try:
        content = {
            "records": conn.execute(
                "SELECT key, version, payload, typeof(payload), run_id FROM records ORDER BY key"
            ).fetchall(),
            "backups": conn.execute(
                "SELECT record_id, key, version, payload, typeof(payload), run_id FROM backups ORDER BY id"
            ).fetchall(),
            "failures": conn.execute("SELECT key, step, reason FROM failures ORDER BY id").fetchall(),
        }
    finally:
        conn.close()
    return result, content


def _without_pids(rows: list[Any]) -> list[Any]:
    """The rows, with the pid the last step wrote into each record's text masked."""
    return [(k, v, re.sub(r'"ran_in": ?[0-9]+', '"ran_in": 0', p), t, r) for k, v, p, t, r in rows]


def _pids(content: dict[str, list[Any]]) -> set[int]:
    return {json.loads(payload)["ran_in"] for _, version, payload, _, _ in content["records"] if version > 1}


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrator_module, "BATCH_ROWS", BATCH_ROWS)


def test_workers_give_the_same_store_and_report_as_one_process(tmp_path: Path, registry_file: Path, home: Path) -> None:
    alone, alone_content = _migrated(tmp_path / "alone.db", registry_file, home, jobs=0)
    pooled, pooled_content = _migrated(tmp_path / "pooled.db", registry_file, home, jobs=2)
    # The steps really ran elsewhere: in this process without workers, in others with them.
    assert _pids(alone_content) == {os.getpid()}
    assert os.getpid() not in _pids(pooled_content) and len(_pids(pooled_content)) >= 1
    assert _without_pids(pooled_content["records"]) == _without_pids(alone_content["records"])
    assert pooled_content["backups"] == alone_content["backups"]
    assert pooled_content["failures"] == alone_content["failures"]
    assert pooled.as_dict() == alone.as_dict()
    assert pooled.migrated == MIGRATED and len(pooled.failures) == 10
    # Payloads stay TEXT, and numbers and characters beyond the BMP survive exactly.
    assert {t for _, _, _, t, _ in pooled_content["records"]} == {"text"}
    rocket = json.loads(next(p for k, _, p, _, _ in pooled_content["records"] if k == "notes/n000.json"))
    assert rocket["text"] == "note 0 🚀 日本語" and rocket["n"] == 2**70 and rocket["tags"] == ["not"]


def test_fail_fast_with_workers_stops_where_one_process_stops(tmp_path: Path, registry_file: Path, home: Path) -> None:
    alone, alone_content = _migrated(tmp_path / "alone.db", registry_file, home, jobs=0, fail_fast=True)
    pooled, pooled_content = _migrated(tmp_path / "pooled.db", registry_file, home, jobs=2, fail_fast=True)
    assert pooled.stopped_early and len(pooled.failures) == 1
    assert pooled.counts == alone.counts
    # Batches read ahead of the failing one were not written.
    assert [r[:2] for r in pooled_content["records"]] == [r[:2] for r in alone_content["records"]]
    assert len(pooled_content["backups"]) == len(alone_content["backups"]) == pooled.migrated


def test_atomic_with_workers_writes_nothing_when_a_record_fails(tmp_path: Path, registry_file: Path, home: Path) -> None:
    result, content = _migrated(tmp_path / "s.db", registry_file, home, jobs=2, atomic=True)
    assert result.rolled_back and result.counts == {}
    assert content["backups"] == [] and len(content["failures"]) == 10
    assert {version for _, version, _, _, _ in content["records"]} == {1, 2}


def test_a_dry_run_with_workers_shows_the_diffs_asked_for(tmp_path: Path, registry_file: Path, home: Path) -> None:
    with Store(tmp_path / "s.db", registry=str(registry_file)) as store:
        store.import_paths([home], jobs=0)
        plans = [store.plan(diff=5, jobs=jobs) for jobs in (0, 2)]
    alone, pooled = plans
    assert len(pooled.diffs) == 5
    assert [(d.key, d.before) for d in pooled.diffs] == [(d.key, d.before) for d in alone.diffs]
    assert pooled.counts == alone.counts and len(pooled.failures) == len(alone.failures) == 10


def test_workers_start_before_a_progress_bar_thread(tmp_path: Path, registry_file: Path, home: Path) -> None:
    """A terminal's progress bar runs a thread, and forking beside a thread is unsafe:
    the workers are started before the bar, so they are still used."""

    class ThreadedBar:
        def __init__(self) -> None:
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self.stop.wait)
            self.done = 0

        def start(self, total: int | None, label: str) -> None:
            self.thread.start()

        def advance(self, n: int) -> None:
            self.done += n

    bar = ThreadedBar()
    try:
        with Store(tmp_path / "s.db", registry=str(registry_file)) as store:
            store.import_paths([home], jobs=0)
            result = store.migrate(jobs=1, progress=bar)
            ran_in = {r.data["ran_in"] for r in store.query("note") if r.version > 1}
    finally:
        bar.stop.set()
    assert bar.done == result.migrated + len(result.failures)
    assert os.getpid() not in ran_in


def test_a_worker_that_dies_fails_the_migration_in_one_line_and_keeps_every_batch(
    tmp_path: Path, registry_file: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    real = migrator_module._step_rows
    calls = iter(range(10**6))

    def dies_on_the_fifth_batch(*args: Any) -> Any:
        if next(calls) == 4:
            os._exit(9)
        return real(*args)

    monkeypatch.setattr(migrator_module, "_step_rows", dies_on_the_fifth_batch)
    with Store(db, registry=str(registry_file)) as store:
        store.import_paths([home], jobs=0)
        with pytest.raises(RecordStoreError, match="a worker process of the migrate died .* run the migrate again"):
            store.migrate(jobs=1)
        assert store.history()[-1].outcome == "failed"
        kept = store.status().domains["note"]
        done = kept.versions.get(3, 0)
        assert 0 < done < MIGRATED  # the batches before the death are committed
        monkeypatch.undo()
        again = store.migrate(jobs=1)
    assert again.migrated + done == MIGRATED and len(again.failures) == 10
    _, reference = _migrated(tmp_path / "ref.db", registry_file, home, jobs=0)
    conn = sqlite3.connect(db)
    try:
        versions = conn.execute("SELECT key, version FROM records ORDER BY key").fetchall()
        backups = conn.execute("SELECT count(*) FROM backups").fetchone()[0]
    finally:
        conn.close()
    assert versions == [r[:2] for r in reference["records"]]
    assert backups == len(reference["backups"])  # one backup per record migrated, none twice


def test_a_step_raising_a_base_exception_in_a_worker_fails_only_its_record(
    tmp_path: Path, registry_file: Path, home: Path
) -> None:
    """asyncio's CancelledError (a BaseException) from a step in a worker broke the whole
    migration with the worker's traceback."""
    registry = tmp_path / "cancelling.py"
    registry.write_text(REGISTRY_SOURCE.replace(
        'raise ValueError("cannot tag an exploding note")', 'import asyncio; raise asyncio.CancelledError("timed out")'
    ))
    result, content = _migrated(tmp_path / "s.db", registry, home, jobs=2)
    assert result.migrated == MIGRATED and len(result.failures) == 10
    assert {f.reason for f in result.failures} == {"CancelledError: timed out"}
    assert len(content["failures"]) == 10


@pytest.mark.parametrize("jobs", ["0", "2"], ids=["in-process", "workers"])
def test_what_a_step_prints_in_a_worker_does_not_break_the_json_summary(
    tmp_path: Path, registry_file: Path, home: Path, jobs: str
) -> None:
    """Worker processes inherited stdout: a step's `print` came before the --json
    document (with or without --dry-run), which then did not parse."""
    registry = tmp_path / "printing.py"
    registry.write_text(REGISTRY_SOURCE.replace('    record["ran_in"] = os.getpid()', '    print("tagged", os.getpid())'))
    with Store(tmp_path / "s.db", registry=str(registry)) as store:
        store.import_paths([home], jobs=0)
    argv = [sys.executable, "-m", "recordstore", "--db", str(tmp_path / "s.db"), "--registry", str(registry)]
    for dry in (["--dry-run"], []):
        done = subprocess.run([*argv, "migrate", "--json", "--jobs", jobs, *dry], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr  # the exploding notes
        assert json.loads(done.stdout)["migrated"] == MIGRATED
        assert done.stderr.count("tagged ") == MIGRATED  # once a note that its last step migrates


def test_cli_migrate_jobs_gives_the_same_summary_and_refuses_negatives(
    tmp_path: Path, registry_file: Path, home: Path
) -> None:
    from conftest import Cli

    summaries = []
    for jobs in ("0", "2"):
        cli = Cli(tmp_path / f"jobs{jobs}.db")
        assert cli("import", "--jobs", "0", home, registry=str(registry_file)).exit_code == 0
        res = cli("migrate", "--json", "--jobs", jobs, registry=str(registry_file))
        assert res.exit_code == 1, res.stderr  # the exploding notes
        summary = json.loads(res.stdout)
        summary.pop("run")
        summaries.append(summary)
    assert summaries[0] == summaries[1] and summaries[1]["migrated"] == MIGRATED
    res = cli("migrate", "--jobs", "-1", registry=str(registry_file))
    assert res.exit_code == 2 and "--jobs" in res.stderr


@pytest.mark.parametrize("jobs", [0, 2], ids=["in-process", "workers"])
def test_a_batch_stops_reading_once_its_payloads_reach_the_byte_bound(
    tmp_path: Path, registry_file: Path, home: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """Memory follows BATCH_BYTES whatever the records' sizes: a batch holds at most one
    record beyond it, at most AHEAD_PER_JOB batches per worker are handed out ahead of
    the one being written, and a migration in small batches is the same migration."""
    monkeypatch.setattr(migrator_module, "BATCH_ROWS", 20)  # many spans, most ended by the bound
    monkeypatch.setattr(migrator_module, "BATCH_BYTES", 2000)
    sizes: list[int] = []
    out: set[Any] = set()  # batches handed out and not taken back yet
    most_out = [0]
    real_submit, real_write = migrator_module._Pass._submit, migrator_module._Pass._write

    def spy_submit(self: Any, *args: Any) -> Any:
        future = real_submit(self, *args)
        out.add(future)
        most_out[0] = max(most_out[0], len(out))
        return future

    def spy_write(self: Any, dom: Any, version: int, stepped: Any) -> bool:
        sizes.append(stepped.size)
        return bool(real_write(self, dom, version, stepped))

    real_result = migrator_module.workers.result

    def spy_result(future: Any, command: str, *kept: Any) -> Any:
        out.discard(future)
        return real_result(future, command, *kept)

    monkeypatch.setattr(migrator_module._Pass, "_submit", spy_submit)
    monkeypatch.setattr(migrator_module._Pass, "_write", spy_write)
    monkeypatch.setattr(migrator_module.workers, "result", spy_result)
    small, small_content = _migrated(tmp_path / "small.db", registry_file, home, jobs=jobs)
    largest = max(len(p.encode()) for _, _, _, p, _, _ in small_content["backups"])
    assert len(sizes) > 20
    assert all(size < 2000 + largest for size in sizes)
    assert any(size >= 2000 for size in sizes)  # the bound, not the row limit, ended them
    assert most_out[0] <= migrator_module.AHEAD_PER_JOB * jobs + 1
    monkeypatch.undo()
    whole, whole_content = _migrated(tmp_path / "whole.db", registry_file, home, jobs=0)
    assert small.as_dict() | {"run": 0} == whole.as_dict() | {"run": 0}
    assert _without_pids(small_content["records"]) == _without_pids(whole_content["records"])
