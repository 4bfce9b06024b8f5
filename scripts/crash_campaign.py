#!/usr/bin/env python3
"""A randomized crash campaign, run by hand (not part of the test suite).

    python scripts/crash_campaign.py --workdir /tmp/cc                   # every operation, SIGKILL
    python scripts/crash_campaign.py --workdir /tmp/cc --signal INT      # Ctrl-C instead
    python scripts/crash_campaign.py --workdir /tmp/cc --ops migrate-slow --trials 30 --seed 5
    python scripts/crash_campaign.py --workdir /tmp/cc --victim worker --ops reimport,migrate-slow

It generates a DeepSeek-style home with ``scripts/bench.py``'s generator (``--records``,
default 4,000) and builds reference stores by uninterrupted runs of the real ``store``
command with ``scripts/bench_registry.py``: ``import`` (run 1), ``migrate`` (run 2),
``restore --run 2``, ``prune-backups --before 3``, a re-import of an edited copy of the
home, and ``export``. Then, for each trial, it copies the state an operation starts
from, starts the operation (``--jobs 0`` or ``--jobs 2`` at random where it takes one),
sends it the signal after a random 0–800 ms (``--max-delay``), counted from its start
or, in half the trials (``--from-run``), from the moment its run appears in the store
(an export's: its directory), so that kills land in the work and not only in start-up;
and then:

* checks that the store is sound (``store check``: integrity, no lock left behind once
  the next command ran) and that every record's version is its payload's;
* with ``--signal INT``: that the command exited 130 (or 0, had it finished) with a
  one-line message, and left no worker behind; with ``--victim worker`` (one worker
  SIGKILLed, as the OOM killer would): that the command ended, with exit 3 and one line
  (or 0, had it finished);
* runs the same command again to completion and compares the store with the
  reference: the records (domain, key, version, payload), the backups (key, version,
  payload, reason, ignoring run ids), the files rows, the refused texts, ``store
  status``, and the counts in the history (the killed run's and the rerun's must add up
  to the uninterrupted run's, but for what the rerun found done: ``unchanged``); for
  export, the files written (each complete, none missing, no temporary file left).
  ``store check`` may report, right after the kill, a first import's indexes not
  built yet (the next writer builds them) and the lock a killed command left (the next
  writer takes it over), and a store file left empty by a first import killed early is
  no store yet; all three are what the README says.

``migrate-slow`` migrates crashkit's home (tests/crashkit.py) with its registry, whose
steps sleep 5 ms each (``CRASHKIT_SLEEP``), so kills land inside slow steps.

A trial that fails prints what differed and keeps its directory (``WORKDIR/fail-…``);
the exit code is 1 if any did. What it found became tests/test_crash_campaign.py. One
thing it reports is Python's and not ours: Ctrl-C within the interpreter's first
~20 ms (``site`` loading) gives Python's own traceback, before any recordstore code.
A trial takes 5–15 s (10 trials of the seven operations: ~15 minutes at 4,000 records);
the machine is shared, so keep ``--records`` and ``--trials`` modest. Each trial draws its numbers from ``--seed`` and its
index, so ``--only OP:N`` repeats one (timing still varies with the machine's load).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import bench  # noqa: E402
import crashkit as ck  # noqa: E402

BENCH_REGISTRY = HERE / "bench_registry.py"
STORE = [sys.executable, "-m", "recordstore"]
OPS = ("import", "reimport", "migrate", "migrate-slow", "restore", "prune", "export")


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("CRASHKIT_", "STORE_"))}
    out.update(extra)
    return out


def argv(db: Path, registry: Path, *args: Any) -> list[str]:
    return [*STORE, "-q", "--db", str(db), "--registry", str(registry), *(str(a) for a in args)]


def run(db: Path, registry: Path, *args: Any, extra_env: dict[str, str] | None = None,
        ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv(db, registry, *args), env=env(**(extra_env or {})), capture_output=True, text=True,
                          timeout=600)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {done.returncode}: {done.stderr.strip()}")
    return done


def copy_store(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / "store.db"
    if src.exists():
        ck.copy_store(src, dst)
    return dst


def checkpoint(db: Path) -> None:
    ck.checkpoint(db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def edit_home(src: Path, dst: Path, rng: random.Random) -> None:
    """A copy of the home in which about a third of the one-record files changed."""
    shutil.copytree(src, dst)
    for path in sorted(dst.rglob("*.json")):
        if rng.random() < 0.33:
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if isinstance(value, dict) and "schema_version" in value:
                value["edited"] = True
                path.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")


# --------------------------------------------------------------------------- the state of a store


def state(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = conn.execute
        return {
            "records": sorted(q("SELECT domain, key, version, payload FROM records")),
            "backups": collections.Counter(q("SELECT key, version, payload, reason FROM backups")),
            "files": sorted(q("SELECT path, domain, container, head, sep, tail, indent, digest FROM files")),
            "refused": sorted(q("SELECT key, position, text FROM refused")) if _has(conn, "refused") else [],
            "lock": q("SELECT count(*) FROM lock").fetchone()[0],
            "running": q("SELECT count(*) FROM runs WHERE outcome = 'running'").fetchone()[0],
            "kinds": collections.Counter(k for (k,) in q("SELECT kind FROM runs WHERE outcome = 'ok'")),
        }
    finally:
        conn.close()


#: Counts a rerun adds to by its nature (what it found already done), or that say which
#: run or bound it was given.
NOT_SUMMED = {"unchanged", "files", "run", "before", "from_run", "skipped"}


def run_counts(db: Path, after: int) -> collections.Counter[str]:
    """The numbers in the counts of the runs after run ``after``, summed by their path
    (``migrate/migrated/note/1->3``): the killed run's and its rerun's must add up to
    the uninterrupted run's."""
    total: collections.Counter[str] = collections.Counter()

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in NOT_SUMMED:
                    walk(f"{prefix}/{k}", v)
        elif isinstance(value, int) and not isinstance(value, bool) and value:
            total[prefix] += value

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for kind, counts in conn.execute("SELECT kind, counts FROM runs WHERE id > ?", (after,)):
            counts = json.loads(counts)
            if kind == "import":
                # A killed import's history says what it stored (new or updated), by domain.
                for domain, n in (counts.pop("stored", None) or {}).items():
                    total[f"import/written/{domain}"] += n
                for domain, c in (counts.get("domains") or {}).items():
                    total[f"import/written/{domain}"] += c.pop("imported", 0) + c.pop("updated", 0)
            walk(kind, counts)
    finally:
        conn.close()
    return total


