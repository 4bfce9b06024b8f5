"""Edge cases users meet, each with one clear outcome: files and directories that
change under an import while it runs, an export directory that cannot be made, a query
of very many conditions, and the problem lines of an import of several roots."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli
from recordstore import ExportError, QueryError, Store, exporter, parsing
from recordstore import engine as engine_module
from recordstore import store as store_module

TASKS = "tasks/tasks"


def _task(n: int) -> str:
    return json.dumps({"schema_version": 2, "id": f"task_{n}", "status": "completed"}, indent=2) + "\n"


def _tasks_home(root: Path, count: int) -> Path:
    """A home of ``count`` task files (512 or more: an import of it uses workers)."""
    (root / TASKS).mkdir(parents=True)
    for n in range(count):
        (root / TASKS / f"task_{n:04d}.json").write_text(_task(n))
    return root


def _remove_after_walk(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Make the import's walk find ``paths``, then remove them before they are read, as
    an application writing its home meanwhile does."""
    real_discover = parsing.discover

    def discover_then_remove(*args: Any, **kwargs: Any) -> Iterator[parsing.Candidate]:
        found = list(real_discover(*args, **kwargs))
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        return iter(found)

    monkeypatch.setattr(store_module, "discover", discover_then_remove)


# --------------------------------------------------------------------------- files gone during an import


