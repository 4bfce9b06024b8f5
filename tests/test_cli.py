"""The `store` command: global options, status/query output, errors, the installed script."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE_HOME, tree
from recordstore import QueryError, RecordStoreError, Store
from recordstore import cli as cli_module
from recordstore.query import OPERATORS

STORE = Path(sys.executable).with_name("store")


def test_status_json_has_the_documented_shape(cli: Any, home: Path) -> None:
    cli("import", home)
    res = cli("status", "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert set(data) == {"domains"}
    assert data["domains"]["runtime"]["current_version"] == 2
    assert data["domains"]["runtime"]["versions"] == {"1": 9, "2": 14}
    assert data["domains"]["session"]["versions"] == {"1": 5}


def test_query_filters_orders_and_limits(cli: Any, home: Path) -> None:
    cli("import", home)
    res = cli(
        "query", "runtime", "--where", "event", "exists", "true", "--where", "seq", ">=", "40",
        "--order-by", "seq", "--desc", "--limit", "2", "--json",
    )
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["record"]["seq"] for r in rows] == [42, 41]
    assert rows[0]["key"] == "tasks/runtime/events/thr_1a2b3c4d.jsonl:8"
    res = cli("query", "task", "--where", "status", "in", '["completed", "failed"]', "--version", "2")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) >= 1
    res = cli("query", "task", "--where", "status", "like", "x")
    assert res.exit_code == 3 and "unknown operator 'like'" in res.stderr
    res = cli("query", "task", "--where", "status")
    assert res.exit_code == 2


def test_a_filter_may_be_one_word(cli: Any, home: Path) -> None:
    """`--where status=completed`, as most tools take it, was refused ("--where takes
    PATH OP VALUE"), and `--where 'seq >= 40'` too: a filter may now be one word, and
    it selects what the three words select."""
    cli("import", home)

    def keys(*where: str) -> list[str]:
        res = cli("query", "runtime", *where, "--json")
        assert res.exit_code == 0, res.stderr
        return [json.loads(line)["key"] for line in res.stdout.splitlines()]

    three = keys("--where", "seq", ">=", "40", "--where", "event", "!=", "turn.started")
    assert three and len(three) < len(keys())
    assert keys("--where", "seq>=40", "--where", "event!=turn.started") == three
    assert keys("--where", " seq >= 40 ", "--where", "event != turn.started") == three
    assert keys("--where", "seq>=40", "--where", "event", "!=", "turn.started") == three
    res = cli("query", "task", "--where", "status=completed", "--json")
    assert res.exit_code == 0 and res.stdout
    assert {json.loads(line)["record"]["status"] for line in res.stdout.splitlines()} == {"completed"}
    # An operator inside a quoted key is the key's; the value may hold one too.
    res = cli("query", "task", "--where", '"a=b"=1', "--where", "title=x=y")
    assert res.exit_code == 0 and res.stdout == ""
    res = cli("query", "task", "--where", "status")
    assert res.exit_code == 2 and "as three words or as one (status=completed" in res.stderr
    # Followed by an operator, a word is the path of three words (refused here as one).
    res = cli("query", "task", "--where", "status=completed", "=", "x")
    assert res.exit_code == 3 and "malformed JSON path 'status=completed'" in res.stderr
    assert set(cli_module._OPERATORS) == set(OPERATORS)


def test_query_keeps_huge_integers_exact(cli: Any, home: Path) -> None:
    cli("import", home)
    res = cli("query", "session", "--where", "metadata.total_tokens", "exists", "true", "--json")
    values = [json.loads(line)["record"]["metadata"]["total_tokens"] for line in res.stdout.splitlines()]
    assert 18446744073709551615 in values


def test_library_queries_stream_and_page(store: Any, home: Path) -> None:
    store.import_paths([home])
    q = store.query("runtime").where("event", "exists").order_by("seq")
    seqs = [r.data["seq"] for r in q]
    assert seqs == sorted(seqs) and len(seqs) == 14
    assert [r.data["seq"] for r in q.offset(3).limit(2)] == seqs[3:5]
    assert store.query("runtime").where("seq", "<", 3).count() == 2
    assert store.query("task").where("status", "!=", "completed").count() == 1
    assert store.query("automation_run").where("task_id", "=", None).count() == 1
    assert store.query("runtime").where("archived", "=", False).count() >= 1
    assert store.query("session").where("metadata.model", "in", ["deepseek-v4-pro"]).count() >= 1
    assert store.query("task").where("checklist", "missing").count() == 1
    assert store.query().count() == 37
    assert store.query().limit(2).offset(5).count() == 37  # the total a page is taken from


def test_an_index_serves_equality_filters(store: Any, home: Path) -> None:
    store.import_paths([home])
    store.add_index("task", "status")
    assert store.indexes() == [("task", "$.status")]
    q = store.query("task").where("status", "=", "completed")
    with store.engine.connect() as conn:
        compiled = q.statement().compile(conn)
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(compiled.params.values())).all()
    assert any("ix_json_" in str(row) for row in plan), plan
    assert q.count() == 2
    store.drop_index("task", "status")
    assert store.indexes() == []


def test_dropping_an_index_that_is_not_there_leaves_no_run(store: Any, home: Path) -> None:
    store.import_paths([home])
    store.add_index("task", "status")
    runs = len(store.history())
    with pytest.raises(QueryError, match=r"no index on prompt in domain 'task'"):
        store.drop_index("task", "prompt")
    with pytest.raises(QueryError, match=r"no index on status in domain 'runtime'"):
        store.drop_index("runtime", "status")
    assert len(store.history()) == runs  # a mistyped path is not a failed run
    assert store.indexes() == [("task", "$.status")]


def test_writers_say_nothing_about_json_path_indexes(home: Path, tmp_path: Path) -> None:
    """Every writer first looks for the store's own indexes; the users' JSON-path indexes
    (on expressions, which SQLAlchemy cannot reflect) must not make it print a warning."""
    db = tmp_path / "store.db"

    def store(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "recordstore", "--db", str(db), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    assert store("import", str(home)).returncode == 0
    assert store("index", "add", "task", "status").stderr == ""
    for args in (["import", str(home)], ["migrate"], ["index", "add", "task", "prompt"], ["index", "drop", "task", "status"]):
        done = store(*args)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)


PRINTING_REGISTRY = """
from recordstore import Registry

print("loading the registry")
registry = Registry()
thing = registry.domain("thing", version=2, files=["things/*.json"])


@thing.step(1)
def noisy(record):
    print("migrating", record["n"])  # a debugging print left in a step
"""


def test_what_a_registry_or_a_step_prints_goes_to_stderr_not_into_json_output(cli: Any, tmp_path: Path) -> None:
    """A `print` in a step, or at the registry's top level, came on stdout before the
    --json document, which then did not parse."""
    registry = tmp_path / "printing.py"
    registry.write_text(PRINTING_REGISTRY)
    (tmp_path / "home" / "things").mkdir(parents=True)
    for n in range(3):
        (tmp_path / "home" / "things" / f"{n}.json").write_text(f'{{"schema_version": 1, "n": {n}}}')
    cli("import", tmp_path / "home", registry=str(registry))
    for args in (["migrate", "--json", "--jobs", "0", "--dry-run"], ["migrate", "--json", "--jobs", "0"]):
        res = cli(*args, registry=str(registry))
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["migrated"] == 3
        assert res.stderr.splitlines() == ["loading the registry", "migrating 0", "migrating 1", "migrating 2"]
    for args, printed in ((["status", "--json"], "loading the registry\n"), (["history", "--json"], "")):
        res = cli(*args, registry=str(registry))  # (history does not load the registry)
        assert res.exit_code == 0 and json.loads(res.stdout) and res.stderr == printed, res.stdout
    res = cli("migrate", registry=str(registry))  # the command's own output is still its stdout
    assert res.stdout.startswith("migrated 0 record(s), 0 failed; run ")


def test_errors_are_one_line_and_debug_shows_the_traceback(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_text("garbage" * 1000)
    cli.db = bad
    res = cli("status")
    assert res.exit_code == 3
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("store: error:")
    res = cli("--debug", "status")
    assert "Traceback" in res.stderr


def test_the_environment_chooses_the_store_and_the_default_is_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from recordstore.cli import app

    runner = CliRunner()
    monkeypatch.setenv("STORE_DB", str(tmp_path / "env.db"))
    assert runner.invoke(app, ["import", str(EXAMPLE_HOME)]).exit_code == 0
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("STORE_DB")
    default = tmp_path / "xdg" / "recordstore" / "store.db"
    # Only an import makes a store: a reader meeting none says where it looked.
    missing = runner.invoke(app, ["status"])
    assert missing.exit_code == 3 and f"no store at {default}" in missing.output
    assert not default.exists()
    assert runner.invoke(app, ["import", str(EXAMPLE_HOME)]).exit_code == 0
    assert runner.invoke(app, ["status"]).exit_code == 0
    assert default.exists()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORE_")}
    env["PYTHONPATH"] = ""
    return env


def test_the_installed_store_command_works_from_anywhere(tmp_path: Path) -> None:
    """A real subprocess of the installed script, run outside the repository."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    db = outside / "s.db"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(STORE), "--db", str(db), *args], cwd=outside, env=_env(), capture_output=True, text=True, timeout=120
        )

    assert run("import", str(EXAMPLE_HOME)).returncode == 0
    migrated = run("migrate", "--json")
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["migrated"] == 10
    assert run("restore", "--run", "2").returncode == 0
    assert run("export", str(outside / "out")).returncode == 0
    exported = tree(outside / "out")
    assert exported == {k: v for k, v in tree(EXAMPLE_HOME).items() if k in exported}
    assert len(exported) == 25