def last_run(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT max(id) FROM runs").fetchone()[0] or 0)
    finally:
        conn.close()


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None


def status(db: Path, registry: Path) -> str:
    return run(db, registry, "status", "--json").stdout


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out = []
    for name in ("records", "backups", "files", "refused"):
        if got[name] != want[name]:
            if isinstance(got[name], collections.Counter):
                extra, missing = got[name] - want[name], want[name] - got[name]
            else:
                g, w = collections.Counter(got[name]), collections.Counter(want[name])
                extra, missing = g - w, w - g
            out.append(f"{name}: {sum(extra.values())} extra, {sum(missing.values())} missing; "
                       f"e.g. extra {str(next(iter(extra), None))[:200]} missing {str(next(iter(missing), None))[:200]}")
    if got["lock"] or got["running"]:
        out.append(f"lock rows {got['lock']}, runs still 'running' {got['running']}")
    return out


def whole_versions(db: Path, version_field: str = "schema_version") -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        bad = []
        for key, version, payload in conn.execute("SELECT key, version, payload FROM records"):
            if json.loads(payload).get(version_field, 1) != version:
                bad.append(f"{key}: version {version}, payload says {json.loads(payload).get(version_field)}")
        return bad[:5]
    finally:
        conn.close()


def tree(root: Path) -> dict[str, bytes]:
    return ck.tree(root) if root.exists() else {}


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def live_processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes() and int(entry.name) != os.getpid():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


# --------------------------------------------------------------------------- the world


class World:
    def __init__(self, workdir: Path, records: int) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.home = workdir / "home"
        bench.generate_home(self.home, records, 42, bench.load_bench_registry(BENCH_REGISTRY).CURRENT)
        self.home2 = workdir / "home2"
        if not self.home2.exists():
            edit_home(self.home, self.home2, random.Random(1))
        self.reg = BENCH_REGISTRY
        ref = workdir / "ref"
        if ref.exists():
            shutil.rmtree(ref)
        ref.mkdir()
        self.imported = ref / "imported" / "store.db"
        self.imported.parent.mkdir()
        run(self.imported, self.reg, "import", self.home, ok=(0, 1))
        checkpoint(self.imported)
        self.migrated = copy_store(self.imported, ref / "migrated")
        run(self.migrated, self.reg, "migrate")
        checkpoint(self.migrated)
        self.restored = copy_store(self.migrated, ref / "restored")
        run(self.restored, self.reg, "restore", "--run", "2")
        self.pruned = copy_store(self.migrated, ref / "pruned")
        run(self.pruned, self.reg, "prune-backups", "--before", "3")
        self.updated = copy_store(self.imported, ref / "updated")
        run(self.updated, self.reg, "import", self.home2, ok=(0, 1))
        self.exported = ref / "exported"
        run(self.migrated, self.reg, "export", self.exported)
        # crashkit's world: steps that sleep
        self.ck_home = workdir / "ckhome"
        if not self.ck_home.exists():
            ck.make_home(self.ck_home, notes=600, logs=8, lines=100, lists=6, items=50)
        self.ck_reg = ck.write_registry(workdir / "ck_registry.py")
        self.ck_imported = ref / "ck_imported" / "store.db"
        self.ck_imported.parent.mkdir()
        run(self.ck_imported, self.ck_reg, "import", self.ck_home, extra_env={"CRASHKIT_SLEEP": "0"})
        checkpoint(self.ck_imported)
        self.ck_migrated = copy_store(self.ck_imported, ref / "ck_migrated")
        run(self.ck_migrated, self.ck_reg, "migrate", extra_env={"CRASHKIT_SLEEP": "0"})

    def op(self, name: str) -> tuple[Path | None, Path, Path, list[Any], bool, dict[str, str]]:
        """(start state, reference, registry, args, takes --jobs, env) of an operation."""
        if name == "import":
            return None, self.imported, self.reg, ["import", self.home], True, {}
        if name == "reimport":
            return self.imported, self.updated, self.reg, ["import", self.home2], True, {}
        if name == "migrate":
            return self.imported, self.migrated, self.reg, ["migrate"], True, {}
        if name == "migrate-slow":
            return self.ck_imported, self.ck_migrated, self.ck_reg, ["migrate"], True, {"CRASHKIT_SLEEP": "0.005"}
        if name == "restore":
            return self.migrated, self.restored, self.reg, ["restore", "--run", "2"], False, {}
        if name == "prune":
            return self.migrated, self.pruned, self.reg, ["prune-backups", "--before", "3"], False, {}
        if name == "export":
            return self.migrated, self.migrated, self.reg, ["export", "OUT"], False, {}
        raise ValueError(name)


# --------------------------------------------------------------------------- one trial


def trial(world: World, name: str, n: int, args_: argparse.Namespace) -> list[str]:
    rng = random.Random(f"{args_.seed}/{name}/{n}")
    start, reference, registry, args, takes_jobs, extra = world.op(name)
    tdir = world.dir / "trials" / f"{name}-{n}"
    if tdir.exists():
        shutil.rmtree(tdir)
    tdir.mkdir(parents=True)
    db = copy_store(start, tdir) if start is not None else tdir / "store.db"
    out = tdir / "out"
    args = [out if a == "OUT" else a for a in args]
    if takes_jobs:
        args += ["--jobs", rng.choice(["0", "2"])]
    if name == "export" and rng.random() < 0.5:  # over a partial, older export
        shutil.copytree(world.exported, out)
        for p in sorted(out.rglob("*")):
            if p.is_file() and rng.random() < 0.5:
                p.write_bytes(b"old")
        args.insert(1, "--force")
    delay = rng.uniform(0, args_.max_delay)
    sig = signal.SIGKILL if args_.signal == "KILL" else signal.SIGINT
    proc = subprocess.Popen(argv(db, registry, *args), env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    anchor = "spawn"
    if rng.random() < args_.from_run:  # counted from the run's start (an export's: its directory's)
        anchor = "run"
        started = (lambda: out.exists()) if name == "export" else (lambda: _runs_of(db, proc.pid))
        ck.wait_until(lambda: proc.poll() is not None or started(), timeout=60, interval=0.002)
    time.sleep(delay)
    sent = proc.poll() is None
    if sent and args_.victim == "worker":  # the OOM killer's choice: one worker, not the command
        workers = children(proc.pid)
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
        else:
            sent = False
    elif sent:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        else:
            os.kill(proc.pid, signal.SIGKILL)  # the command alone: its workers must notice
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return [f"did not end within 120 s of {args_.signal}"]
    problems: list[str] = []
    code = proc.returncode
    label = f"{' '.join(map(str, args)).replace(str(tdir), '')} {anchor}+{delay:.3f} exit={code}"
    if sig == signal.SIGINT:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if code not in (0, 1, 130):
            problems.append(f"Ctrl-C: exit {code}, stderr {stderr.strip()[-500:]!r}")
        elif code == 130 and len(lines) != 1:
            problems.append(f"Ctrl-C: {len(lines)} lines on stderr: {stderr.strip()[-800:]!r}")
    elif args_.victim == "worker":
        lines = [line for line in stderr.splitlines() if line.strip()]
        if code not in (0, 1, 3) or (code == 3 and (len(lines) != 1 or "worker process" not in lines[0])):
            problems.append(f"a worker killed: exit {code}, stderr {stderr.strip()[-800:]!r}")
    elif code not in (0, 1, -9):
        problems.append(f"exit {code}: {stderr.strip()[-500:]!r}")
    # workers gone with their command (give them a moment: they poll their parent)
    deadline = time.monotonic() + 5
    while live_processes_naming(str(db)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if live_processes_naming(str(db)):
        problems.append(f"processes left behind: {live_processes_naming(str(db))}")
    # an export's files: each whole, or absent / the old one
    if name == "export":
        for rel, data in tree(out).items():
            ref = (world.exported / rel)
            if ck.is_temp(rel):
                continue
            if not ref.exists():
                problems.append(f"export wrote {rel}, which the reference has not")
            elif data not in (ref.read_bytes(), b"old"):
                problems.append(f"export left {rel} half-written ({len(data)} bytes)")
    if db.exists():
        if name != "export" and db.stat().st_size:
            bad = whole_versions(db) if _schema_there(db) else []
            problems += [f"not whole: {b}" for b in bad]
        chk = subprocess.run(argv(db, registry, "check"), env=env(), capture_output=True, text=True)
        empty = db.stat().st_size == 0 and "the file is empty" in chk.stderr  # a first import killed early
        said = [line for line in (chk.stdout + chk.stderr).splitlines() if line.startswith("problem:")]
        killed = sig == signal.SIGKILL and args_.victim == "command" and code == -9
        # Said so, and mended by the next writer: a first import's indexes not built yet,
        # and (the command killed outright) the lock it left, taken over next.
        expected = said and all(
            ("indexes" in line and "are not built" in line)
            or (killed and "stopped before it finished" in line and "is gone" in line)
            for line in said
        )
        if chk.returncode != 0 and not (empty or expected):
            problems.append(f"check after the signal exited {chk.returncode}: {(chk.stdout + chk.stderr).strip()[-600:]!r}")
    # the same command again, to completion
    again = subprocess.run(argv(db, registry, *args[:1], *(["--force"] if name == "export" and "--force" not in args else []),
                                *args[1:]), env=env(), capture_output=True, text=True, timeout=600)
    if again.returncode not in (0, 1) or (again.returncode == 1 and name not in ("import", "reimport")):
        problems.append(f"rerun exited {again.returncode}: {again.stderr.strip()[-600:]!r}")
    elif again.returncode == 1 and "busy" in again.stderr:
        problems.append(f"rerun busy: {again.stderr.strip()!r}")
    if name == "import":  # the reference's refusals are the same lines
        pass
    got, want = state(db), state(reference)
    problems += differences(got, want)
    if name != "export":
        since = last_run(start) if start is not None else 0
        got_counts, want_counts = run_counts(db, since), run_counts(reference, since)
        if got_counts != want_counts:
            problems.append(f"history counts: {dict(got_counts - want_counts)} more, {dict(want_counts - got_counts)} fewer")
    if status(db, registry) != status(reference, registry):
        problems.append("status differs")
    chk = subprocess.run(argv(db, registry, "check"), env=env(), capture_output=True, text=True)
    if chk.returncode != 0:
        problems.append(f"check after the rerun exited {chk.returncode}: {(chk.stdout + chk.stderr).strip()[-600:]!r}")
    if name == "export":
        got_tree = tree(out)
        want_tree = tree(world.exported)
        if got_tree != want_tree:
            diff = sorted(set(got_tree) ^ set(want_tree)) + [k for k in got_tree if k in want_tree and got_tree[k] != want_tree[k]]
            problems.append(f"export differs after the rerun: {diff[:5]}")
    else:
        ex = tdir / "ex"
        run(db, registry, "export", ex)
        ref_ex = tdir / "ref_ex"
        run(reference, registry, "export", ref_ex)
        if tree(ex) != tree(ref_ex):
            problems.append("export of the finished store differs from the reference's")
    outcome = "before-run" if code != 0 and not _runs_of(db, proc.pid) else ("finished" if code == 0 else "mid-run")
    print(f"{name:12} #{n:<3} {label[:70]:70} {outcome:10} {'FAIL' if problems else 'ok'}", flush=True)
    if problems:
        keep = world.dir / f"fail-{name}-{n}"
        if keep.exists():
            shutil.rmtree(keep)
        shutil.move(str(tdir), keep)
        (keep / "problems.txt").write_text("\n".join([label, "stdout: " + stdout, "stderr: " + stderr, *problems]))
        for p in problems:
            print("    " + p, flush=True)
    else:
        shutil.rmtree(tdir)
    return problems


def _schema_there(db: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return _has(conn, "records")
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _runs_of(db: Path, pid: int) -> bool:
    return ck.run_of_pid(db, pid) is not None


def main(argv_: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--records", type=int, default=4000)
    p.add_argument("--trials", type=int, default=10, help="per operation")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--signal", choices=("KILL", "INT"), default="KILL")
    p.add_argument("--victim", choices=("command", "worker"), default="command",
                   help="what is signalled: the command, or (SIGKILL) one of its worker processes, as the OOM "
                   "killer would (only trials with --jobs 2 that have one by then)")
    p.add_argument("--max-delay", type=float, default=0.8, help="seconds (default 0.8)")
    p.add_argument("--from-run", type=float, default=0.5,
                   help="share of the trials whose delay counts from the run's start, not the spawn (default 0.5)")
    p.add_argument("--seed", default="1")
    p.add_argument("--only", help="OP:N, one trial")
    a = p.parse_args(argv_)
    world = World(a.workdir, a.records)
    failed = 0
    if a.only:
        name, _, n = a.only.partition(":")
        return 1 if trial(world, name, int(n), a) else 0
    for n in range(a.trials):
        for name in a.ops.split(","):
            failed += bool(trial(world, name, n, a))
    print(f"{failed} trial(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
