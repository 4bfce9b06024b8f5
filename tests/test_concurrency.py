"""One writer at a time, consistent readers (DESIGN guarantee 5), with real processes:

* writers started together: exactly one proceeds; the others fail at once with exit
  code 4 and one "busy" line naming the operation and the holder's pid, or, with
  ``--wait``, wait their turn and succeed, never two runs at once;
* readers querying while a migration commits batch after batch see whole records
  (payload version = version column), each record once, at one version, never going back;
* a writer SIGKILLed mid-run leaves a stale lock that the next writer takes over at
  once, marking the killed run interrupted;
* the library: two ``Store`` objects in one process, the second writer gets
  :class:`BusyError` (or waits, given ``wait``).

Writers are held mid-run by a gate (``CRASHKIT_GATE``: each step and imported file waits
for a file to exist), so the tests do not depend on timing.
"""

from __future__ import annotations

import contextlib
import collections
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import crashkit as ck
from recordstore import BusyError, Registry, Store

CURRENT = {"note": 3, "event": 2, "item": 2}


@dataclass
class World:
    home: Path
    registry: Path
    imported: Path
    counts: dict[str, int]
    before: dict[str, ck.Row]  # every record as imported
    after: dict[str, ck.Row]  # and as a migration leaves it
    migrated: Path  # imported + migrate (run 2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("concurrency")
    home = ck.make_home(root / "home", notes=300, logs=4, lines=100, lists=4, items=50)
    registry = ck.write_registry(root / "registry.py")
    imported = root / "imported.db"
    done = ck.run_store(imported, registry, "import", home)
    assert done.returncode == 0, done.stderr
    ck.checkpoint(imported)
    before = ck.records_of(imported)
    migrated = ck.copy_store(imported, root / "migrated.db")
    done = ck.run_store(migrated, registry, "migrate", env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert done.returncode == 0, done.stderr
    counts = collections.Counter(row.domain for row in before.values())
    ck.checkpoint(migrated)
    return World(home, registry, imported, dict(counts), before, ck.records_of(migrated), migrated)


def gated(gate: Path, **extra: str) -> dict[str, str]:
    return ck.child_env(CRASHKIT_GATE=str(gate), CRASHKIT_SLEEP="0", **extra)


def held(gate: Path) -> Path:
    return Path(f"{gate}.held")


def runs_of(db: Path) -> list[dict[str, Any]]:
    conn = ck._connect(db)
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]
    finally:
        conn.close()


def assert_one_at_a_time(runs: list[dict[str, Any]]) -> None:
    """No two runs overlap: each starts after the one before it finished."""
    ordered = sorted(runs, key=lambda r: r["started_at"])
    for prev, nxt in zip(ordered, ordered[1:]):
        assert prev["finished_at"] is not None and prev["finished_at"] <= nxt["started_at"], (prev, nxt)


# --------------------------------------------------------------------------- writers


COMMANDS = [["migrate"], ["import", "HOME"], ["migrate"]]


def _argv(world: World, cmd: list[str]) -> list[Any]:
    return [world.home if a == "HOME" else a for a in cmd]


