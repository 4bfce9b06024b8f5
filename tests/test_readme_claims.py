"""What the README shows and promises, checked as a first-time user meets it: its
examples run as written, with the output they say; its guarantees hold."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from typer.testing import CliRunner

import recordstore
from conftest import EXAMPLE_HOME, ROOT
from recordstore import Store
from recordstore.cli import app

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block(heading: str, language: str) -> str:
    """The first ``language`` code block after ``heading``."""
    after = README[README.index(heading) :]
    found = re.search(rf"```{language}\n(.*?)```", after, re.DOTALL)
    assert found is not None, f"no {language} block after {heading!r}"
    return found.group(1)


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose ``~/.deepseek`` is the bundled example home, as the Quickstarts read it."""
    home = tmp_path / "user"
    shutil.copytree(EXAMPLE_HOME, home / ".deepseek")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_the_cli_quickstart_runs_as_written_in_order(user_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the CLI Quickstart, in order, on the example home: each one
    succeeds, and the run numbers and keys it names are those of that sequence (run 4
    is the migration, whose 10 records the restores put back; the key restored has a
    backup)."""
    monkeypatch.chdir(tmp_path)
    events = (EXAMPLE_HOME / "tasks/runtime/events/thr_1a2b3c4d.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "events.jsonl").write_bytes(b"".join(events[:3]))
    runner = CliRunner()
    said: dict[str, str] = {}
    for line in _block("## Quickstart: the CLI", "sh").splitlines():
        args = shlex.split(line, comments=True)
        assert args[0] == "store", line
        args = [os.path.expanduser(a) for a in args[1:]]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, f"{line}\n{res.stdout}{res.stderr}"
        said.setdefault(" ".join(args[:2]), res.stdout)  # (the first of two alike)
    assert said["restore --domain"].startswith("restored 1 record(s) (task: 1)")
    # The record restored already holds the row run 4 backed up: the other nine are put back.
    assert said["restore --run"].startswith("restored 9 record(s) (runtime: 9)")
    assert said["history 4"].startswith("run 4: migrate, ok")
    found = [json.loads(line) for line in said["query task"].splitlines()]
    assert [(r["key"], r["record"]["status"]) for r in found] == [
        ("tasks/tasks/task_1f2e3d4c.json", "completed"),
        ("tasks/tasks/task_9c0d1e2f.json", "completed"),
    ]


def test_the_library_quickstart_runs_as_written(user_home: Path, tmp_path: Path) -> None:
    """The library Quickstart as a script: it prints the completed tasks, and the record
    it gets by key is there."""
    script = _block("## Quickstart: the library", "python") + "assert rec is not None and rec.domain == 'session'\n"
    env = {**os.environ, "HOME": str(user_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "tasks/tasks/task_1f2e3d4c.json 2 Format the workspace with cargo fmt",
        "tasks/tasks/task_9c0d1e2f.json 2 Run cargo test",
    ]
    assert (tmp_path / "out" / "tasks/tasks/task_1f2e3d4c.json").exists()


def test_the_registry_example_migrates_as_its_comments_say(tmp_path: Path) -> None:
    """The README's registry, loaded from a file: step 1 renames the model, step 2 does
    nothing, and each record ends at version 3; ``migrate_value`` as the README calls it."""
    from recordstore import load_registry, migrate_value

    (tmp_path / "my_registry.py").write_text(_block("## Registries", "python"))
    (tmp_path / "home" / "sessions").mkdir(parents=True)
    (tmp_path / "home" / "sessions" / "a.json").write_text('{"schema_version": 1, "metadata": {"model": "m"}}')
    with Store(tmp_path / "s.db", registry=str(tmp_path / "my_registry.py")) as store:
        assert store.import_paths(tmp_path / "home").ok
        assert store.migrate().counts == {"session": {"1->3": 1}}
        rec = store.get("session", "sessions/a.json")
        assert rec is not None and rec.version == 3 and rec.data == {"schema_version": 3, "metadata": {"model_id": "m"}}
    registry = load_registry(str(tmp_path / "my_registry.py"))
    value = {"metadata": {"model": "m"}}
    assert migrate_value(registry["session"], "k", value, 1) == {"schema_version": 3, "metadata": {"model_id": "m"}}


def test_a_run_is_durable_once_its_command_returns(store: Store, home: Path, tmp_path: Path) -> None:
    """The WAL is synced when a run finishes (batches commit with synchronous=NORMAL):
    the commit that records each run's end is made with synchronous=FULL, so what a
    command reported done survives a power loss, not only a killed process."""
    ends: dict[int, int] = {}

    @event.listens_for(store.engine, "commit")
    def on_commit(conn: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        last = dbapi.execute("SELECT id, finished_at FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if last is not None and last[1] is not None and last[0] not in ends:  # the commit that ends the run
            ends[last[0]] = dbapi.execute("PRAGMA synchronous").fetchone()[0]

    store.import_paths(home, jobs=0)
    done = store.migrate(jobs=0)
    store.restore(run=done.run_id)
    store.add_index("task", "status")
    store.prune_backups(1)
    kinds = {info.id: info.kind for info in store.history()}
    assert sorted(kinds.values()) == ["import", "index", "migrate", "prune", "restore"]
    assert ends == {run: 2 for run in kinds}, "a run's end committed without syncing the WAL (2 is FULL)"


def test_the_help_names_the_defaults_the_readme_gives() -> None:
    """``store --help`` names both places of the default store (the README's fallback
    when XDG_DATA_HOME is not set), and ``store import --help`` the number of files
    from which an import starts workers, as the README does."""
    from recordstore.importer import PARALLEL_MIN_FILES

    runner = CliRunner()
    main = " ".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "$XDG_DATA_HOME/recordstore/store.db" in main and "~/.local/share/recordstore/store.db" in main
    imports = " ".join(runner.invoke(app, ["import", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert f"from {PARALLEL_MIN_FILES} files" in imports
    # --domain takes, below a directory, only JSON files: the help says which (it did not).
    assert "the .json, .jsonl and .ndjson files below it" in imports
    assert f"from {PARALLEL_MIN_FILES} files" in README


def _undocumented(cls: type) -> list[str]:
    """The public methods and properties of ``cls`` without a docstring of their own."""
    missing = []
    for name, member in vars(cls).items():
        # A property's getter, a cached_property's or a static method's function.
        target = member.fget if isinstance(member, property) else getattr(member, "func", member)
        if not name.startswith("_") and inspect.isfunction(target) and not target.__doc__:
            missing.append(f"{cls.__name__}.{name}")
    return missing


def test_every_method_and_property_of_the_public_api_is_documented() -> None:
    """``help(recordstore.Store)`` and the like explain every public method and
    property of what ``__all__`` exports, and a dataclass says what it is rather than
    showing its generated signature."""
    missing = []
    for name in recordstore.__all__:
        obj = getattr(recordstore, name)
        if inspect.isclass(obj):
            if (obj.__doc__ or "").startswith(f"{name}("):
                missing.append(name)
            missing += _undocumented(obj)
    assert missing == []


def test_export_syncs_each_directory_after_renaming_files_into_it(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export "renames [each file] into place and fsyncs the directory": a rename is
    durable only once its directory is synced, so every directory a file was placed in
    is synced after the last file placed there, before the export returns."""
    from recordstore import exporter as exporter_module

    store.import_paths(home)
    events: list[tuple[str, Path]] = []
    opened: dict[int, Path] = {}
    real_open, real_fsync, real_link, real_replace = os.open, os.fsync, os.link, os.replace

    def open_(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        fd = real_open(path, flags, *args, **kw)
        opened[fd] = Path(os.fsdecode(path))
        return fd

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if opened.get(fd) is not None and opened[fd].is_dir():
            events.append(("synced", opened[fd]))

    def link(src: Any, dst: Any, **kw: Any) -> None:
        real_link(src, dst, **kw)
        events.append(("placed", Path(os.fsdecode(dst)).parent))

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        events.append(("placed", Path(os.fsdecode(dst)).parent))

    for name, fake in (("open", open_), ("fsync", fsync), ("link", link), ("replace", replace)):
        monkeypatch.setattr(exporter_module.os, name, fake)
    result = store.export_to(tmp_path / "out")
    assert result.ok and result.files == 25
    placed = {directory for what, directory in events if what == "placed"}
    assert len(placed) > 3
    for directory in placed:
        last_placed = max(i for i, event in enumerate(events) if event == ("placed", directory))
        assert ("synced", directory) in events[last_placed:], f"{directory} not synced after a file was renamed into it"


@pytest.mark.parametrize(
    ("path", "at", "quoted"),
    [("größe", 3, '["größe"]'), ("metadata.odd key", 13, 'metadata["odd key"]'), ("$.1st", 3, '["1st"]')],
)
def test_a_key_no_plain_name_can_spell_is_refused_saying_how_to_quote_it(
    cli: Any, tmp_path: Path, path: str, at: int, quoted: str
) -> None:
    """The README's paths quote a key that is no plain name (``["odd key"]``); written
    plain, the error said only "malformed JSON path 'größe' at character 3". It now
    shows the path quoted, which finds the record; the character is counted in the path
    as given (``$.`` included)."""
    sessions = tmp_path / "home" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "a.json").write_text('{"gr\\u00f6\\u00dfe": 1, "metadata": {"odd key": 1}, "1st": 1}')
    assert cli("import", tmp_path / "home").exit_code == 0
    res = cli("query", "session", "--where", path, "=", "1")
    assert res.exit_code == 3
    assert res.stderr.splitlines() == [
        f"store: error: malformed JSON path {path!r} at character {at}; a key other than a plain name "
        f"(letters, digits and _, no digit first) is quoted: {quoted}"
    ]
    found = cli("query", "session", "--where", quoted, "=", "1")
    assert found.exit_code == 0 and found.stdout.startswith("sessions/a.json\tv1\t")


def test_history_says_a_restore_of_an_import_removed_records_in_plain_words(cli: Any, home: Path) -> None:
    """``store restore --run 1`` of an import removes what it added (the README's "the
    store is as it was before the import"); the history's counts said "-; removed 37"."""
    cli("import", home)
    assert cli("restore", "--run", "1").exit_code == 0
    assert cli("restore", "--run", "2").exit_code == 0  # undone: the records come back
    rows = {line.split("│")[1].strip(): line.split("│")[6].strip() for line in cli("history").stdout.splitlines() if line.startswith("│ ")}
    assert rows["2"] == "run 1: removed 37"  # which run each undid, too
    assert rows["3"].startswith("run 2: automation: 2, automation_run: 3,") and "removed" not in rows["3"]
