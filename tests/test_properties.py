"""Hypothesis properties of migrate and restore (import -> export is in test_import_export)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordstore import Registry, Store
from conftest import tree

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
notes = st.lists(
    st.fixed_dictionaries({"body": st.text(max_size=20), "fail": st.booleans(), "extra": values}),
    min_size=1,
    max_size=12,
)


def registry() -> Registry:
    reg = Registry()
    d = reg.domain("note", version=3, files=["notes/*.json", "notes/*.jsonl"])

    @d.step(1)
    def rename(record: dict[str, Any]) -> None:
        record["text"] = record.pop("body")

    @d.step(2)
    def tag(record: dict[str, Any]) -> dict[str, Any]:
        if record["fail"]:
            raise ValueError("this note refuses")
        return {**record, "tags": ["migrated"]}

    return reg


def write_home(root: Path, batch: list[dict[str, Any]]) -> Path:
    home = root / "home"
    (home / "notes").mkdir(parents=True)
    for i, note in enumerate(batch):
        (home / "notes" / f"n{i}.json").write_text(
            json.dumps({"schema_version": 1, **note}, indent=2, ensure_ascii=False), encoding="utf-8"
        )
    (home / "notes" / "all.jsonl").write_text(
        "".join(json.dumps(n, ensure_ascii=False, separators=(",", ":")) + "\n" for n in batch), encoding="utf-8"
    )
    return home


@contextlib.contextmanager
def imported_store(tmp_path_factory: pytest.TempPathFactory, batch: list[dict[str, Any]]) -> Iterator[tuple[Store, Path, Path]]:
    """A new store holding ``batch`` written as a home and imported: (store, its
    directory, the home)."""
    root = tmp_path_factory.mktemp("p")
    home = write_home(root, batch)
    with Store(root / "s.db", registry=registry()) as store:
        store.import_paths([home])
        yield store, root, home


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(batch=notes)
def test_a_random_subset_that_fails_is_left_exactly_as_it_was(tmp_path_factory: pytest.TempPathFactory, batch: list) -> None:
    with imported_store(tmp_path_factory, batch) as (store, _root, _home):
        before = {r.key: r.text for r in store.query("note")}
        assert len(before) == 2 * len(batch)  # a file and a line each
        result = store.migrate()
        failing = {f.key for f in result.failures}
        after = list(store.query("note"))
        assert sorted(rec.key for rec in after) == sorted(before)  # every record is still there
        for rec in after:
            if rec.key in failing:
                assert rec.text == before[rec.key] and rec.version == 1
            else:
                assert rec.version == 3 and rec.data["tags"] == ["migrated"] and "body" not in rec.data
        expected_failing = 2 * sum(1 for n in batch if n["fail"])
        assert len(failing) == expected_failing


@SETTINGS
@given(batch=notes)
def test_migrate_is_idempotent_and_restore_is_its_inverse(tmp_path_factory: pytest.TempPathFactory, batch: list) -> None:
    with imported_store(tmp_path_factory, batch) as (store, root, home):
        imported = {r.key for r in store.query("note")}
        assert len(imported) == 2 * len(batch)  # a file and a line each
        first = store.migrate()
        after_first = {r.key: r.text for r in store.query("note")}
        assert set(after_first) == imported  # every record is still there
        second = store.migrate()
        assert second.migrated == 0
        assert {r.key: r.text for r in store.query("note")} == after_first
        store.restore(run=first.run_id)
        store.export_to(root / "out")
    assert tree(root / "out") == tree(home)


HUGE = "6" + "0123456789" * 1999 + "012345678"  # 20,000 digits: beyond Python's int(str) limit


def test_a_migration_writes_an_integer_of_thousands_of_digits_back_digit_for_digit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    pretty = '{\n  "schema_version": 1,\n  "body": "b",\n  "fail": false,\n  "extra": [-' + HUGE + "]\n}"
    (home / "notes" / "n.json").write_text(pretty, encoding="utf-8")
    (home / "notes" / "all.jsonl").write_text('{"body":"b","fail":false,"extra":' + HUGE + "}\n", encoding="utf-8")
    with Store(tmp_path / "s.db", registry=registry()) as store:
        assert store.import_paths([home]).ok
        result = store.migrate()
        assert result.migrated == 2 and not result.failures
        migrated = {r.key: r.text for r in store.query("note")}
    assert migrated["notes/n.json"] == (
        '{\n  "schema_version": 3,\n  "fail": false,\n  "extra": [\n    -' + HUGE + '\n  ],\n  "text": "b",\n'
        '  "tags": [\n    "migrated"\n  ]\n}'
    )
    assert migrated["notes/all.jsonl:1"] == (
        '{"schema_version":3,"fail":false,"extra":' + HUGE + ',"text":"b","tags":["migrated"]}'
    )