def test_a_file_removed_after_the_walk_is_counted_as_gone_not_a_problem(home: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = home / "sessions" / "3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json"
    _remove_after_walk(monkeypatch, gone)
    result = store.import_paths([home], jobs=0)
    assert result.problems == [] and result.ok
    assert result.vanished == 1
    assert result.as_dict()["vanished"] == 1
    assert store.get("session", "sessions/5d9e2a71-4f08-4c3b-b6d2-9a1e7c5f3b08.json") is not None
    assert store.get("session", "sessions/3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json") is None
    assert store.history(result.run_id)[0].outcome == "ok"


def test_a_file_removed_after_the_walk_keeps_its_records_from_an_earlier_import(home: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sessions/3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json"
    first = store.import_paths([home], jobs=0)
    (home / key).write_text((home / key).read_text().replace("\n}", ', "extra": 1\n}', 1))  # changed: read again
    _remove_after_walk(monkeypatch, home / key)
    again = store.import_paths([home], jobs=0)
    assert again.ok and again.vanished == 1
    assert again.files == first.files - 1
    record = store.get("session", key)
    assert record is not None and "extra" not in record.data  # an import never deletes by absence


@pytest.mark.parametrize("writing", [True, False], ids=["workers-write", "workers-parse"])
def test_files_removed_after_the_walk_are_counted_as_gone_with_workers(tmp_path: Path, writing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tasks_home(tmp_path / "home", 600)
    with Store(tmp_path / "w.db") as store:
        if not writing:  # a store with files: the workers only parse
            other = _tasks_home(tmp_path / "other", 1)
            store.import_paths([other], jobs=0)
        _remove_after_walk(monkeypatch, root / TASKS / "task_0007.json", root / TASKS / "task_0500.json")
        result = store.import_paths([root], jobs=2)
        assert result.problems == []
        assert result.vanished == 2 and result.files == 598
        assert result.counts("task").imported == 598 - (0 if writing else 1)  # (task_0000 is unchanged there)
        assert store.integrity_problems() == []


def test_a_large_file_removed_between_its_hash_and_its_streaming_pass_is_gone(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "home"
    events = root / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    log = events / "thr_1.jsonl"
    log.write_text("".join(json.dumps({"schema_version": 2, "seq": n}) + "\n" for n in range(50)))
    (events / "thr_2.jsonl").write_text(json.dumps({"schema_version": 2, "seq": 0}) + "\n")
    # Streamed, as a JSON-lines file above the threshold is: hashed, then read again.
    monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 64)
    monkeypatch.setattr(parsing, "TASK_MAX_BYTES", 64)
    real_read_file = parsing.read_file

    def read_then_remove(path: str, max_size: int | None = None) -> parsing.FileRead:
        read = real_read_file(path, max_size)
        if path == str(log) and read.data is None and max_size is None:
            log.unlink()
        return read

    monkeypatch.setattr(parsing, "read_file", read_then_remove)
    result = store.import_paths([root], jobs=0)
    assert result.problems == [] and result.vanished == 1 and result.files == 1
    assert result.counts("runtime").imported == 1


def test_a_large_file_removed_after_its_streaming_pass_is_imported_whole(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "home"
    events = root / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    removed, grown = events / "thr_1.jsonl", events / "thr_2.jsonl"
    for log in (removed, grown):
        log.write_text("".join(json.dumps({"schema_version": 2, "seq": n}) + "\n" for n in range(50)))
    monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 64)
    monkeypatch.setattr(parsing, "TASK_MAX_BYTES", 64)
    real_raw_lines = parsing.FileParse._raw_lines

    def read_then_change(self: parsing.FileParse) -> Iterator[bytes]:
        for n, line in enumerate(real_raw_lines(self)):
            if n == 10 and self.path == str(grown):
                with grown.open("a") as fh:  # appended while it is read: reported, as before
                    fh.write(json.dumps({"schema_version": 2, "seq": 50}) + "\n")
            yield line
        if self.path == str(removed):
            removed.unlink()  # read to its end, then removed (a thread deleted)

    monkeypatch.setattr(parsing.FileParse, "_raw_lines", read_then_change)
    result = store.import_paths([root], jobs=0)
    # The file removed had been read whole: nothing changed while it was read.
    assert [str(p) for p in result.problems] == [
        "tasks/runtime/events/thr_2.jsonl: changed while being imported; import again to pick up the change"
    ]
    assert store.query("runtime").count() == 50 + 51

@pytest.mark.parametrize("by_a_file", [False, True], ids=["removed", "replaced-by-a-file"])
def test_a_directory_removed_during_the_walk_is_counted_as_gone(home: Path, store: Store, monkeypatch: pytest.MonkeyPatch, by_a_file: bool) -> None:
    runs = home / "automations" / "runs" / "7d3c1e0a-6b5f-4e2d-9a8c-1f0e3d2c4b5a"
    real_first_visit = parsing._first_visit

    def remove_before_visit(walked: set[tuple[int, int]], path: str) -> bool:
        if path == str(runs) and runs.is_dir():
            shutil.rmtree(runs)  # listed by its parent, gone before the walk enters it
            if by_a_file:
                runs.write_text("{}")
        return real_first_visit(walked, path)

    monkeypatch.setattr(parsing, "_first_visit", remove_before_visit)
    result = store.import_paths([home], jobs=0)
    assert result.problems == [] and result.vanished == 1
    assert result.counts("automation_run").imported == 1  # the other directory's run


def test_a_file_replaced_by_a_directory_after_the_walk_is_counted_as_gone(home: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / "sessions" / "3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json"
    real_discover = parsing.discover

    def discover_then_replace(*args: Any, **kwargs: Any) -> Iterator[parsing.Candidate]:
        found = list(real_discover(*args, **kwargs))
        path.unlink()
        path.mkdir()
        return iter(found)

    monkeypatch.setattr(store_module, "discover", discover_then_replace)
    result = store.import_paths([home], jobs=0)
    assert result.problems == [] and result.vanished == 1


def test_a_link_to_nothing_is_still_a_problem(home: Path, store: Store) -> None:
    (home / TASKS / "dangling.json").symlink_to("nowhere.json")
    result = store.import_paths([home], jobs=0)
    assert [str(p) for p in result.problems] == [f"{TASKS}/dangling.json: cannot read: No such file or directory"]
    assert result.vanished == 0


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda link: link.symlink_to("moved-away"), "it is a link to moved-away, which does not exist"),
        (lambda link: link.symlink_to(link.name), "it is a symbolic link loop"),
    ],
    ids=["link-to-nothing", "link-loop"],
)
@pytest.mark.parametrize("domain", [None, "task"])
def test_a_path_given_that_is_a_broken_link_is_a_problem(tmp_path: Path, store: Store, make: Any, reason: str, domain: str | None) -> None:
    link = tmp_path / ".deepseek"
    make(link)  # a home moved away from under its link
    (tmp_path / "empty").mkdir()  # given too, and there: the import runs (alone, the link is refused: test_polish.py)
    result = store.import_paths([link, tmp_path / "empty"], domain=domain)
    # Not "1 skipped (no domain)", exit 0, as a file in no domain is.
    assert [str(p) for p in result.problems] == [f"{link}: {reason}"]
    assert result.skipped == 0 and not result.ok

def test_the_cli_says_how_many_files_were_gone_and_exits_0(home: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _remove_after_walk(monkeypatch, home / "sessions" / "3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json")
    res: Any = cli("import", home)
    assert res.exit_code == 0, res.output
    assert "cannot read" not in res.output
    assert "1 gone before they were read (removed or renamed meanwhile); run 1" in res.stdout


# --------------------------------------------------------------------------- an export directory that cannot be made


def test_an_export_directory_under_a_file_is_an_export_error_naming_the_file(home: Path, store: Store, tmp_path: Path) -> None:
    store.import_paths([home], jobs=0)
    (tmp_path / "afile").write_text("not a directory")
    out = tmp_path / "afile" / "out"
    with pytest.raises(ExportError) as caught:
        store.export_to(out)
    assert caught.value.path == str(out)
    assert caught.value.reason == f"cannot create the export directory: {tmp_path / 'afile'} exists and is not a directory"
    assert caught.value.exit_code == 3  # nothing was exported: an error, not some files refused


def test_an_export_directory_that_cannot_be_created_is_one_line_naming_it(home: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("import", home).exit_code == 0  # type: ignore[attr-defined]
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    out = read_only / "out"
    real_mkdir = os.mkdir

    def refusing_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        # As a directory without write permission refuses (the tests may run as root).
        if Path(path) == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refusing_mkdir)
    with Store(cli.db) as store, pytest.raises(ExportError, match=f"^{re.escape(str(out))}: cannot create the export directory: Permission denied$"):
        store.export_to(out)
    res: Any = cli("export", out)
    assert res.exit_code == 3
    assert res.stderr == f"store: error: {out}: cannot create the export directory: Permission denied\n"



@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda out: out.symlink_to("nowhere"), "it is a link to nowhere, which does not exist"),
        (lambda out: (out.symlink_to("loop"), out.with_name("loop").symlink_to("out")), "it is a symbolic link loop"),
    ],
    ids=["link-to-nothing", "link-loop"],
)
def test_an_export_directory_that_is_a_broken_link_says_so(home: Path, store: Store, tmp_path: Path, make: Any, reason: str) -> None:
    store.import_paths([home], jobs=0)
    out = tmp_path / "out"
    make(out)
    # (The system says "File exists", which names nothing in the way.)
    with pytest.raises(ExportError, match=f"^{re.escape(str(out))}: cannot create the export directory: {reason}$"):
        store.export_to(out)
    with pytest.raises(ExportError, match=f"^{re.escape(str(out / 'x'))}: cannot create the export directory: {re.escape(str(out))} {reason[3:]}$"):
        store.export_to(out / "x")

