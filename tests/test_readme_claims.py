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

import pytest
from typer.testing import CliRunner

import recordstore
from conftest import EXAMPLE_HOME, ROOT
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
    is the migration, whose 10 records a restore puts back; the key restored has a
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
        said[" ".join(args[:2])] = res.stdout
    assert said["restore --run"].startswith("restored 10 record(s) (runtime: 9, task: 1)")
    assert said["restore --domain"].startswith("restored 1 record(s) (task: 1)")
    assert said["history 4"].startswith("run 4: migrate, ok")
    assert all(json.loads(line)["record"]["status"] == "completed" for line in said["query task"].splitlines())


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
