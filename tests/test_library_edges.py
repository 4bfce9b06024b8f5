"""The library's edges as a program meets them: empty selections and paths, run numbers
of the wrong type, store paths that look like URLs, stores in memory, and a store used
after it was closed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from recordstore import ExportError, InputError, Registry, Store


@pytest.fixture
def registry() -> Registry:
    """Two domains, ``a`` and ``b``, at version 2."""
    reg = Registry()
    for name in ("a", "b"):
        reg.domain(name, version=2, files=[f"{name}/*.json"]).add_step(1, lambda record: None)
    return reg


@pytest.fixture
def two_domains(tmp_path: Path) -> Path:
    """A home with one version-1 record in each domain."""
    home = tmp_path / "two"
    for name in ("a", "b"):
        (home / name).mkdir(parents=True)
        (home / name / "1.json").write_text(json.dumps({"schema_version": 1, "name": name}))
    return home


@pytest.fixture
def filled(db_path: Path, registry: Registry, two_domains: Path) -> Iterator[Store]:
    with Store(db_path, registry=registry) as store:
        assert store.import_paths(two_domains).ok
        yield store


def test_an_empty_path_is_refused_not_read_as_the_working_directory(
    filled: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.environ.get("EXPORT_DIR", "")`` unset: the export is refused, where it wrote
    the records into the working directory; an import of ``""`` is refused, where it
    walked the working directory. Neither begins a run."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    runs = len(filled.history())
    with pytest.raises(ExportError, match="path is empty"):
        filled.export_to("")
    for given in ("", [str(tmp_path / "two"), ""], Path("  ")):
        with pytest.raises(InputError, match="path to import is empty"):
            filled.import_paths(given)
    assert list(cwd.iterdir()) == []
    assert len(filled.history()) == runs
