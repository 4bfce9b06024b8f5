#!/usr/bin/env python3
"""Write a small, realistic DeepSeek TUI home to examples/deepseek-home/.

Standard library only, fully deterministic (no randomness, no clock): running it
twice produces byte-identical files. The layout follows
DEEPSEEK_LAYOUT.md: pretty files are written the way Rust serde_json's
pretty printer writes them (2-space indent, ": " separators, UTF-8 without
escaping, NO trailing newline); JSON lines are compact, one per line, each
ending with "\\n".

Usage:  python3 examples/make_home.py [TARGET_DIR]
        (default target: deepseek-home/ next to this script; it is deleted
        and rewritten from scratch)
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TARGET = os.path.join(HERE, "deepseek-home")

U64_MAX = 18446744073709551615
WORKSPACE = "/home/alice/proj"
MODEL = "deepseek-v4-pro"

# ---------------------------------------------------------------- ids
SESSION_A = "3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10"  # v1, tool use + errors
SESSION_B = "8b21e0d4-5c7f-4e19-a3b6-0d9c4f2e7b55"  # v1, unicode, u64, floats
SESSION_C = "c0a7f3e9-2b64-4d1a-8e5f-71b9d3c6a402"  # legacy: no schema_version
SESSION_D = "5d9e2a71-4f08-4c3b-b6d2-9a1e7c5f3b08"  # v1, server_tool_use

THREAD_V2 = "thr_1a2b3c4d"
THREAD_V1 = "thr_7e8f9a0b"
TURN_V2_A = "turn_5e6f7a8b"
TURN_V2_B = "turn_9c8d7e6f"
TURN_V1 = "turn_2b3c4d5e"
ITEM_V2_A = "item_4e5f6a7b"
ITEM_V2_B = "item_8a9b0c1d"
ITEM_V1 = "item_3c4d5e6f"

TASK_V2_A = "task_9c0d1e2f"
TASK_V2_B = "task_3a4b5c6d"  # started by an automation run
TASK_V1 = "task_1f2e3d4c"

AUTO_AUDIT = "7d3c1e0a-6b5f-4e2d-9a8c-1f0e3d2c4b5a"
AUTO_DIGEST = "e4a91b6c-2d7f-4a38-b0c5-8f6e1d9a7c23"
RUN_1 = "b2e4f6a8-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
RUN_2 = "d6f8a0b2-3e4f-4a6b-9c8d-2e1f0a9b8c7d"
RUN_3 = "f1a3c5e7-9b0d-4c2e-a4f6-8d0b2c4e6a81"


# ---------------------------------------------------------------- writers
def write_pretty(root, rel, obj):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False))  # no trailing newline


def write_jsonl(root, rel, objs):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        for obj in objs:
            f.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
            f.write("\n")


def write_text(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


# ---------------------------------------------------------------- helpers
def text(t):
    return {"type": "text", "text": t}


def thinking(t):
    return {"type": "thinking", "thinking": t}


def tool_use(id_, name, input_):
    return {"type": "tool_use", "id": id_, "name": name, "input": input_}


def tool_result(id_, content, is_error=None):
    block = {"type": "tool_result", "tool_use_id": id_, "content": content}
    if is_error is not None:
        block["is_error"] = is_error
    return block


def msg(role, *blocks):
    return {"role": role, "content": list(blocks)}


def session(version, meta, messages, system_prompt=None):
    rec = {}
    if version is not None:
        rec["schema_version"] = version
    rec["metadata"] = meta
    rec["messages"] = messages
    rec["system_prompt"] = system_prompt
    return rec


def metadata(id_, title, created, updated, n, tokens, mode="agent", model=MODEL,
             workspace=WORKSPACE):
    return {
        "id": id_,
        "title": title,
        "created_at": created,
        "updated_at": updated,
        "message_count": n,
        "total_tokens": tokens,
        "model": model,
        "workspace": workspace,
        "mode": mode,
    }


# ---------------------------------------------------------------- sessions
def sessions(root):
    # A: the layout document's session, continued: tool results incl. an error.
    msgs_a = [
        msg("user", text("Fix the failing add() test")),
        msg("assistant",
            thinking("Read the file first."),
            tool_use("call_00_k3J9", "read_file", {"path": "src/lib.rs"})),
        msg("user",
            tool_result("call_00_k3J9",
                        "pub fn add(a: u64, b: u64) -> u64 {\n    a - b\n}\n")),
        msg("assistant",
            text("`add` subtracts. Let me run the tests to confirm."),
            tool_use("call_01_Qm7x", "exec_shell",
                     {"command": "cargo test add", "timeout_ms": 120000})),
        msg("user",
            tool_result("call_01_Qm7x",
                        "error[E0308]: mismatched types\n --> src/lib.rs:2:5\n"
                        "error: could not compile `proj` (lib test) due to 1 previous error",
                        is_error=True)),
        msg("assistant",
            thinking("The compile error comes from the test module; fix the body "
                     "and the test's literal type together."),
            tool_use("call_02_Zr4p", "edit_file",
                     {"path": "src/lib.rs", "old": "a - b", "new": "a + b"})),
        msg("user", tool_result("call_02_Zr4p", "Edited src/lib.rs (1 replacement)",
                                is_error=False)),
        msg("assistant", text("Fixed: `add` now returns `a + b` and `cargo test` passes.")),
    ]
    write_pretty(root, f"sessions/{SESSION_A}.json", session(
        1,
        metadata(SESSION_A, "Fix the failing add() test in @src/lib.rs",
                 "2026-05-02T15:20:11.482913004Z", "2026-05-02T15:23:33.107552118Z",
                 len(msgs_a), 18342),
        msgs_a))

    # B: unicode, emoji, a u64::MAX token count and floats.
    msgs_b = [
        msg("user", text("Rename the module to naïve café — 日本語 ✓ and add a 🚀 to the README")),
        msg("assistant",
            thinking("Non-ASCII file names: keep the UTF-8 as is, no escaping. 🤔"),
            tool_use("call_00_Hd2w", "write_file",
                     {"path": "README.md", "content": "# naïve café — 日本語 ✓ 🚀\n"}),
            tool_use("call_01_Fp3n", "eval_python",
                     {"code": "print(abs(3.14159 - math.pi) < 0.1)",
                      "pi_approx": 3.14159, "tolerance": 0.1})),
        msg("user",
            tool_result("call_00_Hd2w", "Wrote 38 bytes to README.md ✓"),
            tool_result("call_01_Fp3n", "True")),
        msg("assistant", text("Done — README now reads “naïve café — 日本語 ✓ 🚀”. "
                              "Ratio check: π ≈ 3.14159, ε = 0.1.")),
    ]
    write_pretty(root, f"sessions/{SESSION_B}.json", session(
        1,
        metadata(SESSION_B, "naïve café — 日本語 ✓ 🚀",
                 "2026-05-03T08:02:47.000912331Z", "2026-05-03T08:05:19.734001250Z",
                 len(msgs_b), U64_MAX, mode="plan"),
        msgs_b,
        system_prompt="You are a careful assistant. Réponds en français si on te le demande."))

    # C: legacy file written before versioning: no schema_version key at all.
    msgs_c = [
        msg("user", text("What does `cargo clippy -- -D warnings` do?")),
        msg("assistant", text("It runs Clippy and turns every warning into an error, "
                              "so CI fails on lints.")),
    ]
    write_pretty(root, f"sessions/{SESSION_C}.json", session(
        None,
        metadata(SESSION_C, "clippy flags",
                 "2025-11-17T19:44:02.519300817Z", "2025-11-17T19:44:31.006118942Z",
                 len(msgs_c), 912, model="deepseek-chat"),
        msgs_c))

    # D: server-side tool use (web search) and an empty-input tool call.
    msgs_d = [
        msg("user", text("Is there a newer rusqlite release?")),
        msg("assistant",
            {"type": "server_tool_use", "id": "srvtoolu_01Wq8e", "name": "web_search",
             "input": {"query": "rusqlite latest release"}},
            text("Checking the lockfile too."),
            tool_use("call_00_Lk5s", "list_dir", {})),
        msg("user", tool_result("call_00_Lk5s", "Cargo.lock\nCargo.toml\nsrc/\ntests/")),
        msg("assistant", text("Your lockfile pins rusqlite 0.32.1; a newer minor is out.")),
    ]
    write_pretty(root, f"sessions/{SESSION_D}.json", session(
        1,
        metadata(SESSION_D, "rusqlite version check",
                 "2026-05-04T10:11:12.130415926Z", "2026-05-04T10:12:40.885201774Z",
                 len(msgs_d), 4410, mode="yolo"),
        msgs_d))

    # Checkpoint of the session in progress (a session record, mid-conversation).
    msgs_latest = [
        msg("user", text("Now add a property test for add()")),
        msg("assistant",
            thinking("Use proptest; check commutativity and overflow behaviour."),
            tool_use("call_00_Pt9v", "read_file", {"path": "Cargo.toml"})),
    ]
    write_pretty(root, "sessions/checkpoints/latest.json", session(
        1,
        metadata("a9c2e4f6-0b1d-4e3f-8a5c-7d9e1f2a3b4c", "Property test for add()",
                 "2026-05-04T11:00:05.204718830Z", "2026-05-04T11:00:41.660027419Z",
                 len(msgs_latest), 2307),
        msgs_latest))

    write_pretty(root, "sessions/checkpoints/offline_queue.json", {
        "schema_version": 1,
        "messages": [
            {"display": "run the tests again", "skill_instruction": None},
            {"display": "/review src/lib.rs",
             "skill_instruction": "Review the file for correctness and style."},
        ],
        "draft": "and then commit with a short mess",
    })


# ---------------------------------------------------------------- runtime
def item_v2(id_, turn, kind, status, summary, detail, refs, started, ended):
    return {"schema_version": 2, "id": id_, "turn_id": turn, "kind": kind,
            "status": status, "summary": summary, "detail": detail,
            "artifact_refs": refs, "started_at": started, "ended_at": ended}


def runtime(root):
    # threads: one v2, one v1 (v1 lacks archived and coherence_state)
    write_pretty(root, f"tasks/runtime/threads/{THREAD_V2}.json", {
        "schema_version": 2, "id": THREAD_V2,
        "created_at": "2026-05-02T15:30:00.118273645Z",
        "updated_at": "2026-05-02T15:30:12.903551207Z",
        "model": MODEL, "workspace": WORKSPACE, "mode": "agent",
        "allow_shell": False, "trust_mode": False, "auto_approve": True,
        "latest_turn_id": TURN_V2_B, "archived": False, "coherence_state": "healthy",
    })
    write_pretty(root, f"tasks/runtime/threads/{THREAD_V1}.json", {
        "schema_version": 1, "id": THREAD_V1,
        "created_at": "2026-01-09T09:14:55.300128004Z",
        "updated_at": "2026-01-09T09:15:20.771940316Z",
        "model": "deepseek-chat", "workspace": WORKSPACE, "mode": "agent",
        "allow_shell": True, "trust_mode": False, "auto_approve": False,
        "latest_turn_id": TURN_V1,
    })

    # turns: two v2, one v1 (v1 lacks steer_count)
    write_pretty(root, f"tasks/runtime/turns/{TURN_V2_A}.json", {
        "schema_version": 2, "id": TURN_V2_A, "thread_id": THREAD_V2,
        "status": "completed", "input_summary": "Run cargo test",
        "created_at": "2026-05-02T15:30:00.250019834Z",
        "usage": {"input_tokens": 5120, "output_tokens": 640},
        "item_ids": [ITEM_V2_A], "steer_count": 0,
    })
    write_pretty(root, f"tasks/runtime/turns/{TURN_V2_B}.json", {
        "schema_version": 2, "id": TURN_V2_B, "thread_id": THREAD_V2,
        "status": "failed", "input_summary": "Run cargo clippy -- -D warnings",
        "created_at": "2026-05-02T15:30:09.617400285Z",
        "usage": {"input_tokens": 7311, "output_tokens": 288},
        "item_ids": [ITEM_V2_B], "steer_count": 1,
    })
    write_pretty(root, f"tasks/runtime/turns/{TURN_V1}.json", {
        "schema_version": 1, "id": TURN_V1, "thread_id": THREAD_V1,
        "status": "completed", "input_summary": "List the workspace",
        "created_at": "2026-01-09T09:14:55.402215760Z",
        "usage": {"input_tokens": 1840, "output_tokens": 96},
        "item_ids": [ITEM_V1],
    })

    # items: two v2, one v1 (v1 lacks artifact_refs)
    item_a = item_v2(ITEM_V2_A, TURN_V2_A, "command_execution", "completed",
                     "exec_shell: ok", "running 42 tests\ntest result: ok. 42 passed; 0 failed",
                     [f"tasks/artifacts/{TASK_V2_A}/output.txt"],
                     "2026-05-02T15:30:00.391187220Z", "2026-05-02T15:30:08.774530119Z")
    item_b = item_v2(ITEM_V2_B, TURN_V2_B, "command_execution", "failed",
                     "exec_shell: exit 101", "error: this `if` has identical blocks",
                     [], "2026-05-02T15:30:09.702013377Z", "2026-05-02T15:30:12.840095612Z")
    write_pretty(root, f"tasks/runtime/items/{ITEM_V2_A}.json", item_a)
    write_pretty(root, f"tasks/runtime/items/{ITEM_V2_B}.json", item_b)
    item_v1 = {"schema_version": 1, "id": ITEM_V1, "turn_id": TURN_V1,
               "kind": "tool_call", "status": "completed", "summary": "list_dir: 4 entries",
               "detail": "Cargo.lock\nCargo.toml\nsrc/\ntests/",
               "started_at": "2026-01-09T09:14:55.530871102Z",
               "ended_at": "2026-01-09T09:14:55.541006327Z"}
    write_pretty(root, f"tasks/runtime/items/{ITEM_V1}.json", item_v1)

    write_pretty(root, "tasks/runtime/state.json", {"schema_version": 2, "next_seq": 43})

    # events (seq is global across threads; state.next_seq follows the last one)
    def ev(version, seq, ts, thread, turn, item, event, payload):
        e = {}
        if version is not None:
            e["schema_version"] = version
        e["seq"] = seq
        e["timestamp"] = ts
        e["thread_id"] = thread
        e["turn_id"] = turn
        if item is not None:
            e["item_id"] = item
        e["event"] = event
        e["payload"] = payload
        return e

    # v1 thread: one legacy line (no schema_version), then v1 lines (no item_id field)
    write_jsonl(root, f"tasks/runtime/events/{THREAD_V1}.jsonl", [
        ev(None, 1, "2026-01-09T09:14:55.300551019Z", THREAD_V1, None, None,
           "thread.started", {"model": "deepseek-chat"}),
        ev(1, 2, "2026-01-09T09:14:55.402700113Z", THREAD_V1, TURN_V1, None,
           "turn.started", {"input_summary": "List the workspace"}),
        ev(1, 3, "2026-01-09T09:14:55.531004558Z", THREAD_V1, TURN_V1, None,
           "item.started", {"item": {"schema_version": 1, "id": ITEM_V1,
                                     "kind": "tool_call", "status": "in_progress"}}),
        ev(1, 4, "2026-01-09T09:14:55.541277019Z", THREAD_V1, TURN_V1, None,
           "item.completed", {"item": item_v1}),
        ev(1, 5, "2026-01-09T09:15:20.770113845Z", THREAD_V1, TURN_V1, None,
           "turn.completed", {"usage": {"input_tokens": 1840, "output_tokens": 96}}),
        ev(1, 6, "2026-01-09T09:15:20.771802260Z", THREAD_V1, None, None,
           "thread.idle", {}),
    ])

    # v2 thread
    write_jsonl(root, f"tasks/runtime/events/{THREAD_V2}.jsonl", [
        ev(2, 35, "2026-05-02T15:30:00.118940021Z", THREAD_V2, None, None,
           "thread.started", {"model": MODEL, "mode": "agent"}),
        ev(2, 36, "2026-05-02T15:30:00.250488163Z", THREAD_V2, TURN_V2_A, None,
           "turn.started", {"input_summary": "Run cargo test"}),
        ev(2, 37, "2026-05-02T15:30:00.391502776Z", THREAD_V2, TURN_V2_A, ITEM_V2_A,
           "item.started", {"item": {"schema_version": 2, "id": ITEM_V2_A,
                                     "kind": "command_execution", "status": "in_progress"}}),
        ev(2, 38, "2026-05-02T15:30:08.774901337Z", THREAD_V2, TURN_V2_A, ITEM_V2_A,
           "item.completed", {"item": item_a}),
        ev(2, 39, "2026-05-02T15:30:08.802266490Z", THREAD_V2, TURN_V2_A, None,
           "turn.completed", {"usage": {"input_tokens": 5120, "output_tokens": 640}}),
        ev(2, 40, "2026-05-02T15:30:09.617811952Z", THREAD_V2, TURN_V2_B, None,
           "turn.started", {"input_summary": "Run cargo clippy -- -D warnings"}),
        ev(2, 41, "2026-05-02T15:30:09.702334018Z", THREAD_V2, TURN_V2_B, ITEM_V2_B,
           "item.started", {"item": {"schema_version": 2, "id": ITEM_V2_B,
                                     "kind": "command_execution", "status": "in_progress"}}),
        ev(2, 42, "2026-05-02T15:30:12.840470905Z", THREAD_V2, TURN_V2_B, ITEM_V2_B,
           "item.failed", {"item": item_b, "error": "exit status 101 — clippy ✗"}),
    ])


# ---------------------------------------------------------------- tasks
def task_v2(id_, prompt, status, created, started, ended, duration, nevents,
            checklist, tool_calls, artifacts, timeline, attempts=None, gates=None):
    return {
        "schema_version": 2, "id": id_, "prompt": prompt, "model": MODEL,
        "workspace": WORKSPACE, "mode": "agent", "allow_shell": False,
        "trust_mode": False, "auto_approve": True, "status": status,
        "created_at": created, "started_at": started, "ended_at": ended,
        "duration_ms": duration, "runtime_event_count": nevents,
        "checklist": checklist, "gates": gates or [], "attempts": attempts or [],
        "artifacts": artifacts, "github_events": [], "tool_calls": tool_calls,
        "timeline": timeline,
    }


def tasks(root):
    write_pretty(root, f"tasks/tasks/{TASK_V2_A}.json", task_v2(
        TASK_V2_A, "Run cargo test", "completed",
        "2026-05-02T15:29:59.870012345Z", "2026-05-02T15:30:00.118273645Z",
        "2026-05-02T15:30:09.368120004Z", 9500, 12,
        {"items": [
            {"id": "chk_1", "text": "Build the crate", "status": "done"},
            {"id": "chk_2", "text": "Run the test suite", "status": "done"},
        ], "completion_pct": 100, "in_progress_id": None,
         "updated_at": "2026-05-02T15:30:08.801117432Z"},
        [{"id": "call_00_T1ex", "name": "exec_shell", "status": "ok", "duration_ms": 8383}],
        [{"path": f"tasks/artifacts/{TASK_V2_A}/output.txt", "kind": "stdout",
          "bytes": 312}],
        [{"timestamp": "2026-05-02T15:29:59.870012345Z", "kind": "queued",
          "summary": "Task queued"},
         {"timestamp": "2026-05-02T15:30:00.118273645Z", "kind": "started",
          "summary": "Task started"},
         {"timestamp": "2026-05-02T15:30:09.368120004Z", "kind": "completed",
          "summary": "42 tests passed ✓"}],
        attempts=[{"n": 1, "status": "completed", "ended_at": "2026-05-02T15:30:09.368120004Z"}],
        gates=[{"name": "tests", "status": "passed"}]))

    write_pretty(root, f"tasks/tasks/{TASK_V2_B}.json", task_v2(
        TASK_V2_B, "Run cargo audit", "failed",
        "2026-05-01T07:00:00.004511870Z", "2026-05-01T07:00:00.215630992Z",
        "2026-05-01T07:00:31.950288416Z", 31735, 7,
        {"items": [], "completion_pct": 0, "in_progress_id": None, "updated_at": None},
        [{"id": "call_00_Au8d", "name": "exec_shell", "status": "error",
          "duration_ms": 31502}],
        [],
        [{"timestamp": "2026-05-01T07:00:00.004511870Z", "kind": "queued",
          "summary": "Task queued by automation Weekday audit"},
         {"timestamp": "2026-05-01T07:00:31.950288416Z", "kind": "failed",
          "summary": "cargo audit: 1 vulnerability found (RUSTSEC-2026-0042)"}]))

    # v1: written before checklist/gates/attempts/github_events/tool_calls/
    # runtime_event_count existed.
    write_pretty(root, f"tasks/tasks/{TASK_V1}.json", {
        "schema_version": 1, "id": TASK_V1, "prompt": "Format the workspace with cargo fmt",
        "model": "deepseek-chat", "workspace": WORKSPACE, "mode": "agent",
        "allow_shell": True, "trust_mode": False, "auto_approve": False,
        "status": "completed",
        "created_at": "2026-01-09T09:10:02.660192311Z",
        "started_at": "2026-01-09T09:10:02.901447520Z",
        "ended_at": "2026-01-09T09:10:04.127330915Z",
        "duration_ms": 1226, "artifacts": [],
        "timeline": [{"timestamp": "2026-01-09T09:10:02.660192311Z", "kind": "queued",
                      "summary": "Task queued"}],
    })

    # Not a record: the queue index (unversioned) and a plain-text artifact.
    write_pretty(root, "tasks/queue.json", {"queue": [TASK_V2_A, TASK_V2_B]})
    write_text(root, f"tasks/artifacts/{TASK_V2_A}/output.txt",
               "   Compiling proj v0.1.0 (/home/alice/proj)\n"
               "    Finished `test` profile [unoptimized + debuginfo] target(s) in 6.21s\n"
               "     Running unittests src/lib.rs (target/debug/deps/proj-3b1f0c2a9d8e7f65)\n"
               "\n"
               "running 42 tests\n"
               "test result: ok. 42 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n")


# ---------------------------------------------------------------- automations
def automations(root):
    write_pretty(root, f"automations/automations/{AUTO_AUDIT}.json", {
        "schema_version": 1, "id": AUTO_AUDIT, "name": "Weekday audit",
        "prompt": "Run cargo audit",
        "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9;BYMINUTE=0",
        "cwds": [WORKSPACE], "status": "active",
        "created_at": "2026-04-20T12:01:44.371920468Z",
        "updated_at": "2026-05-01T07:00:32.004116720Z",
        "next_run_at": "2026-05-04T07:00:00Z",
    })
    write_pretty(root, f"automations/automations/{AUTO_DIGEST}.json", {
        "schema_version": 1, "id": AUTO_DIGEST, "name": "Nightly TODO digest",
        "prompt": "Summarise new TODO/FIXME comments since yesterday",
        "rrule": "FREQ=DAILY;BYHOUR=22;BYMINUTE=30",
        "cwds": [WORKSPACE, "/home/alice/notes"], "status": "paused",
        "created_at": "2026-04-28T20:15:09.884210337Z",
        "updated_at": "2026-04-30T21:02:57.120334519Z",
        "next_run_at": None,
    })

    def run(id_, auto, sched, status, created, started, ended, task):
        return {"schema_version": 1, "id": id_, "automation_id": auto,
                "scheduled_for": sched, "status": status, "created_at": created,
                "started_at": started, "ended_at": ended, "task_id": task}

    write_pretty(root, f"automations/runs/{AUTO_AUDIT}/{RUN_1}.json", run(
        RUN_1, AUTO_AUDIT, "2026-05-01T07:00:00Z", "completed",
        "2026-05-01T07:00:00.001902114Z", "2026-05-01T07:00:00.215630992Z",
        "2026-05-01T07:00:31.950288416Z", TASK_V2_B))
    write_pretty(root, f"automations/runs/{AUTO_AUDIT}/{RUN_2}.json", run(
        RUN_2, AUTO_AUDIT, "2026-04-29T07:00:00Z", "skipped",
        "2026-04-29T07:00:00.002210875Z", None, None, None))
    write_pretty(root, f"automations/runs/{AUTO_DIGEST}/{RUN_3}.json", run(
        RUN_3, AUTO_DIGEST, "2026-04-28T20:30:00Z", "completed",
        "2026-04-28T20:30:00.003371562Z", "2026-04-28T20:30:00.190822045Z",
        "2026-04-28T20:30:41.577209830Z", "task_6e7f8a9b"))


# ---------------------------------------------------------------- config
def config(root):
    write_text(root, "config.toml",
               "# DeepSeek TUI configuration\n"
               "model = \"deepseek-v4-pro\"\n"
               "default_mode = \"agent\"\n"
               "auto_approve = true\n"
               "\n"
               "[api]\n"
               "base_url = \"https://api.deepseek.com\"\n"
               "api_key_env = \"DEEPSEEK_API_KEY\"\n"
               "\n"
               "[shell]\n"
               "allow = false\n"
               "timeout_ms = 120000\n")
    write_pretty(root, "settings.json", {
        "theme": "dark",
        "show_thinking": True,
        "auto_compact": True,
        "compact_threshold": 0.85,
        "recent_workspaces": [WORKSPACE, "/home/alice/notes"],
    })


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_TARGET
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(target)
    sessions(target)
    runtime(target)
    tasks(target)
    automations(target)
    config(target)
    n = sum(len(fs) for _, _, fs in os.walk(target))
    print(f"wrote {n} files to {target}")


if __name__ == "__main__":
    main()