@pytest.mark.parametrize("first", [None, 0, 1], ids=["together", "migrate-holds", "import-holds"])
def test_writers_started_together_one_proceeds_the_others_are_busy(
    world: World, tmp_path: Path, first: int | None
) -> None:
    """All three started at once (any may win), or one given a head start so that both a
    migrate and an import (which holds SQLite's write lock for whole batches) are tried
    as the holder."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    gate = tmp_path / "gate"
    procs: list[Any] = [None] * len(COMMANDS)
    if first is not None:
        procs[first] = ck.spawn_store(db, world.registry, *_argv(world, COMMANDS[first]), env=gated(gate))
        assert ck.wait_until(held(gate).exists, timeout=60)
    for i, c in enumerate(COMMANDS):
        if procs[i] is None:
            procs[i] = ck.spawn_store(db, world.registry, *_argv(world, c), env=gated(gate))
    try:
        # the two that lost fail at once, while the winner is still held inside its run
        assert ck.wait_until(lambda: sum(p.poll() is not None for p in procs) >= 2, timeout=60)
        assert ck.wait_until(held(gate).exists, timeout=60)
        running = [p for p in procs if p.poll() is None]
        assert len(running) == 1
    finally:
        gate.touch()
    ends = [ck.finish(p) for p in procs]
    codes = [e.returncode for e in ends]
    assert sorted(codes) == [0, 4, 4], [e.stderr for e in ends]
    w = codes.index(0)
    assert first is None or w == first
    winner, operation = procs[w], COMMANDS[w][0]
    for i, e in enumerate(ends):
        if i == w:
            continue
        lines = e.stderr.strip().splitlines()
        assert len(lines) == 1, e.stderr
        assert "busy" in lines[0] and operation in lines[0] and f"process {winner.pid}" in lines[0], lines[0]
        assert e.stdout == ""
    runs = runs_of(db)[1:]  # after the import that made the store
    assert [(r["kind"], r["pid"], r["outcome"]) for r in runs] == [(operation, winner.pid, "ok")]


def test_writers_with_wait_take_turns_and_all_succeed(world: World, tmp_path: Path) -> None:
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    gate = tmp_path / "gate"
    procs = [
        ck.spawn_store(db, world.registry, *_argv(world, c), "--wait", env=gated(gate)) for c in COMMANDS
    ]
    try:
        assert ck.wait_until(held(gate).exists, timeout=60)
        time.sleep(0.5)  # the other two are polling by now
        assert all(p.poll() is None for p in procs)
        running = [r for r in runs_of(db) if r["outcome"] == "running"]
        assert len(running) == 1  # only the holder has a run
    finally:
        gate.touch()
    ends = [ck.finish(p) for p in procs]
    assert [e.returncode for e in ends] == [0, 0, 0], [e.stderr for e in ends]
    assert not any("busy" in e.stderr for e in ends)
    runs = runs_of(db)[1:]
    assert sorted((r["kind"], r["pid"]) for r in runs) == sorted(
        (c[0], p.pid) for c, p in zip(COMMANDS, procs)
    )
    assert all(r["outcome"] == "ok" for r in runs)
    assert_one_at_a_time(runs)
    now = ck.records_of(db)
    assert now == world.after  # every record, as one migration leaves it: none lost, none stepped twice


def test_busy_writer_does_not_block_behind_a_long_import_batch(world: World, tmp_path: Path) -> None:
    """An import holds SQLite's write lock for a whole batch: a second writer must still
    answer "busy, naming the import" at once, not sit in SQLite's busy timeout.

    Told without timing: the second writer waits for SQLite's lock for an hour if it
    waits at all, and the import keeps that lock until the second writer has answered
    (the gate opens only then). So it answers only if it never waits for the lock."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    gate = tmp_path / "gate"
    holder = ck.spawn_store(db, world.registry, "import", world.home, env=gated(gate))
    try:
        assert ck.wait_until(held(gate).exists, timeout=60)
        try:
            busy = ck.run_store(db, world.registry, "migrate", env=ck.child_env(CRASHKIT_BUSY_TIMEOUT="3600"))
        except subprocess.TimeoutExpired:
            pytest.fail("the second writer waited for the import's write lock instead of answering busy")
        assert holder.poll() is None  # the import was still held inside its batch
    finally:
        gate.touch()
    assert ck.finish(holder).returncode == 0
    assert busy.returncode == 4, busy.stderr
    assert f"import (run 2) is running in process {holder.pid}" in busy.stderr


