"""Crash safety (DESIGN guarantees 1, 2 and 6): SIGKILL a real ``store`` process during
import, migrate, restore and export, then prove that

* SQLite's integrity check passes and no record is lost or duplicated;
* every record is entirely old (its original row, no backup from the killed run) or
  entirely new (the finished row, and one backup from the killed run holding exactly
  its previous row), and its payload's version is its version column;
* no file at an export target path is half-written;
* history shows the killed run as interrupted;
* running the command again finishes the job, and the result equals a run that was
  never interrupted.

Kill moments are random but seeded (``CRASH_SEED``, default 20261122): trial ``n`` of an
operation always draws the same numbers. Most kills wait until a random share of the
work is committed, then a random part of a batch more (so they land mid-work whatever
the machine's load); some are timed from the process start (so they also hit start-up,
taking the lock and finishing). Deterministic crash points (the process SIGKILLs itself
at an exact place) cover the narrow windows random kills rarely hit. The default trials
keep this file under a minute; ``--slow`` runs ten times as many. Run with ``-s`` to see
how the kills landed.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import crashkit as ck
from recordstore import Store
from recordstore.tables import records

SEED = os.environ.get("CRASH_SEED", "20261122")
#: Seconds each imported file waits (the steps sleep too): an import lasts long enough
#: to be killed mid-way however fast the importer gets.
IMPORT_SLEEP = "0.001"
#: Trials per operation: (default, with --slow).
TRIALS = {"migrate": (4, 40), "import": (4, 40), "restore": (2, 20), "export": (2, 20)}


def trials(op: str) -> list[Any]:
    fast, slow = TRIALS[op]
    return [n if n < fast else pytest.param(n, marks=pytest.mark.slow) for n in range(slow)]


# --------------------------------------------------------------------------- the world


@dataclass
class Timing:
    """Seconds from spawn until the run (or the export directory) appeared, and the
    seconds of work then: the run's own duration (an export's: until it exited)."""

    startup: float
    work: float


@dataclass
class World:
    """A home, its edited copy, a registry, and reference stores: each state a run that was
    never interrupted leaves behind, copied for every trial."""

    root: Path
    home: Path
    home2: Path
    registry: Path
    empty: Path  # a store with the schema and nothing else
    imported: Path  # empty + import home (run 1)
    migrated: Path  # imported + migrate (run 2)
    restored: Path  # migrated + restore --run 2 (run 3)
    updated: Path  # imported + import home2 (run 2)
    exported: dict[str, bytes]  # export of `migrated`
    timing: dict[str, Timing]

    def copy(self, src: Path, dst_dir: Path) -> Path:
        return ck.copy_store(src, dst_dir / "store.db")


def _measured(db: Path, registry: Path, *args: Any, env: dict[str, str] | None = None,
              started: Any = None) -> Timing:
    t0 = time.monotonic()
    proc = ck.spawn_store(db, registry, *args, env=env)
    seen = started or (lambda: ck.run_of_pid(db, proc.pid) is not None)
    assert ck.wait_until(lambda: seen() or proc.poll() is not None, timeout=60)
    t1 = time.monotonic()
    end = ck.finish(proc)
    assert end.returncode == 0, end.stderr
    run = ck.run_of_pid(db, proc.pid)
    if run is None:  # export: no run, from its directory's appearance to the exit
        return Timing(t1 - t0, time.monotonic() - t1)
    # the run's own clock: from taking the lock to finishing, the window worth hitting
    began, ended = (dt.datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
    return Timing(t1 - t0, (ended - began).total_seconds())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("crashworld")
    home = ck.make_home(root / "home", notes=400, logs=8, lines=100, lists=6, items=50)
    home2 = ck.edit_home(home, root / "home2")
    registry = ck.write_registry(root / "registry.py")
    timing: dict[str, Timing] = {}

    def stage(name: str, src: Path | None) -> Path:
        d = root / name
        d.mkdir()
        if src is None:
            return d / "store.db"
        return ck.copy_store(src, d / "store.db")

    empty = stage("empty", None)
    Store(empty, registry=str(registry)).close()
    ck.checkpoint(empty)
    imported = stage("imported", empty)
    slow = ck.child_env(CRASHKIT_IMPORT_SLEEP=IMPORT_SLEEP)
    timing["import"] = _measured(imported, registry, "import", home, env=slow)
    ck.checkpoint(imported)
    migrated, updated = stage("migrated", imported), stage("updated", imported)
    with ThreadPoolExecutor(2) as pool:  # the references in pairs: the fixture is paid once per module
        m = pool.submit(_measured, migrated, registry, "migrate")
        u = pool.submit(_measured, updated, registry, "import", home2, env=slow)
        timing["migrate"], timing["import2"] = m.result(), u.result()
    ck.checkpoint(migrated)
    restored, out = stage("restored", migrated), root / "exported"
    timing["restore"] = _measured(restored, registry, "restore", "--run", "2")  # short: timed alone
    timing["export"] = _measured(migrated, registry, "export", out, started=out.exists)
    return World(root, home, home2, registry, empty, imported, migrated, restored, updated, ck.tree(out), timing)


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, collections.Counter[str]]]:
    """How the kills landed, per operation; printed at the end of the module (with -s)."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    yield counts
    for op, c in sorted(counts.items()):
        print(f"\n[crash] {op}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))


# --------------------------------------------------------------------------- killing


@dataclass
class Kill:
    pid: int
    ended: ck.Ended
    delay: float
    mode: str


def kill_during(db: Path, registry: Path, args: list[Any], *, rng: random.Random, timing: Timing,
                env: dict[str, str], started: Any = None, progress: Any = None, total: int = 0) -> Kill:
    """Spawn ``store ARGS`` and SIGKILL it at a seeded random moment.

    Three times in four the kill waits for the run (``started``) to appear, then for a
    random share of the work to be committed (``progress()`` reaching that share of
    ``total``, or that share of the measured work time passing, if sooner: big batches
    commit rarely), then a random part of one small batch more; without ``progress``, a
    random share of the measured work time. Otherwise it comes a random time after the
    spawn, so start-up, taking the lock and finishing are hit too."""
    from_start = rng.random() < 0.25
    share, extra = rng.uniform(0, 0.9), rng.uniform(0, 0.1)
    delay = rng.uniform(0, timing.startup + timing.work) if from_start else rng.uniform(0, timing.work * 0.95)
    proc = ck.spawn_store(db, registry, *args, env=env)
    if not from_start:
        seen = started or (lambda: ck.run_of_pid(db, proc.pid) is not None)
        ck.wait_until(lambda: seen() or proc.poll() is not None, timeout=60)
        if progress is not None:
            deadline = time.monotonic() + share * timing.work
            ck.wait_until(lambda: proc.poll() is not None or progress() >= share * total
                          or time.monotonic() >= deadline, timeout=60, interval=0.005)
            delay = extra
    time.sleep(delay)
    ended = ck.kill9(proc)
    assert ended.killed or ended.returncode == 0, ended.stderr
    return Kill(proc.pid, ended, delay, "from-start" if from_start else "mid-run")


def counter(db: Path, sql: str) -> Any:
    def count() -> int:
        try:
            return int(ck.scalar(db, sql)) if db.exists() else 0
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0

    return count


def trial_env(rng: random.Random, **extra: str) -> dict[str, str]:
    # Small batches most of the time, so a kill can land between many commits (at 60,
    # an import commits inside its 100-line logs too); sometimes the real sizes.
    batch = rng.choice(["60", "150", ""])
    return ck.child_env(CRASHKIT_MIGRATE_BATCH=batch or None, CRASHKIT_IMPORT_BATCH=batch or None,
                        CRASHKIT_IMPORT_SLEEP=IMPORT_SLEEP, **extra)


def rng_for(op: str, trial: int) -> random.Random:
    return random.Random(f"{SEED}/{op}/{trial}")


# --------------------------------------------------------------------------- checks


def assert_intact(db: Path, registry: Path) -> None:
    with Store(db, registry=str(registry)) as s:
        assert s.integrity_problems() == []


def assert_whole(rows: dict[str, ck.Row]) -> None:
    """Guarantee 2: every payload's version field says what the version column says."""
    for key, row in rows.items():
        assert json.loads(row.payload).get("schema_version", 1) == row.version, key


def killed_run(db: Path, registry: Path, kill: Kill, kind: str) -> tuple[int | None, str]:
    """The killed process's run (None if it was killed before it made one), and how it
    landed: before the run, mid-run (history says interrupted) or after it finished."""
    raw = ck.run_of_pid(db, kill.pid)
    if raw is None:
        assert kill.ended.killed
        return None, "before-run"
    assert raw["kind"] == kind
    with Store(db, registry=str(registry)) as s:
        info = s.history(raw["id"])[0]
    if raw["finished_at"] is not None:
        assert info.outcome == "ok"
        return raw["id"], "after-finish"
    assert kill.ended.killed
    assert info.outcome == "interrupted", info
    return raw["id"], "interrupted"


def rerun_takes_over(db: Path, registry: Path, run_id: int | None, *args: Any) -> None:
    """Run the command again (fast steps): it takes the stale lock at once, marks the
    killed run interrupted for good, and finishes."""
    finished = run_id is not None and ck.scalar(db, "SELECT finished_at FROM runs WHERE id = ?", run_id) is not None
    done = ck.run_store(db, registry, *args, env=ck.child_env(CRASHKIT_SLEEP="0"))
    assert done.returncode == 0, done.stderr
    assert "busy" not in done.stderr
    assert ck.scalar(db, "SELECT count(*) FROM lock") == 0
    if run_id is not None:
        outcome = ck.scalar(db, "SELECT outcome FROM runs WHERE id = ?", run_id)
        assert outcome == ("ok" if finished else "interrupted")
    with Store(db, registry=str(registry)) as s:
        assert [r.outcome for r in s.history()][-1] == "ok"
        assert all(r.outcome != "running" for r in s.history())
    # A killed import into an empty store may have left its records unindexed.
    assert record_indexes(db) == RECORD_INDEXES


RECORD_INDEXES = {index.name for index in records.indexes}


def record_indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'")}


def backups_by_key(db: Path, run_id: int | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    if run_id is not None:
        for b in ck.backups_of(db, run_id):
            out[b["key"]].append(b)
    return out


def assert_old_or_new(now: dict[str, ck.Row], old: dict[str, ck.Row], new: dict[str, ck.Row],
                      backups: dict[str, list[dict[str, Any]]], reason: str) -> collections.Counter[str]:
    """Each record is its ``old`` row with no backup from the run, or its ``new`` row with
    exactly one backup from the run holding its old payload and version."""
    assert set(now) == set(old), "records lost or added"
    seen: collections.Counter[str] = collections.Counter()
    for key, row in now.items():
        got = backups.get(key, [])
        if old[key] == new[key]:  # nothing to change for this record
            assert row == old[key] and not got, key
            seen["unchanged"] += 1
            continue
        if row == old[key] and not got:
            seen["old"] += 1
            continue
        assert row == new[key], f"{key}: neither its old nor its new row"
        assert len(got) == 1, f"{key}: {len(got)} backups from the run"
        assert (got[0]["payload"], got[0]["version"], got[0]["reason"]) == (old[key].payload, old[key].version, reason)
        seen["new"] += 1
    assert set(backups) <= set(now)
    return seen


def assert_unfinished_files_are_read_again(db: Path, reference_db: Path) -> None:
    """A file whose records are not all as the finished import leaves them must not carry
    the finished import's digest, or the rerun would skip it as unchanged."""
    def by_file(rows: dict[str, ck.Row]) -> dict[str, list[tuple[str, ck.Row]]]:
        out: dict[str, list[tuple[str, ck.Row]]] = collections.defaultdict(list)
        for key, row in sorted(rows.items()):
            out[row.path].append((key, row))
        return out

    now, done = by_file(ck.records_of(db)), by_file(ck.records_of(reference_db))
    final_digest = {path: row[-1] for path, row in ck.files_of(reference_db).items()}
    for path, row in ck.files_of(db).items():
        if now.get(path, []) != done.get(path, []):
            assert row[-1] != final_digest[path], f"{path} is unfinished but looks imported"


def backup_signature(db: Path) -> collections.Counter[tuple[Any, ...]]:
    """Every backup without run ids: what a never-interrupted history would also hold."""
    return collections.Counter((b["key"], b["version"], b["payload"], b["reason"]) for b in ck.backups_of(db))


# --------------------------------------------------------------------------- migrate


@pytest.mark.parametrize("trial", trials("migrate"))
def test_kill_during_migrate(world: World, tmp_path: Path, trial: int, tally: Any) -> None:
    rng = rng_for("migrate", trial)
    db = world.copy(world.imported, tmp_path)
    before, reference = ck.records_of(world.imported), ck.records_of(world.migrated)
    kill = kill_during(db, world.registry, ["migrate"], rng=rng, timing=world.timing["migrate"], env=trial_env(rng),
                       progress=counter(db, "SELECT count(*) FROM backups"), total=len(ck.backups_of(world.migrated)))

    assert_intact(db, world.registry)
    now = ck.records_of(db)
    assert_whole(now)
    run_id, landed = killed_run(db, world.registry, kill, "migrate")
    seen = assert_old_or_new(now, before, reference, backups_by_key(db, run_id), "migrate")
    assert not (landed == "before-run" and seen["new"])
    tally["migrate"][landed] += 1
    if landed == "interrupted" and seen["old"] and seen["new"]:
        tally["migrate"]["half-done"] += 1

    rerun_takes_over(db, world.registry, run_id, "migrate")
    assert ck.records_of(db) == reference
    assert backup_signature(db) == backup_signature(world.migrated)
    assert_intact(db, world.registry)


# --------------------------------------------------------------------------- import


@pytest.mark.parametrize("trial", trials("import"))
def test_kill_during_import(world: World, tmp_path: Path, trial: int, tally: Any) -> None:
    """Even trials import into an empty store (some into no store at all: the kill may hit
    the schema's creation); odd trials re-import an edited home over an imported one, so
    every record changes and gets a backup."""
    rng = rng_for("import", trial)
    fresh = trial % 2 == 0
    if fresh:
        db = tmp_path / "store.db" if trial % 4 == 2 else world.copy(world.empty, tmp_path)
        before: dict[str, ck.Row] = {}
        reference, home, ref_db, timing = ck.records_of(world.imported), world.home, world.imported, "import"
        progress, total = counter(db, "SELECT count(*) FROM records"), len(reference)
    else:
        db = world.copy(world.imported, tmp_path)
        before = ck.records_of(world.imported)
        reference, home, ref_db, timing = ck.records_of(world.updated), world.home2, world.updated, "import2"
        progress, total = counter(db, "SELECT count(*) FROM backups"), len(ck.backups_of(world.updated))
    kill = kill_during(db, world.registry, ["import", home], rng=rng, timing=world.timing[timing], env=trial_env(rng),
                       progress=progress, total=total)

    if db.exists():
        assert_intact(db, world.registry)
        now = ck.records_of(db)
        assert_whole(now)
        run_id, landed = killed_run(db, world.registry, kill, "import")
        assert_unfinished_files_are_read_again(db, ref_db)
        if fresh:
            # whatever went in is whole and exactly as it will finally be; nothing is backed up
            assert set(now) <= set(reference)
            assert all(row == reference[k] for k, row in now.items())
            assert ck.backups_of(db) == []
            seen = collections.Counter(new=len(now), old=len(reference) - len(now))
        else:
            seen = assert_old_or_new(now, before, reference, backups_by_key(db, run_id), "import")
    else:
        run_id, landed, seen = None, "before-store", collections.Counter()
    tally["import"][landed] += 1
    if landed == "interrupted" and seen["old"] and seen["new"]:
        tally["import"]["half-done"] += 1

    rerun_takes_over(db, world.registry, run_id, "import", home)
    assert ck.records_of(db) == reference
    assert ck.files_of(db) == ck.files_of(ref_db)
    assert backup_signature(db) == backup_signature(ref_db)
    assert_intact(db, world.registry)


@pytest.mark.parametrize("trial", range(3))
def test_kill_during_an_import_whose_workers_write(world: World, tmp_path: Path, trial: int) -> None:
    """Into an empty store, the workers write what they parse, each file within one of
    their transactions. Killed once a seeded random share of the records is in (its
    workers end with it, and commit nothing more), the store holds only whole files
    exactly as the finished import has them, and a rerun started at once completes it."""
    rng = rng_for("import-workers", trial)
    db = world.copy(world.empty, tmp_path)
    reference = ck.records_of(world.imported)
    count = counter(db, "SELECT count(*) FROM records")
    target = rng.randint(1, len(reference) - 200)
    # Each file waits 2 ms before it is parsed, so the workers' part lasts about a second,
    # and they commit every 20 records.
    proc = ck.spawn_store(db, world.registry, "import", world.home, "--jobs", "2",
                          env=ck.child_env(CRASHKIT_PARSE_SLEEP="0.002", CRASHKIT_IMPORT_BATCH="20"))
    ck.wait_until(lambda: count() >= target or proc.poll() is not None, timeout=60, interval=0.002)
    ended = ck.kill9(proc)
    assert ended.killed, ended.stderr  # killed mid-run, not after
    turns = Path(f"{db}-turns")
    assert turns.exists()  # the workers' turns, beside the store: the one file a kill leaves
    assert_intact(db, world.registry)
    now = ck.records_of(db)
    assert 0 < len(now) < len(reference)
    assert_whole(now)
    assert all(row == reference[k] for k, row in now.items())
    run_id, landed = killed_run(db, world.registry, Kill(proc.pid, ended, 0.0, "mid-run"), "import")
    assert landed == "interrupted"
    assert_unfinished_files_are_read_again(db, world.imported)
    rerun_takes_over(db, world.registry, run_id, "import", world.home)
    assert not turns.exists()  # the rerun removed it
    assert ck.records_of(db) == reference
    assert ck.files_of(db) == ck.files_of(world.imported)
    assert ck.backups_of(db) == []
    assert_intact(db, world.registry)


# --------------------------------------------------------------------------- restore


@pytest.mark.parametrize("trial", trials("restore"))
def test_kill_during_restore(world: World, tmp_path: Path, trial: int, tally: Any) -> None:
    rng = rng_for("restore", trial)
    db = world.copy(world.migrated, tmp_path)
    before, reference = ck.records_of(world.migrated), ck.records_of(world.restored)
    assert reference == ck.records_of(world.imported)  # the restore undoes the migration
    kill = kill_during(db, world.registry, ["restore", "--run", "2"], rng=rng, timing=world.timing["restore"],
                       env=trial_env(rng))

    assert_intact(db, world.registry)
    now = ck.records_of(db)
    assert_whole(now)
    run_id, landed = killed_run(db, world.registry, kill, "restore")
    seen = assert_old_or_new(now, before, reference, backups_by_key(db, run_id), "restore")
    tally["restore"][landed] += 1
    assert not (seen["new"] and seen["old"]), seen  # a restore is one transaction

    rerun_takes_over(db, world.registry, run_id, "restore", "--run", "2")
    assert ck.records_of(db) == reference
    assert_intact(db, world.registry)


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("trial", trials("export"))
def test_kill_during_export(world: World, tmp_path: Path, trial: int, tally: Any) -> None:
    """Export is a reader: the store is untouched; each file at its target path is complete
    or absent; an export with --force afterwards gives exactly the expected files."""
    rng = rng_for("export", trial)
    db = world.copy(world.migrated, tmp_path)
    out = tmp_path / "out"
    kill_during(db, world.registry, ["export", out], rng=rng, timing=world.timing["export"], env=ck.child_env(),
                started=out.exists, progress=lambda: sum(1 for _ in out.rglob("*.json*")), total=len(world.exported))

    assert_intact(db, world.registry)
    assert ck.records_of(db) == ck.records_of(world.migrated)
    assert {p.name for p in tmp_path.iterdir()} <= {"out", "store.db", "store.db-shm", "store.db-wal"}
    written = ck.tree(out) if out.exists() else {}
    temps = [rel for rel in written if ck.is_temp(rel)]
    for rel, data in written.items():
        if rel in temps:
            assert rel not in world.exported
        else:
            assert data == world.exported[rel], f"{rel} is half-written"
    tally["export"]["complete files"] += len(written) - len(temps)
    tally["export"]["temp files left"] += len(temps)
    tally["export"]["kills"] += 1

    done = ck.run_store(db, world.registry, "export", "--force", out)
    assert done.returncode == 0, done.stderr
    final = ck.tree(out)
    # The rerun writes every file and clears the temp files the killed export left.
    assert final == world.exported


# --------------------------------------------------------------------------- exact crash points


def crash_at(point: str, db: Path, registry: Path, *args: Any, **env: str) -> ck.Ended:
    ended = ck.finish(ck.spawn_store(db, registry, *args, env=ck.child_env(CRASHKIT_CRASH=point, **env)))
    assert ended.returncode == -9, (ended.returncode, ended.stderr)
    return ended


def _processes_naming(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(path).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def last_run(db: Path) -> dict[str, Any]:
    return dict(zip(("id", "kind", "outcome", "finished_at"), _last(db)))


def _last(db: Path) -> tuple[Any, ...]:
    conn = ck._connect(db)
    try:
        return tuple(conn.execute("SELECT id, kind, outcome, finished_at FROM runs ORDER BY id DESC LIMIT 1").fetchone())
    finally:
        conn.close()


def assert_interrupted(db: Path, registry: Path, run_id: int) -> None:
    with Store(db, registry=str(registry)) as s:
        assert s.history(run_id)[0].outcome == "interrupted"


@pytest.mark.parametrize("jobs", ["0", "2"], ids=["in-process", "workers"])
def test_migrate_killed_with_a_batch_written_but_not_committed(world: World, tmp_path: Path, jobs: str) -> None:
    """Killed between a batch's writes and its commit: that batch is rolled back whole,
    and with workers the batches read ahead of it leave no trace."""
    db = world.copy(world.imported, tmp_path)
    before, reference = ck.records_of(world.imported), ck.records_of(world.migrated)
    crash_at(
        "batch-written:3", db, world.registry, "migrate", "--jobs", jobs, CRASHKIT_MIGRATE_BATCH="100", CRASHKIT_SLEEP="0"
    )
    # Its workers went with it (they held its output pipes, so crash_at returned).
    assert not _processes_naming(db)
    run = last_run(db)
    assert_intact(db, world.registry)
    assert_interrupted(db, world.registry, run["id"])
    now = ck.records_of(db)
    seen = assert_old_or_new(now, before, reference, backups_by_key(db, run["id"]), "migrate")
    assert seen["new"] == 200  # two committed batches of 100 notes; the third never was
    rerun_takes_over(db, world.registry, run["id"], "migrate")
    assert ck.records_of(db) == reference
    assert backup_signature(db) == backup_signature(world.migrated)


def test_atomic_migrate_killed_mid_way_changes_nothing(world: World, tmp_path: Path) -> None:
    """``--atomic`` is one transaction: killed after two batches, no record has changed."""
    db = world.copy(world.imported, tmp_path)
    crash_at("batch-written:2", db, world.registry, "migrate", "--atomic", CRASHKIT_MIGRATE_BATCH="200",
             CRASHKIT_SLEEP="0")
    run = last_run(db)
    assert_intact(db, world.registry)
    assert_interrupted(db, world.registry, run["id"])
    assert ck.records_of(db) == ck.records_of(world.imported)
    assert ck.backups_of(db) == []
    rerun_takes_over(db, world.registry, run["id"], "migrate", "--atomic")
    assert ck.records_of(db) == ck.records_of(world.migrated)
    assert backup_signature(db) == backup_signature(world.migrated)


@pytest.mark.parametrize(
    ("args", "source", "reference"),
    [
        (["migrate"], "imported", "migrated"),
        (["import", "HOME2"], "imported", "updated"),
        (["restore", "--run", "2"], "migrated", "restored"),
    ],
    ids=["migrate", "import", "restore"],
)
def test_killed_after_all_work_before_the_run_finished(
    world: World, tmp_path: Path, args: list[str], source: str, reference: str
) -> None:
    """Every batch committed, the run not yet marked finished: the work is all there, the
    run shows as interrupted, and running the same command again succeeds (doing nothing
    harmful) with the same final records."""
    args = [str(world.home2) if a == "HOME2" else a for a in args]
    db = world.copy(getattr(world, source), tmp_path)
    ref = ck.records_of(getattr(world, reference))
    crash_at("before-finish", db, world.registry, *args, CRASHKIT_SLEEP="0")
    run = last_run(db)
    assert run["outcome"] == "running" and run["finished_at"] is None
    assert_intact(db, world.registry)
    assert_interrupted(db, world.registry, run["id"])
    assert ck.records_of(db) == ref
    rerun_takes_over(db, world.registry, run["id"], *args)
    assert ck.records_of(db) == ref
    assert ck.scalar(db, "SELECT outcome FROM runs WHERE id = ?", run["id"]) == "interrupted"


def test_fresh_import_killed_mid_file_then_rerun(world: World, tmp_path: Path) -> None:
    """An import batch can end inside a file: the file's records so far are committed,
    with no layout yet. The rerun completes the file
    and the store equals an import that was never interrupted."""
    db = world.copy(world.empty, tmp_path)
    # Files go in path order: 6 arrays of 50, then 100-line logs, inside which batches of
    # 60 records end (the files are streamed, not parsed whole as tasks); killed before
    # the 8th commit, well inside the logs.
    crash_at(
        "import-commit:8",
        db,
        world.registry,
        "import",
        world.home,
        CRASHKIT_IMPORT_BATCH="60",
        CRASHKIT_TASK_MAX_BYTES="0",
    )
    run = last_run(db)
    assert_intact(db, world.registry)
    assert_interrupted(db, world.registry, run["id"])
    assert record_indexes(db) == set()  # dropped for the bulk import, which never built them
    with Store(db, registry=str(world.registry)) as s:
        assert any("indexes" in p and "not built" in p for p in s.check().problems)
    now, reference = ck.records_of(db), ck.records_of(world.imported)
    assert all(row == reference[k] for k, row in now.items())
    per_file = collections.Counter(row.path for row in now.values())
    partial = [path for path, n in per_file.items() if path.startswith("logs/") and n < 100]
    assert len(partial) == 1, per_file  # part of a file, committed
    assert_unfinished_files_are_read_again(db, world.imported)
    rerun_takes_over(db, world.registry, run["id"], "import", world.home)
    assert ck.records_of(db) == reference
    assert ck.files_of(db) == ck.files_of(world.imported)
    assert ck.backups_of(db) == []
    with Store(db, registry=str(world.registry)) as s:
        assert not any("indexes" in p for p in s.check().problems)


def test_killed_while_creating_the_store_then_rerun(world: World, tmp_path: Path) -> None:
    """The first command on a new store dies with its tables written but not committed:
    the file is left without a schema, and the next command creates it and runs."""
    db = tmp_path / "store.db"
    crash_at("schema-written", db, world.registry, "import", world.home)
    assert db.exists()
    assert ck.scalar(db, "SELECT count(*) FROM sqlite_master") == 0
    rerun_takes_over(db, world.registry, None, "import", world.home)
    assert ck.records_of(db) == ck.records_of(world.imported)
    assert_intact(db, world.registry)


def test_reference_export_has_the_home_layout(world: World) -> None:
    """Sanity for the export trials: the expected files are exactly the home's files, each
    rebuilt from its migrated records."""
    assert set(world.exported) == set(ck.tree(world.home))
    assert not any(ck.is_temp(rel) for rel in world.exported)
