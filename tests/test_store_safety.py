"""The store under a full disk, read-only, and the privacy of what errors print."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from recordstore import Store, StoreError
from recordstore.tables import records
from conftest import EXAMPLE_HOME


def test_a_full_disk_during_import_is_one_clear_error_and_loses_nothing(db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / "h" / "tasks" / "tasks"
    home.mkdir(parents=True)
    for i in range(400):
        (home / f"t{i:03}.json").write_text(json.dumps({"schema_version": 2, "id": i, "pad": "x" * 20000}, indent=2))
    with Store(db_path) as store:
        limit = {"bytes": 6_000_000}  # SQLite's own "database or disk is full", mid-import

        @event.listens_for(store.engine, "connect")
        def cap(dbapi_conn: Any, _record: Any) -> None:
            page_size = dbapi_conn.execute("PRAGMA page_size").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count={limit['bytes'] // page_size}")

        store.engine.dispose()
        with pytest.raises(StoreError, match="disk is full"):
            store.import_paths([tmp_path / "h"])
        kept = store.query("task").count()
        assert 0 < kept < 400  # whole batches committed before the disk filled, none half
        assert store.integrity_problems() == []
        assert [r.outcome for r in store.history()] == ["failed"]
        limit["bytes"] = 1 << 40
        store.engine.dispose()
        again = store.import_paths([tmp_path / "h"])
        assert again.ok and store.query("task").count() == 400
    # The first import dropped the records' indexes; with no room to build them again,
    # the next writer did, first thing.
    assert _record_indexes(db_path) == {index.name for index in records.indexes}


def _record_indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'")}


def test_an_import_stopped_by_an_error_builds_its_indexes_before_it_ends(db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / "h" / "tasks" / "tasks"
    home.mkdir(parents=True)
    for i in range(300):
        (home / f"t{i:03}.json").write_text(json.dumps({"schema_version": 2, "id": i, "pad": "x" * 20000}))

    class Interrupting:
        seen = 0

        def start(self, total: int, what: str) -> None:
            pass

        def advance(self, n: int) -> None:
            self.seen += n
            if self.seen == 250:
                raise KeyboardInterrupt

    with Store(db_path) as store:
        with pytest.raises(KeyboardInterrupt):
            store.import_paths([tmp_path / "h"], progress=Interrupting())  # type: ignore[arg-type]
        assert 0 < store.query("task").count() < 300
        assert _record_indexes(db_path) == {index.name for index in records.indexes}
        # Stopped, as a killed run is: history says so, not that the import failed.
        assert [(r.outcome, r.message) for r in store.history()] == [
            ("interrupted", "stopped before finishing (KeyboardInterrupt)")
        ]
        # And what it stored before it stopped (its last batch was not committed).
        assert store.history()[0].counts == {"stored": {"task": store.query("task").count()}}


def test_a_read_only_store_is_refused_for_writes_and_still_readable(db_path: Path, cli: Any) -> None:
    with Store(db_path) as store:
        store.import_paths([EXAMPLE_HOME])
    before = db_path.read_bytes()
    readonly = f"sqlite:///file:{db_path}?mode=ro&uri=true"
    with Store(readonly) as store:
        assert store.query("task").count() == 3
        with pytest.raises(StoreError, match="read-only"):
            store.migrate()
    assert db_path.read_bytes() == before
    cli.db = readonly
    res = cli("migrate")
    assert res.exit_code == 3 and res.stderr.count("\n") == 1 and "read-only" in res.stderr


def test_errors_never_print_whole_record_payloads(tmp_path: Path, cli: Any) -> None:
    secret = "hunter2-" + "s" * 500
    reg_file = tmp_path / "reg.py"
    reg_file.write_text(
        "from recordstore import Registry\nregistry = Registry()\nd = registry.domain('note', version=2, files=['*.json'])\n"
        "@d.step(1)\ndef leak(record):\n    raise ValueError(repr(record))\n"
    )
    home = tmp_path / "h"
    home.mkdir()
    (home / "a.json").write_text(json.dumps({"schema_version": 1, "token": secret}))
    (home / "b.json").write_text('{"schema_version": 1, "token": "' + secret + '", broken')
    res = cli("import", home, registry=str(reg_file))
    assert res.exit_code == 1 and secret not in res.stderr + res.stdout
    assert "store: b.json:1: invalid JSON: " in res.stderr  # reported, without the payload
    res = cli("migrate", registry=str(reg_file))
    assert res.exit_code == 1
    # The step put the whole record in its exception; the report keeps a bounded reason.
    assert secret not in res.stderr + res.stdout
    assert "store: failed: note a.json: v1 -> v2 (leak) failed: ValueError: {'schema_version': 1, 'token': 'hunter2-" in res.stderr
    hist = cli("history", "--json", registry=str(reg_file))
    assert secret not in hist.stdout
    reasons = [f["reason"] for run in json.loads(hist.stdout) for f in run["failures"]]
    assert len(reasons) == 2 and reasons[1].startswith("ValueError: {'schema_version': 1, 'token': 'hunter2-")


def test_registry_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    reg_file = tmp_path / "reg.py"
    reg_file.write_text("from recordstore import Registry\nregistry = Registry()\nregistry.domain('note', version=1, files=['*.json'])\n")
    monkeypatch.setenv("STORE_REGISTRY", str(reg_file))
    Store(cli.db).close()  # a store to look at (a reader does not make one)
    res = cli("status", "--json")
    assert list(json.loads(res.stdout)["domains"]) == ["note"]


def test_the_wal_is_checkpointed_by_a_thread_while_a_run_writes(tmp_path: Path) -> None:
    """A writer whose own commits never checkpoint (wal_autocheckpoint=0): while the
    background checkpointer runs, what it commits still reaches the database file; the
    thread is gone when the run ends."""
    import threading
    import time

    from recordstore.engine import background_checkpoints

    db = tmp_path / "s.db"
    with Store(db) as store:
        engine = store.engine
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE filler (x TEXT)")
        threads = threading.active_count()
        with background_checkpoints(engine):
            assert threading.active_count() == threads + 1
            before = db.stat().st_size
            for _ in range(20):
                writer.execute("INSERT INTO filler VALUES (?)", ("x" * 50_000,))
            deadline = time.monotonic() + 10
            while db.stat().st_size < before + 900_000 and time.monotonic() < deadline:
                time.sleep(0.02)
        grown = db.stat().st_size - before
        assert threading.active_count() == threads
        for _ in range(20):
            writer.execute("INSERT INTO filler VALUES (?)", ("x" * 50_000,))
        time.sleep(0.3)
        assert db.stat().st_size - before == grown  # without the thread, the WAL keeps it
        writer.close()
    assert grown >= 900_000


def test_a_new_store_has_16_kib_pages_and_an_older_one_keeps_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New stores are made with 16 KiB pages; a store made with 4 KiB pages keeps them,
    works as before, and still lets its WAL grow to ~64 MB, not 256 MB, before a commit
    checkpoints it."""
    from recordstore import connections

    def settings(db: Path) -> tuple[int, int]:
        with Store(db) as store, store.engine.connect() as conn:
            page = conn.exec_driver_sql("PRAGMA page_size").scalar()
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        return int(page), int(pages)

    new = tmp_path / "new.db"
    with Store(new) as store:
        assert store.import_paths([EXAMPLE_HOME]).ok
    assert settings(new) == (16384, 4096)

    old = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(connections, "PAGE_SIZE", 4096)  # as stores were made before
        with Store(old) as store:
            assert store.import_paths([EXAMPLE_HOME]).ok
    assert settings(old) == (4096, 16384)
    contents = []
    for db in (new, old):
        with Store(db) as store:
            assert store.migrate().ok
            assert store.integrity_problems() == []
        with sqlite3.connect(db) as conn:
            contents.append(conn.execute("SELECT domain, key, version, payload FROM records ORDER BY key").fetchall())
        conn.close()
    assert contents[0] == contents[1] and len(contents[0]) == 37


