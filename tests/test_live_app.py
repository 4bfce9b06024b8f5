"""recordstore run beside the application that writes the records.

DeepSeek TUI keeps writing its home while a user imports it, exports over it and queries
it: it appends JSON lines to its events logs (a line may be half-written at any
instant), writes sessions and tasks to a temporary file renamed over the old one,
creates thread, turn and item files, and deletes old sessions. ``AppWriter`` does that
in a loop on a generated home while imports run; once it stops (its lines finished), one
more import must leave the store holding exactly what the home holds.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import tree

from recordstore import Store

NOW = "2026-05-02T15:20:11.482913004Z"


def pretty(obj: dict[str, Any]) -> bytes:
    """The application's pretty style: 2-space indent, UTF-8, no trailing newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


def line(obj: dict[str, Any]) -> bytes:
    """The application's JSON lines: compact, one a line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def session(sid: str, n: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "metadata": {"id": sid, "title": f"Session {sid[:8]} ✓", "created_at": NOW, "updated_at": NOW,
                     "message_count": n, "total_tokens": 18342 + n, "model": "deepseek-v4-pro",
                     "workspace": "/home/alice/proj", "mode": "agent"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"message {i}"}]} for i in range(n)],
        "system_prompt": None,
    }


def task(tid: str, n: int) -> dict[str, Any]:
    return {"schema_version": 2, "id": tid, "prompt": "Run cargo test", "status": "running" if n % 3 else "completed",
            "created_at": NOW, "duration_ms": 9500 + n, "runtime_event_count": n,
            "timeline": [{"timestamp": NOW, "kind": "queued", "summary": f"step {i}"} for i in range(n % 5)]}


def event(thread: str, seq: int) -> dict[str, Any]:
    return {"schema_version": 2, "seq": seq, "timestamp": NOW, "thread_id": thread, "turn_id": f"turn_{seq:08x}",
            "item_id": f"item_{seq:08x}", "event": "item.started",
            "payload": {"item": {"schema_version": 2, "id": f"item_{seq:08x}", "kind": "command_execution",
                                 "status": "in_progress", "detail": "x" * (seq % 200)}}}


class AppWriter(threading.Thread):
    """The application at work on ``home``: each step one of its writes, chosen at
    random. An events line, or a new item file, is written in two parts with steps
    between them, so an import may find it half-written; ``stop()`` finishes them, as
    the application does."""

    def __init__(self, home: Path, seed: int, threads: int = 3, sessions: int = 6, tasks: int = 6):
        super().__init__(daemon=True)
        self.home = home
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.error: Exception | None = None
        self.steps = 0
        self.seq = 0
        self.threads = [f"thr_{i:08x}" for i in range(threads)]
        self.partial: dict[Path, bytes] = {}  # a file begun -> the rest of it, not written yet
        self.sessions: list[str] = []
        self.deleted: set[str] = set()
        for d in ("sessions/checkpoints", "tasks/runtime/events", "tasks/runtime/threads", "tasks/runtime/turns",
                  "tasks/runtime/items", "tasks/tasks"):
            (home / d).mkdir(parents=True, exist_ok=True)
        for _ in range(sessions):
            self.new_session()
        for i in range(tasks):
            self.replace(home / f"tasks/tasks/task_{i:08x}.json", pretty(task(f"task_{i:08x}", 0)))
        for thr in self.threads:
            self.new_thread(thr)
            for _ in range(3):
                self.append_event(thr, whole=True)
        self.replace(home / "tasks/runtime/state.json", pretty({"schema_version": 2, "next_seq": self.seq + 1}))
        (home / "tasks/queue.json").write_text('{"queue": []}')

    def replace(self, path: Path, data: bytes) -> None:
        """Write a temporary file beside ``path`` and rename it over it."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def new_session(self) -> None:
        sid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.sessions.append(sid)
        self.replace(self.home / f"sessions/{sid}.json", pretty(session(sid, 1)))

    def new_thread(self, thr: str) -> None:
        self.replace(self.home / f"tasks/runtime/threads/{thr}.json",
                     pretty({"schema_version": 2, "id": thr, "created_at": NOW, "archived": False}))

    def append_event(self, thr: str, whole: bool = False) -> None:
        path = self.home / f"tasks/runtime/events/{thr}.jsonl"
        if self.finish(path):  # the line begun before
            return
        self.seq += 1
        text = line(event(thr, self.seq))
        cut = len(text) if whole else self.rng.randrange(1, len(text) + 1)
        with open(path, "ab") as f:
            f.write(text[:cut])
        if cut < len(text):
            self.partial[path] = text[cut:]

    def finish(self, path: Path) -> bool:
        """Write the rest of what was begun at ``path``, if anything was."""
        rest = self.partial.pop(path, None)
        if rest is None:
            return False
        with open(path, "ab") as f:
            f.write(rest)
        return True

    def step(self) -> None:
        rng = self.rng
        what = rng.random()
        items = [p for p in self.partial if p.suffix == ".json"]
        if items and what < 0.05:
            self.finish(items[0])
        elif what < 0.45:
            self.append_event(rng.choice(self.threads))
        elif what < 0.6:
            sid = rng.choice(self.sessions)
            self.replace(self.home / f"sessions/{sid}.json", pretty(session(sid, rng.randrange(1, 12))))
        elif what < 0.72:
            tid = rng.randrange(6)
            self.replace(self.home / f"tasks/tasks/task_{tid:08x}.json", pretty(task(f"task_{tid:08x}", rng.randrange(50))))
        elif what < 0.8:
            n = self.seq
            self.replace(self.home / f"tasks/runtime/turns/turn_{n:08x}.json",
                         pretty({"schema_version": 2, "id": f"turn_{n:08x}", "thread_id": rng.choice(self.threads),
                                 "status": "completed", "item_ids": [f"item_{n:08x}"]}))
            # An item is written in place, in two parts: an import may find it empty
            # or cut short (refused, its text kept) until a later step finishes it.
            item = pretty({"schema_version": 2, "id": f"item_{n:08x}", "turn_id": f"turn_{n:08x}",
                           "kind": "command_execution", "status": "completed"})
            path = self.home / f"tasks/runtime/items/item_{n:08x}.json"
            if path not in self.partial:
                cut = rng.randrange(len(item))
                path.write_bytes(item[:cut])
                self.partial[path] = item[cut:]
        elif what < 0.86:
            self.replace(self.home / "tasks/runtime/state.json", pretty({"schema_version": 2, "next_seq": self.seq + 1}))
        elif what < 0.93:
            self.new_session()
        elif len(self.sessions) > 3:
            sid = self.sessions.pop(rng.randrange(len(self.sessions)))
            (self.home / f"sessions/{sid}.json").unlink()
            self.deleted.add(f"sessions/{sid}.json")

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.step()
                self.steps += 1
                self.halt.wait(0.0005 * self.rng.random())
        except Exception as exc:  # noqa: BLE001 (any: stop() fails the test with it)
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        assert not self.is_alive()
        assert self.error is None, self.error
        for path in list(self.partial):  # the application finishes what it began
            self.finish(path)


