"""The DeepSeek TUI home as DEEPSEEK_LAYOUT.md describes it, imported as a user would:
every file name, placement and shape it names or implies (records at each version it
names, files without ``schema_version``, versions nested in payloads, u64 token counts,
unicode, a session over a megabyte, events as JSON lines, temporary and lock files the
application leaves, empty files, files in no domain), then status, migrate, export,
re-import and a home the application changed in between."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from recordstore import Registry, Store
from recordstore.registry import load_registry
from conftest import Cli, tree

U64_MAX = 18446744073709551615
UNICODE = "naïve café — 日本語 ✓ 🚀 «ok»"
SESSION_ID = "3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10"
LEGACY_SESSION_ID = "c0a7f3e9-2b64-4d1a-8e5f-71b9d3c6a402"
LARGE_SESSION_ID = "8b21e0d4-5c7f-4e19-a3b6-0d9c4f2e7b55"
AUTOMATIONS = ("7d3c1e0a-6b5f-4e2d-9a8c-1f0e3d2c4b5a", "e4a91b6c-2d7f-4a38-b0c5-8f6e1d9a7c23")


def pretty(value: Any) -> str:
    """As serde_json's to_string_pretty writes: 2-space indent, ": ", UTF-8 unescaped,
    no trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def session(sid: str, *, version: int | None = 1, messages: list[Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {} if version is None else {"schema_version": version}
    record["metadata"] = {
        "id": sid,
        "title": f"Fix the failing add() test in @src/lib.rs {UNICODE}",
        "created_at": "2026-05-02T15:20:11.482913004Z",
        "updated_at": "2026-05-02T15:23:33.107552118Z",
        "message_count": 4,
        "total_tokens": U64_MAX,
        "model": "deepseek-v4-pro",
        "workspace": "/home/alice/proj",
        "mode": "agent",
        "cost": {"session_cost_usd": 0.0123, "session_cost_cny": 0.0891},
    }
    record["messages"] = messages if messages is not None else [
        {"role": "user", "content": [{"type": "text", "text": "Fix the failing add() test"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Read the file first."},
                {"type": "tool_use", "id": "call_00_k3J9", "name": "read_file", "input": {"path": "src/lib.rs"}},
                {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"query": UNICODE}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_00_k3J9", "content": "fn add(a: i32) {}", "is_error": False},
                {"type": "tool_result", "tool_use_id": "call_01", "content": "denied"},
                {"type": "tool_result", "tool_use_id": "call_02", "content": "boom", "is_error": True},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": UNICODE}]},
    ]
    record["system_prompt"] = None
    return record


def event(seq: int, *, version: int | None, at_end: bool = False, **extra: Any) -> str:
    body: dict[str, Any] = {
        "seq": seq,
        "timestamp": "2026-05-02T15:21:00.000000001Z",
        "thread_id": "thr_1a2b3c4d",
        "turn_id": "turn_5e6f7a8b",
        "event": "item.started",
        # A whole item with its own schema_version: not the record's.
        "payload": {"item": {"schema_version": 2, "id": "item_4e5f6a7b", "kind": "command_execution", "status": "in_progress"}},
        **extra,
    }
    if version is not None:
        body = {**body, "schema_version": version} if at_end else {"schema_version": version, **body}
    return compact(body)


#: What a home holds: each record file's relative path -> its domain and each record's version.
Expected = dict[str, tuple[str, list[int]]]

#: Files in no domain, as the application (or the user) leaves them in the home.
NOT_RECORDS = {
    "tasks/queue.json": pretty({"queue": ["task_9c0d1e2f"]}),
    "tasks/artifacts/task_9c0d1e2f/output.txt": "running 42 tests\ntest result: ok\n",
    "config.toml": 'default_model = "deepseek-v4-pro"\n',
    "settings.json": pretty({"theme": "dark", "temperature": 0.85}),
    # Temporary files of atomic writes (tempfile's NamedTempFile names), one cut short.
    "sessions/.tmpA1b2C3": '{\n  "schema_version": 1,\n  "metadata": {',
    "sessions/checkpoints/.tmpZz9Yy8": "",
    "tasks/tasks/.tmpQw3Er4": pretty({"schema_version": 2, "id": "task_tmp"}),
    # Lock files beside the files they guard.
    "tasks/runtime/events/thr_1a2b3c4d.jsonl.lock": "",
    "automations/.lock": "4242\n",
}


def build_home(root: Path) -> Expected:
    """Write a DeepSeek TUI home with every shape the layout document names; return
    what it holds in records."""
    files: dict[str, str] = dict(NOT_RECORDS)
    expected: Expected = {}

    def record_file(rel: str, domain: str, text: str, versions: list[int]) -> None:
        files[rel] = text
        expected[rel] = (domain, versions)

    record_file(f"sessions/{SESSION_ID}.json", "session", pretty(session(SESSION_ID)), [1])
    record_file(f"sessions/{LEGACY_SESSION_ID}.json", "session", pretty(session(LEGACY_SESSION_ID, version=None)), [1])
    large = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"c{i}", "content": "日本語 output " * 40}]} for i in range(2000)]
    record_file(f"sessions/{LARGE_SESSION_ID}.json", "session", pretty(session(LARGE_SESSION_ID, messages=large)), [1])
    record_file("sessions/checkpoints/latest.json", "session", pretty(session(SESSION_ID)), [1])
    queue = {"schema_version": 1, "session_id": SESSION_ID, "messages": [{"display": "run the tests again", "skill_instruction": None}], "draft": None}
    record_file("sessions/checkpoints/offline_queue.json", "offline_queue", pretty(queue), [1])

    thread = {
        "schema_version": 2, "id": "thr_1a2b3c4d", "created_at": "…", "updated_at": "…", "model": "deepseek-v4-pro",
        "workspace": "/home/alice/proj", "mode": "agent", "allow_shell": False, "trust_mode": False, "auto_approve": True,
        "latest_turn_id": "turn_5e6f7a8b", "archived": False, "coherence_state": "healthy",
    }
    record_file("tasks/runtime/threads/thr_1a2b3c4d.json", "runtime", pretty(thread), [2])
    old_thread = {k: v for k, v in thread.items() if k not in ("archived", "coherence_state")}
    record_file("tasks/runtime/threads/thr_7e8f9a0b.json", "runtime", pretty({**old_thread, "schema_version": 1, "id": "thr_7e8f9a0b"}), [1])
    turn = {
        "schema_version": 2, "id": "turn_5e6f7a8b", "thread_id": "thr_1a2b3c4d", "status": "completed",
        "input_summary": "Run cargo test", "created_at": "…", "usage": {"input_tokens": U64_MAX, "output_tokens": 640},
        "item_ids": ["item_4e5f6a7b"], "steer_count": 0,
    }
    record_file("tasks/runtime/turns/turn_5e6f7a8b.json", "runtime", pretty(turn), [2])
    old_turn = {k: v for k, v in turn.items() if k != "steer_count"}
    record_file("tasks/runtime/turns/turn_2b3c4d5e.json", "runtime", pretty({**old_turn, "schema_version": 1, "extra": UNICODE}), [1])
    item = {
        "schema_version": 2, "id": "item_4e5f6a7b", "turn_id": "turn_5e6f7a8b", "kind": "command_execution",
        "status": "completed", "summary": "exec_shell: ok", "detail": "running 42 tests", "artifact_refs": [],
        "started_at": "…", "ended_at": "…",
    }
    record_file("tasks/runtime/items/item_4e5f6a7b.json", "runtime", pretty(item), [2])
    # No top-level version (version 1), but a nested one that says 2.
    unversioned_item = {k: v for k, v in item.items() if k not in ("schema_version", "artifact_refs")}
    unversioned_item["payload"] = {"schema_version": 2, "blocks": [{"type": "text", "text": UNICODE}]}
    record_file("tasks/runtime/items/item_3c4d5e6f.json", "runtime", pretty({**unversioned_item, "id": "item_3c4d5e6f"}), [1])
    record_file("tasks/runtime/state.json", "runtime", pretty({"schema_version": 2, "next_seq": 43}), [2])
    lines = [
        event(40, version=2, item_id="item_4e5f6a7b"),
        event(41, version=None),  # before versioning: 1, whatever its payload's item says
        event(42, version=1, at_end=True),  # its own version after the nested one
        event(43, version=2, note=UNICODE, tokens=U64_MAX),
    ]
    record_file("tasks/runtime/events/thr_1a2b3c4d.jsonl", "runtime", "".join(line + "\n" for line in lines), [2, 1, 1, 2])
    record_file("tasks/runtime/events/thr_7e8f9a0b.jsonl", "runtime", "", [])  # created, nothing appended yet

    task = {
        "schema_version": 2, "id": "task_9c0d1e2f", "prompt": "Run cargo test", "model": "deepseek-v4-pro",
        "workspace": "/home/alice/proj", "mode": "agent", "allow_shell": False, "trust_mode": False, "auto_approve": True,
        "status": "completed", "created_at": "…", "started_at": "…", "ended_at": "…", "duration_ms": 9500,
        "runtime_event_count": 12, "checklist": {"items": [], "completion_pct": 0, "in_progress_id": None, "updated_at": None},
        "gates": [], "attempts": [], "artifacts": [], "github_events": [], "tool_calls": [],
        "timeline": [{"timestamp": "…", "kind": "queued", "summary": "Task queued"}],
    }
    record_file("tasks/tasks/task_9c0d1e2f.json", "task", pretty(task), [2])
    old_task = {k: v for k, v in task.items() if k not in ("checklist", "gates", "attempts", "github_events", "tool_calls", "runtime_event_count")}
    record_file("tasks/tasks/task_1f2e3d4c.json", "task", pretty({**old_task, "schema_version": 1, "id": "task_1f2e3d4c"}), [1])

    for n, automation_id in enumerate(AUTOMATIONS):
        automation = {
            "schema_version": 1, "id": automation_id, "name": f"Weekday audit {n}", "prompt": "Run cargo audit",
            "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9;BYMINUTE=0", "cwds": ["/home/alice/proj"], "status": "active",
            "created_at": "…", "updated_at": "…", "next_run_at": "2026-05-04T07:00:00Z",
        }
        record_file(f"automations/automations/{automation_id}.json", "automation", pretty(automation), [1])
        for run in range(n + 1):
            run_id = f"b2e4f6a8-1c3d-4e5f-8a9b-0c1d2e3f4a5{run}"
            body = {
                "schema_version": 1, "id": run_id, "automation_id": automation_id, "scheduled_for": "2026-05-01T07:00:00Z",
                "status": "completed", "created_at": "…", "started_at": "…", "ended_at": "…", "task_id": "task_3a4b5c6d",
            }
            record_file(f"automations/runs/{automation_id}/{run_id}.json", "automation_run", pretty(body), [1])

    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert len(files[f"sessions/{LARGE_SESSION_ID}.json"].encode()) > 1 << 20  # read by the importing process itself
    return expected


def keys(expected: Expected) -> dict[str, tuple[str, int]]:
    """Each record's key with its domain and version."""
    out = {}
    for rel, (domain, versions) in expected.items():
        if rel.endswith(".jsonl"):
            out.update({f"{rel}:{n}": (domain, v) for n, v in enumerate(versions, 1)})
        else:
            out[rel] = (domain, versions[0])
    return out


def stored(db_path: Path) -> dict[str, tuple[str, int]]:
    with Store(db_path, create=False) as store:
        return {
            rec.key: (name, rec.version)
            for name in ("session", "offline_queue", "runtime", "task", "automation", "automation_run")
            for rec in store.query(name)
        }


@pytest.mark.parametrize("jobs", ["0", "2"])  # in this process; in workers that write into the new store
def test_a_real_home_puts_every_record_in_its_domain_at_its_version(cli: Cli, db_path: Path, tmp_path: Path, jobs: str) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    res = cli("import", home, "--jobs", jobs)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""  # nothing refused: temporary, lock and empty files are no errors
    assert f"{len(expected)} file(s) read, {len(NOT_RECORDS)} skipped (no domain)" in res.stdout
    assert stored(db_path) == keys(expected)
    with Store(db_path, create=False) as store:
        large = store.get("session", f"sessions/{LARGE_SESSION_ID}.json")
        assert large is not None and large.data["metadata"]["total_tokens"] == U64_MAX
        item = store.get("runtime", "tasks/runtime/items/item_3c4d5e6f.json")
        assert item is not None and item.version == 1 and item.data["payload"]["schema_version"] == 2
        line = store.get("runtime", "tasks/runtime/events/thr_1a2b3c4d.jsonl:4")
        assert line is not None and line.data["note"] == UNICODE and line.data["tokens"] == U64_MAX


def test_status_counts_each_domain_s_records_by_version(cli: Cli, tmp_path: Path) -> None:
    build_home(tmp_path / ".deepseek")
    assert cli("import", tmp_path / ".deepseek").exit_code == 0
    res = cli("status", "--json")
    assert res.exit_code == 0
    got = {
        name: (d["current_version"], d["versions"], d["pending"], d["newer"], d["refused"])
        for name, d in json.loads(res.stdout)["domains"].items()
    }
    assert got == {
        "session": (1, {"1": 4}, 0, 0, 0),
        "offline_queue": (1, {"1": 1}, 0, 0, 0),
        "runtime": (2, {"1": 5, "2": 6}, 5, 0, 0),
        "task": (2, {"1": 1, "2": 1}, 1, 0, 0),
        "automation": (1, {"1": 2}, 0, 0, 0),
        "automation_run": (1, {"1": 3}, 0, 0, 0),
    }


def test_export_writes_every_record_file_back_byte_for_byte(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    assert cli("import", home).exit_code == 0
    res = cli("export", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    exported = tree(tmp_path / "out")
    original = tree(home)
    assert set(exported) == set(expected)  # the files in no domain are not the store's
    assert exported == {rel: original[rel] for rel in expected}


def test_a_second_import_changes_nothing(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    assert cli("import", home).exit_code == 0
    before = stored(db_path)
    res = cli("import", home, "--json")
    assert res.exit_code == 0, res.stderr
    counts = json.loads(res.stdout)["domains"]
    total = sum(len(v) for _, v in expected.values())
    assert sum(c["unchanged"] for c in counts.values()) == total
    assert all(c["imported"] == c["updated"] == c["removed"] == c["rejected"] == 0 for c in counts.values())
    assert stored(db_path) == before


def stamped(text: str) -> dict[str, Any]:
    """A v1 record as migrated to v2: stamped 2 where its field was, first where there
    was none (as serde writes a struct's first field); nested versions and everything
    else as they were."""
    value = json.loads(text)
    return value | {"schema_version": 2} if "schema_version" in value else {"schema_version": 2, **value}


def test_migrate_brings_runtime_and_task_to_v2_as_the_application_writes_them(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    assert cli("import", home).exit_code == 0
    res = cli("migrate", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"runtime": {"1->2": 5}, "task": {"1->2": 1}}
    assert {v for _, v in stored(db_path).values()} == {1, 2}
    assert all(v == 2 for d, v in stored(db_path).values() if d in ("runtime", "task"))
    assert cli("export", tmp_path / "out").exit_code == 0
    exported, original = tree(tmp_path / "out"), tree(home)
    assert set(exported) == set(expected)
    for rel, (domain, versions) in expected.items():
        if domain not in ("runtime", "task") or all(v == 2 for v in versions):
            assert exported[rel] == original[rel], rel  # untouched: byte for byte
            continue
        if rel.endswith(".jsonl"):
            want = "".join(compact(stamped(line)) + "\n" for line in original[rel].decode().split("\n")[:-1])
        else:
            want = pretty(stamped(original[rel].decode()))
        assert exported[rel] == want.encode("utf-8"), rel
    line = json.loads(exported["tasks/runtime/events/thr_1a2b3c4d.jsonl"].decode().split("\n")[1])
    assert line["payload"]["item"]["schema_version"] == 2 and next(iter(line)) == "schema_version"


def test_a_home_the_application_changed_is_picked_up(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    build_home(home)
    assert cli("import", home).exit_code == 0
    assert cli("migrate").exit_code == 0
    # The application saves a session atomically (a temporary file renamed over it),
    # appends events, writes its first event to an empty log, and adds a task.
    path = home / "sessions" / f"{SESSION_ID}.json"
    value = json.loads(path.read_text(encoding="utf-8"))
    value["messages"].append({"role": "user", "content": [{"type": "text", "text": "and now? ✓"}]})
    tmp = path.with_name(".tmpN3wS3s")
    tmp.write_text(pretty(value), encoding="utf-8")
    os.replace(tmp, path)
    with open(home / "tasks/runtime/events/thr_1a2b3c4d.jsonl", "a", encoding="utf-8") as f:
        f.write(event(44, version=2) + "\n")
    (home / "tasks/runtime/events/thr_7e8f9a0b.jsonl").write_text(event(1, version=2) + "\n", encoding="utf-8")
    (home / "tasks/tasks/task_aa11bb22.json").write_text(pretty({"schema_version": 2, "id": "task_aa11bb22"}), encoding="utf-8")
    res = cli("import", home, "--json")
    assert res.exit_code == 0, res.stderr
    counts = json.loads(res.stdout)["domains"]
    assert (counts["session"]["updated"], counts["runtime"]["imported"], counts["task"]["imported"]) == (1, 2, 1)
    assert counts["runtime"]["updated"] == 0  # the migrated lines before the new one stay as they are
    with Store(db_path, create=False) as store:
        rec = store.get("session", f"sessions/{SESSION_ID}.json")
        assert rec is not None and rec.data["messages"][-1]["content"][0]["text"] == "and now? ✓"
        assert store.get("runtime", "tasks/runtime/events/thr_1a2b3c4d.jsonl:5") is not None
        old = store.get("runtime", "tasks/runtime/events/thr_1a2b3c4d.jsonl:2")
        assert old is not None and old.version == 2  # still migrated
    assert cli("export", tmp_path / "out").exit_code == 0
    out = tree(tmp_path / "out")
    for rel in (f"sessions/{SESSION_ID}.json", "tasks/runtime/events/thr_7e8f9a0b.jsonl", "tasks/tasks/task_aa11bb22.json"):
        assert out[rel] == (home / rel).read_bytes(), rel


def test_an_event_being_appended_is_reported_then_picked_up_once_written(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    log = home / "tasks/runtime/events/thr_1a2b3c4d.jsonl"
    whole = event(44, version=2) + "\n"
    with open(log, "a", encoding="utf-8") as f:
        f.write(whole[:30])  # the application is writing its line
    res = cli("import", home)
    assert res.exit_code == 1
    problems = [line for line in res.stderr.splitlines() if line.startswith("store: ")]
    assert len(problems) == 1 and problems[0].startswith("store: tasks/runtime/events/thr_1a2b3c4d.jsonl:5: invalid JSON")
    assert stored(db_path) == keys(expected)  # the rest went in
    with open(log, "a", encoding="utf-8") as f:
        f.write(whole[30:])
    res = cli("import", home)
    assert res.exit_code == 0, res.stderr
    with Store(db_path, create=False) as store:
        rec = store.get("runtime", "tasks/runtime/events/thr_1a2b3c4d.jsonl:5")
        assert rec is not None and rec.data["seq"] == 44
        assert store.status().domains["runtime"].refused == 0
    assert cli("export", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "tasks/runtime/events/thr_1a2b3c4d.jsonl").read_bytes() == log.read_bytes()


def test_a_codewhale_home_is_the_same_home(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    expected = build_home(tmp_path / ".codewhale")
    res = cli("import", tmp_path / ".codewhale", registry="deepseek")
    assert res.exit_code == 0, res.stderr
    assert stored(db_path) == keys(expected)


def test_a_dry_run_s_diff_keeps_a_line_whose_text_holds_unicode_line_separators(cli: Cli, tmp_path: Path) -> None:
    # Pasted text carries U+2028, U+2029 and U+0085, which serde_json writes as they are.
    text = "first\u2028second\u2029third\x85fourth"
    home = tmp_path / ".deepseek"
    (home / "tasks/tasks").mkdir(parents=True)
    (home / "tasks/tasks/task_1f2e3d4c.json").write_text(pretty({"schema_version": 1, "prompt": text}), encoding="utf-8")
    assert cli("import", home).exit_code == 0
    res = cli("migrate", "--dry-run", "--diff", "1")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.split("\n")
    assert "   " + json.dumps({"prompt": text}, ensure_ascii=False)[1:-1] in lines  # one line, as in the file
    assert not any(line.startswith(("second", "third", "fourth")) for line in lines)


def test_hidden_files_beside_the_records_are_skipped_not_refused(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    hidden = {
        # A home copied from macOS (tar, zip, a FAT or SMB volume): AppleDouble forks.
        f"sessions/._{SESSION_ID}.json": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
        "tasks/tasks/._task_9c0d1e2f.json": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
        # A temporary file named after its record, cut short.
        "tasks/runtime/events/.thr_1a2b3c4d.jsonl": b'{"schema_version":2,"se',
        "automations/runs/.tmp/b.json": b"",
    }
    for rel, data in hidden.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(data)
    # Emacs' lock of a session being edited: a link to nowhere.
    os.symlink("alice@host.4242:1700000000", home / "sessions" / f".#{SESSION_ID}.json")
    res = cli("import", home)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert f"{len(expected)} file(s) read, {len(NOT_RECORDS) + len(hidden) + 1} skipped (no domain)" in res.stdout
    assert stored(db_path) == keys(expected)
    assert cli("export", tmp_path / "out").exit_code == 0
    assert set(tree(tmp_path / "out")) == set(expected)  # nothing of theirs written back


def test_a_directory_no_record_can_be_in_that_cannot_be_read_is_no_error(
    cli: Cli, db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    for rel in ("tasks/artifacts/task_sandboxed", "skills/private", "sessions/checkpoints"):
        (home / rel).mkdir(parents=True, exist_ok=True)
    # As a directory a sandbox made root's reads for its owner (the tests may run as root,
    # who reads anything): listing it fails with EACCES.
    unreadable = {str(home / "tasks/artifacts/task_sandboxed"), str(home / "skills/private")}
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) in unreadable:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    res = cli("import", home)
    assert res.exit_code == 0, res.stderr  # artifacts and the like are never errors
    assert res.stderr == ""
    assert stored(db_path) == keys(expected)
    # Where records could be, it is reported: they could not be read.
    unreadable.add(str(home / "sessions/checkpoints"))
    res = cli("import", home)
    assert res.exit_code == 1
    assert res.stderr.strip() == f"store: {home / 'sessions/checkpoints'}: cannot read directory: Permission denied"


def test_which_directories_of_a_home_could_hold_records() -> None:
    builtin = load_registry(None)
    could = ["", "sessions", "sessions/checkpoints", "tasks", "tasks/runtime", "tasks/runtime/events", "automations/runs/7d3c"]
    never = ["tasks/artifacts", "tasks/artifacts/task_1", "sessions/checkpoints/old", "skills", "automations/runs/7d3c/logs", "automations/runs/.tmp"]
    assert [d for d in could if not builtin.may_match_below(d)] == []
    assert [d for d in never if builtin.may_match_below(d)] == []
    deep = Registry()
    deep.domain("note", version=1, files=["notes/**/*.json"])
    assert deep.may_match_below("notes/a/b/c") and not deep.may_match_below("other")


def test_exporting_over_the_home_after_a_migration_rewrites_only_the_migrated_files(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / ".deepseek"
    expected = build_home(home)
    assert cli("import", home).exit_code == 0
    assert cli("migrate").exit_code == 0
    before = {rel: (home / rel).stat().st_ino for rel in tree(home)}
    everything = tree(home)
    # The application, running, has a thread's events log open to append to.
    with open(home / "tasks/runtime/events/thr_7e8f9a0b.jsonl", "a", encoding="utf-8") as log:
        res = cli("export", "--force", home)
        assert res.exit_code == 0, res.stderr
        log.write(event(1, version=2) + "\n")
    after = tree(home)
    migrated = {rel for rel, (domain, versions) in expected.items() if domain in ("runtime", "task") and 1 in versions}
    assert {rel for rel in after if after[rel] != everything[rel]} == migrated | {"tasks/runtime/events/thr_7e8f9a0b.jsonl"}
    # The others, files in no domain included, are the very files they were: the
    # event the application appended is in its home, not in a file replaced under it.
    assert {rel for rel in after if (home / rel).stat().st_ino != before[rel]} == migrated
    assert after["tasks/runtime/events/thr_7e8f9a0b.jsonl"] == (event(1, version=2) + "\n").encode()
    res = cli("import", home, "--json")
    assert res.exit_code == 0, res.stderr
    counts = json.loads(res.stdout)["domains"]
    assert counts["runtime"]["imported"] == 1
    assert all(c["updated"] == c["removed"] == 0 for c in counts.values())