@pytest.mark.parametrize("round_", [0, *(pytest.param(n, marks=pytest.mark.slow) for n in range(1, 13))])
def test_many_writers_racing_never_overlap(world: World, tmp_path: Path, round_: int) -> None:
    """No gate: five writers (migrate and import, slow steps) started at once, as users
    would. Each either runs or is told "busy" naming a writer that really held the store;
    no two runs overlap; the store ends fully migrated and intact."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    commands = [["migrate"], ["import", "HOME"], ["migrate"], ["migrate"], ["import", "HOME"]][: 3 + round_ % 3]
    env = ck.child_env(CRASHKIT_SLEEP="0.0003", CRASHKIT_MIGRATE_BATCH="100")
    procs = [ck.spawn_store(db, world.registry, *_argv(world, c), env=env) for c in commands]
    ends = [ck.finish(p) for p in procs]
    assert {e.returncode for e in ends} <= {0, 4}, [e.stderr for e in ends]
    runs = runs_of(db)[1:]
    ran = {r["pid"]: r for r in runs}
    for p, c, e in zip(procs, commands, ends):
        if e.returncode == 0:
            assert ran[p.pid]["kind"] == c[0] and ran[p.pid]["outcome"] == "ok"
        else:
            assert p.pid not in ran
            line = e.stderr.strip()
            assert "\n" not in line and "busy" in line, e.stderr
            holders = [pid for pid in ran if f"process {pid} " in line]
            assert len(holders) == 1 and ran[holders[0]]["kind"] in line, (line, ran)
    assert_one_at_a_time(runs)
    if any(r["kind"] == "migrate" for r in runs):
        assert ck.records_of(db) == world.after  # every record, as one migration leaves it
    with Store(db, registry=str(world.registry)) as s:
        assert s.integrity_problems() == []


@pytest.mark.parametrize("command", [["migrate"], ["restore", "--run", "2"]], ids=["migrate", "restore"])
def test_a_lockless_writer_does_not_break_a_running_run(world: World, tmp_path: Path, command: list[str]) -> None:
    """Another program writing to the SQLite file takes no run lock (recordstore's own
    writers all do). Held after reading its rows (a migration batch running its steps,
    a restore having read its backups), a run must not fail when that write commits:
    SQLite refuses to turn a read snapshot another writer made stale into a write
    ("database is locked")."""
    db = ck.copy_store(world.imported if command[0] == "migrate" else world.migrated, tmp_path / "store.db")
    gate = tmp_path / "gate"
    writer = ck.spawn_store(db, world.registry, *command, env=gated(gate))
    foreign = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=60); "
        "c.execute(\"CREATE INDEX ix_foreign ON records (json_extract(payload, '$.name'))\"); c.commit()"
    )
    try:
        assert ck.wait_until(held(gate).exists, timeout=60)
        indexer = subprocess.Popen([sys.executable, "-c", foreign, str(db)], stderr=subprocess.PIPE, text=True)
        # it may commit at once (the migration holds no write lock between its writes) or
        # wait for the batch; either way the batch must then commit
        ck.wait_until(lambda: indexer.poll() is not None, timeout=3)
    finally:
        gate.touch()
    ended = ck.finish(writer)
    assert indexer.wait(60) == 0, indexer.communicate()[1]
    assert ended.returncode == 0, ended.stderr
    assert ck.records_of(db) == (world.after if command[0] == "migrate" else world.before)


def test_index_changes_wait_for_a_running_writer_or_are_told_busy(world: World, tmp_path: Path) -> None:
    """`store index add` and `drop` are writers (building an index reads every record):
    while a migration runs they get the busy line and exit code 4, or, with --wait,
    are done after it, each as a run of its own."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    with Store(db, registry=str(world.registry)) as s:
        s.add_index("note", "name")  # (a drop of an index that is not there is refused at once)
    gate = tmp_path / "gate"
    writer = ck.spawn_store(db, world.registry, "migrate", env=gated(gate))
    try:
        assert ck.wait_until(held(gate).exists, timeout=60)
        for action in ("add", "drop"):
            busy = ck.run_store(db, world.registry, "index", action, "note", "name")
            assert busy.returncode == 4, busy.stderr
            assert f"migrate (run 3) is running in process {writer.pid}" in busy.stderr, busy.stderr
        patient = ck.spawn_store(db, world.registry, "index", "add", "--wait", "note", "name")
        time.sleep(0.5)
        assert patient.poll() is None, "index add --wait did not wait for the migration"
    finally:
        gate.touch()
    assert ck.finish(writer).returncode == 0
    waited = ck.finish(patient)
    assert waited.returncode == 0, waited.stderr
    with Store(db, registry=str(world.registry)) as s:
        assert s.indexes() == [("note", "$.name")]
        assert [(r.kind, r.outcome) for r in s.history()][-2:] == [("migrate", "ok"), ("index", "ok")]


