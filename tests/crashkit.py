"""Helpers for the crash and concurrency suites: a bigger home, a registry whose steps do
real (and slow-ish) work, and a way to run the real ``store`` command, kill it with
SIGKILL at a chosen or random moment, and look at the store it left behind.

The registry is written as a file and passed with ``--registry``, so the killed process
loads exactly what a user's would. It reads a few environment variables, all optional:

``CRASHKIT_SLEEP``          seconds each step sleeps (default 0.0005), so runs last long
                            enough to be killed mid-way; ``0`` for a fast rerun.
``CRASHKIT_IMPORT_SLEEP``   seconds each file the importing process writes waits first
                            (default 0; not the files workers write themselves).
``CRASHKIT_PARSE_SLEEP``    seconds each file waits before it is parsed, in whatever
                            process parses it, workers included (default 0).
``CRASHKIT_MIGRATE_BATCH``  rows per migration batch (``recordstore.migrator.BATCH_ROWS``).
``CRASHKIT_IMPORT_BATCH``   records per import batch (``recordstore.parsing.BATCH_RECORDS``).
``CRASHKIT_TASK_MAX_BYTES`` larger files are streamed (``recordstore.parsing.TASK_MAX_BYTES``).
``CRASHKIT_BUSY_TIMEOUT``  seconds a command waits for SQLite's write lock
                            (``recordstore.engine.BUSY_TIMEOUT_S``): a large one makes a
                            command that waits for the lock wait for as long as the
                            holder is held (see ``CRASHKIT_GATE``), so a test can tell
                            "answered at once" from "waited" without timing anything.
``CRASHKIT_GATE``           a path: every step, every imported file and a restore (once it
                            has read its backups) wait until it exists, creating
                            ``PATH.held`` the first time; so a test can hold a writer
                            mid-run for as long as it likes.
``CRASHKIT_CRASH``          ``POINT`` or ``POINT:N``: the process SIGKILLs itself the Nth
                            time (default 1st) it reaches POINT, one of
                            ``before-finish`` (all work committed, run not yet finished),
                            ``batch-written`` (a migration batch written, not committed),
                            ``import-commit`` (an import batch about to commit),
                            ``schema-written`` (a new store's tables created, not committed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE = Path(sys.executable).parent / "store"

REGISTRY_SOURCE = '''\
"""Crash-test registry: three domains, steps that do real work and sleep a little."""

from __future__ import annotations

import hashlib
import os
import signal
import time

from recordstore import Registry

SLEEP = float(os.environ.get("CRASHKIT_SLEEP", "0.0005"))
GATE = os.environ.get("CRASHKIT_GATE")

registry = Registry()
note = registry.domain("note", version=3, files=["notes/*.json"])
event = registry.domain("event", version=2, files=["logs/*.jsonl"])
item = registry.domain("item", version=2, files=["lists/*.json"])


def _pause():
    if GATE and not os.path.exists(GATE):
        open(GATE + ".held", "w").close()
        while not os.path.exists(GATE):
            time.sleep(0.005)
    if SLEEP:
        time.sleep(SLEEP)


@note.step(1)
def note_split_labels(record):
    """v1 -> v2: ``title`` becomes ``name``; the comma-separated ``labels`` a list ``tags``."""
    _pause()
    record["name"] = record.pop("title")
    labels = record.pop("labels", "")
    record["tags"] = [t.strip() for t in labels.split(",") if t.strip()]
    return record


@note.step(2)
def note_add_meta(record):
    """v2 -> v3: author and created move into ``meta``; a word count is added."""
    _pause()
    meta = {"author": record.pop("author", None), "created": record.pop("created", None)}
    record["meta"] = meta
    record["words"] = len(record.get("body", "").split())
    return record


@event.step(1)
def event_rename_ts(record):
    """v1 -> v2: ``ts`` becomes ``timestamp``; a digest of the message is added."""
    _pause()
    record["timestamp"] = record.pop("ts")
    record["digest"] = hashlib.sha1(record["message"].encode("utf-8")).hexdigest()[:12]


@item.step(1)
def item_total(record):
    """v1 -> v2: a total from quantity and price (in cents)."""
    _pause()
    record["total_cents"] = record["qty"] * record["price_cents"]
    return record


def _configure():
    import recordstore.importer
    import recordstore.parsing
    import recordstore.migrator
    import recordstore.runs

    if os.environ.get("CRASHKIT_BUSY_TIMEOUT"):
        import recordstore.engine

        # Read at its use by the engine and the lock (runs imports the name).
        recordstore.engine.BUSY_TIMEOUT_S = recordstore.runs.BUSY_TIMEOUT_S = float(os.environ["CRASHKIT_BUSY_TIMEOUT"])
    if os.environ.get("CRASHKIT_MIGRATE_BATCH"):
        recordstore.migrator.BATCH_ROWS = int(os.environ["CRASHKIT_MIGRATE_BATCH"])
    if os.environ.get("CRASHKIT_IMPORT_BATCH"):
        recordstore.parsing.BATCH_RECORDS = int(os.environ["CRASHKIT_IMPORT_BATCH"])
    if os.environ.get("CRASHKIT_TASK_MAX_BYTES"):
        recordstore.parsing.TASK_MAX_BYTES = int(os.environ["CRASHKIT_TASK_MAX_BYTES"])
    parse_sleep = float(os.environ.get("CRASHKIT_PARSE_SLEEP") or 0)
    if parse_sleep:
        parse_task = recordstore.parsing.parse_task

        def slow_parse_task(task):
            time.sleep(parse_sleep)
            return parse_task(task)

        recordstore.parsing.parse_task = slow_parse_task
    import_sleep = float(os.environ.get("CRASHKIT_IMPORT_SLEEP") or 0)
    if GATE or import_sleep:
        import_one = recordstore.importer.Importer.import_one

        def slow_import_one(self, *args):
            _pause()
            time.sleep(import_sleep)
            return import_one(self, *args)

        recordstore.importer.Importer.import_one = slow_import_one
    if GATE:  # a restore waits between reading its backups and writing
        chosen_backups = recordstore.migrator._chosen_backups

        def gated_chosen_backups(*args, **kwargs):
            out = chosen_backups(*args, **kwargs)
            _pause()
            return out

        recordstore.migrator._chosen_backups = gated_chosen_backups
    crash = os.environ.get("CRASHKIT_CRASH")
    if not crash:
        return
    point, _, nth = crash.partition(":")
    state = {"left": int(nth or 1)}

    def reached():
        state["left"] -= 1
        if state["left"] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    def around(owner, name, before):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if before:
                reached()
            out = original(*args, **kwargs)
            if not before:
                reached()
            return out

        setattr(owner, name, wrapper)

    if point == "before-finish":
        around(recordstore.runs.RunHandle, "finish", before=True)
    elif point == "batch-written":
        around(recordstore.migrator, "_write_batch", before=False)
    elif point == "import-commit":
        importer = recordstore.importer.Importer
        around(importer, "flush" if hasattr(importer, "flush") else "commit", before=True)
    elif point == "schema-written":
        import recordstore.schema

        around(recordstore.schema, "_create_at_head", before=False)
    else:
        raise ValueError(f"unknown crash point {point!r}")


_configure()
'''


# --------------------------------------------------------------------------- the home

WORDS = "alpha beta gamma delta naïve café 日本語 ✓ 🚀 lorem ipsum dolor sit amet".split()


def _pretty(value: Any) -> str:
    # serde_json's pretty style: 2-space indent, raw UTF-8, no trailing newline
    return json.dumps(value, indent=2, ensure_ascii=False)


def make_home(root: Path, *, notes: int = 1200, logs: int = 16, lines: int = 100, lists: int = 8, items: int = 50,
              seed: int = 7) -> Path:
    """Write a home for :data:`REGISTRY_SOURCE`'s registry: one note per file (mostly v1,
    some without a version, some already v2 or current), JSON-lines event logs (v1 with
    some v2 lines), and arrays of items. Deterministic for a given ``seed``."""
    rng = random.Random(seed)
    (root / "notes").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "lists").mkdir()
    for n in range(notes):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
        kind = n % 20
        if kind == 0:  # legacy: no schema_version, so version 1
            rec: dict[str, Any] = {"title": f"note {n}", "labels": "a, b", "author": "ana", "created": n, "body": body}
        elif kind == 1:  # already v2
            rec = {"schema_version": 2, "name": f"note {n}", "tags": ["x"], "author": "bo", "created": n, "body": body}
        elif kind == 2:  # current: never touched
            rec = {"schema_version": 3, "name": f"note {n}", "tags": [], "meta": {"author": "cy", "created": n},
                   "words": len(body.split()), "body": body}
        else:
            rec = {"schema_version": 1, "title": f"note {n}", "labels": ",".join(rng.sample(WORDS, 3)),
                   "author": rng.choice(["ana", "bo", "cy"]), "created": n, "body": body,
                   "big": 18446744073709551615 + n, "ratio": 0.1 * (n % 7)}
        (root / "notes" / f"{n:05d}.json").write_text(_pretty(rec), encoding="utf-8")
    for f in range(logs):
        out = []
        for i in range(lines):
            if i % 10 == 9:
                rec = {"schema_version": 2, "timestamp": i, "message": f"log {f} line {i} ✓", "digest": "0"}
            else:
                rec = {"schema_version": 1, "ts": 1_700_000_000 + i, "message": f"log {f} line {i} {rng.choice(WORDS)}"}
            out.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        (root / "logs" / f"log_{f:03d}.jsonl").write_text("".join(out), encoding="utf-8")
    for f in range(lists):
        arr = [{"schema_version": 1, "sku": f"s{f}-{i}", "qty": rng.randint(1, 9), "price_cents": rng.randint(1, 9999)}
               for i in range(items)]
        (root / "lists" / f"list_{f:03d}.json").write_text(_pretty(arr), encoding="utf-8")
    return root


def edit_home(src: Path, dst: Path) -> Path:
    """A copy of ``src`` in which every record changed (so a re-import updates them all,
    each with a backup of its previous row)."""
    shutil.copytree(src, dst)
    for path in sorted((dst / "notes").glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        rec["body"] = rec["body"] + " (edited)"
        path.write_text(_pretty(rec), encoding="utf-8")
    for path in sorted((dst / "logs").glob("*.jsonl")):
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            rec["message"] += " (edited)"
            out.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        path.write_text("".join(out), encoding="utf-8")
    for path in sorted((dst / "lists").glob("*.json")):
        arr = json.loads(path.read_text(encoding="utf-8"))
        for rec in arr:
            rec["qty"] += 1
        path.write_text(_pretty(arr), encoding="utf-8")
    return dst


def write_registry(path: Path) -> Path:
    path.write_text(REGISTRY_SOURCE, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- running the CLI


def store_argv(db: Path, registry: Path | None, *args: str | os.PathLike[str]) -> list[str]:
    argv = [str(STORE), "--db", str(db)]
    if registry is not None:
        argv += ["--registry", str(registry)]
    return argv + [str(a) for a in args]


def child_env(**extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRASHKIT_", "STORE_"))}
    for k, v in extra.items():
        if v is not None:
            env[k] = str(v)
    return env


def run_store(db: Path, registry: Path | None, *args: str | os.PathLike[str], env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(store_argv(db, registry, *args), env=env or child_env(), capture_output=True, text=True,
                          timeout=timeout)


def spawn_store(db: Path, registry: Path | None, *args: str | os.PathLike[str],
                env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(store_argv(db, registry, *args), env=env or child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@dataclass
class Ended:
    """How a child ended: its exit code (``-9`` when killed), output, and whether our
    SIGKILL reached it while it was still running."""

    returncode: int
    stdout: str
    stderr: str
    killed: bool


def kill9(proc: subprocess.Popen[str]) -> Ended:
    """SIGKILL ``proc`` (if it is still running) and reap it."""
    killed = False
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=60)  # waits: the pid is reaped
    return Ended(proc.returncode, out, err, killed and proc.returncode == -signal.SIGKILL)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Ended:
    out, err = proc.communicate(timeout=timeout)
    return Ended(proc.returncode, out, err, False)


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------- reading a store


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def run_of_pid(db: Path, pid: int) -> dict[str, Any] | None:
    """The run row a process created, if it got that far (read without any lock)."""
    if not db.exists():
        return None
    try:
        conn = _connect(db)
        try:
            row = conn.execute("SELECT * FROM runs WHERE pid = ? ORDER BY id DESC LIMIT 1", (pid,)).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet, or the schema is not there yet
        return None
    return dict(row) if row is not None else None


@dataclass(frozen=True)
class Row:
    domain: str
    version: int
    payload: str
    path: str
    position: int


def records_of(db: Path) -> dict[str, Row]:
    """key -> the record's row (with its file's path): what a user would call the state."""
    conn = _connect(db)
    try:
        rows = conn.execute(
            "SELECT r.key, r.domain, r.version, r.payload, f.path, r.position FROM records r "
            "JOIN files f ON f.id = r.file_id"
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, Row] = {}
    for r in rows:
        assert r["key"] not in out, f"duplicate key {r['key']}"
        out[r["key"]] = Row(r["domain"], r["version"], r["payload"], r["path"], r["position"])
    return out


def files_of(db: Path) -> dict[str, tuple[Any, ...]]:
    conn = _connect(db)
    try:
        rows = conn.execute("SELECT path, domain, container, head, sep, tail, indent, digest FROM files").fetchall()
    finally:
        conn.close()
    return {r["path"]: tuple(r) for r in rows}


def backups_of(db: Path, run_id: int | None = None) -> list[dict[str, Any]]:
    conn = _connect(db)
    try:
        if run_id is None:
            rows = conn.execute("SELECT * FROM backups ORDER BY id").fetchall()
        else:
            rows = conn.execute("SELECT * FROM backups WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def scalar(db: Path, sql: str, *params: Any) -> Any:
    conn = _connect(db)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def copy_store(src: Path, dst: Path) -> Path:
    """Copy a closed store (its file, and its WAL should one be left)."""
    for suffix in ("", "-wal", "-shm"):
        s = Path(f"{src}{suffix}")
        if s.exists():
            shutil.copyfile(s, f"{dst}{suffix}")
    return dst


def checkpoint(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def is_temp(relpath: str) -> bool:
    """An exporter's temporary file (``.NAME.….rstmp``, or ``.NAME.….tmp`` before)."""
    name = relpath.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith((".tmp", ".rstmp"))