CTRL_C_REGISTRY = '''
import os, signal
from pathlib import Path

from recordstore import Registry

registry = Registry()
notes = registry.domain("note", version=2, files=["notes/*.jsonl"])


@notes.step(1)
def add_seen(record):
    # Ctrl-C, as a terminal sends it, to every process of the command: once, halfway.
    marker = Path(os.environ["CTRL_C_MARKER"])
    if record["i"] == 3000 and not marker.exists():
        marker.touch()
        os.killpg(os.getpgrp(), signal.SIGINT)
    record["seen"] = True
'''


def _ctrl_c_home(tmp_path: Path) -> tuple[Path, dict[str, str], list[str]]:
    """6,000 notes at v1 and the registry whose step presses Ctrl-C halfway: the store's
    path, the environment and the command line of `store` on them."""
    import os
    import sys

    (tmp_path / "reg.py").write_text(CTRL_C_REGISTRY)
    (tmp_path / "home" / "notes").mkdir(parents=True)
    lines = [json.dumps({"schema_version": 1, "i": i}) for i in range(6000)]
    (tmp_path / "home" / "notes" / "n.jsonl").write_text("\n".join(lines) + "\n")
    db = tmp_path / "s.db"
    env = {**os.environ, "CTRL_C_MARKER": str(tmp_path / "pressed")}
    return db, env, [sys.executable, "-m", "recordstore", "--registry", str(tmp_path / "reg.py"), "-q", "--db", str(db)]


