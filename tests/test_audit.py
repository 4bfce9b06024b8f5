"""Defects the test-suite audit found in the library itself (the strengthened round-trip
property of tests/test_roundtrip_fuzz.py drew the first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recordstore import Store
from recordstore.jsoncodec import JSONError, decode, encode, scan
from conftest import int_of_digits

#: 1,023 arrays inside one another: a record holding them in one of its fields nests
#: 1,025 levels, past the 1,024 the store reads.
DEEP = "[" * 1023 + "0" + "]" * 1023
#: An integer no double holds (orjson, which says first when a text nests too deeply,
#: stops at it: the depth was then never checked).
HUGE = "1" + "7" * 400


def depth(value: object) -> int:
    """How many levels of arrays and objects ``value`` nests (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


@pytest.mark.parametrize("before", ["1", HUGE, "1" + "7" * 4400], ids=["small", "400-digits", "4401-digits"])
def test_a_value_nested_too_deeply_is_refused_whatever_number_comes_before(before: str) -> None:
    text = '{"x": [' + before + ", " + DEEP + "]}"
    with pytest.raises(JSONError, match="^nested too deeply$"):
        decode(text)
    with pytest.raises(JSONError, match="^nested too deeply$"):
        scan("[" + text + "]", 1)  # as an array's element
    # One level less is a value, read exactly.
    value = decode('{"x": [' + before + ", " + DEEP[1:-1] + "]}")
    assert value["x"][0] == int_of_digits(before) and depth(value) == 1024


@pytest.mark.parametrize("container", ["file", "element"])
def test_a_record_nested_too_deeply_after_a_huge_integer_is_refused_on_import_not_failed_by_every_migration(
    tmp_path: Path, container: str
) -> None:
    """A record 1,025 levels deep holding an integer of 400 digits or more went in (the
    README: such a record is refused, its text kept), then failed every migration with
    "nested too deeply to encode"."""
    tasks = tmp_path / "home" / "tasks" / "tasks"
    tasks.mkdir(parents=True)
    record = '{"x": [' + HUGE + ", " + DEEP + "]}"
    (tasks / "a.json").write_text(record if container == "file" else "[" + record + "]")
    key = "tasks/tasks/a.json" if container == "file" else "tasks/tasks/a.json[0]"
    with Store(tmp_path / "s.db") as store:
        result = store.import_paths([tmp_path / "home"], jobs=0)
        said = [str(p) for p in result.problems]
        assert said == (
            ["tasks/tasks/a.json: nested too deeply"] if container == "file"
            else ["tasks/tasks/a.json:1: element 0: nested too deeply"]
        )
        assert store.get("task", key) is None
        migrated = store.migrate(jobs=0)
        assert migrated.failures == []
        store.export_to(tmp_path / "out")
    # Its text is kept, and written back as the file held it.
    assert (tmp_path / "out" / "tasks/tasks/a.json").read_bytes() == (tasks / "a.json").read_bytes()


#: An integer past the digit limit of Python's int() and str() (4,300 digits).
BEYOND_STR = "1" + "7" * 4400


def test_a_value_holding_an_integer_beyond_str_encodes_as_deep_as_one_without() -> None:
    """The encoder wrote such an integer only in values up to 562 levels deep (two of
    Python's frames a level of arrays): a record deeper, read as any other, failed."""
    for number in ("1", BEYOND_STR):
        text = '{"x":[' + number + "," + DEEP[1:-1] + "]}"  # 1,024 levels: the deepest read
        assert encode(decode(text), None) == text


def test_a_record_as_deep_as_the_store_reads_holding_a_huge_integer_is_migrated_and_exported(tmp_path: Path) -> None:
    """It was imported, then failed every migration: "nested too deeply to encode"."""
    tasks = tmp_path / "home" / "tasks" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "a.json").write_text('{"x":[' + BEYOND_STR + "," + DEEP[1:-1] + "]}")
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([tmp_path / "home"], jobs=0).ok
        migrated = store.migrate(jobs=0)
        assert (migrated.migrated, migrated.failures) == (1, [])
        record = store.get("task", "tasks/tasks/a.json")
        assert record is not None and record.version == 2
        assert record.data["x"][0] == int_of_digits(BEYOND_STR) and depth(record.data) == 1024
        assert store.export_to(tmp_path / "out").ok
    exported = (tmp_path / "out" / "tasks/tasks/a.json").read_text()
    assert BEYOND_STR in exported and exported.count("[") == 1023