# --------------------------------------------------------------------------- readers


@dataclass
class ReaderLog:
    snapshots: int = 0
    mixed: int = 0  # snapshots taken with the domain part migrated: the reads overlapped
    errors: list[str] = field(default_factory=list)


class SnapshotCheck:
    """Checks one reader's successive snapshots of a domain: each record once, whole
    (exactly its imported or exactly its migrated form, with the version that goes with
    it), and never going back once seen migrated."""

    def __init__(self, world: World, log: ReaderLog, decode: bool = False):
        self.world, self.log, self.decode = world, log, decode
        self.seen_new: dict[str, set[str]] = collections.defaultdict(set)

    def _form(self, row: ck.Row) -> Any:
        return json.loads(row.payload) if self.decode else row.payload

    def __call__(self, domain: str, snap: list[tuple[str, int, Any]]) -> None:
        keys = [k for k, _, _ in snap]
        assert len(keys) == len(set(keys)) == self.world.counts[domain], (domain, len(keys))
        new, changing = set(), 0
        for key, version, payload in snap:
            old, done = self.world.before[key], self.world.after[key]
            if old == done:
                assert (version, payload) == (old.version, self._form(old)), key
                continue
            changing += 1
            if (version, payload) == (done.version, self._form(done)):
                new.add(key)
            else:
                assert (version, payload) == (old.version, self._form(old)), f"{key} is neither old nor new"
        assert self.seen_new[domain] <= new, "a record went back to its old form"
        self.seen_new[domain] = new
        self.log.snapshots += 1
        if 0 < len(new) < changing:
            self.log.mixed += 1


def test_readers_see_whole_records_at_one_version_during_a_migration(world: World, tmp_path: Path) -> None:
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    log, cli_log = ReaderLog(), ReaderLog()
    writer = ck.spawn_store(db, world.registry, "migrate",
                            env=ck.child_env(CRASHKIT_SLEEP="0.0004", CRASHKIT_MIGRATE_BATCH="50"))

    def library_reader() -> None:
        check = SnapshotCheck(world, log)
        try:
            with Store(db, registry=str(world.registry)) as s:
                while writer.poll() is None:
                    for domain in CURRENT:
                        check(domain, [(r.key, r.version, r.text) for r in s.query(domain)])
        except BaseException as exc:  # reported by the main thread
            log.errors.append(f"{type(exc).__name__}: {exc}")

    def cli_reader() -> None:
        check = SnapshotCheck(world, cli_log, decode=True)
        try:
            while writer.poll() is None:
                got = ck.run_store(db, world.registry, "query", "event", "--json")
                assert got.returncode == 0, got.stderr
                lines = [json.loads(line) for line in got.stdout.splitlines()]
                check("event", [(r["key"], r["version"], r["record"]) for r in lines])
        except BaseException as exc:
            cli_log.errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=library_reader), threading.Thread(target=cli_reader)]
    for t in threads:
        t.start()
    ended = ck.finish(writer)
    for t in threads:
        t.join(timeout=120)
    assert ended.returncode == 0, ended.stderr
    assert log.errors == [] and cli_log.errors == []
    assert log.snapshots > 3 and log.mixed > 0, log  # the reads did overlap the migration
    assert cli_log.snapshots >= 1
    assert ck.records_of(db) == world.after


# --------------------------------------------------------------------------- stale locks