@pytest.mark.parametrize("jobs", ["0", "2"])
def test_ctrl_c_stops_a_migration_between_batches_with_one_line(tmp_path: Path, jobs: str) -> None:
    """Ctrl-C halfway through a migration (in the migrating process, or in a worker and
    that process at once) stops it at its next batch: exit 130, one line, no worker's
    traceback, the run recorded as interrupted, the store intact; a rerun finishes.
    (Raised wherever it landed, it could leave the command waiting for ever on its own
    open transaction or on the worker pool, or failing on a closed connection.)"""
    import subprocess

    db, env, argv = _ctrl_c_home(tmp_path)

    def store(*args: str) -> subprocess.CompletedProcess[str]:
        # A session of its own: the Ctrl-C reaches the command's processes, not pytest.
        return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=120, start_new_session=True)

    assert store("import", str(tmp_path / "home")).returncode == 0
    stopped = store("migrate", "--jobs", jobs)
    assert (stopped.returncode, stopped.stderr) == (
        130, "store: interrupted; what it had committed is kept: run the command again to finish\n"
    )
    with Store(db, registry=str(tmp_path / "reg.py")) as s:
        # The first batch (2,000 records) is committed; the one pressed in is dropped. With
        # workers, the first may still be stepping when the press reaches it: dropped too.
        assert s.query("note").version(2).count() in ((2000,) if jobs == "0" else (0, 2000))
        assert [r.outcome for r in s.history()] == ["ok", "interrupted"]
    again = store("migrate", "--jobs", jobs)
    assert again.returncode == 0, again.stderr
    assert store("check").returncode == 0
    with Store(db, registry=str(tmp_path / "reg.py")) as s:
        assert s.query("note").version(2).count() == 6000
        assert all(r.data["seen"] for r in s.query("note"))


SLOW_STEP_REGISTRY = '''
import os, signal, time
from pathlib import Path

from recordstore import Registry

registry = Registry()
notes = registry.domain("note", version=2, files=["notes/*.jsonl"])


@notes.step(1)
def slow(record):
    calls = os.open(os.environ["STEP_CALLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(calls, b"x")
    os.close(calls)
    if record["i"] == 10 and not Path(os.environ["STEP_CALLS"] + ".pressed").exists():
        Path(os.environ["STEP_CALLS"] + ".pressed").touch()
        os.killpg(os.getpgrp(), signal.SIGINT)  # Ctrl-C, early in the only batch
    time.sleep(0.002)
'''


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_ctrl_c_stops_a_slow_step_within_its_batch(tmp_path: Path, jobs: str) -> None:
    """Ctrl-C stopped a migration only once its batch of 2,000 records was stepped and
    written: minutes with a slow step, though the README says a fraction of a second.
    It now stops at the next record, and the batch is dropped uncommitted."""
    import os
    import subprocess
    import sys

    (tmp_path / "reg.py").write_text(SLOW_STEP_REGISTRY)
    (tmp_path / "home" / "notes").mkdir(parents=True)
    lines = [json.dumps({"schema_version": 1, "i": i}) for i in range(1500)]  # one batch
    (tmp_path / "home" / "notes" / "n.jsonl").write_text("\n".join(lines) + "\n")
    calls = tmp_path / "calls"
    env = {**os.environ, "STEP_CALLS": str(calls)}
    argv = [sys.executable, "-m", "recordstore", "--registry", str(tmp_path / "reg.py"), "-q", "--db", str(tmp_path / "s.db")]

    def store(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=120, start_new_session=True)

    assert store("import", str(tmp_path / "home")).returncode == 0
    stopped = store("migrate", "--jobs", jobs)
    assert stopped.returncode == 130, stopped.stderr
    assert len(calls.read_bytes()) < 1500  # it did not step the rest of the batch
    with Store(tmp_path / "s.db", registry=str(tmp_path / "reg.py")) as s:
        assert s.query("note").version(2).count() == 0
        assert [r.outcome for r in s.history()] == ["ok", "interrupted"]
    assert store("migrate", "--jobs", jobs).returncode == 0


