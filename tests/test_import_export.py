"""Import and export: counts, re-imports, the bad-input classes, lossless round trips."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordstore import NewerVersionError, Registry, Store, parsing
from conftest import EXAMPLE_HOME, traced_peak, tree

# The example home: 25 domain files holding 37 records, and 4 files in no domain.
EXAMPLE_COUNTS = {
    "automation": 2,
    "automation_run": 3,
    "offline_queue": 1,
    "runtime": 23,
    "session": 5,
    "task": 3,
}


def test_importing_the_example_home_puts_every_record_in_its_domain(store: Store, home: Path) -> None:
    result = store.import_paths([home])
    assert result.ok, result.problems
    assert {d: c.imported for d, c in result.domains.items()} == EXAMPLE_COUNTS
    assert result.files == 25 and result.skipped == 4
    status = store.status().domains
    assert {d: s.total for d, s in status.items()} == EXAMPLE_COUNTS
    # Legacy files without schema_version are version 1, never the current version.
    assert status["runtime"].versions == {1: 9, 2: 14}
    assert status["task"].versions == {1: 1, 2: 2}
    legacy = store.get("session", "sessions/c0a7f3e9-2b64-4d1a-8e5f-71b9d3c6a402.json")
    assert legacy is not None and legacy.version == 1 and "schema_version" not in legacy.data


def test_export_reproduces_every_example_file_byte_for_byte(store: Store, home: Path, tmp_path: Path) -> None:
    store.import_paths([home])
    result = store.export_to(tmp_path / "out")
    assert result.ok and result.files == 25 and result.records == 37
    exported = tree(tmp_path / "out")
    original = {k: v for k, v in tree(EXAMPLE_HOME).items() if k in exported}
    assert exported == original
    assert set(tree(EXAMPLE_HOME)) - set(exported) == {
        "config.toml",
        "settings.json",
        "tasks/queue.json",
        "tasks/artifacts/task_9c0d1e2f/output.txt",
    }


@pytest.mark.parametrize("domains", [None, ["runtime"], ["session", "task"]])
def test_export_reads_the_files_a_window_at_a_time(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, domains: list[str] | None
) -> None:
    """Files are read FILE_WINDOW at a time beside the streamed records; windows of two
    files, files without records and files of other domains must not change a byte."""
    from recordstore import exporter

    (home / "tasks" / "runtime" / "events" / "empty.jsonl").write_bytes(b"")  # a file without records
    store.import_paths([home])
    reference = store.export_to(tmp_path / "whole", domains=domains)

    class Seen:
        total: int | None = None
        advanced = 0

        def start(self, total: int | None, label: str) -> None:
            self.total = total

        def advance(self, n: int) -> None:
            self.advanced += n

    seen = Seen()
    monkeypatch.setattr(exporter, "FILE_WINDOW", 2)
    result = store.export_to(tmp_path / "windows", domains=domains, progress=seen)
    assert tree(tmp_path / "windows") == tree(tmp_path / "whole")
    assert (result.files, result.records, result.domains) == (reference.files, reference.records, reference.domains)
    wanted = {d: n for d, n in EXAMPLE_COUNTS.items() if domains is None or d in domains}
    assert result.domains == wanted and result.records == sum(wanted.values())
    # The progress bar counts the files written, the empty one too, so it ends full.
    assert seen.advanced == result.files
    assert seen.total == result.files


def test_export_writes_back_refused_records_as_their_files_held_them(store: Store, home: Path, tmp_path: Path) -> None:
    """An empty JSON-lines file and an empty array come back as they were. So does a file
    whose records were all refused (broken, newer, cut short): the store keeps their
    text, so an export over the home never loses what the store could not take."""
    events, tasks = home / "tasks" / "runtime" / "events", home / "tasks" / "tasks"
    (events / "empty.jsonl").write_bytes(b"")
    (tasks / "task_none.json").write_bytes(b"[]")
    (events / "broken.jsonl").write_bytes(b'{"seq": 1,\n')
    newer = json.dumps({"schema_version": 99, "id": "task_newer"}).encode()
    (tasks / "task_newer.json").write_bytes(newer)
    (tasks / "task_torn.json").write_bytes(b'{"schema_version": 1, "id": "task_to')
    imported = store.import_paths([home])
    assert len(imported.problems) == 3 and imported.files == 30
    result = store.export_to(tmp_path / "out")
    assert result.ok and (result.files, result.records, result.refused) == (30, 37, 3)
    written = tree(tmp_path / "out")
    assert written["tasks/runtime/events/empty.jsonl"] == b""
    assert written["tasks/tasks/task_none.json"] == b"[]"
    assert written["tasks/runtime/events/broken.jsonl"] == b'{"seq": 1,\n'
    assert written["tasks/tasks/task_newer.json"] == newer
    assert written["tasks/tasks/task_torn.json"] == b'{"schema_version": 1, "id": "task_to'
    # Once the broken file is mended and imported again, it holds nothing refused.
    (events / "broken.jsonl").write_bytes(b"")
    store.import_paths([home])
    again = store.export_to(tmp_path / "again")
    assert (again.files, again.refused) == (30, 2)
    assert tree(tmp_path / "again")["tasks/runtime/events/broken.jsonl"] == b""


def test_a_codewhale_home_imports_the_same_way(store: Store, tmp_path: Path) -> None:
    codewhale = tmp_path / ".codewhale"
    shutil.copytree(EXAMPLE_HOME, codewhale)
    result = store.import_paths([codewhale])
    assert {d: c.imported for d, c in result.domains.items()} == EXAMPLE_COUNTS


def test_reimporting_unchanged_files_changes_nothing(store: Store, home: Path) -> None:
    store.import_paths([home])
    again = store.import_paths([home])
    assert again.ok
    assert sum(c.imported + c.updated + c.removed for c in again.domains.values()) == 0
    assert {d: c.unchanged for d, c in again.domains.items()} == EXAMPLE_COUNTS
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM backups").scalar() == 0


def test_a_changed_file_updates_its_records_and_keeps_the_old_rows(store: Store, home: Path) -> None:
    store.import_paths([home])
    task = home / "tasks" / "tasks" / "task_9c0d1e2f.json"
    before = task.read_text()
    record = json.loads(before)
    record["status"] = "failed"
    task.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    events = home / "tasks" / "runtime" / "events" / "thr_1a2b3c4d.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join(lines[:-2]))  # the last two events are gone

    result = store.import_paths([home])
    assert result.domains["task"].updated == 1
    assert result.domains["runtime"].removed == 2
    assert store.get("task", "tasks/tasks/task_9c0d1e2f.json").data["status"] == "failed"
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT key, payload, reason FROM backups ORDER BY id").all()
    assert ("tasks/tasks/task_9c0d1e2f.json", before, "import") in [tuple(r) for r in rows]
    assert sum(1 for r in rows if r.reason == "remove") == 2
    # Restoring the import run brings back the previous rows, removed ones included.
    store.restore(run=result.run_id)
    assert store.get("task", "tasks/tasks/task_9c0d1e2f.json").text == before
    assert store.query("runtime").where("thread_id", "=", "thr_1a2b3c4d").where("event", "exists").count() == 8


def test_lines_moved_down_by_a_blank_line_are_the_same_records_under_their_new_keys(store: Store, home: Path) -> None:
    """A blank line above a JSON-lines file's records moves each one line down: every
    record keeps its slot and takes the key of its new line (the old row backed up).
    This used to stop the import: the first record's new key was still the second's."""
    store.import_paths([home])
    events = home / "tasks" / "runtime" / "events" / "thr_1a2b3c4d.jsonl"
    rel = "tasks/runtime/events/thr_1a2b3c4d.jsonl"
    lines = events.read_text().splitlines()
    events.write_text("\n" + "\n".join(lines) + "\n")

    result = store.import_paths([home])
    assert result.ok, result.problems
    assert result.domains["runtime"].updated == len(lines)
    assert store.get("runtime", f"{rel}:1") is None
    moved = [store.get("runtime", f"{rel}:{n + 2}") for n in range(len(lines))]
    assert [r.text if r else None for r in moved] == lines
    # Export puts them back on those lines: the file comes back as it is, blank line and all.
    assert store.export_to(home.parent / "out").ok
    assert (home.parent / "out" / rel).read_bytes() == events.read_bytes()
    # Restoring that import gives every record its old key back.
    store.restore(run=result.run_id)
    assert [r.text for r in store.query("runtime").key(f"{rel}:1")] == [lines[0]]
    assert store.get("runtime", f"{rel}:{len(lines) + 1}") is None


def test_a_key_is_found_whatever_its_files_name_holds(store: Store, tmp_path: Path) -> None:
    """Keys are looked up through their file's path, which may itself hold ':' or '['."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "x:2.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    (src / "y[1].json").write_text('[{"n": 3}, {"n": 4}]')
    (src / "z:1.json").write_text('{"n": 5}')
    assert store.import_paths([src], domain="runtime").ok
    found = {k: store.get("runtime", k) for k in ("x:2.jsonl:1", "x:2.jsonl:2", "y[1].json[0]", "y[1].json[1]", "z:1.json")}
    assert {k: r.data["n"] if r else None for k, r in found.items()} == {
        "x:2.jsonl:1": 1, "x:2.jsonl:2": 2, "y[1].json[0]": 3, "y[1].json[1]": 4, "z:1.json": 5
    }
    for missing in ("x:2.jsonl", "x:2.jsonl:3", "y[1].json", "y[1]", "z:1.json:1", "z"):
        assert store.get("runtime", missing) is None, missing
    # The lookup starts from the file's path: it reads that file's records, not the domain's.
    with store.engine.connect() as conn:
        sql = store.query("runtime").key("x:2.jsonl:2").statement().compile(conn, compile_kwargs={"literal_binds": True})
        plan = " / ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "SCAN" not in plan and "ix_records_file_position" in plan, plan


def test_a_file_whose_name_holds_backslashes_or_a_drive_letter_comes_back_under_it(store: Store, tmp_path: Path) -> None:
    """On POSIX a backslash or a colon is a character of a name: export writes the file
    back under its own name, inside OUT (they used to be refused as Windows separators)."""
    src = tmp_path / "in"
    (src / "C:").mkdir(parents=True)
    (src / "a\\b.json").write_text('{"n": 1}\n')
    (src / "..\\up.jsonl").write_text('{"n": 2}\n\n{"n": 3}\n')
    (src / "C:" / "x.json").write_text('{"n": 4}')
    # (A name starting with "." is hidden, skipped below a directory given: given itself.)
    assert store.import_paths([src, src / "..\\up.jsonl"], domain="runtime").ok
    assert store.get("runtime", "..\\up.jsonl:3").data == {"n": 3}  # type: ignore[union-attr]
    out = tmp_path / "out"
    result = store.export_to(out)
    assert result.ok and result.files == 3, result.problems
    assert tree(out) == tree(src)
    assert not (tmp_path / "up.jsonl").exists()  # "..\\" led nowhere


def test_domain_option_imports_a_lone_file_regardless_of_patterns(store: Store, tmp_path: Path) -> None:
    src = EXAMPLE_HOME / "tasks" / "runtime" / "events" / "thr_1a2b3c4d.jsonl"
    lone = tmp_path / "events.jsonl"
    shutil.copy(src, lone)
    result = store.import_paths([lone], domain="runtime")
    assert result.ok and result.domains["runtime"].imported == 8
    assert store.get("runtime", "events.jsonl:1") is not None


def test_a_directory_is_walked_the_same_with_a_trailing_separator(home: Path, tmp_path: Path) -> None:
    """Paths relative to the directory given, and the files read from where they are."""
    with Store(tmp_path / "plain.db") as plain, Store(tmp_path / "slash.db") as slash:
        assert plain.import_paths([home], jobs=0).ok and slash.import_paths([f"{home}{os.sep}"], jobs=0).ok
        assert _store_content(tmp_path / "plain.db") == _store_content(tmp_path / "slash.db")
        keys = {r.key for r in slash.query()}
    assert "tasks/tasks/task_9c0d1e2f.json" in keys and not any(k.startswith("/") for k in keys)


def test_a_directory_imported_into_one_domain_brings_its_json_files_only(store: Store, tmp_path: Path) -> None:
    src = EXAMPLE_HOME / "tasks" / "runtime" / "events"
    shutil.copytree(src, tmp_path / "events" / "deeper")
    (tmp_path / "events" / "notes.txt").write_text("not a record")
    result = store.import_paths([tmp_path / "events"], domain="runtime")
    assert result.ok and result.skipped == 1
    names = sorted(p.name for p in src.iterdir() if p.suffix in (".json", ".jsonl"))
    assert sorted({r.key.rsplit(":", 1)[0] for r in store.query("runtime")}) == [f"deeper/{n}" for n in names]


def test_a_file_given_by_path_is_matched_by_its_trailing_path(store: Store, home: Path) -> None:
    result = store.import_paths([home / "tasks" / "tasks" / "task_9c0d1e2f.json"])
    assert result.domains["task"].imported == 1
    assert store.get("task", "tasks/tasks/task_9c0d1e2f.json") is not None


def _write(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


GOOD_TASK = '{"schema_version": 2, "id": "good", "status": "completed"}'


@pytest.mark.parametrize(
    ("rel", "content", "line", "reason"),
    [
        ("tasks/tasks/bad.json", '{"schema_version": 2, "id": ', 1, "invalid JSON"),
        ("tasks/tasks/bad.json", '[{"id": "ok"},\n 5]', 2, "element 1 is a number 5, not a JSON object"),
        ("tasks/tasks/bad.json", '{"schema_version": "2"}', None, 'must be a positive integer, not a string "2"'),
        ("tasks/tasks/bad.json", '{"schema_version": 0}', None, "must be a positive integer, not 0"),
        ("tasks/tasks/bad.json", '{"schema_version": 3}', None, "newer than current version 2 of domain 'task'"),
        (
            "tasks/runtime/events/e.jsonl",
            '{"schema_version":2,"seq":1}\n{"seq": 2,\n{"schema_version":2,"seq":3}\n',
            2,
            "invalid JSON",
        ),
    ],
    ids=["malformed", "non-object", "version-string", "version-zero", "newer", "jsonl-bad-line"],
)
def test_each_bad_input_is_reported_and_the_rest_goes_in(
    store: Store, tmp_path: Path, rel: str, content: str, line: int | None, reason: str
) -> None:
    root = tmp_path / "h"
    _write(root, "tasks/tasks/good.json", GOOD_TASK)
    _write(root, rel, content)
    _write(root, "notes/readme.json", "not json at all, and in no domain")
    result = store.import_paths([root])
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.path == rel and problem.line == line
    assert reason in str(problem)
    assert "\n" not in str(problem)
    assert result.skipped == 1  # the file in no domain is counted, never an error
    assert store.get("task", "tasks/tasks/good.json") is not None
    if rel.endswith(".jsonl"):
        assert store.query("runtime").count() == 2
        assert result.domains["runtime"].failed == 1


def test_a_newer_record_names_the_file_and_both_versions(store: Store, tmp_path: Path) -> None:
    _write(tmp_path / "h", "tasks/tasks/new.json", '{"schema_version": 7}')
    result = store.import_paths([tmp_path / "h"])
    (problem,) = result.problems
    assert isinstance(problem, NewerVersionError)
    assert (problem.version, problem.current_version) == (7, 2)
    assert str(problem) == "tasks/tasks/new.json: schema_version 7 is newer than current version 2 of domain 'task'"
    assert result.domains["task"].rejected == 1


def test_a_newer_record_is_named_by_its_domain_s_own_version_field(tmp_path: Path) -> None:
    """It said "schema_version 3 is newer..." of a domain whose records carry "v"."""
    from recordstore import Registry

    registry = Registry()
    registry.domain("thing", version=2, files=["*.jsonl"], version_field="v").add_step(1, lambda r: r)
    _write(tmp_path / "h", "t.jsonl", '{"v": 1}\n{"v": 3}\n')
    with Store(tmp_path / "s.db", registry=registry) as store:
        (problem,) = store.import_paths([tmp_path / "h"]).problems
    assert str(problem) == "t.jsonl:2: v 3 is newer than current version 2 of domain 'thing'"
    assert isinstance(problem, NewerVersionError) and problem.version_field == "v"


def test_the_cli_summary_and_exit_code_report_refusals(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "h"
    _write(root, "tasks/tasks/good.json", GOOD_TASK)
    _write(root, "tasks/tasks/new.json", '{"schema_version": 9}')
    res = cli("import", root)
    assert res.exit_code == 1
    assert "tasks/tasks/new.json: schema_version 9 is newer than current version 2" in res.stderr
    assert "Traceback" not in res.output + res.stderr
    summary = cli("import", root, "--json")
    data = json.loads(summary.stdout)
    assert data["domains"]["task"]["unchanged"] == 1 and data["domains"]["task"]["rejected"] == 1


# --------------------------------------------------------------------------- round trips

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
records = st.dictionaries(st.text(max_size=10), json_values, max_size=6).filter(
    lambda d: "schema_version" not in d
)


def _no_lone_surrogates(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(records.filter(_no_lone_surrogates), min_size=1, max_size=5))
def test_import_then_export_is_the_identity_on_arbitrary_json(tmp_path_factory: pytest.TempPathFactory, batch: list) -> None:
    root = tmp_path_factory.mktemp("rt")
    home, out = root / "home", root / "out"
    _write(home, "tasks/tasks/one.json", json.dumps(batch[0], indent=2, ensure_ascii=False))
    _write(home, "tasks/tasks/array.json", json.dumps(batch, indent=2, ensure_ascii=False))
    _write(
        home,
        "tasks/runtime/events/e.jsonl",
        "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in batch),
    )
    with Store(root / "s.db") as store:
        result = store.import_paths([home])
        assert result.ok, result.problems
        store.export_to(out)
        for rec in store.query("task"):
            assert rec.data in batch  # decoded values are exact: big ints, floats, unicode
    assert tree(out) == tree(home)  # byte for byte: pretty, array and JSON lines alike
    for rel in ("tasks/tasks/one.json", "tasks/tasks/array.json"):
        assert json.loads((out / rel).read_text()) == json.loads((home / rel).read_text())


_endings = st.sampled_from(["\n", "\r\n"])
_blank = st.tuples(st.sampled_from(["", " ", "\t", "  \t "]), _endings).map("".join)
_between = st.tuples(_endings, st.lists(_blank, max_size=2)).map(lambda t: t[0] + "".join(t[1]))
_array_seps = st.sampled_from([",", ", ", " ,", ",\n  ", ",\r\n  ", "\n, ", ",\t"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    batch=st.lists(records.filter(_no_lone_surrogates), min_size=1, max_size=5),
    line_gaps=st.lists(_between, min_size=5, max_size=5),
    leading=st.lists(_blank, max_size=2),
    last=st.sampled_from(["", "\n", "\r\n", "\r", "\n \n", "\r\n\r\n"]),
    seps=st.lists(_array_seps, min_size=5, max_size=5),
    streamed=st.booleans(),
)
def test_import_then_export_gives_back_files_whose_separators_vary(
    tmp_path_factory: pytest.TempPathFactory, batch: list, line_gaps: list[str], leading: list[str], last: str,
    seps: list[str], streamed: bool,
) -> None:
    """A file keeps its odd separators: JSON lines with their own line endings and blank
    lines of whitespace between them, an array separated in different ways."""
    root = tmp_path_factory.mktemp("gaps")
    home, out = root / "home", root / "out"
    texts = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in batch]
    lines = "".join(leading) + "".join(t + g for t, g in zip(texts[:-1], line_gaps)) + texts[-1] + last
    elements = "".join(t + s for t, s in zip(texts[:-1], seps)) + texts[-1]
    _write(home, "tasks/runtime/events/e.jsonl", lines.encode("utf-8"))
    _write(home, "tasks/tasks/array.json", ("[" + elements + "]\n").encode("utf-8"))
    with pytest.MonkeyPatch.context() as patch:
        if streamed:
            patch.setattr(parsing, "STREAM_THRESHOLD", 0)
        with Store(root / "s.db") as store:
            result = store.import_paths([home])
            assert result.ok, result.problems
            assert [r.data for r in store.query("runtime")] == batch
            assert [r.data for r in store.query("task")] == batch
            store.export_to(out)
    assert tree(out) == tree(home)


def _store_content(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """What an import leaves in a store, run ids and times aside."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return {
            "records": conn.execute(
                "SELECT r.domain, r.key, r.version, r.payload, typeof(r.payload), f.path, r.position "
                "FROM records r JOIN files f ON f.id = r.file_id ORDER BY r.key"
            ).fetchall(),
            "files": conn.execute(
                "SELECT path, domain, container, head, sep, tail, indent, digest FROM files ORDER BY path"
            ).fetchall(),
            "failures": conn.execute(
                "SELECT domain, source, line, from_version, to_version, reason FROM failures ORDER BY id"
            ).fetchall(),
            "indexes": conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name").fetchall(),
            "backups": conn.execute(
                "SELECT b.key, b.version, b.payload, b.reason FROM backups b ORDER BY b.key, b.id"
            ).fetchall(),
        }


def test_worker_processes_store_exactly_what_one_process_stores(home: Path, tmp_path: Path) -> None:
    """The example home plus every hostile case, imported with and without worker
    processes, then changed and imported again: the stores, the counts and the problems
    (in order) are the same."""
    import hostile

    corpus = hostile.build_home(tmp_path / "corpus")
    for case in hostile.CASES:
        if case.id != "fs-unreadable":
            case.build(corpus)
    shutil.copytree(home, corpus.root, dirs_exist_ok=True)
    results = {}
    for jobs in (0, 2):
        with Store(tmp_path / f"jobs{jobs}.db") as store:
            first = store.import_paths([corpus.root], jobs=jobs)
            results[jobs] = [first.as_dict()]
    # Change files: a record added, a file shortened, a file replaced by garbage.
    events = corpus.root / "tasks" / "runtime" / "events"
    grown, shortened = events / "thr_1a2b3c4d.jsonl", events / "thr_7e8f9a0b.jsonl"
    grown.write_bytes(grown.read_bytes() + '{"schema_version": 1, "extra": "é"}\n'.encode())
    shortened.write_bytes(shortened.read_bytes().split(b"\n", 1)[0] + b"\n")
    (corpus.root / "sessions" / "3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json").write_bytes(b"{ not json")
    for jobs in (0, 2):
        with Store(tmp_path / f"jobs{jobs}.db") as store:
            results[jobs].append(store.import_paths([corpus.root], jobs=jobs).as_dict())
    for r in results.values():
        for d in r:
            d.pop("run")
    assert results[0] == results[2]
    again = results[0][1]
    assert len(again["problems"]) == len(results[0][0]["problems"]) + 1  # the garbage session
    assert again["domains"]["runtime"]["imported"] == 1 and again["domains"]["runtime"]["removed"] >= 1
    assert _store_content(tmp_path / "jobs0.db") == _store_content(tmp_path / "jobs2.db")


def test_payloads_are_stored_as_text_exactly_as_read(store: Store, tmp_path: Path, db_path: Path) -> None:
    """JSON lines and object files are stored from the bytes read (no decoding round trip):
    the column must still hold TEXT, equal to the file's text, usable by SQLite's JSON."""
    import sqlite3

    _write(tmp_path, "tasks/runtime/events/e.jsonl", '{"schema_version":1,"t":"héllo ✓ 𝄞"}\r\n{"schema_version":1,"n":2}\n')
    _write(tmp_path, "tasks/tasks/t.json", '\ufeff\n  {"schema_version": 1, "title": "naïve"}  \n')
    assert store.import_paths([tmp_path], jobs=0).ok
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT key, typeof(payload), payload, json_extract(payload, '$.schema_version') FROM records ORDER BY key").fetchall()
    assert rows == [
        ("tasks/runtime/events/e.jsonl:1", "text", '{"schema_version":1,"t":"héllo ✓ 𝄞"}', 1),
        ("tasks/runtime/events/e.jsonl:2", "text", '{"schema_version":1,"n":2}', 1),
        ("tasks/tasks/t.json", "text", '{"schema_version": 1, "title": "naïve"}', 1),
    ]


def copy_of(home: Path, tmp_path: Path) -> Path:
    """Another home with the same files (the same paths within it)."""
    return Path(shutil.copytree(home, tmp_path / "copy" / home.name))


@pytest.mark.parametrize("jobs", [0, 2], ids=["in-process", "workers"])
def test_a_home_given_twice_is_read_once(home: Path, tmp_path: Path, jobs: int) -> None:
    """The same directory or file given again, however it is spelled, is not read again:
    the counts are those of one import. A link is a path of its own: the file it names
    goes in under the link's name too."""
    task = home / "tasks" / "tasks" / "task_1f2e3d4c.json"
    link = home / "tasks" / "tasks" / "task_link.json"
    link.symlink_to(task.name)
    again = [Path(f"{home}/"), home.parent / ".." / home.parent.name / home.name, task.parent / ".." / "tasks" / task.name]
    with Store(tmp_path / "twice.db") as twice, Store(tmp_path / "once.db") as once:
        result = twice.import_paths([home, task, *again, link], jobs=jobs)
        single = once.import_paths([home, task, link], jobs=jobs)
        assert result.as_dict() | {"run": 0} == single.as_dict() | {"run": 0}
        assert twice.get("task", "tasks/tasks/task_link.json") is not None
    assert _store_content(tmp_path / "twice.db") == _store_content(tmp_path / "once.db")


@pytest.mark.parametrize("jobs", [0, 2], ids=["in-process", "workers"])
@pytest.mark.parametrize("first", ["home", "file"])
def test_a_file_given_by_itself_and_in_its_home_is_read_once(home: Path, tmp_path: Path, jobs: int, first: str) -> None:
    """A file given by itself that its home, given too, holds under the same key is the
    same file given again: read once, whichever comes first. It was read twice: a bad
    line in it was reported twice (failed 2), and its records counted as imported and
    as unchanged in a first import (26 files read in a home of 25)."""
    events = home / "tasks" / "runtime" / "events" / "thr_1a2b3c4d.jsonl"
    with events.open("ab") as fh:
        fh.write(b"{bad\n")
    paths = [home, events] if first == "home" else [events, home]
    with Store(tmp_path / "both.db") as both, Store(tmp_path / "home.db") as alone:
        for _ in range(2):  # a first import, then a re-import of the file changed
            result = both.import_paths(paths, jobs=jobs)
            single = alone.import_paths([home], jobs=jobs)
            assert result.as_dict() | {"run": 0} == single.as_dict() | {"run": 0}
            assert len(result.problems) == 1 and result.files == 25
            with events.open("ab") as fh:
                fh.write(b'{"schema_version": 2, "seq": 99}\n')
    assert _store_content(tmp_path / "both.db") == _store_content(tmp_path / "home.db")


@pytest.mark.parametrize("jobs", [0, 2], ids=["in-process", "workers"])
def test_two_copies_of_a_home_are_imported_once(home: Path, tmp_path: Path, jobs: int) -> None:
    """A file is known by its path within its home: the second copy of each is read after
    the first is written, its records count as unchanged, nothing is stored twice."""
    with Store(tmp_path / "twice.db") as twice, Store(tmp_path / "once.db") as once:
        result = twice.import_paths([home, copy_of(home, tmp_path)], jobs=jobs)
        single = once.import_paths([home], jobs=jobs)
        assert result.ok and result.files == 2 * single.files
        for name, counts in single.domains.items():
            assert result.domains[name].imported == counts.imported
            assert result.domains[name].unchanged == counts.imported
    assert _store_content(tmp_path / "twice.db") == _store_content(tmp_path / "once.db")


@pytest.mark.parametrize("twice", [False, True], ids=["once", "two-copies"])
def test_an_import_into_an_empty_store_leaves_every_index_in_place(home: Path, tmp_path: Path, twice: bool) -> None:
    """The records' indexes are dropped for a first import and built at its end, or as
    soon as it must look up a file it wrote (two copies of a home); either way the store
    ends with all of them, one record per slot of a file enforced again."""
    import sqlite3

    from recordstore.tables import metadata

    db = tmp_path / "s.db"
    with Store(db) as store:
        assert store.import_paths([home, copy_of(home, tmp_path)] if twice else [home]).ok
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        assert names == {index.name for table in metadata.tables.values() for index in table.indexes}
        file_id, position = conn.execute("SELECT file_id, position FROM records LIMIT 1").fetchone()
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: records.file_id, records.position"):
            conn.execute(
                "INSERT INTO records (domain, key, version, payload, file_id, position) VALUES ('task', 'k', 1, '{}', ?, ?)",
                (file_id, position),
            )


def test_false_alarms_of_the_written_paths_filter_change_nothing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter that always says "written already" costs a lookup per file, and nothing
    else: the store is the same, and the records' indexes are still built once, at the end."""
    from recordstore import importer

    with Store(tmp_path / "plain.db") as plain:
        assert plain.import_paths([home]).ok
    builds: list[int] = []  # how many records the store held at each index build
    real_restore = importer.restore_record_indexes

    def counting_restore(conn: Any) -> None:
        builds.append(conn.exec_driver_sql("SELECT count(*) FROM records").scalar())
        real_restore(conn)

    monkeypatch.setattr(importer._PathFilter, "__contains__", lambda self, path: True)
    monkeypatch.setattr(importer, "restore_record_indexes", counting_restore)
    with Store(tmp_path / "alarmed.db") as alarmed:
        assert alarmed.import_paths([home]).ok
        assert builds == [alarmed.query().count()]
    assert _store_content(tmp_path / "alarmed.db") == _store_content(tmp_path / "plain.db")


@pytest.mark.parametrize("jobs", [0, 2], ids=["in-process", "workers"])
def test_a_reimport_reads_what_the_store_holds_a_window_at_a_time(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """What the store holds is looked up a few files at a time, never all at once (so
    memory does not grow with the files stored). Windows of 3 files, a changed file
    and its copy in a row, a new one and two copies of the home give what one big window
    gives."""
    from recordstore import importer

    task = home / "tasks" / "tasks" / "task_1f2e3d4c.json"
    copy = tmp_path / "copy" / home.name
    results = {}
    for name, window in (("small", 3), ("big", 100_000)):
        db = tmp_path / f"{name}.db"
        (home / "tasks" / "tasks" / "task_new.json").unlink(missing_ok=True)
        task.write_bytes((EXAMPLE_HOME / "tasks" / "tasks" / task.name).read_bytes())
        with Store(db) as store:
            assert store.import_paths([home]).ok
            task.write_text(task.read_text().replace('"status": "completed"', '"status": "failed"', 1))
            (home / "tasks" / "tasks" / "task_new.json").write_text('{"schema_version": 2, "id": "new"}')
            monkeypatch.setattr(importer, "LOOKUP_FILES", window)
            monkeypatch.setattr(importer, "CHUNK_FILES", window)
            sizes: list[int] = []
            real = importer.Importer._look_ahead
            monkeypatch.setattr(
                importer.Importer, "_look_ahead", lambda self, paths: (sizes.append(len(paths)), real(self, paths))[1]
            )
            # The changed file and its copy in a row (one window), then two copies of the home.
            shutil.rmtree(tmp_path / "copy", ignore_errors=True)
            copy_of(home, tmp_path)
            again = store.import_paths([task, copy / task.relative_to(home), home, copy], jobs=jobs)
            monkeypatch.undo()
        summary = again.as_dict()
        summary.pop("run")
        results[name] = (summary, _store_content(db), max(sizes))
    small, big = results["small"], results["big"]
    assert small[2] <= 3 < big[2]
    assert small[:2] == big[:2]
    counts = small[0]["domains"]["task"]
    assert (counts["updated"], counts["imported"]) == (1, 1)  # the second copy is unchanged


def test_the_filter_of_written_paths_never_forgets_and_rarely_guesses() -> None:
    """Paths added are always found (a miss would store a file twice); paths never added
    are rarely reported (each such report costs one lookup in the store)."""
    from recordstore.importer import _PathFilter

    seen = _PathFilter()
    added = [f"tasks/runtime/events/evt_{i:06d}.jsonl" for i in range(50_000)]
    for path in added:
        seen.add(path)
    assert all(path in seen for path in added)
    false = sum(f"sessions/{i}.json" in seen for i in range(50_000))
    assert false < 50  # about 0.01% expected at this fill


def _die(tasks: object) -> None:
    import os

    os._exit(9)


def _die_in_turn(writer: Any) -> None:
    """A writing worker killed while it holds the turn to write."""
    import os

    with writer.turns:
        os._exit(9)


@pytest.mark.parametrize("where", ["parse_wire", "_WorkerWriter._commit"])
def test_a_worker_process_that_dies_fails_the_import_in_one_line(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A killed worker (here: one that exits at once, or in its turn to write) must not
    leave the import waiting for ever: it stops with one clear error, the run is not
    left running, and a second import completes the store."""
    import multiprocessing

    from recordstore import RecordStoreError
    from recordstore import workers

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the dying worker is planted by forking this process")
    monkeypatch.setattr(workers, "_context", lambda fork_only: multiprocessing.get_context("fork"))
    if where == "parse_wire":  # what a worker runs
        monkeypatch.setattr(parsing, "parse_wire", _die)
    else:
        monkeypatch.setattr(parsing._WorkerWriter, "_commit", _die_in_turn)
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(RecordStoreError, match="a worker process of the import died"):
            store.import_paths([home], jobs=2)
        assert [r.outcome for r in store.history()][-1] != "running"
        monkeypatch.undo()
        assert store.import_paths([home], jobs=0).ok
    with Store(tmp_path / "ref.db") as ref:
        ref.import_paths([home])
    assert _store_content(tmp_path / "s.db")["records"] == _store_content(tmp_path / "ref.db")["records"]


#: The process the test runs in: workers are the others.
_TEST_PID = __import__("os").getpid()


def _parse_slowly_in_workers(tasks: list[Any]) -> list[Any]:
    """parse_tasks, slowed down in worker processes only (so the writer must not wait)."""
    import os
    import time

    from recordstore import importer as importer_module

    if os.getpid() != _TEST_PID:
        time.sleep(0.2)
    return importer_module._real_parse_tasks(tasks)  # type: ignore[attr-defined]


def test_the_writer_parses_the_chunks_no_worker_has_started(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With slow workers, the writer parses queued chunks itself instead of waiting:
    the store is the one a single process makes. (Into a store that already holds files:
    into an empty one, the workers write, and the importing process parses nothing.)"""
    import multiprocessing

    from recordstore import importer as importer_module
    from recordstore import workers

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the slow worker is planted by forking this process")
    first = min(home.rglob("*.json"))
    for name in ("pooled.db", "alone.db"):
        with Store(tmp_path / name) as store:
            assert store.import_paths([first], jobs=0).ok
    here: list[int] = []
    real = parsing.parse_tasks

    def counted(tasks: list[Any]) -> list[Any]:
        here.append(len(tasks))
        return real(tasks)

    monkeypatch.setattr(workers, "_context", lambda fork_only: multiprocessing.get_context("fork"))
    monkeypatch.setattr(importer_module, "_real_parse_tasks", real, raising=False)
    monkeypatch.setattr(parsing, "parse_tasks", _parse_slowly_in_workers)
    monkeypatch.setattr(importer_module, "CHUNK_FILES", 2)
    monkeypatch.setattr(importer_module, "MAX_FILES_AHEAD", 128)  # 64 chunks
    with Store(tmp_path / "pooled.db") as store:
        # The writer's own calls are counted; the worker's (forked before) are not.
        monkeypatch.setattr(importer_module, "_real_parse_tasks", counted, raising=False)
        pooled = store.import_paths([home], jobs=1)
    monkeypatch.undo()
    with Store(tmp_path / "alone.db") as store:
        alone = store.import_paths([home], jobs=0)
    assert here, "the writer never parsed a chunk itself"
    assert sum(here) < 29  # ... nor all of them: the worker parsed some
    assert {**pooled.as_dict(), "run": 0} == {**alone.as_dict(), "run": 0}
    assert _store_content(tmp_path / "pooled.db") == _store_content(tmp_path / "alone.db")


def test_into_an_empty_store_the_workers_write_what_they_parse(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first import: the workers write the files they parse, and the importing process
    receives only counts and problems (it parses nothing itself). The store, the report
    and the failures' order are those of a single process. Into a store that holds
    files, the workers only parse again."""
    import multiprocessing

    from recordstore import importer as importer_module
    from recordstore import workers

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the spies are planted by forking this process")
    kinds: list[str] = []
    real_write, real_parse = importer_module.Importer.write, parsing.parse_tasks
    parsed_here: list[int] = []

    def spy_write(self: Any, cand: Any, outcome: Any, known: Any) -> None:
        kinds.append(outcome.kind)
        real_write(self, cand, outcome, known)

    def spy_parse(tasks: list[Any]) -> list[Any]:
        if os.getpid() == _TEST_PID:
            parsed_here.append(len(tasks))
        return real_parse(tasks)

    for n in range(4):  # problems in several chunks, to be reported in order
        (home / "tasks" / "tasks" / f"task_bad{n}.json").write_text('{"schema_version": 99}')
        (home / "tasks" / "runtime" / "events" / f"thr_bad{n}.jsonl").write_text('{"a": 1}\nnot json\n')
    monkeypatch.setattr(workers, "_context", lambda fork_only: multiprocessing.get_context("fork"))
    monkeypatch.setattr(importer_module.Importer, "write", spy_write)
    monkeypatch.setattr(parsing, "parse_tasks", spy_parse)
    monkeypatch.setattr(importer_module, "CHUNK_FILES", 3)
    # Chunks of 3, 6, 12, 12... files, so both workers write several.
    monkeypatch.setattr(importer_module, "CHUNK_FILES_WRITING_FIRST", 3)
    monkeypatch.setattr(importer_module, "CHUNK_FILES_WRITING", 12)
    with Store(tmp_path / "pooled.db") as store:
        pooled = store.import_paths([home], jobs=2)
        assert len(pooled.problems) == 8
        assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "pooled.db", "pooled.db-shm", "pooled.db-wal"]
        # The workers write without SQLite checking foreign keys: every key must hold.
        assert store.integrity_problems() == []
        assert "written" in kinds and "parsed" not in kinds
        assert not parsed_here
        kinds.clear()
        assert store.import_paths([home], jobs=2).as_dict()["domains"]  # again: nothing new
        assert kinds and "written" not in kinds
    monkeypatch.undo()
    with Store(tmp_path / "alone.db") as store:
        alone = store.import_paths([home], jobs=0)
        store.import_paths([home], jobs=0)
    assert {**pooled.as_dict(), "run": 0} == {**alone.as_dict(), "run": 0}
    assert _store_content(tmp_path / "pooled.db") == _store_content(tmp_path / "alone.db")


def test_a_large_file_streamed_here_while_the_workers_write_is_stored_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first import with writing workers, and a JSON-lines file too large for a task:
    the importing process streams it in many batches of its own, taking SQLite's write
    lock for each, while the workers write theirs. The store equals one process's."""
    from recordstore import importer as importer_module

    home = tmp_path / "home"
    (home / "tasks" / "tasks").mkdir(parents=True)
    (home / "tasks" / "runtime" / "events").mkdir(parents=True)
    for n in range(600):
        (home / "tasks" / "tasks" / f"task_{n:04d}.json").write_text(json.dumps({"schema_version": 1, "id": n}))
    line = json.dumps({"schema_version": 1, "text": "x" * 200})
    big = home / "tasks" / "runtime" / "events" / "thr_big.jsonl"
    big.write_text((line + "\n") * (parsing.TASK_MAX_BYTES // len(line) + 50))
    monkeypatch.setattr(parsing, "BATCH_RECORDS", 100)
    monkeypatch.setattr(importer_module, "CHUNK_FILES", 8)
    with Store(tmp_path / "pooled.db") as store:
        pooled = store.import_paths([home], jobs=2)
    with Store(tmp_path / "alone.db") as store:
        alone = store.import_paths([home], jobs=0)
    assert pooled.ok and pooled.counts("runtime").imported > 4000
    assert {**pooled.as_dict(), "run": 0} == {**alone.as_dict(), "run": 0}
    assert _store_content(tmp_path / "pooled.db") == _store_content(tmp_path / "alone.db")


def test_writing_workers_without_a_temporary_file_take_sqlites_turns(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers' turns at the write lock live in a file beside the store; where none
    can be made, SQLite's own lock serializes them, and the import stores what one
    process stores."""
    from recordstore import workers

    def no_file(beside: str) -> str:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(workers, "_turns_file", no_file)
    with Store(tmp_path / "pooled.db") as store:
        pooled = store.import_paths([home], jobs=2)
    monkeypatch.undo()
    with Store(tmp_path / "alone.db") as store:
        alone = store.import_paths([home], jobs=0)
    assert pooled.ok and {**pooled.as_dict(), "run": 0} == {**alone.as_dict(), "run": 0}
    assert _store_content(tmp_path / "pooled.db") == _store_content(tmp_path / "alone.db")


def test_workers_started_by_a_fork_server_store_what_one_process_stores(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where fork is ruled out (a thread runs, e.g. a terminal's progress bar), workers
    come from a fork server: they must work, and not take the server for a dead parent."""
    import multiprocessing

    from recordstore import workers

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    monkeypatch.setattr(workers, "_context", lambda fork_only: multiprocessing.get_context("forkserver"))
    with Store(tmp_path / "pooled.db") as store:
        pooled = store.import_paths([home], jobs=2)
    monkeypatch.undo()
    with Store(tmp_path / "alone.db") as store:
        alone = store.import_paths([home], jobs=0)
    assert {**pooled.as_dict(), "run": 0} == {**alone.as_dict(), "run": 0}
    assert _store_content(tmp_path / "pooled.db") == _store_content(tmp_path / "alone.db")


def _noting_store(db: Path) -> Store:
    from recordstore import Registry

    registry = Registry()
    note = registry.domain("note", version=2, files=["notes/*.jsonl"])

    @note.step(1)
    def seen(record: dict[str, Any]) -> None:
        record["seen"] = True

    return Store(db, registry=registry)


def test_lines_an_application_appends_to_leave_the_migrated_records_before_them_alone(tmp_path: Path) -> None:
    """An application appends to its JSON-lines logs. Re-importing one after a migration
    used to put every earlier line back at its old version ("updated"), undoing the
    migration of records the file had not changed."""
    log = tmp_path / "h" / "notes" / "log.jsonl"
    log.parent.mkdir(parents=True)
    lines = [json.dumps({"schema_version": 1, "n": n}) for n in range(3)]
    log.write_text("\n".join(lines) + "\n")
    with _noting_store(tmp_path / "s.db") as store:
        store.import_paths([tmp_path / "h"])
        assert store.migrate().migrated == 3
        log.write_text("\n".join([*lines, json.dumps({"schema_version": 1, "n": 3})]) + "\n")
        counts = store.import_paths([tmp_path / "h"]).domains["note"]
        assert (counts.imported, counts.unchanged, counts.updated) == (1, 3, 0)
        assert [(r.version, r.data.get("seen")) for r in store.query("note").order_by("n")] == [
            (2, True), (2, True), (2, True), (1, None)
        ]
        # A line the file did change is the file's again (the migrated row backed up).
        edited = json.dumps({"schema_version": 1, "n": 10})
        log.write_text("\n".join([lines[0], edited, lines[2], json.dumps({"schema_version": 1, "n": 3})]) + "\n")
        counts = store.import_paths([tmp_path / "h"]).domains["note"]
        assert (counts.imported, counts.unchanged, counts.updated) == (0, 3, 1)
        assert store.get("note", "notes/log.jsonl:2").text == edited  # type: ignore[union-attr]
        assert store.get("note", "notes/log.jsonl:1").version == 2  # type: ignore[union-attr]


def test_a_line_put_back_as_an_earlier_import_had_it_is_a_change(tmp_path: Path) -> None:
    """Only the text the store last imported counts as unchanged: a line reverted to what an
    earlier import read is the file changing it again."""
    log = tmp_path / "h" / "notes" / "log.jsonl"
    log.parent.mkdir(parents=True)
    first, second = json.dumps({"schema_version": 1, "n": 1}), json.dumps({"schema_version": 1, "n": 2})
    with _noting_store(tmp_path / "s.db") as store:
        for text in (first, second):
            log.write_text(text + "\n")
            store.import_paths([tmp_path / "h"])
        log.write_text(first + "\n")
        assert store.import_paths([tmp_path / "h"]).domains["note"].updated == 1
        assert store.get("note", "notes/log.jsonl:1").text == first  # type: ignore[union-attr]
        # ...and after a migration too: the store last imported `first`, which the file
        # still holds; then the file goes back to `second`.
        store.migrate()
        migrated = store.get("note", "notes/log.jsonl:1")
        assert migrated is not None and migrated.data == {"schema_version": 2, "n": 1, "seen": True}
        log.write_text(second + "\n")
        assert store.import_paths([tmp_path / "h"]).domains["note"].updated == 1
        assert store.get("note", "notes/log.jsonl:1").text == second  # type: ignore[union-attr]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_blank_lines_and_line_endings_come_back_as_they_were(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """A JSON-lines file's blank lines, between its records or after the last, come back
    as they were (whitespace too), and each line with its own ending (a file may mix
    ``\\n`` and ``\\r\\n``, or end in a lone ``\\r``); the records' keys, which are their
    line numbers, stay true. A run of blank lines longer than the tail keeps (only a
    hostile file has one) comes back as the file's last newline; one between records,
    as empty lines."""
    if streamed:
        monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 0)
    events = tmp_path / "home" / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    record = b'{"schema_version":2,"seq":1}'
    huge = b"\n" * (parsing.TAIL_MAX_BYTES + 10)
    cases = {
        "newlines.jsonl": (record + b"\n\n\n", None),
        "spaces.jsonl": (record + b"\n  \n\t\n", None),
        "no_final_newline.jsonl": (record + b"\n \n  ", None),
        "crlf.jsonl": (record + b"\r\n\r\n \r\n", None),
        "only_blank.jsonl": (b"\n \n\n", None),
        "between.jsonl": (record + b"\n  \n" + record + b"\n\n", None),
        "mixed.jsonl": (record + b"\r\n" + record + b"\n\r\n \t\n" + record + b"\r\n", None),
        "lf_then_crlf.jsonl": (record + b"\n" + record + b"\r\n" + record + b"\r\n", None),
        "lone_cr.jsonl": (record + b"\n" + record + b"\r", None),
        "leading.jsonl": (b" \r\n\n" + record + b"\n", None),
        "hostile.jsonl": (record + b"\n" + huge, record + b"\n"),
        "hostile_between.jsonl": (record + b"\n" + b" " * (parsing.TAIL_MAX_BYTES + 10) + b"\n" + record + b"\n",
                                  record + b"\n\n" + record + b"\n"),
    }
    for name, (data, _) in cases.items():
        (events / name).write_bytes(data)
    assert store.import_paths([tmp_path / "home"]).ok
    keys = {rec.key for rec in store.query("runtime")}
    assert {"tasks/runtime/events/mixed.jsonl:5", "tasks/runtime/events/leading.jsonl:3"} <= keys
    store.export_to(tmp_path / "out")
    for name, (data, back) in cases.items():
        assert (tmp_path / "out" / "tasks" / "runtime" / "events" / name).read_bytes() == (back or data), name


def test_ctrl_c_just_after_a_file_written_here_says_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While workers write, a large file is written by the importing process in a
    transaction of its own; Ctrl-C taken just after its commit rolled back that committed
    transaction, which printed SQLAlchemy's "transaction already deassociated" warning
    before the one line."""
    import warnings

    from recordstore import importer as importer_module

    events = tmp_path / "home" / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    for n in range(4):
        (events / f"e{n}.jsonl").write_text("".join(f'{{"schema_version":2,"n":{i}}}\n' for i in range(50)))
    monkeypatch.setattr(parsing, "TASK_MAX_BYTES", 10)  # every file is large: written here

    def pressed() -> None:
        caller = sys._getframe(1)
        if caller.f_code.co_name == "flush" and caller.f_locals["self"]._turns is not None:  # a commit of its own
            raise KeyboardInterrupt

    monkeypatch.setattr(importer_module, "check_interrupt", pressed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Store(tmp_path / "s.db") as store, pytest.raises(KeyboardInterrupt):
            store.import_paths([tmp_path / "home"], jobs=2)


def test_records_nested_near_the_limit_go_in_alike_with_workers_or_without(tmp_path: Path) -> None:
    """Files nested 1,015 to 1,035 levels deep: an import with workers took fewer of
    them than one without (Python's limit counted the callers' frames too, and cut
    around 950-990 levels), and a migration then failed some that one had taken,
    blaming the step. Now both take those up to 1,024 levels, and every one migrates."""
    registry = Registry()
    deep = registry.domain("deep", version=2, files=["*.json"])

    @deep.step(1)
    def mark(value: dict[str, Any]) -> None:
        value["m"] = 1

    home = tmp_path / "home"
    home.mkdir()
    for n in range(1015, 1036):
        (home / f"d{n}.json").write_text('{"a": ' + "[" * n + "]" * n + "}")
    stores = {}
    for jobs in (0, 2):
        with Store(tmp_path / f"jobs{jobs}.db", registry=registry) as store:
            store.import_paths([home], jobs=jobs)
            stores[jobs] = sorted(r.key for r in store.query("deep"))
            if jobs == 0:
                result = store.migrate(jobs=0)
                assert not result.failures and sum(result.counts.get("deep", {}).values()) == len(stores[0])
    assert stores[0] == stores[2] == [f"d{n}.json" for n in range(1015, 1024)]


@pytest.mark.parametrize("migrated", [False, True], ids=["imported", "migrated"])
def test_a_changed_file_of_large_records_is_compared_in_bounded_memory(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated: bool
) -> None:
    """A changed file is compared batch by batch, each batch bounded in bytes as a new
    file's are: the file's records, the rows they replace and (for records migrated
    since) the texts last imported are never all held at once. The batch was bounded by
    its number of records only: re-importing a changed 200 MB JSON-lines file of 40 KB
    records peaked at 656 MB."""

    monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 0)  # streamed, as a large file is
    monkeypatch.setattr(parsing, "BATCH_BYTES", 256 * 1024)
    events = tmp_path / "home" / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    log = events / "thr_big.jsonl"
    pad = "x" * 16_000

    def write(tag: str) -> None:
        with log.open("w") as fh:
            for seq in range(600):  # ~10 MB
                fh.write(json.dumps({"seq": seq, "tag": tag, "pad": pad}, separators=(",", ":")) + "\n")

    write("a")
    assert store.import_paths([tmp_path / "home"], jobs=0).ok
    if migrated:
        assert store.migrate(jobs=0).migrated == 600
    write("b")
    result, peak = traced_peak(lambda: store.import_paths([tmp_path / "home"], jobs=0))
    assert result.ok and result.domains["runtime"].updated == 600
    assert store.get("runtime", "tasks/runtime/events/thr_big.jsonl:600").data["tag"] == "b"  # type: ignore[union-attr]
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.1f} MiB traced: grew with the file"