def test_python_dash_m_recordstore_is_the_same_command(tmp_path: Path) -> None:
    Store(tmp_path / "s.db").close()
    res = subprocess.run(
        [sys.executable, "-m", "recordstore", "--db", str(tmp_path / "s.db"), "status", "--json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["domains"]["task"]["current_version"] == 2


def test_import_jobs_option_gives_the_same_store_and_refuses_negatives(cli: Any, home: Path, tmp_path: Path) -> None:
    """``--jobs 2`` parses in worker processes: same summary as ``--jobs 0``."""
    from conftest import Cli

    serial = Cli(tmp_path / "serial.db")
    res0 = serial("import", "--json", "--jobs", "0", home)
    res2 = cli("import", "--json", "--jobs", "2", home)
    assert res0.exit_code == res2.exit_code == 0, res2.stderr
    summary0, summary2 = json.loads(res0.stdout), json.loads(res2.stdout)
    summary0.pop("run"), summary2.pop("run")
    assert summary0 == summary2 and summary2["domains"]["runtime"]["imported"] == 23
    res = cli("import", "--jobs", "-1", home)
    assert res.exit_code == 2 and "--jobs" in res.stderr


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_progress_is_shown_on_a_terminal_only_and_the_files_are_listed_only_for_it(
    cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    """On a terminal the import counts its files first, to draw a bar; elsewhere it
    streams them (listing a million files first would cost memory for nothing)."""
    import io

    from rich.console import Console

    from recordstore import cli as cli_module
    from recordstore.store import Store

    screen = io.StringIO()
    monkeypatch.setattr(cli_module, "err", Console(file=screen, force_terminal=terminal, width=100))
    seen: list[object] = []
    real = Store.import_paths

    def spy(self: Store, paths: Any, **kw: Any) -> Any:
        seen.append(kw.get("progress"))
        return real(self, paths, **kw)

    monkeypatch.setattr(Store, "import_paths", spy)
    res = cli("import", home)
    assert res.exit_code == 0
    assert (seen[0] is not None) == terminal
    assert ("import" in screen.getvalue()) == terminal  # the bar's label, drawn then cleared


def test_a_terminal_progress_bar_does_not_keep_import_workers_from_forking(
    cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar's refresh thread would rule out fork (workers would come from a slower
    fork server): it is drawn only once the workers are started."""
    import io
    import multiprocessing

    from rich.console import Console

    from recordstore import cli as cli_module
    from recordstore import workers

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    screen = io.StringIO()
    monkeypatch.setattr(cli_module, "err", Console(file=screen, force_terminal=True, width=100))
    chosen: list[str] = []
    real = workers._context

    def spy(fork_only: bool) -> Any:
        context = real(fork_only)
        chosen.append(context.get_start_method())
        return context

    monkeypatch.setattr(workers, "_context", spy)
    res = cli("import", "--jobs", "2", home)
    assert res.exit_code == 0, res.stderr
    assert chosen == ["fork"]
    assert "import" in screen.getvalue()  # the bar was drawn all the same


# --------------------------------------------------------------------------- what a first user ran into


def test_exists_and_missing_take_no_value_and_refuse_one_they_cannot_read(cli: Any, home: Path) -> None:
    """``exists`` used to read any value but true as "missing": ``--where event exists x``
    listed the records without an event."""
    cli("import", home)

    def keys(*where: str) -> set[str]:
        res = cli("query", "runtime", *where)
        assert res.exit_code == 0, res.stderr
        return {line.split("\t")[0] for line in res.stdout.splitlines()}

    everything = keys()
    present, absent = keys("--where", "event", "exists"), keys("--where", "event", "missing")
    assert present and absent and present | absent == everything and not present & absent
    assert keys("--where", "event", "exists", "true") == keys("--where", "event", "missing", "false") == present
    assert keys("--where", "event", "exists", "false") == absent
    # Followed by another filter, without a value in between.
    assert keys("--where", "event", "exists", "--where", "seq", ">=", "40") == keys("--where", "seq", ">=", "40")
    res = cli("query", "runtime", "--where", "event", "exists", "x")
    assert res.exit_code == 2 and "unexpected argument 'x'" in _said(res)
    with cli_store(cli) as store:
        with pytest.raises(QueryError, match="'exists' takes no value"):
            store.query("runtime").where("event", "exists", "x").count()


def cli_store(cli: Any) -> Store:
    return Store(cli.db, create=False)


@pytest.mark.parametrize(
    "command",
    [["status"], ["history"], ["query", "task"], ["export", "OUT"], ["check"], ["index", "list"], ["migrate"],
     ["restore", "--domain", "task"], ["prune-backups", "--before", "1"], ["index", "add", "task", "status"]],
)
def test_only_an_import_makes_a_store_so_a_mistyped_path_is_an_error(cli: Any, tmp_path: Path, command: list[str]) -> None:
    cli.db = tmp_path / "typo" / "sub" / "s.db"
    res = cli(*[str(tmp_path / "out") if c == "OUT" else c for c in command])
    assert res.exit_code == 3
    assert res.stderr == f"store: error: no store at {cli.db}: an import creates one (is the path right?)\n"
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()
    assert cli("import", EXAMPLE_HOME).exit_code == 0 and cli.db.exists()


def test_an_empty_export_directory_is_refused_not_read_as_this_one(
    cli: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``store export "$OUT"`` with OUT unset used to write the export into the current directory."""
    cli("import", home)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for empty in ("", "  "):
        res = cli("export", empty)
        assert res.exit_code == 2 and "OUT is empty" in _said(res)
    assert list(here.iterdir()) == []
    assert cli("export", ".").exit_code == 0 and (here / "sessions").is_dir()  # asked for by name: fine


def _many_records(tmp_path: Path) -> Path:
    db = tmp_path / "many.db"
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join(json.dumps({"schema_version": 2, "seq": i, "pad": "x" * 100}) + "\n" for i in range(3000)))
    with Store(db) as store:
        store.import_paths([lines], domain="runtime")
    return db


def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """``store query ... | head -1`` used to end in "internal error: BrokenPipeError" (exit 70)."""
    db = _many_records(tmp_path)  # ~350 KB of output: more than a pipe holds
    res = subprocess.run(
        ["bash", "-c", f'"{STORE}" --db "{db}" query runtime | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert res.stdout.startswith("events.jsonl:1\tv2\t") and res.stdout.count("\n") == 1
    assert res.stderr == "status 1\n"  # click's code for a closed pipe, and not a word more


def test_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """A full disk under the output used to be an internal error."""
    db = _many_records(tmp_path)
    with open("/dev/full", "w") as full:
        res = subprocess.run([str(STORE), "--db", str(db), "query", "runtime"], stdout=full, stderr=subprocess.PIPE,
                             env=_env(), text=True, timeout=120)
    assert res.returncode == 3
    assert res.stderr == "store: error: cannot write the output: No space left on device\n"


def test_json_output_escapes_a_lone_surrogate_the_store_kept(cli: Any, tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "sessions").mkdir(parents=True)
    (home / "sessions" / "s.json").write_bytes(b'{"schema_version": 1, "title": "half \\ud800 pair", "n": "\xc3\xa9"}')
    assert cli("import", home).exit_code == 0
    res = cli("query", "session", "--json")
    assert res.exit_code == 0, res.stderr
    record = json.loads(res.stdout)["record"]
    assert record["title"] == "half \ud800 pair" and record["n"] == "\u00e9"


HUGE = str(10**22)


def _said(res: Any) -> str:
    """What a usage error says, without the frame and line breaks of its box."""
    return " ".join(res.stderr.replace("│", " ").split())


@pytest.mark.parametrize(
    "args",
    [["history", HUGE], ["restore", "--run", HUGE], ["prune-backups", "--before", HUGE], ["query", "task", "--limit", HUGE],
     ["query", "task", "--offset", HUGE], ["query", "task", "--version", HUGE], ["query", "task", "--limit", "-1"],
     ["query", "task", "--offset", "-1"], ["migrate", "--dry-run", "--diff", "-1"]],
)
def test_numbers_no_store_can_hold_are_usage_errors(cli: Any, home: Path, args: list[str]) -> None:
    """They used to end in "internal error: OverflowError"."""
    cli("import", home)
    res = cli(*args)
    assert res.exit_code == 2 and "Invalid value" in res.stderr and "Traceback" not in res.stderr


def test_the_library_refuses_numbers_no_store_can_hold_in_one_line(store: Any, home: Path) -> None:
    store.import_paths([home])
    with pytest.raises(RecordStoreError, match=f"^no run {HUGE} in this store$"):
        store.history(10**22)
    with pytest.raises(RecordStoreError, match=f"^nothing to restore|^no run {HUGE}"):
        store.restore(run=10**22)
    for build in (lambda q: q.limit(10**22), lambda q: q.offset(-1), lambda q: q.version(2**63)):
        with pytest.raises(QueryError, match="must be between 0 and"):
            build(store.query("task")).count()


@pytest.mark.parametrize(
    ("url", "message"),
    [("foo://bar", "foo://bar: SQLAlchemy has no dialect 'foo'"),
     ("mssql+pymssql://user:secret@host/db", "mssql+pymssql://user:***@host/db: the 'mssql+pymssql' driver is not installed")],
)
def test_a_database_url_that_cannot_be_used_is_one_line_without_its_password(cli: Any, url: str, message: str) -> None:
    cli.db = url
    res = cli("status")
    assert res.exit_code == 3 and res.stderr.startswith(f"store: error: {message}") and res.stderr.count("\n") == 1
    assert "secret" not in res.stderr


def test_a_store_error_names_the_store_file(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_text("garbage" * 1000)
    cli.db = bad
    res = cli("status")
    assert res.stderr == f"store: error: {bad}: the file is not a recordstore database (not SQLite)\n"


@pytest.mark.parametrize("command", [["status"], ["import", "HOME"]])
def test_a_directory_given_as_the_store_is_named_as_one(cli: Any, home: Path, tmp_path: Path, command: list[str]) -> None:
    # `store --db ~/data status` said "cannot open the store file (missing directory or
    # no permission)", though the directory was there and could be written.
    cli.db = tmp_path
    res = cli(*[str(home) if c == "HOME" else c for c in command])
    assert res.exit_code == 3
    assert res.stderr == f"store: error: {tmp_path} is a directory, not a store file: name the file (such as {tmp_path / 'store.db'})\n"
    assert not (tmp_path / "store.db").exists()


def test_restore_says_why_there_is_nothing_to_restore(cli: Any, home: Path) -> None:
    """Each of these used to print "restored 0 record(s)", exit 0, as if all was well."""
    cli("import", home)
    assert cli("migrate").exit_code == 0  # run 2
    assert cli("prune-backups", "--before", "3").exit_code == 0  # run 3
    cases = [
        (["restore", "--run", "2"], "nothing to restore: run 2 has no backups (prune run 3 deleted those of the runs before run 3)"),
        (["restore", "--domain", "nosuch"], "unknown domain 'nosuch'"),
        (["restore", "--domain", "task", "--key", "nosuch.json"], "nothing to restore: no backups of record 'nosuch.json' of domain 'task'"),
    ]
    for args, message in cases:
        res = cli(*args)
        assert res.exit_code == 3 and message in res.stderr, (args, res.stderr)
    res = cli("restore", "--key", "nosuch.json")  # a usage error
    assert res.exit_code == 2 and "restore of a key needs its domain too (--domain)" in _said(res)
    assert [r["kind"] for r in json.loads(cli("history", "--json").stdout)] == ["import", "migrate", "prune"]
    # A prune cannot be undone: it said "restored 0 record(s)", exit 0, as if its backups were back.
    res = cli("restore", "--run", "3")
    assert res.exit_code == 3 and "run 3 is a prune: the backups it deleted are gone for good" in res.stderr, res.stderr
    assert cli("index", "add", "task", "status").exit_code == 0  # run 4
    res = cli("restore", "--run", "4")
    assert res.exit_code == 3 and "`store index drop`, or drop_index(), removes an index" in res.stderr, res.stderr
    # A domain with no backups left: a restore of nothing, as asked.
    res = cli("restore", "--domain", "task")
    assert res.exit_code == 0 and res.stdout.startswith("restored 0 record(s)"), res.stdout


def test_restoring_a_record_twice_puts_back_the_same_row(cli: Any, home: Path) -> None:
    """The second restore used to put back the first restore's own backup: v1, v2, v1..."""
    cli("import", home)
    cli("migrate")
    key = "tasks/tasks/task_1f2e3d4c.json"

    def version() -> int:
        lines = [json.loads(line) for line in cli("query", "task", "--json").stdout.splitlines()]
        return int(next(r["version"] for r in lines if r["key"] == key))

    assert version() == 2
    for _ in range(3):
        assert cli("restore", "--domain", "task", "--key", key).exit_code == 0
        assert version() == 1
    # A restore is undone by its run: the first one (run 3) puts the migrated row back.
    # The later restores wrote the very row it left, so undoing it loses nothing of theirs.
    assert cli("restore", "--run", "3").exit_code == 0 and version() == 2


def test_diff_is_for_a_dry_run_and_json_carries_it(cli: Any, home: Path) -> None:
    cli("import", home)
    before = cli("status", "--json").stdout
    res = cli("migrate", "--diff", "2")
    assert res.exit_code == 2 and "add --dry-run" in _said(res)
    assert cli("status", "--json").stdout == before  # nothing migrated
    diffs = json.loads(cli("migrate", "--dry-run", "--diff", "2", "--json").stdout)["diffs"]
    assert len(diffs) == 2 and {"domain", "key", "from_version", "to_version", "before", "after"} <= set(diffs[0])


def test_text_that_spells_an_emoji_code_is_printed_as_it_is(cli: Any, home: Path) -> None:
    """Rich turns ``:x:`` into an emoji wherever it prints: a record's prompt holding
    ":x: and :smile:" came out of ``migrate --dry-run --diff`` as "❌ and 😄"."""
    task = home / "tasks" / "tasks" / "task_1f2e3d4c.json"
    task.write_text(task.read_text().replace("Format the workspace", "Format :x: and :smile:"))
    cli("import", home)
    shown = cli("migrate", "--dry-run", "--diff", "3", "--domain", "task").stdout
    assert '"prompt": "Format :x: and :smile: with cargo fmt"' in shown, shown
    assert "❌" not in shown and "😄" not in shown


def test_history_says_what_each_run_did_in_its_own_words(cli: Any, home: Path) -> None:
    cli("import", home)
    cli("index", "add", "task", "status")
    cli("prune-backups", "--before", "1")
    table = cli("history").stdout
    assert "imported 37, updated 0, unchanged 0, removed 0" in table
    assert "add task status" in table and "pruned 0 before run 1" in table


def test_the_history_of_thousands_of_runs_is_read_in_a_few_statements(cli: Any, home: Path) -> None:
    """Listing the runs read each run's failures and counted them, two statements a
    run: a store with 5,000 runs took ~3.5 s to show its history (~0.6 s now)."""
    from sqlalchemy import event

    cli("import", home)
    cli("migrate")
    with Store(cli.db) as store:
        with store.engine.begin() as conn:
            columns = ["kind", "started_at", "finished_at", "outcome", "pid", "counts", "options", "fingerprints"]
            for _ in range(2000):
                conn.exec_driver_sql(f"INSERT INTO runs ({', '.join(columns)}) SELECT {', '.join(columns)} FROM runs WHERE id = 1")
        statements: list[str] = []
        event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        listed = store.history()
        assert len(listed) == 2002 and len(statements) < 10, statements[:12]
        assert [r.failure_count for r in listed[:2]] == [0, 0] and listed[5].counts == listed[0].counts
    rows = [line for line in cli("history").stdout.splitlines() if line.startswith("│ ")]
    assert len(rows) == 2002 and rows[-1].split()[1:4] == ["2002", "│", "import"]


@pytest.mark.parametrize("terminal", [False, True])
def test_a_table_is_printed_as_rich_prints_it(terminal: bool) -> None:
    """Tables are laid out by the command line itself (rich took 0.4-1 ms a row): one
    that fits is the same characters as rich's, wide characters and all; one too wide
    for the terminal has its cells folded within the width, every character kept."""
    import io
    import random

    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Column, Table

    rnd = random.Random(7)
    letters = "abcXYZ 019-_:,.()éß漢字😀"
    plain = re.compile(r"\x1b\[[0-9;]*m")
    kept = cli_module.out
    folded = 0
    try:
        for _ in range(400):
            columns = ["".join(rnd.choices(letters, k=rnd.randint(1, 12))) for _ in range(rnd.randint(1, 7))]
            rows = [tuple("".join(rnd.choices(letters, k=rnd.randint(0, 30))) for _ in columns) for _ in range(rnd.randint(0, 5))]
            width = rnd.choice([40, 80, 160])
            options: dict[str, Any] = dict(highlight=False, soft_wrap=True, markup=False, emoji=False, width=width)
            if terminal:
                options.update(force_terminal=True, color_system="standard")
            cli_module.out = Console(file=io.StringIO(), **options)
            ours = cli_module._Table(*columns)
            for row in rows:
                ours.add_row(*row)
            ours.print()
            got = cli_module.out.file.getvalue()  # type: ignore[attr-defined]
            assert ("\x1b[1m" in got) == terminal  # bold headings on a terminal
            natural = sum(max(cell_len(c) for c in cells) for cells in zip(columns, *rows)) + 3 * len(columns) + 1
            if natural <= width:
                reference = Console(file=io.StringIO(), **options)
                table = Table(*(Column(c, overflow="fold") for c in columns))
                for row in rows:
                    table.add_row(*row)
                reference.print(table)
                assert plain.sub("", got) == plain.sub("", reference.file.getvalue())  # type: ignore[attr-defined]
                continue
            folded += 1
            lines = plain.sub("", got).splitlines()
            assert len({cell_len(line) for line in lines}) == 1 and cell_len(lines[0]) <= width
            cells = [line[1:-1].split("┃" if line.startswith("┃") else "│") for line in lines if line[0] in "┃│"]
            for i, column in enumerate(zip(columns, *rows)):
                assert "".join(c[i] for c in cells).replace(" ", "") == "".join(column).replace(" ", "")
        assert folded > 50  # (the narrow tables were tried)
    finally:
        cli_module.out = kept


def test_history_does_not_say_a_killed_import_imported_nothing(cli: Any, home: Path) -> None:
    """A run that could not record what it did (its process killed) showed "imported 0,
    updated 0, ..." though it had committed thousands of records."""
    import sqlite3

    cli("import", home)
    with contextlib.closing(sqlite3.connect(cli.db)) as conn, conn:
        conn.execute("INSERT INTO runs (kind, started_at, outcome, counts) VALUES ('import', '2026-01-01T00:00:00Z', 'interrupted', '{}')")
    rows = [line for line in cli("history").stdout.splitlines() if line.startswith("│ 2 ")]
    assert len(rows) == 1 and "imported 0" not in rows[0] and "│ -" in rows[0], rows


def test_version_and_a_hint_when_no_file_is_in_a_domain(cli: Any, home: Path) -> None:
    import recordstore

    assert cli("--version").stdout == f"recordstore {recordstore.__version__}\n"
    res = cli("import", home / "tasks")
    assert res.exit_code == 0 and "0 file(s) read" in res.stdout and "give the application's home directory" in res.stdout
    assert res.stdout.startswith("0 file(s) read")  # no table of headings alone above it


def test_import_and_status_list_the_domains_in_the_same_order(cli: Any, home: Path) -> None:
    def first_column(text: str) -> list[str]:
        return [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]

    imported = first_column(cli("import", home).stdout)
    assert imported == first_column(cli("status").stdout) and imported != sorted(imported)


def test_json_output_writes_an_integer_of_thousands_of_digits(cli: Any, tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "sessions").mkdir(parents=True)
    digits = "7" + "0123456789" * 500
    (home / "sessions" / "s.json").write_text('{"schema_version": 1, "n": ' + digits + "}")
    assert cli("import", home).exit_code == 0
    res = cli("query", "session", "--json")
    assert res.exit_code == 0, res.stderr
    assert f'"n":{digits}}}' in res.stdout


@pytest.mark.parametrize("columns", [60, 80])
def test_help_paragraphs_are_wrapped_to_the_terminal(columns: int) -> None:
    """Every command's help reads as paragraphs filled to the terminal's width (click's
    own, at most 78 columns): no line longer, and no line of a paragraph cut short before
    its end (as the docstrings' own line breaks, kept and wrapped again, used to give)."""
    fill = min(columns, 80) - 2
    commands = ["", "import", "export", "migrate", "restore", "status", "history", "query", "check", "prune-backups"]
    for command in [*commands, "index add"]:
        shown = subprocess.run(
            [STORE, *command.split(), "--help"], env={**os.environ, "COLUMNS": str(columns)}, capture_output=True, text=True
        ).stdout
        lines = shown.splitlines()
        assert all(len(line) <= columns for line in lines), (command, shown)
        end = next(i for i, line in enumerate(lines) if i > 1 and line.endswith(":") and not line.startswith(" "))
        paragraph: list[str] = []
        for line in [*lines[2:end], ""]:
            if line.strip():
                paragraph.append(line)
                continue
            for cut, following in zip(paragraph, paragraph[1:]):
                assert len(cut) + 1 + len(following.split()[0]) > fill, (command, cut)
            paragraph = []


def test_help_names_what_each_value_is_and_not_the_store_s_integer_bounds() -> None:
    """Placeholders say what to give (--domain DOMAIN, --limit N), where click printed
    the bare type (``<str>``, ``<int range>``) and every number's range up to
    9223372036854775807."""
    shown = {
        command: subprocess.run([STORE, *command.split(), "--help"], capture_output=True, text=True).stdout
        for command in ["", "import", "migrate", "query", "history", "restore", "prune-backups", "index add"]
    }
    for command, text in shown.items():
        assert not re.search(r"<[a-z ]+>", text.replace("<its source path>", "")), (command, text)
        assert "9223372036854775807" not in text, (command, text)
    assert "Usage: store import [OPTIONS] {PATH...}" in shown["import"]
    assert "--db PATH_OR_URL" in shown[""] and "--registry SPEC" in shown[""]
    assert "--domain DOMAIN" in shown["import"] and "--jobs N" in shown["migrate"]
    assert "--limit N" in shown["query"] and "--order-by KEY_OR_PATH" in shown["query"]
    assert "[RUN]" in shown["history"] and "--run RUN" in shown["restore"] and "--before RUN" in shown["prune-backups"]
    assert "{DOMAIN} {PATH}" in shown["index add"]


@pytest.mark.parametrize(
    ("args", "said"),
    [(["query", "task", "--limit", HUGE], f"Invalid value for '--limit': {HUGE} is too large: it must be at most 9223372036854775807"),
     (["query", "task", "--version", "0"], "Invalid value for '--version': 0 is too small: it must be at least 1"),
     (["query", "task", "--offset", "ten"], "Invalid value for '--offset': 'ten' is not a whole number"),
     (["import", "--jobs", "65", "."], "Invalid value for '--jobs': 65 is too large: it must be at most 64"),
     (["migrate", "--jobs", "-1"], "Invalid value for '--jobs': -1 is too small: it must be at least 0"),
     (["import", "", "."], "Invalid value for PATH: a PATH is empty (an unset variable?)")],
)
def test_a_number_out_of_bounds_is_named_with_its_bound(cli: Any, args: list[str], said: str) -> None:
    res = cli(*args)
    assert res.exit_code == 2 and said in _said(res), res.stderr


def test_a_command_starts_at_most_max_jobs_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for more (a typo: --jobs 600 on two CPUs), a library caller gets the most
    it makes sense to start, not hundreds of forked processes."""
    from recordstore import workers

    monkeypatch.setattr(workers, "MAX_JOBS", 2)
    with workers.pool(50, "import") as executor:
        assert executor is not None
        assert executor._max_workers == 2
        assert sorted(executor.map(abs, [-1, -2, -3])) == [1, 2, 3]


def test_workers_leave_the_pages_they_share_with_the_command_uncopied() -> None:
    """A worker's garbage collections skip the objects it inherited (writing to them
    would copy every page they share with the command: megabytes a worker), and the
    command's own objects are collected again once its workers are started."""
    import gc

    from recordstore import workers

    with workers.pool(2, "import") as executor:
        assert executor is not None
        assert gc.get_freeze_count() == 0
        inherited = [executor.submit(gc.get_freeze_count).result() for _ in range(2)]
    assert min(inherited) > 10_000, inherited


@pytest.mark.parametrize(
    ("args", "said"),
    [([], "restore needs a run (--run) or a domain (--domain)"),
     (["--key", "tasks/tasks/task_1.json"], "restore of a key needs its domain too (--domain)")],
)
def test_a_restore_of_nothing_named_is_a_usage_error(cli: Any, home: Path, args: list[str], said: str) -> None:
    cli("import", home)
    res = cli("restore", *args)
    assert res.exit_code == 2 and said in _said(res) and "Usage: store restore" in res.stderr


def test_a_file_named_with_domain_goes_in_whatever_its_name(cli: Any, tmp_path: Path) -> None:
    """--domain puts a file named itself in the domain, even without a JSON suffix (an
    object, or JSON lines); below a directory only JSON files are taken, and when none
    is, the hint says that rather than suggesting --domain, which was given."""
    (tmp_path / "export.txt").write_text('{"schema_version": 2, "id": "t1", "prompt": "p", "status": "done"}')
    (tmp_path / "log").write_text('{"schema_version": 2, "id": "t2"}\n{"schema_version": 2, "id": "t3"}\n')
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("{}")
    res = cli("import", tmp_path / "export.txt", tmp_path / "log", "--domain", "task")
    assert res.exit_code == 0 and "2 file(s) read, 0 skipped" in res.stdout, res.stdout
    with Store(cli.db) as store:
        assert sorted(r.key for r in store.query("task")) == ["export.txt", "log:1", "log:2"]
    res = cli("import", tmp_path / "dir", "--domain", "task")
    assert res.exit_code == 0 and "no JSON file (.json, .jsonl, .ndjson) was below the directories given" in res.stdout
    assert "--domain" not in res.stdout


def test_two_files_given_that_would_share_a_key_are_not_both_imported(cli: Any, tmp_path: Path) -> None:
    """A file given by itself is keyed by its name (with --domain): two such files of
    one name, or one whose name a directory given beside it also holds, would replace
    each other's records. The one given by itself is refused, naming the other; the
    same file given twice is no conflict."""
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "events.jsonl").write_text('{"seq": 1, "new": true}\n{"seq": 2, "new": true}\n')
    (logs / "old" / "events.jsonl").write_text('{"seq": 1, "old": true}\n')
    res = cli("import", "--domain", "runtime", logs / "events.jsonl", logs / "old" / "events.jsonl", logs / "events.jsonl")
    assert res.exit_code == 1 and "1 file(s) read" in res.stdout, res.stdout
    shown = str(logs / "old" / "events.jsonl")
    assert f"{shown}: not imported: its key 'events.jsonl' is also that of {logs / 'events.jsonl'}" in res.stderr
    res = cli("import", "--domain", "runtime", logs, logs / "old" / "events.jsonl")
    assert res.exit_code == 1 and "not imported: its key 'events.jsonl'" in res.stderr
    with Store(cli.db) as store:
        found = {r.key: r.data for r in store.query("runtime")}  # (the walk keys old/ by its path)
    assert found == {"events.jsonl:1": {"seq": 1, "new": True}, "events.jsonl:2": {"seq": 2, "new": True}, "old/events.jsonl:1": {"seq": 1, "old": True}}


def test_a_linked_directory_in_a_home_is_walked_once(cli: Any, tmp_path: Path) -> None:
    """An application's directory moved to another disk and linked back: its files are
    imported under the path through the link, and a link looping back is walked once."""
    import shutil

    from conftest import EXAMPLE_HOME

    home = tmp_path / "home"
    shutil.copytree(EXAMPLE_HOME, home)
    shutil.move(home / "sessions", tmp_path / "disk")
    (home / "sessions").symlink_to(tmp_path / "disk")
    (tmp_path / "disk" / "back").symlink_to(home)  # a loop through the link
    res = cli("import", home, "--json")
    assert res.exit_code == 0, res.stderr
    with Store(cli.db) as linked:
        status = linked.status().domains
    cli.db = tmp_path / "plain.db"
    plain_home = tmp_path / "plain"
    shutil.copytree(EXAMPLE_HOME, plain_home)
    assert cli("import", plain_home).exit_code == 0
    with Store(cli.db) as plain:
        assert {d: s.total for d, s in status.items()} == {d: s.total for d, s in plain.status().domains.items()}
        assert status["session"].total > 0


def test_a_where_number_no_double_holds_is_refused_not_compared_as_text(cli: Any, home: Path) -> None:
    """`--where n '<' 1e400` printed nothing and exited 0: the number, refused by the
    codec, was compared as the text "1e400". Text that is not a JSON number stays text."""
    (home / "tasks" / "tasks" / "task_text.json").write_text('{"schema_version": 2, "status": "01"}')
    (home / "tasks" / "tasks" / "task_number.json").write_text('{"schema_version": 2, "status": 1}')
    cli("import", home)
    res = cli("query", "task", "--where", "duration_ms", "<", "1e400")
    assert res.exit_code == 2 and "1e400: number 1e400 is too large for a double" in _said(res)
    res = cli("query", "task", "--where", "status", "=", "01", "--json")  # the text "01", not the number 1
    assert res.exit_code == 0 and [json.loads(line)["key"] for line in res.stdout.splitlines()] == ["tasks/tasks/task_text.json"]


def test_ctrl_c_during_a_restore_rolls_it_back_whole_and_says_so(cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore is one transaction: Ctrl-C between its batches ends it, nothing of it
    written. It had no safe point: the press was held until the restore was done, then
    dropped, and the command went on (for ~10 s on 14,000 records) and exited 0."""
    from recordstore import migrator

    cli("import", home)
    cli("migrate")
    before = cli("query", "runtime", "--json").stdout
    calls: list[int] = []

    def pressed_at_the_second_batch() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(migrator, "RESTORE_BATCH", 2)
    monkeypatch.setattr(migrator, "check_interrupt", pressed_at_the_second_batch)
    res = cli("restore", "--run", "2")
    assert (res.exit_code, res.stderr) == (130, "store: interrupted; it is one transaction: nothing of it was written\n")
    assert cli("query", "runtime", "--json").stdout == before
    monkeypatch.undo()
    runs = json.loads(cli("history", "--json").stdout)
    assert [r["outcome"] for r in runs] == ["ok", "ok", "interrupted"]
    assert cli("restore", "--run", "2").exit_code == 0 and cli("query", "runtime", "--json").stdout != before


def test_ctrl_c_while_the_command_loads_is_one_line() -> None:
    """Pressed in a command's first few tenths of a second (its modules loading), Ctrl-C
    printed a traceback of 11 to 34 lines."""
    program = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def pressed(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    if name == 'cli' and level == 1:\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = pressed\n"
        "from recordstore._command import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "store: interrupted\n")
    entry = subprocess.run([STORE, "--version"], capture_output=True, text=True, timeout=60)
    assert entry.returncode == 0 and entry.stdout.startswith("recordstore ")  # the command's entry point


def test_ctrl_c_once_the_command_is_over_is_ignored() -> None:
    """A Ctrl-C landing as a command ended (its output printed, its run finished) killed
    the process during Python's teardown, which gives SIGINT back its default: an exit
    by the signal, no message, after a complete run (the crash campaign's `migrate`,
    about one press in forty). From the end of the command on, it is ignored."""
    program = (
        "import signal, sys\n"
        "sys.argv = ['store', '--version']\n"
        "from recordstore._command import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    print(done.code, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 True", done.stdout + done.stderr


RAW_PRINTING_REGISTRY = """
import os
import subprocess
import sys

from recordstore import Registry

registry = Registry()
thing = registry.domain("thing", version=2, files=["things/*.json"])


@thing.step(1)
def noisy(record):
    os.write(1, b"written to fd 1\\n")  # as C code does
    subprocess.run([sys.executable, "-c", "print('a subprocess prints')"], check=True)
"""


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_what_a_step_writes_to_fd_1_or_a_subprocess_prints_stays_out_of_json_output(tmp_path: Path, jobs: str) -> None:
    """Output a step's C code or subprocess wrote straight to file descriptor 1 came on
    stdout inside the --json document, which then did not parse."""
    registry = tmp_path / "raw.py"
    registry.write_text(RAW_PRINTING_REGISTRY)
    (tmp_path / "home" / "things").mkdir(parents=True)
    for n in range(2):
        (tmp_path / "home" / "things" / f"{n}.json").write_text(f'{{"schema_version": 1, "n": {n}}}')
    base = [sys.executable, "-m", "recordstore", "--db", str(tmp_path / "s.db"), "--registry", str(registry)]
    assert subprocess.run([*base, "import", str(tmp_path / "home")], capture_output=True).returncode == 0
    done = subprocess.run([*base, "migrate", "--json", "--jobs", jobs], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["migrated"] == 2
    assert done.stderr.count("written to fd 1\n") == 2 and done.stderr.count("a subprocess prints\n") == 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--json", "status"], "No such option: --json. It is an option of 'store status': give it after the command's name (store status --json ...)"),
        (["--wait", "index", "add", "task", "status"], "It is an option of 'store index add': give it after the command's name (store index add --wait ...)"),
        (["--json"], "It is an option of a command: give it after the command's name (store COMMAND --json ...)"),
        (["status", "--db", "other.db"], "No such option for 'store status': --db. It is a global option: give it before the command's name (store --db PATH_OR_URL status ...)"),
        (["export", "out", "-q"], "-q. It is a global option: give it before the command's name (store -q export ...)"),
        (["index", "add", "task", "status", "--registry=r.py"], "--registry. It is a global option: give it before the command's name (store --registry SPEC index add ...)"),
        (["query", "task", "--debug"], "--debug. It is a global option: give it before the command's name (store --debug query ...)"),
    ],
)  # fmt: skip
def test_an_option_on_the_wrong_side_of_the_command_says_where_it_goes(cli: Any, args: list[str], said: str) -> None:
    # click said "No such option: --json (Possible options: --version)", and of a global
    # option after the command, "No such option: --db", naming no way out.
    res = cli(*args)
    assert res.exit_code == 2 and said in _said(res), res.stderr
    assert "Possible options" not in res.stderr and not cli.db.exists()


@pytest.mark.parametrize("narrowed", [["--domain", "task"], ["--key", "tasks/tasks/task_1f2e3d4c.json"],
                                      ["--domain", "task", "--key", "tasks/tasks/task_1f2e3d4c.json"]])
def test_a_restore_of_a_run_narrowed_to_a_domain_or_key_is_refused_not_widened(
    cli: Any, home: Path, narrowed: list[str]
) -> None:
    # `store restore --run 2 --domain task` (or --key) put back every row run 2 had
    # changed, runtime records too: the domain and the key were ignored.
    cli("import", home)
    assert cli("migrate").exit_code == 0
    res = cli("restore", "--run", "2", *narrowed)
    assert res.exit_code == 2, res.stdout
    said = "restore --run 2 puts back every row run 2 changed, in any domain; --domain and --key choose the latest"
    assert f"{said} backups instead: give one or the other" in _said(res)
    with Store(cli.db, create=False) as store:
        assert [r.kind for r in store.history()] == ["import", "migrate"]
        assert store.status().domains["runtime"].versions == {2: 23}
        with pytest.raises(RecordStoreError, match="give one or the other"):
            store.restore(run=2, domain=None if "--domain" not in narrowed else "task", key="tasks/tasks/task_1f2e3d4c.json")


def test_desc_alone_orders_by_key_descending_and_an_empty_order_is_refused(cli: Any, home: Path) -> None:
    # `store query task --desc` printed the records in the order they were imported, as
    # without it (--desc was ignored without --order-by), and `--order-by ''` (an unset
    # variable) was ignored too.
    cli("import", home)
    ascending = [line.split("\t")[0] for line in cli("query", "runtime", "--order-by", "key").stdout.splitlines()]
    assert len(ascending) == 23
    res = cli("query", "runtime", "--desc")
    assert res.exit_code == 0 and [line.split("\t")[0] for line in res.stdout.splitlines()] == ascending[::-1]
    res = cli("query", "runtime", "--order-by", "")
    assert res.exit_code == 3 and "a JSON path must be a non-empty string" in res.stderr and not res.stdout


@pytest.mark.parametrize(("value", "said"), [("true", "true"), ("false", "false"), ("null", "null")])
def test_a_value_that_takes_only_equality_is_named_as_the_user_wrote_it(cli: Any, home: Path, value: str, said: str) -> None:
    # `--where duration_ms '>' true` said "duration_ms: True can only be compared with = or !=":
    # Python's spelling (True, None) of what was given as JSON.
    cli("import", home)
    res = cli("query", "task", "--where", "duration_ms", ">", value)
    assert res.exit_code == 3 and res.stderr == f"store: error: duration_ms: {said} can only be compared with = or !=\n"


@pytest.mark.parametrize("name", ["out[old]", "out[/x]", "[bold]out"])
def test_names_with_brackets_are_printed_as_they_are(cli: Any, home: Path, tmp_path: Path, name: str) -> None:
    # rich read them as style tags: `store export 'out[old]'` said "wrote ... to out",
    # and `store export 'out[/x]'` ended in a traceback (MarkupError) after writing.
    cli("import", home)
    res = cli("export", tmp_path / name)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == f"wrote 37 record(s) in 25 file(s) to {tmp_path / name}\n"


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_output_in_an_encoding_that_is_not_unicode_is_escaped_not_an_internal_error(
    cli: Any, tmp_path: Path, encoding: str
) -> None:
    # On an output whose encoding is not Unicode (a Windows file or console,
    # PYTHONIOENCODING=ascii), `store query session --json` ended with "store: internal
    # error: UnicodeEncodeError", exit 70, at the first record holding "日本語".
    import recordstore

    assert cli("import", EXAMPLE_HOME).exit_code == 0
    env = {**_env(), "PYTHONIOENCODING": encoding, "PYTHONPATH": str(Path(recordstore.__file__).parents[1])}

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "recordstore", "--db", str(cli.db), *args], env=env,
                              capture_output=True, timeout=120, check=False)

    expected = [json.loads(line) for line in cli("query", "session", "--json").stdout.splitlines()]
    for args in (["query", "session", "--json"], ["query", "session", "--where", "metadata.mode", "=", "plan"],
                 ["status", "--json"], ["history", "1"], ["export", str(tmp_path / "exé"), "--json"]):
        res = run(*args)
        assert res.returncode == 0 and not res.stderr, (args, res.stderr)
        assert res.stdout.isascii() or encoding != "ascii"
        if args[-1] == "--json" and args[0] == "query":
            assert [json.loads(line) for line in res.stdout.decode(encoding).splitlines()] == expected
        elif args[-1] == "--json":
            json.loads(res.stdout.decode(encoding))
    assert json.loads(run("export", str(tmp_path / "exé"), "--force", "--json").stdout)["out"] == str(tmp_path / "exé")
    line = run("query", "session", "--where", "metadata.mode", "=", "plan").stdout.decode(encoding)
    assert json.loads(line.split("\t")[2]) == next(r["record"] for r in expected if r["record"]["metadata"]["mode"] == "plan")


def test_a_narrow_terminal_folds_table_cells_and_cuts_none(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # At 40 columns, `store status` cut every cell to two letters and an ellipsis:
    # "automation" and "automation_run" both read "au…", and no header could be read.
    import io

    from rich.console import Console

    import recordstore.cli

    assert cli("import", EXAMPLE_HOME).exit_code == 0
    shown = io.StringIO()
    monkeypatch.setattr(recordstore.cli, "out", Console(file=shown, width=40, highlight=False, soft_wrap=True, markup=False))
    assert cli("status").exit_code == 0
    text = shown.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 40
    first_cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    assert first_cells == "sessionoffline_queueruntimetaskautomationautomation_run"


def test_query_prints_one_line_of_three_columns_per_record_whatever_the_file_names(cli: Any, tmp_path: Path) -> None:
    # A file named with a line break printed its record on two lines, and one named
    # with a tab added a column: the key was written raw, where every other command
    # escapes it.
    sessions = tmp_path / "home" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "x\ny.json").write_text('{"schema_version": 1, "a": 1}')
    (sessions / "t\tab.json").write_text('{"schema_version": 1, "a": 2}')
    assert cli("import", tmp_path / "home").exit_code == 0
    res = cli("query", "session", "--order-by", "a")
    assert res.exit_code == 0
    assert res.stdout.splitlines() == ['sessions/x\\ny.json\tv1\t{"schema_version":1,"a":1}',
                                       'sessions/t\\tab.json\tv1\t{"schema_version":1,"a":2}']
    keys = [json.loads(line)["key"] for line in cli("query", "session", "--order-by", "a", "--json").stdout.splitlines()]
    assert keys == ["sessions/x\ny.json", "sessions/t\tab.json"]


def test_h_is_help_everywhere(cli: Any) -> None:
    """`store export -h` said "No such option: -h"."""
    for args in (["-h"], ["export", "-h"], ["index", "add", "-h"]):
        res = cli(*args)
        assert res.exit_code == 0 and res.stdout.startswith("Usage: store"), (args, res.stdout)


def test_a_relative_xdg_data_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative $XDG_DATA_HOME, which the XDG specification says to ignore, put the
    store under whatever directory the command ran in."""
    from recordstore.connections import default_db_path

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "rel")
    assert default_db_path() == tmp_path / ".local" / "share" / "recordstore" / "store.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "abs"))
    assert default_db_path() == tmp_path / "abs" / "recordstore" / "store.db"


def test_an_empty_file_given_as_the_store_is_no_store(cli: Any, tmp_path: Path) -> None:
    """`touch e.db && store --db e.db status` made the empty file a store (a mistyped
    path to a file made by hand became one); only an import makes a store."""
    empty = tmp_path / "e.db"
    empty.touch()
    cli.db = empty
    for args in (["status"], ["history"], ["query", "task"], ["migrate"]):
        res = cli(*args)
        assert res.exit_code == 3 and f"no store at {empty}: the file is empty" in res.stderr, (args, res.stderr)
    assert empty.stat().st_size == 0
    assert cli("import", str(EXAMPLE_HOME)).exit_code == 0
    assert cli("status").exit_code == 0