# --------------------------------------------------------------------------- a query of very many conditions


COMPLETED = ["tasks/tasks/task_1f2e3d4c.json", "tasks/tasks/task_9c0d1e2f.json"]


def test_a_query_of_two_thousand_conditions_runs(home: Path, store: Store) -> None:
    store.import_paths([home], jobs=0)
    query = store.query("task")
    for n in range(2000):
        query = query.where("status", "!=", f"status {n}")
        if n % 100 == 50:  # an OR inside: a condition must stay whole among the others
            query = query.where("status", "in", ["completed", f"status {n}"])
    assert [r.key for r in query] == COMPLETED
    assert query.count() == 2
    assert [r.key for r in query.order_by("created_at", descending=True).offset(1)] == COMPLETED[:1]
    assert query.where("model", "in", ["nothing", 0]).count() == 0


def test_many_where_options_on_the_command_line_run(home: Path, cli: Cli) -> None:
    assert cli("import", home).exit_code == 0  # type: ignore[attr-defined]
    wheres = [arg for n in range(2000) for arg in ("--where", f"status!=status {n}")]
    res: Any = cli("query", "task", *wheres, "--where", "status=completed")
    assert res.exit_code == 0, res.output
    assert [line.split("\t")[0] for line in res.stdout.splitlines()] == COMPLETED



