#!/usr/bin/env python3
"""Benchmark (issue 4): recordstore against a lean standard-library baseline and sqlite-utils.

    python scripts/bench.py                       # ~250,000 records in ~50,000 files
    python scripts/bench.py --records 2000        # a quick run
    python scripts/bench.py --records 20000 --sweep        # 1x, 2x, 4x: how time and RSS grow
    python scripts/bench.py --workdir /tmp/b --keep --json figures.json

It generates a deterministic (seeded) DeepSeek-style home: sessions with nested content
blocks, tasks, runtime threads/turns/items as one pretty object per file and runtime
events as compact JSON lines; most records sit at v1 of the domains that
``scripts/bench_registry.py`` migrates, so ``migrate`` has real work.

Then, each phase a separate process, started with its inputs read once into the page
cache (the home, or the store), and once more, untimed, sampling the memory of each
command's process tree (its PSS, and each process's own peak RSS, VmHWM):

* recordstore, through its real CLI: ``store import HOME``, ``store migrate``,
  ``store export OUT``;
* a baseline in the standard library only (this script re-invoked with
  ``--baseline-phase``): json.loads every record into one SQLite table, run the same
  step functions with backups in per-batch transactions, write the files back with a
  temp file + fsync + os.replace (``--baseline-sync batch``: one os.sync() per 2000
  files instead, as recordstore's exporter does). Same SQLite durability as recordstore:
  WAL, batches committed with synchronous=NORMAL, one synced commit ending the run;
* ``sqlite-utils insert DB events FILE --nl`` on all the JSON lines concatenated into one
  file, against ``store import FILE --domain runtime``.

Finally the two exports are compared file by file: both must write the same bytes.
Uses the standard library and recordstore only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REGISTRY_PATH = HERE / "bench_registry.py"
GENERATOR_VERSION = 2  # bump when the generated corpus changes, so --workdir reuse stays honest

PHASES = ("import", "migrate", "export", "jsonl-ingest")

# =========================================================================== the corpus

WORDS = (
    "the a test fails when we run cargo build with release flags and the linker cannot find "
    "symbol add in src lib rs so read the file first then fix the assertion check that every "
    "case passes again update docs refactor module parse token stream error handling retry "
    "timeout config workspace branch commit diff patch review naïve café résumé façade "
    "日本語 テスト 修正 ✓ → — 🚀 über straße"
).split()
MODELS = ("deepseek-v4-pro", "deepseek-v4-flash", "deepseek-reasoner", "deepseek-chat")
WORKSPACES = ("/home/alice/proj", "/home/alice/work/api", "/home/bob/src/tui", "/srv/build/ci-runner")
TOOLS = ("read_file", "exec_shell", "write_file", "grep_files", "apply_patch", "list_dir")
FILES_IN_REPO = ("src/lib.rs", "src/main.rs", "Cargo.toml", "tests/add.rs", "README.md", "src/parser/mod.rs")
ITEM_KINDS = ("command_execution", "file_change", "agent_message", "reasoning", "tool_call")


class Corpus:
    """What was generated: counts to check the tools' results against."""

    def __init__(self) -> None:
        self.records = 0
        self.files = 0  # files that belong to a domain
        self.other_files = 0  # files in no domain (skipped by both importers)
        self.bytes = 0
        self.jsonl_records = 0
        self.by_domain: dict[str, int] = {}
        self.pending: dict[str, int] = {}

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Corpus:
        c = cls()
        c.__dict__.update(d)
        return c


