"""Shared fixtures: an example home, a store, a registry, and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

import recordstore
from recordstore import Registry, Store
from recordstore.cli import app

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_HOME = ROOT / "examples" / "deepseek-home"

# No property is timed (these machines are noisy; speed is measured by scripts/bench.py
# only): Hypothesis's default 200 ms deadline an example, and its health check on slow
# data generation, would fail a correct run on a loaded machine.
settings.register_profile("untimed", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("untimed")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the heavy variants (huge files, many trials)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy variants (marked slow) are not collected unless --slow: they are extra
    trials and sizes of checks that always run in a lighter form."""
    if config.getoption("--slow"):
        return
    heavy = [item for item in items if "slow" in item.keywords]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture(scope="session")
def _commands_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("commands-tmp")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _commands_tmp: Path) -> None:
    """No test touches the user's default store or picks up their registry, and the
    commands the tests start keep their temporary files in the session's temporary
    directory, which pytest clears (a command killed on purpose cannot remove its own)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TMPDIR", str(_commands_tmp))
    monkeypatch.delenv("STORE_DB", raising=False)
    monkeypatch.delenv("STORE_REGISTRY", raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh copy of the bundled DeepSeek-style example home."""
    dest = tmp_path / "home" / ".deepseek"
    shutil.copytree(EXAMPLE_HOME, dest)
    return dest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


@pytest.fixture
def cli(db_path: Path) -> "Cli":
    return Cli(db_path)


class Cli:
    """Runs ``store --db DB ...`` in-process and returns the click Result."""

    def __init__(self, db: Path):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, registry: str | None = None) -> object:
        argv = ["--db", str(self.db)]
        if registry:
            argv += ["--registry", registry]
        return self.runner.invoke(app, [*argv, *map(str, args)], catch_exceptions=False)


def stamping_registry() -> Registry:
    """A registry of one domain, ``note`` (``notes/*.jsonl``), at version 2, whose one
    step stamps each record: for tests of many records migrated, where what the step
    does does not matter."""
    registry = Registry()
    note = registry.domain("note", version=2, files=["notes/*.jsonl"])

    @note.step(1)
    def stamp(record: dict[str, Any]) -> None:
        record["stamped"] = True

    return registry


def traced_peak(call: Callable[[], T]) -> tuple[T, int]:
    """What ``call()`` returns, and the most memory Python allocations held meanwhile
    (tracemalloc's peak, in bytes): how tests show that memory does not grow with the
    work, never by timing it."""
    import tracemalloc

    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


#: What :func:`value_at` gives for a path that leads nowhere.
MISSING = object()


def value_at(data: Any, steps: Iterable[Any]) -> Any:
    """The value a JSON path's ``steps`` (keys, and indexes into arrays) lead to in
    ``data``, as Python reads it, or MISSING: the model the query tests hold SQLite to."""
    for step in steps:
        if not (
            (isinstance(step, str) and isinstance(data, dict) and step in data)
            or (isinstance(step, int) and isinstance(data, list) and step < len(data))
        ):
            return MISSING
        data = data[step]
    return data


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def int_of_digits(digits: str | bytes) -> int:
    """The integer ``digits`` denote, computed without int(str) (which refuses them)."""
    value = 0
    for start in range(0, len(digits), 100):
        chunk = digits[start : start + 100]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def mypy_strict(tmp_path: Path, name: str, source: str) -> str:
    """What mypy --strict says of a program ``source`` using the recordstore these tests
    import (its own modules' errors left out). mypy is one of the test extras: without
    it the check fails (mypy did not run), never skips."""
    (tmp_path / f"{name}.py").write_text(source)
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nstrict = True\n"
        "[mypy-sqlalchemy.*,alembic.*,typer.*,click.*,rich.*,orjson.*]\nfollow_imports = skip\n"
        "[mypy-recordstore.*]\nignore_errors = True\n"
    )
    env = dict(os.environ)
    root = Path(recordstore.__file__).parents[1]
    if root.name != "site-packages":
        # The recordstore these tests import, from a source tree (mypy does not read
        # PYTHONPATH; an installed one it finds itself, and refuses site-packages here).
        env["MYPYPATH"] = str(root)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / "cache"), f"{name}.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert run.returncode in (0, 1) and run.stdout, run.stderr  # mypy ran, and said something
    return run.stdout
