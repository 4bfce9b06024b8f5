"""Registry edges found by exploratory testing: each test fails on the code before its fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from recordstore import Registry, RegistryError, Store, load_registry


def test_one_pattern_given_as_a_string_is_one_pattern(tmp_path: Path) -> None:
    reg = Registry()
    session = reg.domain("session", version=1, files="sessions/*.json")
    assert session.files == ["sessions/*.json"]
    home = tmp_path / "home"
    (home / "sessions").mkdir(parents=True)
    (home / "sessions" / "s1.json").write_text('{"schema_version": 1, "id": "s1"}')
    (home / "settings.json").write_text('{"theme": "dark"}')
    with Store(tmp_path / "s.db", registry=reg) as store:
        store.import_paths(home)
        assert [r.key for r in store.query("session")] == ["sessions/s1.json"]
    # Two such domains are no longer "given the same pattern 's'".
    reg.domain("task", version=1, files="tasks/*.json")
    reg.validate()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, r"^domain 'note': files must be a glob pattern or a list of them, not None$"),
        (["notes/*.json", Path("memos/*.json")], r"^domain 'note': file pattern PosixPath\('memos/\*\.json'\) is not a string$"),
    ],
    ids=["None", "a Path among them"],
)
def test_files_that_are_not_patterns_are_a_registry_error(files: object, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as info:
        Registry().domain("note", version=1, files=files)  # type: ignore[arg-type]
    assert info.value.domain == "note"


@pytest.mark.parametrize(("call", "shown"), [("sys.exit(0)", "sys.exit(0)"), ("sys.exit()", "sys.exit()"), ("sys.exit('usage: x')", "sys.exit('usage: x')")])
def test_a_registry_calling_sys_exit_is_a_registry_error_not_an_exit(
    tmp_path: Path, cli: Any, call: str, shown: str
) -> None:
    path = tmp_path / "reg_exit.py"
    path.write_text(
        "import sys\nfrom recordstore import Registry\nregistry = Registry()\n"
        f"registry.domain('thing', version=1, files=['things/*.json'])\n{call}\n"
    )
    with pytest.raises(RegistryError, match=rf"^cannot load registry .*reg_exit\.py: it called {re.escape(shown)} while loading$"):
        Store(tmp_path / "lib.db", registry=str(path))
    (tmp_path / "home" / "things").mkdir(parents=True)
    (tmp_path / "home" / "things" / "a.json").write_text('{"schema_version": 1}')
    res = cli("import", tmp_path / "home", registry=str(path))
    assert res.exit_code == 3  # it was the registry's own code: 0, a success that did nothing
    assert f"it called {shown} while loading" in res.stderr
    assert not cli.db.exists()


def test_ctrl_c_while_a_registry_loads_is_not_turned_into_an_error(tmp_path: Path) -> None:
    path = tmp_path / "reg_interrupted.py"
    path.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_registry(str(path))
