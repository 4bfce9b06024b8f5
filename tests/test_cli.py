"""The `store` command: global options, status/query output, errors, the installed script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE_HOME, tree

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
    assert runner.invoke(app, ["status"]).exit_code == 0
    assert (tmp_path / "xdg" / "recordstore" / "store.db").exists()


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
