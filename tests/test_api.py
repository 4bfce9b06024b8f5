"""The public API: an explicit, sorted, complete __all__ and one exception tree."""

from __future__ import annotations

import inspect
from pathlib import Path
import subprocess
import sys

import pytest

import recordstore
from conftest import mypy_strict
from recordstore import errors


def test_all_is_sorted_and_names_only_what_exists() -> None:
    assert recordstore.__all__ == sorted(recordstore.__all__)
    for name in recordstore.__all__:
        assert hasattr(recordstore, name), name


def test_every_public_class_and_function_is_exported_and_documented() -> None:
    public = {
        name
        for name, obj in vars(recordstore).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
    }
    assert public <= set(recordstore.__all__)
    for name in recordstore.__all__:
        obj = getattr(recordstore, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_sqlalchemy_is_loaded_only_to_open_a_store() -> None:
    """``store --help`` and the errors and registry classes do not wait ~0.25 s for
    SQLAlchemy; the names that need it still come from the package."""
    code = (
        "import sys\n"
        "import recordstore, recordstore.cli\n"
        "from recordstore import Registry, RecordStoreError\n"
        "sys.argv = ['store', 'import', '--help']\n"
        "try:\n"
        "    recordstore.cli.main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'sqlalchemy' not in sys.modules, 'loaded for --help'\n"
        "from recordstore import Store, migrate_value\n"
        "assert 'sqlalchemy' in sys.modules and Store.__module__ == 'recordstore.store'\n"
        "assert 'Store' in dir(recordstore)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Files and directories to import" in run.stdout


def test_every_error_derives_from_one_root_with_an_exit_code() -> None:
    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, Exception)]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, recordstore.RecordStoreError)
        assert isinstance(cls.exit_code, int) and cls.exit_code != 0
    assert recordstore.__version__ not in ("", None)


def test_migration_error_carries_the_seed_frameworks_fields() -> None:
    exc = recordstore.MigrationError("boom", domain="task", key="k", from_version=1, to_version=2, step="s")
    assert (exc.domain, exc.key, exc.from_version, exc.to_version, exc.reason) == ("task", "k", 1, 2, "boom")
    assert str(exc) == "task k: v1 -> v2 (s) failed: boom"


def test_paths_take_a_tilde_and_one_path_or_name_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the README writes it: ``import_paths(["~/.deepseek"])`` reads the home's
    ``.deepseek``, and ``export_to("~/exported")`` writes there, not into a directory
    named ``~``. One path given alone is that path (a str is not a list of one-letter
    paths), and one domain given alone is that domain."""
    import shutil

    from conftest import EXAMPLE_HOME

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLE_HOME, tmp_path / ".deepseek")
    with recordstore.Store("~/one.db") as store:
        result = store.import_paths(["~/.deepseek"])
        assert result.ok and result.problems == [] and result.files > 0
        assert store.history()[-1].options["paths"] == [str(tmp_path / ".deepseek")]
        store.export_to("~/exported")
        assert (tmp_path / "exported" / "tasks").is_dir() and not (tmp_path / "~").exists()
    with recordstore.Store(tmp_path / "two.db") as store:
        again = store.import_paths(str(tmp_path / ".deepseek"))
        assert again.files == result.files and again.problems == []
        assert set(store.migrate("task").counts) == {"task"}
        store.export_to(tmp_path / "tasks-only", domains="task")
        assert {p.parts[len(tmp_path.parts) + 1] for p in (tmp_path / "tasks-only").rglob("*.json*")} == {"tasks"}


def test_a_closed_store_refuses_to_be_used(tmp_path: Path) -> None:
    """``close()`` (or leaving ``with``) closes the store for good: a later call says
    so, instead of quietly opening new connections that nothing will close; so does a
    query made before."""
    from conftest import EXAMPLE_HOME

    with recordstore.Store(tmp_path / "s.db") as store:
        assert store.import_paths(EXAMPLE_HOME).ok
        made_before = store.query("task")
    for use in (store.status, lambda: store.query("task").count(), store.history, lambda: store.migrate(), made_before.count):
        with pytest.raises(recordstore.StoreError, match="the store is closed"):
            use()
    store.close()  # again: nothing to do
    with recordstore.Store(tmp_path / "s.db") as again:  # the file is as it was left
        assert again.query("task").count() > 0


SUBCLASSED_STORE = """\
from recordstore import Store


class TaskStore(Store):
    def completed(self) -> int:
        return self.query("task").where("status", "=", "completed").count()


def count(path: str) -> int:
    with TaskStore(path) as store:
        reveal_type(store)
        return store.completed()
"""


def test_with_gives_a_subclass_of_store_its_own_type(tmp_path: Path) -> None:
    """Under mypy --strict, ``with TaskStore(...) as store`` made ``store`` a plain
    Store: '"Store" has no attribute "completed"' in a program that runs."""
    said = mypy_strict(tmp_path, "typed_store", SUBCLASSED_STORE)
    assert "error" not in said, said
    assert 'Revealed type is "typed_store.TaskStore"' in said, said


PROGRESS_BAR = """\
from pathlib import Path

from recordstore import Store


class Counter:
    def __init__(self) -> None:
        self.total, self.done = 0, 0

    def start(self, total: int, label: str) -> None:
        self.total = total

    def advance(self, n: int) -> None:
        self.done += n


def run(db: Path, home: Path) -> None:
    with Store(db) as store:
        store.import_paths(home, progress=Counter())
        store.migrate(progress=Counter())
        store.export_to(home.parent / "out", progress=Counter())
"""


def test_a_progress_taking_the_total_as_an_int_is_a_progress(tmp_path: Path) -> None:
    """Every operation gives ``start`` a number, yet the Progress protocol said
    ``total: int | None``: under mypy --strict a progress whose ``start`` takes an int
    was 'incompatible type "Counter"; expected "Progress | None"'."""
    said = mypy_strict(tmp_path, "typed_progress", PROGRESS_BAR)
    assert "error" not in said, said