class Generator:
    def __init__(self, home: Path, seed: int, current: dict[str, int]):
        self.home = home
        self.rng = random.Random(seed)
        self.current = current
        self.corpus = Corpus()
        self.clock = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=dt.timezone.utc)
        self.made: set[Path] = set()
        self.ids: set[str] = set()

    # ------------------------------------------------------------------ helpers

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hexid(self, prefix: str) -> str:
        """A new id: 32 random bits, drawn again on a repeat (they name files, and at 1M
        records two of 200,000 ids would share a name about once: one file overwriting
        another, one record fewer than counted)."""
        while True:
            ident = f"{prefix}_{self.rng.getrandbits(32):08x}"
            if ident not in self.ids:
                self.ids.add(ident)
                return ident

    def tick(self, max_seconds: int = 90) -> str:
        self.clock += dt.timedelta(seconds=self.rng.randint(1, max_seconds), microseconds=self.rng.randint(0, 999999))
        ns = self.rng.randint(0, 999)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{ns:03d}Z"

    def words(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(lo, hi)))

    def tokens(self) -> int:
        r = self.rng.random()
        if r < 0.01:  # u64 token counters: beyond 2**63, exact only with care
            return self.rng.randint(2**63, 2**64 - 1)
        if r < 0.05:
            return self.rng.randint(2**32, 2**53)
        return self.rng.randint(100, 400_000)

    def pick_version(self, domain: str) -> int | None:
        """Mostly v1 (some without any version field), some already current."""
        cur = self.current[domain]
        r = self.rng.random()
        if cur == 1 or r >= 0.8:
            return cur if cur == 1 or r >= 0.9 else self.rng.randint(2, cur)
        return None if r < 0.08 else 1

    def count(self, domain: str, version: int | None) -> None:
        self.corpus.records += 1
        self.corpus.by_domain[domain] = self.corpus.by_domain.get(domain, 0) + 1
        if (version or 1) < self.current[domain]:
            self.corpus.pending[domain] = self.corpus.pending.get(domain, 0) + 1

    def _path(self, rel: str) -> Path:
        path = self.home / rel
        if path.parent not in self.made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.made.add(path.parent)
        return path

    def write_pretty(self, rel: str, domain: str, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, indent=2, ensure_ascii=False).encode()
        self._path(rel).write_bytes(data)
        self.corpus.files += 1
        self.corpus.bytes += len(data)
        self.count(domain, obj.get("schema_version"))

    def write_lines(self, rel: str, domain: str, objs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in objs).encode()
        self._path(rel).write_bytes(data)
        self.corpus.files += 1
        self.corpus.bytes += len(data)
        self.corpus.jsonl_records += len(objs)
        for o in objs:
            self.count(domain, o.get("schema_version"))

    def write_other(self, rel: str, text: str) -> None:
        self._path(rel).write_text(text, encoding="utf-8")
        self.corpus.other_files += 1

    @staticmethod
    def versioned(version: int | None, body: dict[str, Any]) -> dict[str, Any]:
        return body if version is None else {"schema_version": version, **body}

    # ------------------------------------------------------------------ sessions

    def text_block(self, version: int, text: str) -> dict[str, Any]:
        return {"type": "text", "parts": [text]} if version >= 3 else {"type": "text", "text": text}

    def session(self, version: int | None) -> dict[str, Any]:
        v = version or 1
        rng = self.rng
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [self.text_block(v, self.words(4, 30))]}
        ]
        target = rng.randint(3, 40)
        while len(messages) < target:
            blocks: list[dict[str, Any]] = []
            if rng.random() < 0.6:
                blocks.append({"type": "thinking", "thinking": self.words(8, 60)})
            if rng.random() < 0.5:
                blocks.append(self.text_block(v, self.words(5, 80)))
            calls = []
            for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3))):
                call_id = f"call_{rng.randint(0, 99):02d}_{rng.getrandbits(24):06x}"
                name = rng.choice(TOOLS)
                arg = {"path": rng.choice(FILES_IN_REPO)} if name != "exec_shell" else {"command": "cargo test --all"}
                calls.append(call_id)
                blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arg})
            if not blocks:
                blocks.append(self.text_block(v, self.words(3, 20)))
            messages.append({"role": "assistant", "content": blocks})
            if calls:
                results: list[dict[str, Any]] = []
                for call_id in calls:
                    res: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
                    if rng.random() < 0.1:
                        res["content"] = [self.text_block(v, self.words(5, 40))]
                    else:
                        res["content"] = "\n".join(self.words(3, 12) for _ in range(rng.randint(1, 8)))
                    if rng.random() < 0.1:
                        res["is_error"] = True
                    results.append(res)
                messages.append({"role": "user", "content": results})
            else:
                messages.append({"role": "user", "content": [self.text_block(v, self.words(3, 30))]})
        sid = self.uid()
        created = self.tick(3600)
        meta: dict[str, Any] = {
            "id": sid,
            "title": self.words(3, 10),
            "created_at": created,
            "updated_at": self.tick(600),
            "message_count": len(messages),
            "total_tokens": self.tokens(),
            "model": rng.choice(MODELS),
            "workspace": rng.choice(WORKSPACES),
            "mode": rng.choice(("agent", "plan", "yolo")),
        }
        if v >= 2:  # as the 1 -> 2 step leaves it
            meta["model_id"] = meta.pop("model")
        prompt = None if rng.random() < 0.7 else self.words(10, 40)
        return self.versioned(version, {"metadata": meta, "messages": messages, "system_prompt": prompt})

    # ------------------------------------------------------------------ tasks

    def task(self, version: int | None, task_id: str, thread_turns: int) -> dict[str, Any]:
        rng = self.rng
        v = version or 1
        body: dict[str, Any] = {
            "id": task_id,
            "prompt": self.words(3, 25),
            "model": rng.choice(MODELS),
            "workspace": rng.choice(WORKSPACES),
            "mode": "agent",
            "allow_shell": rng.random() < 0.5,
            "trust_mode": False,
            "auto_approve": rng.random() < 0.5,
            "status": rng.choice(("completed", "completed", "failed", "cancelled")),
            "created_at": self.tick(),
            "started_at": self.tick(),
            "ended_at": self.tick(600),
            "duration_ms": rng.randint(500, 3_600_000),
            "runtime_event_count": rng.randint(1, 400),
        }
        if v >= 2:
            body["checklist"] = {
                "items": [{"id": f"c{i}", "text": self.words(2, 8), "done": rng.random() < 0.7} for i in range(rng.randint(0, 4))],
                "completion_pct": round(rng.random(), 3),
                "in_progress_id": None,
                "updated_at": None,
            }
        body["gates"] = []
        body["attempts"] = [{"n": i + 1, "outcome": rng.choice(("ok", "error"))} for i in range(rng.randint(1, 3))]
        body["artifacts"] = [f"artifacts/{task_id}/out{i}.txt" for i in range(rng.randint(0, 2))]
        if v >= 2:
            body["github_events"] = []
        body["tool_calls"] = [{"name": rng.choice(TOOLS), "ok": rng.random() < 0.9} for _ in range(rng.randint(0, 6))]
        body["timeline"] = [{"timestamp": self.tick(), "kind": k, "summary": f"Task {k}"} for k in ("queued", "started", "finished")[: 1 + thread_turns % 3]]
        return self.versioned(version, body)

    # ------------------------------------------------------------------ runtime

    def thread_unit(self, unit: int) -> None:
        rng = self.rng
        version = self.pick_version("runtime")
        v = version or 1
        thr = self.hexid("thr")
        n_turns = rng.randint(1, 5)
        events: list[dict[str, Any]] = []
        seq = 0
        turn_ids: list[str] = []

        def event(kind: str, turn: str | None, item: str | None, payload: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            ev = self.versioned(
                version,
                {"seq": seq, "timestamp": self.tick(20), "thread_id": thr, "turn_id": turn, "item_id": item, "event": kind, "payload": payload},
            )
            if v >= 2:
                ev["origin"] = "local"
            events.append(ev)

        event("thread.started", None, None, {"model": rng.choice(MODELS)})
        for _ in range(n_turns):
            turn = self.hexid("turn")
            turn_ids.append(turn)
            item_ids: list[str] = []
            event("turn.started", turn, None, {"input_summary": self.words(2, 10)})
            for _ in range(rng.randint(1, 3)):
                item = self.hexid("item")
                item_ids.append(item)
                kind = rng.choice(ITEM_KINDS)
                nested = {"schema_version": v, "id": item, "kind": kind, "status": "in_progress"}
                event("item.started", turn, item, {"item": nested})
                for _ in range(rng.randint(2, 10)):
                    event("item.delta", turn, item, {"delta": self.words(2, 14)})
                event("item.completed", turn, item, {"item": {**nested, "status": "completed"}, "exit_code": 0})
                body: dict[str, Any] = {
                    "id": item,
                    "turn_id": turn,
                    "kind": kind,
                    "status": "completed",
                    "summary": f"{rng.choice(TOOLS)}: ok",
                    "detail": self.words(3, 30),
                    "started_at": self.tick(),
                    "ended_at": self.tick(),
                }
                if v >= 2:
                    body["artifact_refs"] = []
                self.write_pretty(f"tasks/runtime/items/{item}.json", "runtime", self.versioned(version, body))
            event("turn.completed", turn, None, {"usage": {"input_tokens": self.tokens(), "output_tokens": rng.randint(10, 9000)}})
            tbody: dict[str, Any] = {
                "id": turn,
                "thread_id": thr,
                "status": "completed",
                "input_summary": self.words(2, 12),
                "created_at": self.tick(),
                "usage": {"input_tokens": self.tokens(), "output_tokens": rng.randint(10, 9000), "cost_usd": round(rng.random() / 10, 6)},
                "item_ids": item_ids,
            }
            if v >= 2:
                tbody["steer_count"] = rng.randint(0, 2)
            self.write_pretty(f"tasks/runtime/turns/{turn}.json", "runtime", self.versioned(version, tbody))
        thread: dict[str, Any] = {
            "id": thr,
            "created_at": self.tick(),
            "updated_at": self.tick(),
            "model": rng.choice(MODELS),
            "workspace": rng.choice(WORKSPACES),
            "mode": "agent",
            "allow_shell": False,
            "trust_mode": False,
            "auto_approve": True,
            "latest_turn_id": turn_ids[-1],
            "archived": rng.random() < 0.2,
        }
        if v >= 2:
            thread["coherence_state"] = "healthy"
        self.write_pretty(f"tasks/runtime/threads/{thr}.json", "runtime", self.versioned(version, thread))
        self.write_lines(f"tasks/runtime/events/{thr}.jsonl", "runtime", events)

        # One session and one task per thread.
        s_version = self.pick_version("session")
        session = self.session(s_version)
        self.write_pretty(f"sessions/{session['metadata']['id']}.json", "session", session)
        task_id = self.hexid("task")
        self.write_pretty(f"tasks/tasks/{task_id}.json", "task", self.task(self.pick_version("task"), task_id, n_turns))
        if rng.random() < 0.05:
            self.write_other(f"tasks/artifacts/{task_id}/out0.txt", self.words(20, 200) + "\n")
        if unit % 40 == 0:
            self.automation()

    def automation(self) -> None:
        rng = self.rng
        aid = self.uid()
        self.write_pretty(
            f"automations/automations/{aid}.json",
            "automation",
            {
                "schema_version": 1,
                "id": aid,
                "name": self.words(2, 4),
                "prompt": self.words(3, 12),
                "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9;BYMINUTE=0",
                "cwds": [rng.choice(WORKSPACES)],
                "status": rng.choice(("active", "paused")),
                "created_at": self.tick(),
                "updated_at": self.tick(),
                "next_run_at": self.tick(86400),
            },
        )
        for _ in range(rng.randint(1, 4)):
            rid = self.uid()
            self.write_pretty(
                f"automations/runs/{aid}/{rid}.json",
                "automation_run",
                {
                    "schema_version": 1,
                    "id": rid,
                    "automation_id": aid,
                    "scheduled_for": self.tick(86400),
                    "status": "completed",
                    "created_at": self.tick(),
                    "started_at": self.tick(),
                    "ended_at": self.tick(),
                    "task_id": self.hexid("task"),
                },
            )

    def generate(self, records: int) -> Corpus:
        self.home.mkdir(parents=True, exist_ok=True)
        # A thread unit averages about 67 records in about 13 files.
        units = max(1, round(records / 67))
        for unit in range(units):
            self.thread_unit(unit)
        self.write_pretty("sessions/checkpoints/latest.json", "session", self.session(1))
        self.write_pretty(
            "sessions/checkpoints/offline_queue.json",
            "offline_queue",
            {"schema_version": 1, "messages": [{"display": "run the tests again", "skill_instruction": None}], "draft": None},
        )
        self.write_pretty("tasks/runtime/state.json", "runtime", {"schema_version": 2, "next_seq": units * 60})
        self.write_other("tasks/queue.json", json.dumps({"queue": []}, indent=2))
        self.write_other("config.toml", 'model = "deepseek-v4-pro"\n')
        self.write_other("settings.json", json.dumps({"theme": "dark"}, indent=2))
        return self.corpus


def _generate(home: Path, seed: int, current: dict[str, int], records: int) -> dict[str, Any]:
    return Generator(home, seed, current).generate(records).as_dict()


def _in_child(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a forked process where there is fork (else here). This process
    stays small: a command it starts inherits its peak RSS as the floor of its own, as
    os.wait4 reports it (Linux keeps the larger at exec), and generating 1M records
    here took it to 127 MB, which every command's figure at 4x then showed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        return fn(*args)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        return pool.submit(fn, *args).result()


def generate_home(home: Path, records: int, seed: int, current: dict[str, int]) -> tuple[Corpus, float, bool]:
    """Generate (or, when the same parameters made it before, reuse) the home."""
    params_file = home.parent / (home.name + ".params.json")
    params = {"records": records, "seed": seed, "generator": GENERATOR_VERSION, "current": current}
    if home.is_dir() and params_file.is_file():
        saved = json.loads(params_file.read_text())
        if saved.get("params") == params:
            return Corpus.from_dict(saved["corpus"]), 0.0, True
    if home.exists():
        shutil.rmtree(home)
    params_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    corpus = Corpus.from_dict(_in_child(_generate, home, seed, current, records))
    elapsed = time.perf_counter() - t0
    params_file.write_text(json.dumps({"params": params, "corpus": corpus.as_dict()}))
    return corpus, elapsed, False


# =========================================================================== the baseline


def load_bench_registry(path: Path = REGISTRY_PATH) -> ModuleType:
    """Load the registry module without building its recordstore ``registry``."""
    spec = importlib.util.spec_from_file_location("bench_registry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_registry"] = module
    spec.loader.exec_module(module)
    return module


def _glob_regex(pattern: str) -> str:
    return "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern)


def _connect(db: Path) -> sqlite3.Connection:
    """recordstore's SQLite durability: WAL, batches committed with synchronous=NORMAL
    (atomic, not yet synced), then one synced commit at the end of the run (_finish)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _finish(conn: sqlite3.Connection, kind: str) -> None:
    """Record the run in a commit that syncs the WAL, and with it every batch before it."""
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO runs (kind, finished_at) VALUES (?, ?)", (kind, time.time()))
    conn.execute("COMMIT")
    conn.close()


def indent_of(text: str) -> int | None:
    nl = text.find("\n")
    if nl == -1:
        return None
    rest = text[nl + 1 :]
    return (len(rest) - len(rest.lstrip(" "))) or None


BATCH_INSERT = 5000
#: ... or fewer, once their texts hold this many characters (a str with one character
#: beyond Latin-1 takes 2 or 4 bytes per character: 5000 sessions would be ~200 MB).
BATCH_INSERT_CHARS = 8_000_000
BATCH_MIGRATE = 2000
#: ... fewer when records are large: about this many characters of payload per batch.
BATCH_MIGRATE_CHARS = 4_000_000


def baseline_import(home: Path, db: Path, reg: ModuleType) -> dict[str, Any]:
    matchers = [(d, re.compile("|".join(f"(?:{_glob_regex(p)})" for p in pats))) for d, pats in reg.FILES.items()]
    vf, current = reg.VERSION_FIELD, reg.CURRENT
    conn = _connect(db)
    conn.execute(
        "CREATE TABLE records (id INTEGER PRIMARY KEY, domain TEXT NOT NULL, key TEXT NOT NULL, "
        "version INTEGER NOT NULL, payload TEXT NOT NULL, source TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE backups (id INTEGER PRIMARY KEY, record_id INTEGER NOT NULL, domain TEXT NOT NULL, "
        "key TEXT NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL)"
    )
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, finished_at REAL NOT NULL)")
    insert = "INSERT INTO records (domain, key, version, payload, source) VALUES (?, ?, ?, ?, ?)"
    rows: list[tuple[str, str, int, str, str]] = []
    chars = 0
    out = {"records": 0, "files": 0, "skipped": 0, "rejected": 0, "failed": 0}

    def add(domain: str, key: str, text: str, rel: str) -> None:
        nonlocal chars
        try:
            value = json.loads(text)
            version = value.get(vf, 1) if isinstance(value, dict) else None
        except ValueError:
            version = None
        if type(version) is not int or version < 1:
            out["failed"] += 1
        elif version > current[domain]:
            out["rejected"] += 1
        else:
            rows.append((domain, key, version, text, rel))
            chars += len(text)

    conn.execute("BEGIN IMMEDIATE")
    for dirpath, dirnames, filenames in os.walk(home):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, home).replace(os.sep, "/")
            domain = next((d for d, rx in matchers if rx.fullmatch(rel)), None)
            if domain is None:
                out["skipped"] += 1
                continue
            out["files"] += 1
            with open(full, "rb") as fh:
                text = fh.read().decode("utf-8")
            if name.endswith(".jsonl"):
                for lineno, line in enumerate(text.split("\n"), start=1):
                    if line.strip():
                        add(domain, f"{rel}:{lineno}", line, rel)
            else:
                add(domain, rel, text.strip(), rel)
            if len(rows) >= BATCH_INSERT or chars >= BATCH_INSERT_CHARS:
                conn.executemany(insert, rows)
                out["records"] += len(rows)
                rows.clear()
                chars = 0
    conn.executemany(insert, rows)
    out["records"] += len(rows)
    conn.execute("COMMIT")
    _finish(conn, "import")
    return out


def baseline_migrate(db: Path, reg: ModuleType) -> dict[str, Any]:
    vf, current, steps = reg.VERSION_FIELD, reg.CURRENT, reg.STEPS
    case = " ".join(f"WHEN '{d}' THEN {v}" for d, v in current.items())
    select = (
        f"SELECT id, domain, key, version, payload FROM records "
        f"WHERE id > ? AND version < (CASE domain {case} ELSE 0 END) ORDER BY id LIMIT ?"
    )
    conn = _connect(db)
    out = {"migrated": 0, "failed": 0}
    last = 0
    limit = 100  # grows to BATCH_MIGRATE once the first batch shows how large records are
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(select, (last, limit)).fetchall()
        if not rows:
            conn.execute("COMMIT")
            break
        backups: list[tuple[int, str, str, int, str]] = []
        updates: list[tuple[int, str, int]] = []
        for rid, domain, key, version, payload in rows:
            last = rid
            try:
                value = json.loads(payload)
                for v in range(version, current[domain]):
                    new = steps[domain][v - 1](value)
                    if new is not None:
                        value = new
                    if vf in value:
                        value[vf] = v + 1
                    else:
                        value = {vf: v + 1, **value}
                indent = indent_of(payload)
                if indent is None:
                    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
                else:
                    text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent)
            except Exception:
                out["failed"] += 1
                continue
            backups.append((rid, domain, key, version, payload))
            updates.append((current[domain], text, rid))
        conn.executemany("INSERT INTO backups (record_id, domain, key, version, payload) VALUES (?, ?, ?, ?, ?)", backups)
        conn.executemany("UPDATE records SET version = ?, payload = ? WHERE id = ?", updates)
        conn.execute("COMMIT")
        out["migrated"] += len(updates)
        average = max(1, sum(len(r[4]) for r in rows) // len(rows))
        limit = max(10, min(BATCH_MIGRATE, BATCH_MIGRATE_CHARS // average))
    _finish(conn, "migrate")
    return out


#: --baseline-sync batch: files staged before one os.sync() (recordstore's exporter since 5e98a2b).
STAGE_FILES = 2000
STAGE_BYTES = 64 * 1024 * 1024


def baseline_export(db: Path, out_dir: Path, sync: str = "fsync") -> dict[str, Any]:
    """Write every record back to its file, atomically: a temp file beside the target,
    made durable (``fsync``: one fsync per file; ``batch``: one os.sync() per batch of
    staged files), then os.replace, then an fsync of each directory touched."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out_real = out_dir.resolve()
    made: set[str] = {str(out_real)}
    dirty: set[str] = set()
    counts = {"records": 0, "files": 0}

    def ensure(d: str) -> None:
        if d in made:
            return
        ensure(os.path.dirname(d))
        if not os.path.isdir(d):
            os.mkdir(d)
            dirty.add(os.path.dirname(d))
        made.add(d)

    def write(source: str, texts: list[str]) -> None:
        target = os.path.join(out_real, *source.split("/"))
        if not os.path.realpath(target).startswith(str(out_real) + os.sep):
            raise SystemExit(f"refusing to write outside {out_real}: {source}")
        content = "".join(t + "\n" for t in texts) if source.endswith(".jsonl") else texts[0]
        d = os.path.dirname(target)
        ensure(d)
        data = content.encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target)[:40] + ".", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if sync == "fsync":
                    fh.flush()
                    os.fsync(fh.fileno())
            if sync == "fsync":
                os.replace(tmp, target)
                dirty.add(d)
        except BaseException:
            os.unlink(tmp)
            raise
        if sync != "fsync":
            staged.append((tmp, target))
            staged_bytes[0] += len(data)
            if len(staged) >= STAGE_FILES or staged_bytes[0] >= STAGE_BYTES:
                flush()
        counts["files"] += 1
        counts["records"] += len(texts)

    staged: list[tuple[str, str]] = []
    staged_bytes = [0]

    def flush() -> None:
        if not staged:
            return
        os.sync()
        for tmp, target in staged:
            os.replace(tmp, target)
            dirty.add(os.path.dirname(target))
        staged.clear()
        staged_bytes[0] = 0
        sync_dirs()

    def sync_dirs() -> None:
        for d in sorted(dirty):
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dirty.clear()

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    current: str | None = None
    texts: list[str] = []
    for source, payload in conn.execute("SELECT source, payload FROM records ORDER BY id"):
        if source != current:
            if current is not None:
                write(current, texts)
            current, texts = source, []
        texts.append(payload)
    if current is not None:
        write(current, texts)
    conn.execute("COMMIT")
    conn.close()
    flush()
    sync_dirs()
    return counts


def baseline_main(args: argparse.Namespace) -> int:
    reg = load_bench_registry(Path(args.registry) if args.registry else REGISTRY_PATH)
    if args.baseline_phase == "import":
        result = baseline_import(Path(args.home), Path(args.db), reg)
    elif args.baseline_phase == "migrate":
        result = baseline_migrate(Path(args.db), reg)
    else:
        result = baseline_export(Path(args.db), Path(args.out), args.baseline_sync)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# =========================================================================== measuring


class ChildFailed(RuntimeError):
    pass


def _maxrss_mb(ru: Any) -> float:
    # ru_maxrss is KiB on Linux and the BSDs, bytes on macOS.
    return ru.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru.ru_maxrss / 1024


def warm(paths: list[Path]) -> None:
    """Read every file below ``paths`` once (into the page cache)."""
    for root in paths:
        found = [root] if root.is_file() else [Path(d, n) for d, _, names in os.walk(root) for n in names]
        for path in found:
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass


class TreeRss:
    """Samples the memory of a process and its descendants (Linux ``/proc``) every 20 ms
    while it runs: with worker processes, the largest single process (what ``wait4``
    reports) understates what a command takes. Summed as PSS (each shared page split
    among the processes sharing it), so pages a worker shares with its parent after a
    fork count once; RSS where PSS is not available."""

    def __init__(self, pid: int):
        self.pid, self.peak_kb = pid, 0
        # The largest VmHWM (a process's own peak RSS) seen in the tree: unlike
        # os.wait4's ru_maxrss, it does not start from the peak of the process that
        # started the command (Linux carries that over at exec).
        self.largest_kb = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if Path(f"/proc/{pid}/task").is_dir():
            self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.02):
            self.peak_kb = max(self.peak_kb, self._sample())

    def _sample(self) -> int:
        total, stack = 0, [self.pid]
        while stack:
            pid = stack.pop()
            with contextlib.suppress(OSError, ValueError):
                total += self._memory_kb(pid)
                self.largest_kb = max(self.largest_kb, self._hwm_kb(pid))
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as fh:
                        stack.extend(int(child) for child in fh.read().split())
        return total

    @staticmethod
    def _hwm_kb(pid: int) -> int:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmHWM:")), 0)

    @staticmethod
    def _memory_kb(pid: int) -> int:
        for name, field in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                with open(name) as fh:
                    return next((int(line.split()[1]) for line in fh if line.startswith(field)), 0)
        return 0

    def stop(self) -> float | None:
        """The peak in MB (``None`` without /proc)."""
        self.done.set()
        if not self.thread.is_alive() and not self.peak_kb:
            return None
        self.thread.join()
        return self.peak_kb / 1024