def _killed_mid_migrate(world: World, db: Path) -> tuple[subprocess.Popen[str], int]:
    proc = ck.spawn_store(db, world.registry, "migrate",
                          env=ck.child_env(CRASHKIT_SLEEP="0.0005", CRASHKIT_MIGRATE_BATCH="50"))
    # wait until some batches are committed: the run is really mid-way
    assert ck.wait_until(
        lambda: proc.poll() is not None or ck.scalar(db, "SELECT count(*) FROM backups") >= 100, timeout=60
    )
    ended = ck.kill9(proc)
    assert ended.killed, ended
    run = ck.run_of_pid(db, proc.pid)
    assert run is not None and run["outcome"] == "running"
    return proc, run["id"]


def test_stale_lock_of_a_killed_writer_is_taken_over_at_once(world: World, tmp_path: Path) -> None:
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    proc, run_id = _killed_mid_migrate(world, db)
    assert ck.scalar(db, "SELECT pid FROM lock") == proc.pid  # the lock is left behind
    with Store(db, registry=str(world.registry)) as s:
        assert s.history(run_id)[0].outcome == "interrupted"

    # Without --wait, a writer that finds the store held answers "busy" at once: to run,
    # it must have taken the killed writer's lock over at once (told without timing it).
    again = ck.run_store(db, world.registry, "migrate", env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert again.returncode == 0, again.stderr
    assert "busy" not in again.stderr
    runs = runs_of(db)
    old = next(r for r in runs if r["id"] == run_id)
    assert old["outcome"] == "interrupted" and "stopped before finishing" in old["message"]
    assert runs[-1]["outcome"] == "ok" and runs[-1]["pid"] != proc.pid
    assert ck.scalar(db, "SELECT count(*) FROM lock") == 0
    assert ck.records_of(db) == world.after  # every record, as one migration leaves it
    # each record was backed up exactly once, by whichever run changed it
    per_key = collections.Counter(b["key"] for b in ck.backups_of(db))
    assert set(per_key.values()) == {1}


def test_a_waiting_writer_takes_over_when_the_holder_is_killed(world: World, tmp_path: Path) -> None:
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    gate = tmp_path / "gate"
    holder = ck.spawn_store(db, world.registry, "migrate", env=gated(gate))
    assert ck.wait_until(held(gate).exists, timeout=60)
    waiter = ck.spawn_store(db, world.registry, "migrate", "--wait", env=ck.child_env(CRASHKIT_SLEEP="0"))
    time.sleep(1.0)
    assert waiter.poll() is None  # waiting for the live holder
    assert ck.kill9(holder).killed
    ended = ck.finish(waiter, timeout=60)
    assert ended.returncode == 0, ended.stderr
    runs = runs_of(db)
    assert [(r["pid"], r["outcome"]) for r in runs[1:]] == [(holder.pid, "interrupted"), (waiter.pid, "ok")]
    assert ck.records_of(db) == world.after  # every record, as one migration leaves it


# --------------------------------------------------------------------------- the library


def test_library_second_store_in_one_process_gets_busy_error_or_waits(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    registry = Registry()
    note = registry.domain("note", version=2, files=["notes/*.json"])

    @note.step(1)
    def held_step(record: dict[str, Any]) -> None:
        entered.set()
        assert release.wait(60)
        record["seen"] = True

    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    for n in range(5):
        (home / "notes" / f"{n}.json").write_text(json.dumps({"schema_version": 1, "n": n}, indent=2))
    db = tmp_path / "store.db"
    with Store(db, registry=registry) as s:
        s.import_paths([home])

    first, second, patient = (Store(db, registry=registry), Store(db, registry=registry),
                              Store(db, registry=registry, wait=60))
    results: dict[str, Any] = {}

    def run(name: str, fn: Any) -> None:
        try:
            results[name] = fn()
        except BaseException as exc:
            results[name] = exc

    try:
        migrating = threading.Thread(target=run, args=("first", first.migrate))
        migrating.start()
        assert entered.wait(30)
        for attempt in (second.migrate, lambda: second.import_paths([home]), lambda: second.restore(domain="note"),
                        lambda: second.prune_backups(1), lambda: second.add_index("note", "n")):
            with pytest.raises(BusyError) as info:
                attempt()
            assert info.value.holder["operation"] == "migrate"
            assert info.value.holder["pid"] == os.getpid()
            assert "busy" in str(info.value) and f"process {os.getpid()}" in str(info.value)
        # readers are not writers: they go on, and see the records as they were
        assert [r.version for r in second.query("note")] == [1] * 5
        waiting = threading.Thread(target=run, args=("patient", lambda: patient.import_paths([home])))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive()
    finally:
        release.set()
    migrating.join(30)
    waiting.join(30)
    try:
        assert results["first"].migrated == 5
        assert results["patient"].ok and results["patient"].run_id == results["first"].run_id + 1
        history = second.history()
        assert [(r.kind, r.outcome) for r in history] == [("import", "ok"), ("migrate", "ok"), ("import", "ok")]
        assert_one_at_a_time([{"started_at": r.started_at, "finished_at": r.finished_at} for r in history])
    finally:
        for s in (first, second, patient):
            s.close()


def test_stale_lock_left_under_our_own_pid_is_taken_over(tmp_path: Path) -> None:
    """A killed writer whose pid now belongs to us (a container's `store` is often pid 1
    again after a restart) holds nothing: the lock is stale, not ours."""
    import socket
    import sqlite3

    registry = Registry()
    registry.domain("note", version=1, files=["notes/*.json"])
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "notes" / "a.json").write_text('{"schema_version": 1}')
    db = tmp_path / "store.db"
    with Store(db, registry=registry) as s:
        s.import_paths([home])
    conn = sqlite3.connect(db)
    with conn:
        cur = conn.execute(
            "INSERT INTO runs (kind, started_at, outcome, pid, host) VALUES ('migrate', '2026-01-01T00:00:00Z', "
            "'running', ?, ?)", (os.getpid(), socket.gethostname()))
        conn.execute("INSERT INTO lock (id, operation, run_id, pid, host, acquired_at) VALUES "
                     "(1, 'migrate', ?, ?, ?, '2026-01-01T00:00:00Z')", (cur.lastrowid, os.getpid(), socket.gethostname()))
    conn.close()
    with Store(db, registry=registry) as s:
        assert s.history()[-1].outcome == "interrupted"
        result = s.import_paths([home])
        assert result.ok
        assert [r.outcome for r in s.history()] == ["ok", "interrupted", "ok"]


@pytest.mark.parametrize("started", ["another", "its own", "unknown"])
def test_a_lock_whose_pid_another_process_took_since_is_stale(tmp_path: Path, started: str) -> None:
    """A writer killed outright (power lost, the OOM killer), whose pid a long-lived
    process got since (pids begin again after a reboot): every writer was "busy" for as
    long as that process lived. The lock row names the holder by its start too: another
    process under that pid is no holder. A row that names the pid's own process is a
    live writer; one that names none (written by an earlier recordstore), as before."""
    import socket
    import sqlite3
    import subprocess

    from recordstore import BusyError, runs

    registry = Registry()
    registry.domain("note", version=1, files=["notes/*.json"])
    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "notes" / "a.json").write_text('{"schema_version": 1}')
    db = tmp_path / "store.db"
    with Store(db, registry=registry) as s:
        s.import_paths([tmp_path / "home"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        token = runs.start_token(other.pid)
        if token is None:
            pytest.skip("this system does not tell when a process started")
        row_token = {"another": token + "0", "its own": token, "unknown": None}[started]
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            cur = conn.execute(
                "INSERT INTO runs (kind, started_at, outcome, pid, host) VALUES ('import', '2026-01-01T00:00:00Z', "
                "'running', ?, ?)", (other.pid, socket.gethostname()))
            conn.execute("INSERT INTO lock (id, operation, run_id, pid, host, acquired_at, started) VALUES "
                         "(1, 'import', ?, ?, ?, '2026-01-01T00:00:00Z', ?)",
                         (cur.lastrowid, other.pid, socket.gethostname(), row_token))
        with Store(db, registry=registry) as s:
            if started == "another":
                assert s.import_paths([tmp_path / "home"]).ok
                assert [r.outcome for r in s.history()] == ["ok", "interrupted", "ok"]
            else:
                with pytest.raises(BusyError, match=f"running in process {other.pid}"):
                    s.import_paths([tmp_path / "home"])
    finally:
        other.kill()
        other.wait()


def test_a_run_that_cannot_record_its_end_leaves_no_lock_this_process_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run failing on a full disk cannot record its end either (that too is a write);
    this process then kept the store "busy" for as long as it lived (a service using the
    library), and every other process too. Its row is now stale: taken over once there
    is room."""
    from recordstore import StoreError, runs

    registry = Registry()
    registry.domain("note", version=1, files=["notes/*.json"])
    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "notes" / "a.json").write_text('{"schema_version": 1}')
    real_finish = runs.RunHandle._finish

    def disk_full(self: Any, outcome: str, message: str | None) -> None:
        raise StoreError("the disk is full")

    monkeypatch.setattr(runs.RunHandle, "_finish", disk_full)
    with Store(tmp_path / "s.db", registry=registry) as s:
        with pytest.raises(StoreError, match="the disk is full"):
            s.import_paths([tmp_path / "home"])
    monkeypatch.setattr(runs.RunHandle, "_finish", real_finish)  # room again
    with Store(tmp_path / "s.db", registry=registry) as s:
        assert s.import_paths([tmp_path / "home"]).ok
        assert [r.outcome for r in s.history()] == ["interrupted", "ok"]


def _plant_lock(db: Path, pid: int, host: str, operation: str = "import") -> int:
    """A lock row (and its running run) as a writer ``pid`` on ``host`` leaves it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        run = conn.execute(
            "INSERT INTO runs (kind, started_at, outcome, pid, host) VALUES (?, '2026-01-01T00:00:00Z', 'running', ?, ?)",
            (operation, pid, host),
        ).lastrowid
        conn.execute(
            "INSERT INTO lock (id, operation, run_id, pid, host, acquired_at) VALUES (1, ?, ?, ?, ?, '2026-01-01T00:00:00Z')",
            (operation, run, pid, host),
        )
    assert run is not None
    return run


def test_a_writer_gone_with_its_host_is_released_by_unlock_force(world: World, tmp_path: Path) -> None:
    """A writer killed in a container that is gone (another host name, the store on a
    shared volume) kept the store busy for ever: no process here can tell it gone. The
    busy message says how to release it; `store unlock` alone refuses, naming it;
    `store unlock --force` releases it and marks its run interrupted; writers go on."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    run = _plant_lock(db, 4242, "gone-container")
    busy = ck.run_store(db, world.registry, "migrate")
    assert busy.returncode == 4, busy.stderr
    assert "on gone-container" in busy.stderr and "store unlock --force" in busy.stderr
    refused = ck.run_store(db, world.registry, "unlock")
    assert refused.returncode == 4, refused.stderr
    assert f"import (run {run}), process 4242 on host gone-container" in refused.stderr
    assert "store unlock --force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    released = ck.run_store(db, world.registry, "unlock", "--force")
    assert released.returncode == 0, released.stderr
    assert f"released the store from import (run {run}), process 4242 on gone-container" in released.stdout
    assert f"run {run} is marked interrupted" in released.stdout
    again = ck.run_store(db, world.registry, "unlock", "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {"released": None}
    migrated = ck.run_store(db, world.registry, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert ck.records_of(db) == world.after
    history = json.loads(ck.run_store(db, world.registry, "history", "--json").stdout)
    assert [(r["id"], r["outcome"]) for r in history][-2:] == [(run, "interrupted"), (run + 1, "ok")]


def test_unlock_and_history_do_not_need_a_registry_that_loads(world: World, tmp_path: Path) -> None:
    """A registry that no longer loads (half edited) stopped `store unlock` and `store
    history` too, though neither looks at a record: the store stayed locked until the
    registry was mended, and what had happened could not be looked up."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    run = _plant_lock(db, 4242, "gone-container")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half edited')\n")
    assert "half edited" in ck.run_store(db, broken, "status").stderr  # the registry is loaded where it is needed
    history = ck.run_store(db, broken, "history", "--json")
    assert history.returncode == 0, history.stderr
    assert [(r["id"], r["outcome"]) for r in json.loads(history.stdout)][-1] == (run, "running")
    released = ck.run_store(db, broken, "unlock", "--force")
    assert released.returncode == 0, released.stderr
    assert f"run {run} is marked interrupted" in released.stdout
    assert ck.run_store(db, world.registry, "migrate").returncode == 0


def test_unlock_never_releases_a_writer_still_running_here(world: World, tmp_path: Path) -> None:
    """A writer on this host whose process runs is refused, --force or not, and keeps
    the store; one whose process is gone is released without --force."""
    import socket

    db = ck.copy_store(world.imported, tmp_path / "store.db")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = _plant_lock(db, alive.pid, socket.gethostname(), "migrate")
        for args in (["unlock"], ["unlock", "--force"]):
            refused = ck.run_store(db, world.registry, *args)
            assert refused.returncode == 4, refused.stderr
            assert f"held by a running writer: migrate (run {run}) in process {alive.pid}" in refused.stderr
        assert ck.run_store(db, world.registry, "import", world.home).returncode == 4
    finally:
        alive.kill()
        alive.wait()
    released = ck.run_store(db, world.registry, "unlock", "--json")
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["released"]["pid"] == alive.pid


def test_unlock_names_a_writer_in_the_middle_of_a_batch_at_once(world: World, tmp_path: Path) -> None:
    """A migration runs its steps inside its batch's transaction: `store unlock` waited
    for SQLite's write lock until the batch (or the whole run) was over, then said "the
    store is not locked: no writer holds it" (exit 0), or failed after 30 s. It names
    the running writer at once, as a second writer does."""
    db = ck.copy_store(world.imported, tmp_path / "store.db")
    gate = tmp_path / "gate"
    holder = ck.spawn_store(db, world.registry, "migrate", "--jobs", "0", env=gated(gate))
    try:
        assert ck.wait_until(held(gate).exists, timeout=60)
        # (The writer holds its batch until the gate opens, after this: waiting for the
        # write lock would end in "another process holds its write lock".)
        refused = ck.run_store(db, world.registry, "unlock")
        forced = ck.run_store(db, world.registry, "unlock", "--force")
    finally:
        gate.touch()
    assert ck.finish(holder).returncode == 0
    for answer in (refused, forced):
        assert answer.returncode == 4, answer.stderr
        assert f"held by a running writer: migrate (run 2) in process {holder.pid}" in answer.stderr


def test_a_killed_writer_its_parent_has_not_reaped_yet_is_gone(world: World, tmp_path: Path) -> None:
    """A writer killed outright whose parent (a supervisor, a shell script) has not
    read its exit yet keeps its pid as a zombie: the next writer said it "is running",
    and one with --wait waited until the parent looked. It is gone: taken over at once."""
    import socket

    db = ck.copy_store(world.imported, tmp_path / "store.db")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Waits for the child to end without reaping it (WNOWAIT): it stays a zombie,
        # however long the machine takes to run it (no deadline to miss).
        os.waitid(os.P_PID, ended.pid, os.WEXITED | os.WNOWAIT)
        assert Path(f"/proc/{ended.pid}/stat").read_bytes().rpartition(b")")[2].split()[0] == b"Z"
        run = _plant_lock(db, ended.pid, socket.gethostname(), "migrate")
        migrated = ck.run_store(db, world.registry, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        history = json.loads(ck.run_store(db, world.registry, "history", "--json").stdout)
        assert [(r["id"], r["outcome"]) for r in history][-2:] == [(run, "interrupted"), (run + 1, "ok")]
    finally:
        ended.wait()