def test_ctrl_c_in_a_run_that_reaches_no_safe_point_lets_it_finish(store: Store, home: Path) -> None:
    """A run with no safe point left to stop at (a restore is one transaction) finishes,
    is recorded as finished, and the press is dropped with it; nothing is left for the
    next run in the same process, nor after a run that failed."""
    import os
    import signal

    from recordstore import runs

    store.import_paths([home])
    with runs.held_run(store.engine, "prune"):
        os.kill(os.getpid(), signal.SIGINT)  # held: nothing is raised here
    with pytest.raises(StoreError):
        with runs.held_run(store.engine, "prune"):
            os.kill(os.getpid(), signal.SIGINT)
            raise StoreError("failed on its own")
    assert store.prune_backups(before=1) == 0  # not interrupted by a press of a run before
    assert [r.outcome for r in store.history()] == ["ok", "ok", "failed", "ok"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_stops_the_import_of_a_large_file_at_its_next_batch(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file imported in many batches stops at the batch after Ctrl-C, not at its end."""
    import os
    import signal

    from recordstore import importer

    events = tmp_path / "h" / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    line = json.dumps({"schema_version": 2, "thread_id": "t", "event": "e", "pad": "x" * 100})
    (events / "t.jsonl").write_text((line + "\n") * 30_000)
    batches = {"n": 0}
    real = importer.Importer._execute_pending

    def pressing(self: importer.Importer) -> None:
        batches["n"] += 1
        if batches["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        real(self)

    monkeypatch.setattr(importer.Importer, "_execute_pending", pressing)
    with pytest.raises(KeyboardInterrupt):
        store.import_paths([tmp_path / "h"], jobs=0)
    assert 0 < store.query("runtime").count() < 30_000
    assert store.history()[0].outcome == "interrupted"
    assert store.history()[0].counts == {"stored": {"runtime": store.query("runtime").count()}}


@pytest.mark.parametrize("jobs", ["0", "2"])
def test_a_command_started_ignoring_ctrl_c_still_ignores_it(tmp_path: Path, jobs: str) -> None:
    """`store migrate &` in a script starts with Ctrl-C ignored: it must stay so, in the
    command and in its workers, and the migration finish."""
    import signal
    import subprocess

    db, env, argv = _ctrl_c_home(tmp_path)
    assert subprocess.run([*argv, "import", str(tmp_path / "home")], timeout=120).returncode == 0

    def ignoring() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    done = subprocess.run(
        [*argv, "migrate", "--jobs", jobs], capture_output=True, text=True, env=env, timeout=120,
        start_new_session=True, preexec_fn=ignoring,
    )  # fmt: skip
    assert (tmp_path / "pressed").exists()  # the step did press Ctrl-C
    assert done.returncode == 0 and done.stderr == "", done.stderr
    with Store(db, registry=str(tmp_path / "reg.py")) as s:
        assert s.query("note").version(2).count() == 6000


HANGING_REGISTRY = '''
import os
from pathlib import Path

from recordstore import Registry

registry = Registry()
notes = registry.domain("note", version=2, files=["notes/*.jsonl"])


@notes.step(1)
def hangs(record):
    if record["i"] == 150:
        Path(os.environ["HANG_MARKER"]).touch()
        while True:  # a step that never returns
            pass
    record["seen"] = True
'''


def test_ctrl_c_twice_stops_a_migration_whose_step_never_returns_in_a_worker(tmp_path: Path) -> None:
    """The second press, 3 s after the first, stops a stuck command at once; with the
    steps in worker processes the command waited for ever on the stuck worker instead
    (only SIGKILL ended it). The stuck worker is killed; nothing it held was written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "reg.py").write_text(HANGING_REGISTRY)
    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "notes" / "n.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(300)))
    db, marker = tmp_path / "s.db", tmp_path / "hanging"
    argv = [sys.executable, "-m", "recordstore", "--registry", str(tmp_path / "reg.py"), "-q", "--db", str(db)]
    env = {**os.environ, "HANG_MARKER": str(marker)}
    assert subprocess.run([*argv, "import", str(tmp_path / "home")], env=env, capture_output=True).returncode == 0
    proc = subprocess.Popen([*argv, "migrate", "--jobs", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "the step never ran"
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(3.3)  # runs.STUCK_S: the first press found no safe point
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, stderr) == (130, "store: interrupted; what it had committed is kept: run the command again to finish\n")
    with Store(db, registry=str(tmp_path / "reg.py")) as s:
        assert [r.outcome for r in s.history()] == ["ok", "interrupted"]
        assert s.check().ok


def test_a_read_only_store_made_by_an_older_recordstore_says_it_needs_its_upgrade(db_path: Path, cli: Any) -> None:
    """Every command, a read too, first upgrades an older store's tables: read-only,
    `status` and `query` said only "the store is read-only: nothing was changed"."""
    import sqlite3

    with Store(db_path) as store:
        store.import_paths([EXAMPLE_HOME])
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0006_file_gaps'")  # as it was before 0007:
        conn.execute("ALTER TABLE lock DROP COLUMN started")
    cli.db = f"sqlite:///file:{db_path}?mode=ro&uri=true"
    for command in (["status"], ["query", "task"]):
        res = cli(*command)
        assert res.exit_code == 3 and res.stderr.count("\n") == 1, res.stderr
        assert "made by an older recordstore" in res.stderr and "open it once where it can be written" in res.stderr