def run_child(cmd: list[str], logdir: Path, label: str, sample_tree: bool = False) -> tuple[float, float, float, float | None, str]:
    """Run ``cmd``; return (wall seconds, CPU seconds, peak RSS MB of its largest process,
    peak PSS MB of its process tree or None, stdout). Raises ChildFailed.

    The tree is sampled only when asked (``sample_tree``): reading ``smaps_rollup``
    walks a process's page tables under its memory lock, and every 20 ms, for each of a
    command's processes, that slowed a three-process import by ~10% (2.54-2.88 s
    against 2.84-3.15 s) and the one-process baseline by nothing measurable.

    Dirty pages of earlier steps are flushed first (``os.sync``), so a phase does not pay
    for the write-back of the one before it."""
    env = {k: v for k, v in os.environ.items() if k not in ("STORE_DB", "STORE_REGISTRY")}
    out_path, err_path = logdir / f"{label}.out", logdir / f"{label}.err"
    if hasattr(os, "sync"):
        os.sync()
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        tree = TreeRss(proc.pid) if sample_tree else None
        try:
            _pid, status, ru = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            tree_mb = tree.stop() if tree is not None else None
        wall = time.perf_counter() - t0
        peak_mb = tree.largest_kb / 1024 if tree is not None and tree.largest_kb else _maxrss_mb(ru)
        proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        raise ChildFailed(f"{label}: exit {proc.returncode}: {' '.join(cmd)}\n{stderr[-4000:]}{stdout[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, peak_mb, tree_mb, stdout


def store_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "store"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "recordstore"]