def test_many_conditions_on_a_domain_stored_at_many_versions_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite's default build binds at most 32,766 values in a statement (Debian's 250,000).
    real_configure = engine_module.configure_connection

    def default_build(dbapi_conn: sqlite3.Connection) -> None:
        real_configure(dbapi_conn)
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)

    monkeypatch.setattr(engine_module, "configure_connection", default_build)
    registry = tmp_path / "notes_registry.py"
    registry.write_text(
        "from recordstore import Registry\n"
        "registry = Registry()\n"
        "note = registry.domain('note', version=8, files=['notes/*.json'])\n"
        "for n in range(1, 8):\n"
        "    note.step(n)(lambda record: None)\n"
    )
    root = tmp_path / "home"
    (root / "notes").mkdir(parents=True)
    for version in range(1, 9):
        (root / "notes" / f"{version}.json").write_text(json.dumps({"schema_version": version, "status": f"v{version}"}))
    with Store(tmp_path / "notes.db", registry=registry) as store:
        assert store.import_paths([root], jobs=0).ok
        query = store.query("note")
        for n in range(2100):  # two values bound each, once a stored version when merged: 33,600
            query = query.where("status", "!=", f"status {n}")
        assert [r.key for r in query.where("status", "in", ["v3", "v5"])] == ["notes/3.json", "notes/5.json"]

def test_an_in_list_of_more_values_than_sqlite_binds_runs(home: Path, store: Store) -> None:
    # 32,766 bound values at most in SQLite's default build, 250,000 in Debian's.
    store.import_paths([home], jobs=0)
    many = [f"status {n}" for n in range(260_000)]
    assert [r.key for r in store.query("task").where("status", "in", [*many, "completed"])] == COMPLETED
    assert store.query("task").where("status", "not in", [*many, "completed"]).count() == 1
    numbers = list(range(1230, 1230 + 260_000))  # duration_ms 1226, 9500 and 31735
    assert [r.key for r in store.query("task").where("duration_ms", "in", numbers)] == [
        "tasks/tasks/task_3a4b5c6d.json",
        "tasks/tasks/task_9c0d1e2f.json",
    ]


def test_too_many_orderings_are_refused_naming_the_limit(home: Path, store: Store) -> None:
    store.import_paths([home], jobs=0)
    query = store.query("task").order_by("key")  # two terms: file and place
    for n in range(1997):
        query = query.order_by(f"f{n}", descending=n % 2 == 1)
    assert [r.key for r in query.offset(2).limit(1)] == ["tasks/tasks/task_9c0d1e2f.json"]
    assert query.count() == 3 and len(query.all()) == 3
    # One more: refused as it is asked for, not a database error as the query runs.
    message = "a query orders by at most 1,999 terms, the key counting as two and a path as one (SQLite sorts by at most 2,000, the record's id last)"
    with pytest.raises(QueryError, match=f"^{re.escape(message)}$"):
        query.order_by("created_at")

# --------------------------------------------------------------------------- problems of an import of several roots


def _two_homes(tmp_path: Path) -> tuple[Path, Path]:
    homes = []
    for name in ("a", "b"):
        root = _tasks_home(tmp_path / name, 3)
        (root / TASKS / "task_bad.json").write_text("{bad\n")
        (root / TASKS / "task_new.json").write_text(json.dumps({"schema_version": 9}))
        homes.append(root)
    return homes[0], homes[1]


def test_problems_of_an_import_of_several_roots_name_each_root(tmp_path: Path, store: Store) -> None:
    a, b = _two_homes(tmp_path)
    result = store.import_paths([a, b], jobs=0)
    bad = "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2"
    newer = "schema_version 9 is newer than current version 2 of domain 'task'"
    assert sorted(str(p) for p in result.problems) == sorted(
        f"{root / TASKS / name}{line}: {reason}"
        for root in (a, b)
        for name, line, reason in (("task_bad.json", ":1", bad), ("task_new.json", "", newer))
    )
    assert {type(p).__name__ for p in result.problems} == {"InputError", "NewerVersionError"}
    assert sorted(f["source"] for f in store.failures(result.run_id)) == sorted(p.path for p in result.problems)
    # One root: named from it, as before.
    alone = store.import_paths([a], jobs=0)
    assert sorted(str(p) for p in alone.problems) == [f"{TASKS}/task_bad.json:1: {bad}", f"{TASKS}/task_new.json: {newer}"]


def test_problems_of_an_import_of_several_roots_by_workers_name_each_root(tmp_path: Path, store: Store) -> None:
    a = _tasks_home(tmp_path / "a", 300)
    b = _tasks_home(tmp_path / "b", 300)
    for root in (a, b):
        (root / TASKS / "task_bad.json").write_text("{bad\n")
    result = store.import_paths([a, b], jobs=2)
    assert sorted(p.path for p in result.problems) == [str(a / TASKS / "task_bad.json"), str(b / TASKS / "task_bad.json")]


