"""Registry edges found by exploratory testing: each test fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from recordstore import Registry, RegistryError, Store


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