def record_files(root: Path) -> dict[str, bytes]:
    """The home's record files (those of a domain), by path, with their bytes."""
    return {p: b for p, b in tree(root).items() if p != "tasks/queue.json" and not Path(p).name.startswith(".")}


def check_store_holds(store: Store, home: Path, writer: AppWriter, tmp_path: Path) -> None:
    """What a user relies on once the application stopped and one more import ran."""
    on_disk = record_files(home)
    keys = [(r.domain, r.key) for r in store.query().all()]
    assert len(keys) == len(set(keys)), "a record is stored twice"
    for path, data in on_disk.items():
        if path.endswith(".jsonl"):
            lines = data.split(b"\n")[:-1]
            for n, text in enumerate(lines, 1):
                got = store.get("runtime", f"{path}:{n}")
                assert got is not None, f"{path}:{n} is missing"
                assert got.text.encode() == text
            assert store.get("runtime", f"{path}:{len(lines) + 1}") is None
        else:
            domain = "session" if path.startswith("sessions/") else "task" if path.startswith("tasks/tasks/") else "runtime"
            got = store.get(domain, path)
            assert got is not None, f"{path} is missing"
            assert got.text.encode() == data, path
    assert sum(d.refused for d in store.status().domains.values()) == 0
    assert store.check().ok, store.check().problems
    out = tmp_path / "exported"
    store.export_to(out)
    exported = record_files(out)
    # The sessions the application deleted stay in the store (an import never deletes by
    # absence); every other file comes back byte for byte.
    assert set(exported) - set(on_disk) <= writer.deleted
    assert {p: b for p, b in exported.items() if p in on_disk} == on_disk