def compile_tool(log: Any) -> None:
    """Byte-compile recordstore's modules once, as installing a wheel does, so that no
    timed command compiles them: an editable install run with PYTHONDONTWRITEBYTECODE
    set (as on our machines) would compile them at every command (~50 ms)."""
    spec = importlib.util.find_spec("recordstore")
    if spec is None or spec.origin is None:
        return
    package = Path(spec.origin).parent
    done = subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], capture_output=True, text=True)
    if done.returncode != 0:
        log(f"could not byte-compile {package}: {done.stdout.strip() or done.stderr.strip()}")


def sqlite_utils_exe() -> Path | None:
    exe = Path(sys.executable).parent / "sqlite-utils"
    return exe if exe.is_file() else None


def same_json(a: Path, b: Path) -> bool:
    """Whether two files hold equal JSON (per line for JSON lines), whatever the bytes."""
    try:
        ta, tb = a.read_text(encoding="utf-8"), b.read_text(encoding="utf-8")
        if a.name.endswith(".jsonl"):
            la, lb = ta.splitlines(), tb.splitlines()
            return len(la) == len(lb) and all(json.loads(x) == json.loads(y) for x, y in zip(la, lb))
        return bool(json.loads(ta) == json.loads(tb))
    except (OSError, ValueError):
        return False