def test_the_cli_names_each_root_in_problems_of_several(tmp_path: Path, cli: Cli) -> None:
    a, b = _two_homes(tmp_path)
    res: Any = cli("import", a, b)
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if "task_bad.json" in line]
    assert sorted(lines) == sorted(
        f"store: {root / TASKS / 'task_bad.json'}:1: invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2"
        for root in (a, b)
    )


def test_an_import_whose_every_file_was_gone_gives_no_hint_about_domains(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tasks_home(tmp_path / "home", 1)
    (root / "notes.txt").write_text("no domain")
    _remove_after_walk(monkeypatch, root / TASKS / "task_0000.json")
    res: Any = cli("import", root)
    assert res.exit_code == 0, res.output
    assert "0 file(s) read, 1 skipped (no domain), 1 gone before they were read" in res.stdout
    assert "no file was in a domain" not in res.stdout  # one was: it was gone


# --------------------------------------------------------------------------- an export directory changing under an export


def _remove_during_export(monkeypatch: pytest.MonkeyPatch, path: Path, after: int) -> None:
    """Remove ``path`` (below OUT, or OUT) once the export has staged ``after`` files."""
    real_write = exporter._Writer.write
    written = [0]

    def write_then_remove(self: Any, relpath: str, text: Any) -> Any:
        written[0] += 1
        if written[0] == after + 1:
            shutil.rmtree(path)
        return real_write(self, relpath, text)

    monkeypatch.setattr(exporter._Writer, "write", write_then_remove)


def test_an_export_directory_removed_during_the_export_stops_it_with_one_line(home: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("import", home).exit_code == 0  # type: ignore[attr-defined]
    out = tmp_path / "out"
    message = f"{out}: cannot write into the export directory: it was removed or replaced while the export ran"
    _remove_during_export(monkeypatch, out, 4)
    with Store(cli.db) as store, pytest.raises(ExportError, match=f"^{re.escape(message)}$"):
        store.export_to(out)
    monkeypatch.undo()
    _remove_during_export(monkeypatch, out, 4)
    res: Any = cli("export", out)
    assert res.exit_code == 3 and res.stderr == f"store: error: {message}\n"


def test_a_directory_removed_during_the_export_fails_its_files_only(home: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.import_paths([home], jobs=0)
    out = tmp_path / "out"
    _remove_during_export(monkeypatch, out / "automations", 4)
    result = store.export_to(out)
    assert result.problems and all(p.reason == "cannot write: No such file or directory" for p in result.problems)
    assert all(p.path.startswith("automations/") for p in result.problems)
    assert result.files == sum(1 for p in out.rglob("*") if p.is_file()) > 0
    assert not list(out.rglob("*.rstmp"))


def test_an_events_log_read_while_the_app_appends_gets_its_last_line_next_time(tmp_path: Path) -> None:
    """An import run beside the application meets an events log whose last line is not
    finished: that line is refused and kept, the import exits 1, and what came before
    goes in. Once the application has finished the line, the next import makes it a
    record (the file kept no digest), and an export writes the log as it is now."""
    events = tmp_path / "home" / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    log = events / "thr_1.jsonl"
    done = [json.dumps({"schema_version": 2, "seq": i, "kind": "turn.started"}) for i in range(3)]
    finished = json.dumps({"schema_version": 2, "seq": 3, "kind": "turn.completed"})
    log.write_text("\n".join(done) + "\n" + finished[:20])
    with Store(tmp_path / "s.db") as store:
        first = store.import_paths(tmp_path / "home")
        assert not first.ok and [(p.path, p.line) for p in first.problems] == [("tasks/runtime/events/thr_1.jsonl", 4)]
        assert [r.data["seq"] for r in store.query("runtime")] == [0, 1, 2]
        log.write_text("\n".join([*done, finished]) + "\n")
        second = store.import_paths(tmp_path / "home")
        assert second.ok and second.counts("runtime").imported == 1, second
        assert [r.data["seq"] for r in store.query("runtime")] == [0, 1, 2, 3]
        assert store.status().domains["runtime"].refused == 0
        store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / "tasks" / "runtime" / "events" / "thr_1.jsonl").read_bytes() == log.read_bytes()