def store_command(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``store --db DB ARGS``, run as a user runs it (its own process)."""
    return subprocess.run(
        [sys.executable, "-m", "recordstore", "--db", str(db), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def said_something_true(run: subprocess.CompletedProcess[str]) -> None:
    """An import beside the application exits 0, or 1 for a line it is writing or a file
    changed under the reader, and says so; never a traceback or an internal error."""
    assert run.returncode in (0, 1), (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    if run.returncode == 1:
        problems = [ln for ln in run.stderr.splitlines() if "events/" in ln or "items/" in ln or "changed while" in ln]
        assert problems, run.stderr


def run_beside(
    tmp_path: Path, jobs: int | None, imports: int, seed: int, commands: int = 2, export: bool = False, **app: int
) -> None:
    home = tmp_path / ".deepseek"
    writer = AppWriter(home, seed, **app)
    db = tmp_path / "store.db"
    store = Store(db)
    writer.start()
    try:
        for n in range(imports):
            result = store.import_paths(home, jobs=jobs)
            for problem in result.problems:
                text = str(problem)
                # Only the line the application is writing, or a file changed under the
                # reader, is a problem; never an internal error.
                assert "events/" in text or "items/" in text or "changed while being imported" in text, text
            # A query meanwhile sees a consistent store.
            keys = [(r.domain, r.key) for r in store.query().all()]
            assert len(keys) == len(set(keys))
            if export:  # over the home, while the application writes it
                exported = store.export_to(home, overwrite=True)
                assert all("not replaced" in p.reason for p in exported.problems), exported.problems
            if n < commands:  # the command, in its own process, while the app writes
                args = ["import", str(home)] + ([] if jobs is None else ["--jobs", str(jobs)])
                said_something_true(store_command(db, *args))
                query = store_command(db, "query", "runtime", "--json")
                assert query.returncode == 0, query.stderr
    finally:
        writer.stop()
    result = store.import_paths(home, jobs=jobs)
    assert result.ok, [str(p) for p in result.problems]
    check_store_holds(store, home, writer, tmp_path)
    # The application stopped and the home imported: an export over it (the README's
    # order) changes nothing there, and replaces no file (one the application holds
    # open would lose what it writes next).
    before = tree(home)
    inodes = {p: p.stat().st_ino for p in home.rglob("*") if p.is_file()}
    exported = store.export_to(home, overwrite=True)
    assert exported.ok, exported.problems
    after = tree(home)
    assert {p: b for p, b in after.items() if p in before} == before
    assert set(after) - set(before) <= writer.deleted
    assert all(p.stat().st_ino == ino for p, ino in inodes.items())
    store.close()
    final = store_command(db, "import", str(home))
    assert final.returncode == 0 and not final.stderr.strip(), final.stderr
    check = store_command(db, "check")
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("jobs", [0, 2])
def test_imports_beside_the_app_miss_nothing_it_completed(tmp_path: Path, jobs: int) -> None:
    run_beside(tmp_path, jobs, imports=12, seed=jobs)


def test_exports_over_the_home_beside_the_app_leave_it_importable_whole(tmp_path: Path) -> None:
    """export --force over the home while the application writes it: what it writes
    meanwhile may be lost (the README says what), but never so that a line or a file
    it finished is left broken; once it stops, one import holds the home again."""
    run_beside(tmp_path, 0, imports=8, seed=5, commands=0, export=True)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [None, 0, 2])
def test_imports_beside_the_app_heavy(tmp_path: Path, jobs: int | None) -> None:
    """Many more imports, and a home of 600 sessions: imports of 512+ files use workers
    by default (``jobs=None``)."""
    run_beside(tmp_path, jobs, imports=60, seed=10 + (jobs or 0), commands=6, sessions=600, threads=8)


@pytest.mark.parametrize("cut", [b'{"schema_version":2,"se', b'{"schema_version"'])
def test_a_line_the_app_is_writing_is_reported_as_such_then_imported(tmp_path: Path, cut: bytes) -> None:
    """The line an import finds half-written at the end of an events log is said to be
    the file's last, without a newline (not "a JSON-lines record is one line", which
    sent users looking for a record written over several lines); once the application
    finishes it, the next import makes it a record and keeps no refused text."""
    log = tmp_path / "home/tasks/runtime/events/thr_1.jsonl"
    log.parent.mkdir(parents=True)
    first = line({"schema_version": 2, "seq": 1})
    second = line({"schema_version": 2, "seq": 2})
    assert second.startswith(cut)
    log.write_bytes(first + cut)
    db = tmp_path / "store.db"
    run = store_command(db, "import", str(tmp_path / "home"))
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        (
            f"store: tasks/runtime/events/thr_1.jsonl:2: invalid JSON: {reason(cut)}; it is the file's last line "
            "and has no newline: still being written? import again once it is finished"
        )
    ]
    with Store(db) as store:
        assert store.status().domains["runtime"].refused == 1
        with open(log, "ab") as f:  # the application finishes its line
            f.write(second[len(cut):])
        assert store.import_paths(tmp_path / "home").ok
        assert store.status().domains["runtime"].refused == 0
        assert [r.text for r in store.query("runtime").all()] == [first[:-1].decode(), second[:-1].decode()]


def reason(cut: bytes) -> str:
    """What the decoder says of the line ``cut``, where it stops."""
    if cut.endswith(b'"se'):
        return "Unterminated string starting at column 21"
    return f"Expecting ':' delimiter at column {len(cut) + 1}"


APPENDED = (
    "not replaced: it holds what the store imported from it and more, written since (by the "
    "application, still writing?), which the store does not have; import again, then export"
)
LOG = "tasks/runtime/events/thr_1a2b3c4d.jsonl"


def test_export_force_over_the_home_keeps_the_lines_the_app_appended_since_the_import(home: Path, tmp_path: Path) -> None:
    """An export --force over the home replaced an events log the application had
    appended to since the import with the store's shorter one: the appended events were
    gone. Now that file is not replaced, and said so (exit 1); the rest is written; and
    once imported again, the export goes through."""
    db = tmp_path / "store.db"
    assert store_command(db, "import", str(home)).returncode == 0
    appended = line(event("thr_1a2b3c4d", 99))
    with open(home / LOG, "ab") as f:  # the application, still running
        f.write(appended)
    everything = tree(home)
    run = store_command(db, "export", "--force", str(home))
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"store: {LOG}: {APPENDED}"]
    assert tree(home) == everything
    assert store_command(db, "import", str(home)).returncode == 0
    run = store_command(db, "export", "--force", str(home))
    assert run.returncode == 0 and not run.stderr, run.stderr
    assert tree(home) == everything


def test_export_force_keeps_the_lines_appended_after_a_migration(tmp_path: Path) -> None:
    """The same when the store's records were migrated since: the export differs from
    the file it would replace, which begins with what was imported; a log the
    application left alone is written, migrated."""
    from conftest import stamping_registry

    notes = tmp_path / "home/notes"
    notes.mkdir(parents=True)
    old = b"".join(line({"schema_version": 1, "n": n}) for n in range(3))
    (notes / "grown.jsonl").write_bytes(old)
    (notes / "left.jsonl").write_bytes(old)
    with Store(tmp_path / "store.db", registry=stamping_registry()) as store:
        store.import_paths(tmp_path / "home")
        assert store.migrate().migrated == 6
        new = line({"schema_version": 1, "n": 3})
        with open(notes / "grown.jsonl", "ab") as f:
            f.write(new)
        result = store.export_to(tmp_path / "home", overwrite=True)
        assert [str(p) for p in result.problems] == [f"notes/grown.jsonl: {APPENDED}"]
        assert (notes / "grown.jsonl").read_bytes() == old + new
        assert [json.loads(x)["stamped"] for x in (notes / "left.jsonl").read_bytes().splitlines()] == [True] * 3


def test_export_force_keeps_a_line_the_app_finished_since_the_import(home: Path, tmp_path: Path) -> None:
    """An import that found the log's last line half-written keeps no digest of it; the
    application finished the line and went on: the export does not cut it back."""
    log = home / LOG
    text = log.read_bytes()
    more = line(event("thr_1a2b3c4d", 99))
    log.write_bytes(text + more[:9])
    with Store(tmp_path / "store.db") as store:
        assert not store.import_paths(home).ok
        with open(log, "ab") as f:
            f.write(more[9:] + more)
        result = store.export_to(home, overwrite=True)
        assert [str(p) for p in result.problems] == [f"{LOG}: {APPENDED}"]
        assert log.read_bytes() == text + more + more


def test_export_force_keeps_a_record_file_the_app_finished_since_the_import(home: Path, tmp_path: Path) -> None:
    """An item file the import found cut short (refused, its text kept), finished by the
    application since: the export does not put the cut-short text back over it."""
    item = home / "tasks/runtime/items/item_4e5f6a7b.json"
    whole = item.read_bytes()
    item.write_bytes(whole[:40])
    with Store(tmp_path / "store.db") as store:
        assert not store.import_paths(home).ok
        item.write_bytes(whole)  # (in place: the application appends the rest)
        result = store.export_to(home, overwrite=True)
        assert [str(p) for p in result.problems] == [f"tasks/runtime/items/item_4e5f6a7b.json: {APPENDED}"]
        assert item.read_bytes() == whole


def test_export_force_does_not_replace_a_file_the_app_writes_while_it_runs(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the application writes after the export compared it with what it writes,
    before the export renames its own into place (while it syncs its files), is not
    replaced: the application's write is kept, and the export says so."""
    from recordstore import exporter

    saved = home / "sessions/3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json"
    with Store(tmp_path / "store.db") as store:
        store.import_paths(home)
        saved.write_bytes(pretty(session("3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10", 3)))  # the store's is now older
        real_sync = exporter._sync_all

        def app_writes_meanwhile(paths: list[Path], out: Path) -> list[OSError | None]:
            newer = saved.with_name(".session.tmp")
            newer.write_bytes(b'{"schema_version": 1, "metadata": {}, "messages": []}')
            os.replace(newer, saved)  # the application saves the session
            return real_sync(paths, out)

        monkeypatch.setattr(exporter, "_sync_all", app_writes_meanwhile)
        result = store.export_to(home, overwrite=True)
        assert [str(p) for p in result.problems] == [
            (
                f"{saved.relative_to(home)}: cannot write: it changed while being exported (the application "
                "writing it?), so it was not replaced; import again, then export"
            )
        ]
        assert saved.read_bytes() == b'{"schema_version": 1, "metadata": {}, "messages": []}'