def tree_digest(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            out[full.relative_to(root).as_posix()] = hashlib.blake2b(full.read_bytes(), digest_size=16).hexdigest()
    return out


def measure(
    records: int, seed: int, workdir: Path, log: Any, repeat: int = 1, baseline_sync: str = "fsync"
) -> dict[str, Any]:
    """Generate (or reuse) the home at this scale, then run every phase ``repeat`` times;
    each row is the run with the median wall time."""
    reg = load_bench_registry()
    current = dict(reg.CURRENT)
    home = workdir / "home"
    log(f"generating ~{records} records in {home} (seed {seed}) ...")
    corpus, gen_s, reused = generate_home(home, records, seed, current)
    pending = sum(corpus.pending.values())
    log(
        ("reused" if reused else f"generated in {gen_s:.1f}s:")
        + f" {corpus.records} records ({corpus.jsonl_records} in JSON lines, {pending} pending migration) "
        + f"in {corpus.files} files (+{corpus.other_files} in no domain), {corpus.bytes / 1e6:.1f} MB"
    )
    compile_tool(log)
    runs: list[list[dict[str, Any]]] = []
    checks: list[str] = []
    differ: set[str] = set()
    for i in range(repeat):
        if repeat > 1:
            log(f" run {i + 1}/{repeat}")
        rows, failed, bytes_differ = pipeline(workdir, home, corpus, log, baseline_sync)
        runs.append(rows)
        checks += [c for c in failed if c not in checks]
        differ.update(bytes_differ)
    # The process trees' memory, in a pass of its own, so that sampling it slows no timed run.
    log(" memory pass (not timed): peak PSS of each command's process tree")
    sampled, failed, _ = pipeline(workdir, home, corpus, log, baseline_sync, sample_tree=True)
    checks += [c for c in failed if c not in checks]
    rows = []
    for j, first in enumerate(runs[0]):
        candidates = sorted((r[j] for r in runs), key=lambda r: r["seconds"])
        chosen = dict(candidates[(len(candidates) - 1) // 2])
        chosen["peak_tree_rss_mb"] = sampled[j]["peak_tree_rss_mb"]
        chosen["peak_rss_mb"] = sampled[j]["peak_rss_mb"]  # sampled VmHWM where there is /proc
        if repeat > 1:
            chosen["all_seconds"] = [r[j]["seconds"] for r in runs]
        rows.append(chosen)
    return {
        "records": corpus.records,
        "requested_records": records,
        "files": corpus.files,
        "other_files": corpus.other_files,
        "corpus_mb": corpus.bytes / 1e6,
        "jsonl_records": corpus.jsonl_records,
        "pending": pending,
        "pending_by_domain": corpus.pending,
        "records_by_domain": corpus.by_domain,
        "seed": seed,
        "generate_seconds": gen_s,
        "repeat": repeat,
        "baseline_sync": baseline_sync,
        "rows": rows,
        "ratios": ratios(rows),
        "exports_identical": not differ,
        "exports_equal_json": not any(c.startswith("exports hold different JSON") for c in checks),
        "exports_bytes_differ": sorted(differ),
        "checks_failed": checks,
    }


OUTPUTS = ("rs.db", "baseline.db", "jsonl", "sqlite-utils.db", "rs-jsonl.db", "logs")


def remove_outputs(workdir: Path, exports: bool = True) -> None:
    """Remove what a pipeline writes (stores, logs, and with ``exports`` the exported
    trees), never the generated home."""
    for path in [*(workdir / name for name in OUTPUTS), *(workdir.glob("exports-*") if exports else [])]:
        if path.is_dir():
            shutil.rmtree(path)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            if p.is_file():
                p.unlink()


def pipeline(
    workdir: Path, home: Path, corpus: Corpus, log: Any, baseline_sync: str = "fsync", sample_tree: bool = False
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """One measurement of every phase; returns (rows, failed checks, files whose bytes differ
    between the two exports). Both exports must hold equal JSON; bytes may differ only in
    how a step's output was re-encoded (e.g. a float written 2.2e-05 or 0.000022).
    ``sample_tree``: also the peak PSS of each command's process tree (see run_child)."""
    pending = sum(corpus.pending.values())
    logdir = workdir / "logs"
    # The exports of earlier runs stay until the end of the whole measurement: ext4 will
    # not reuse an inode freed in the last minute or so, and skips such inodes one by one
    # when it creates a file, so an export run soon after 96,000 files were removed
    # paid 9-16 s of system time (perf: ext4_create, recently_deleted), and only the
    # tool that ran first did.
    remove_outputs(workdir, exports=False)
    logdir.mkdir()

    store = [*store_cmd(), "--registry", str(REGISTRY_PATH), "--quiet"]
    rs_db, bl_db = workdir / "rs.db", workdir / "baseline.db"
    baseline = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--registry",
        str(REGISTRY_PATH),
        "--baseline-sync",
        baseline_sync,
        "--baseline-phase",
    ]
    rows: list[dict[str, Any]] = []
    checks: list[str] = []

    inputs = {"import": [home], "migrate": [rs_db, bl_db], "export": [rs_db, bl_db], "jsonl-ingest": []}

    def row(phase: str, tool: str, n: int, cmd: list[str]) -> str:
        log(f"  {phase:<12} {tool:<12} ...")
        # Every tool starts with its inputs in the page cache, so the order in which the
        # tools run does not decide which of them pays for reading the disk (run_child
        # then syncs what earlier commands left to write back).
        warm([*inputs[phase], *([workdir / "jsonl"] if phase == "jsonl-ingest" else [])])
        wall, cpu, rss, tree_rss, stdout = run_child(cmd, logdir, f"{phase}-{tool}", sample_tree)
        rows.append(
            {
                "phase": phase,
                "tool": tool,
                "seconds": wall,
                "cpu_seconds": cpu,
                "records": n,
                "records_per_s": n / wall if wall else 0.0,
                "peak_rss_mb": rss,
                "peak_tree_rss_mb": tree_rss,
            }
        )
        return stdout

    def check(what: str, got: Any, want: Any) -> None:
        if got != want:
            checks.append(f"{what}: got {got}, expected {want}")

    # import
    res = json.loads(row("import", "recordstore", corpus.records, [*store, "--db", str(rs_db), "import", "--json", str(home)]))
    check("recordstore import: records", sum(d["imported"] for d in res["domains"].values()), corpus.records)
    check("recordstore import: problems", res["problems"], [])
    res = json.loads(row("import", "baseline", corpus.records, [*baseline, "import", "--home", str(home), "--db", str(bl_db)]))
    check("baseline import: records", res["records"], corpus.records)
    # migrate
    res = json.loads(row("migrate", "recordstore", pending, [*store, "--db", str(rs_db), "migrate", "--json"]))
    check("recordstore migrate: records", res["migrated"], pending)
    check("recordstore migrate: failures", res["failures"], [])
    res = json.loads(row("migrate", "baseline", pending, [*baseline, "migrate", "--db", str(bl_db)]))
    check("baseline migrate: records", res["migrated"], pending)
    # export
    # A new directory each run: on this machine's file system, writing 48,000 files at
    # the paths of a tree just removed cost 3-6x the system time of a fresh directory.
    exports = Path(tempfile.mkdtemp(prefix="exports-", dir=workdir))
    rs_out, bl_out = exports / "recordstore", exports / "baseline"
    res = json.loads(row("export", "recordstore", corpus.records, [*store, "--db", str(rs_db), "export", "--json", str(rs_out)]))
    check("recordstore export: records", res["records"], corpus.records)
    res = json.loads(row("export", "baseline", corpus.records, [*baseline, "export", "--db", str(bl_db), "--out", str(bl_out)]))
    check("baseline export: records", res["records"], corpus.records)
    rs_tree, bl_tree = tree_digest(rs_out), tree_digest(bl_out)
    differ = sorted(p for p in rs_tree.keys() | bl_tree.keys() if rs_tree.get(p) != bl_tree.get(p))
    unequal = [p for p in differ if not same_json(rs_out / p, bl_out / p)]
    if unequal:
        checks.append(f"exports hold different JSON in {len(unequal)} file(s), e.g. {unequal[:3]}")
    shown = "yes" if not differ else f"no: {len(differ)} file(s) differ in bytes, {len(unequal)} in JSON"
    log(f"  exports identical: {shown} ({len(rs_tree)} files)")

    # JSON lines: one concatenated file
    jsonl = workdir / "jsonl" / "events.jsonl"
    jsonl.parent.mkdir()
    with open(jsonl, "wb") as dst:
        events = home / "tasks" / "runtime" / "events"
        for name in sorted(os.listdir(events)):
            with open(events / name, "rb") as src:
                shutil.copyfileobj(src, dst)
    n_lines = corpus.jsonl_records
    res = json.loads(
        row(
            "jsonl-ingest",
            "recordstore",
            n_lines,
            [*store, "--db", str(workdir / "rs-jsonl.db"), "import", "--json", "--domain", "runtime", str(jsonl)],
        )
    )
    check("recordstore jsonl ingest: records", sum(d["imported"] for d in res["domains"].values()), n_lines)
    su = sqlite_utils_exe()
    if su is None:
        log(f"  sqlite-utils not found next to {sys.executable}: skipping the sqlite-utils comparison")
    else:
        # --alter: v2 events carry a field v1 events lack.
        su_db = workdir / "sqlite-utils.db"
        row("jsonl-ingest", "sqlite-utils", n_lines, [str(su), "insert", str(su_db), "events", str(jsonl), "--nl", "--alter"])
        with contextlib.closing(sqlite3.connect(su_db)) as c:
            check("sqlite-utils insert: rows", c.execute("SELECT count(*) FROM events").fetchone()[0], n_lines)
    return rows, checks, differ


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by = {(r["phase"], r["tool"]): r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        other = "sqlite-utils" if phase == "jsonl-ingest" else "baseline"
        a, b = by.get((phase, "recordstore")), by.get((phase, other))
        if a and b:
            out[phase] = {
                "against": other,
                "time": a["seconds"] / b["seconds"] if b["seconds"] else None,
                "cpu": a["cpu_seconds"] / b["cpu_seconds"] if b["cpu_seconds"] else None,
                "peak_rss": a["peak_rss_mb"] / b["peak_rss_mb"] if b["peak_rss_mb"] else None,
            }
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['records']} records ({result['jsonl_records']} JSON lines, {result['pending']} pending) "
        f"in {result['files']} files, {result['corpus_mb']:.1f} MB"
        + (f"; median of {result['repeat']} runs" if result["repeat"] > 1 else ""),
        "baseline export durability: "
        + ("one os.sync() per 2000 files" if result["baseline_sync"] == "batch" else "one fsync per file"),
        "",
        f"{'phase':<13} {'tool':<13} {'seconds':>9} {'CPU s':>8} {'records':>9} {'records/s':>11} {'peak RSS MB':>12}"
        f" {'tree PSS MB':>12}",
        "-" * 94,
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['phase']:<13} {r['tool']:<13} {r['seconds']:>9.2f} {r['cpu_seconds']:>8.2f} {r['records']:>9} "
            f"{r['records_per_s']:>11,.0f} {r['peak_rss_mb']:>12.1f}"
            + (f" {r['peak_tree_rss_mb']:>12.1f}" if r.get("peak_tree_rss_mb") else f" {'-':>12}")
        )
    lines.append("")
    for phase, q in result["ratios"].items():
        lines.append(
            f"ratio {phase:<13} recordstore/{q['against']:<13} time {q['time']:>6.2f}x   CPU {q['cpu']:>6.2f}x"
            f"   peak RSS {q['peak_rss']:>5.2f}x"
        )
    if result["exports_identical"]:
        lines.append("exports identical (recordstore vs baseline): yes")
    elif result["exports_equal_json"]:
        shown = ", ".join(result["exports_bytes_differ"][:3])
        lines.append(
            f"exports identical (recordstore vs baseline): equal JSON, but {len(result['exports_bytes_differ'])} "
            f"file(s) differ in bytes (number formatting?), e.g. {shown}"
        )
    else:
        lines.append("exports identical (recordstore vs baseline): NO")
    for c in result["checks_failed"]:
        lines.append(f"CHECK FAILED: {c}")
    return "\n".join(lines)


def render_sweep(results: list[dict[str, Any]], factors: list[float]) -> str:
    keys = [(r["phase"], r["tool"]) for r in results[0]["rows"]]
    head = f"{'phase':<13} {'tool':<13}" + "".join(f" {f'{f:g}x s':>8}" for f in factors)
    head += f" {'time':>7} {'CPU':>7}" + "".join(f" {f'{f:g}x MB':>8}" for f in factors) + f" {'RSS':>7} {'tree':>7}"
    grew = results[-1]["records"] / results[0]["records"]
    lines = [
        "growth with scale (records: " + ", ".join(str(r["records"]) for r in results) + f"; {grew:.2f}x from first to last)",
        head,
        "-" * len(head),
    ]
    for key in keys:
        found = [next((x for x in r["rows"] if (x["phase"], x["tool"]) == key), None) for r in results]
        rs = [x for x in found if x is not None]
        if len(rs) != len(found):
            continue
        secs = [x["seconds"] for x in rs]
        cpus = [x["cpu_seconds"] for x in rs]
        mbs = [x["peak_rss_mb"] for x in rs]
        trees = [x.get("peak_tree_rss_mb") for x in rs]
        lines.append(
            f"{key[0]:<13} {key[1]:<13}"
            + "".join(f" {v:>8.2f}" for v in secs)
            + f" {secs[-1] / secs[0]:>6.2f}x {cpus[-1] / cpus[0]:>6.2f}x"
            + "".join(f" {v:>8.1f}" for v in mbs)
            + f" {mbs[-1] / mbs[0]:>6.2f}x"
            + (f" {trees[-1] / trees[0]:>6.2f}x" if trees[0] and trees[-1] else f" {'-':>7}")
        )
    lines.append(
        "(time, CPU, RSS of the largest process, PSS of the process tree: last scale over first;"
        " linear scaling means time and CPU grow about as records do)"
    )
    return "\n".join(lines)


# =========================================================================== main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=250_000, help="about this many records, in about N/5 files (default 250000)")
    p.add_argument("--seed", type=int, default=4, help="seed of the generated home (default 4)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="work directory (default: a new temporary directory, removed at the end); its generated "
        "home is kept and reused by the next run with the same --records and --seed",
    )
    p.add_argument("--keep", action="store_true", help="keep everything: homes, stores, exports, logs")
    p.add_argument(
        "--sweep",
        "--scale",
        nargs="?",
        const="1,2,4",
        metavar="FACTORS",
        help="run at several multiples of --records (default 1,2,4) and show how time and peak RSS grow",
    )
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="run every phase N times, report the median (default 1)")
    p.add_argument(
        "--baseline-sync",
        choices=("fsync", "batch"),
        default="fsync",
        help="how the baseline export makes files durable: fsync each file (DESIGN.md, guarantee 6; default) "
        "or one os.sync() per 2000 staged files, as recordstore's exporter now does",
    )
    p.add_argument("--json", dest="json_out", type=Path, metavar="FILE", help="also write the figures as JSON")
    # internal: one baseline phase, run as its own process
    p.add_argument("--baseline-phase", choices=("import", "migrate", "export"), help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--registry", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.records < 1:
        p.error("--records must be at least 1")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_phase:
        return baseline_main(args)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    factors = [float(f) for f in args.sweep.split(",")] if args.sweep else [1.0]
    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="recordstore-bench-")) if own_tmp else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        for f in factors:
            n = max(1, round(args.records * f))
            sub = workdir / f"x{f:g}" if len(factors) > 1 else workdir
            sub.mkdir(exist_ok=True)
            result = measure(n, args.seed, sub, log, args.repeat, args.baseline_sync)
            result["factor"] = f
            results.append(result)
            print(("" if len(results) == 1 else "\n") + (f"== {f:g}x ==\n" if len(factors) > 1 else "") + render(result), flush=True)
            if not args.keep:
                if own_tmp and len(factors) > 1:
                    shutil.rmtree(sub, ignore_errors=True)
                elif not own_tmp:
                    remove_outputs(sub)
    except ChildFailed as exc:
        print(f"bench: a measured command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if own_tmp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"work directory kept: {workdir}")
    if len(results) > 1:
        print("\n" + render_sweep(results, factors))
    meta = {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "sqlite": sqlite3.sqlite_version,
        "store": store_cmd(),
        "sqlite_utils": str(sqlite_utils_exe()) if sqlite_utils_exe() else None,
    }
    if args.json_out:
        payload: dict[str, Any] = {**meta, **results[0]} if len(results) == 1 else {**meta, "sweep": results}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(r["checks_failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
