"""A review of the day's changes: what they broke, each as a user meets it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recordstore import Registry, Store

#: As many versions as a query is merged over, one arm each.
VERSIONS = 32


def _versioned_registry() -> Registry:
    """One domain, ``note`` (``*.jsonl``), at VERSIONS versions, with no-op steps."""
    registry = Registry()
    note = registry.domain("note", version=VERSIONS, files=["*.jsonl"])

    def same(record: dict[str, Any]) -> None:
        pass

    for version in range(1, VERSIONS):
        note.step(version)(same)
    return registry


def test_in_lists_on_a_domain_at_many_versions_are_answered(tmp_path: Path) -> None:
    """A query merged by version binds every condition's values once a version: 32 `in`
    lists of 256 values over 32 versions bound 262,144 values, past what any SQLite build
    takes, and the query failed with a generic "too many SQL variables" (4 such lists
    already, on SQLite's default build). It is answered, as it is over one version."""
    home = tmp_path / "home"
    home.mkdir()
    lines = [json.dumps({"schema_version": 1 + n % VERSIONS, "n": n}) for n in range(200)]
    (home / "notes.jsonl").write_text("\n".join(lines) + "\n")
    with Store(tmp_path / "store.db", registry=_versioned_registry()) as store:
        assert store.import_paths(home).ok
        query = store.query("note")
        for k in range(32):  # each list as long as is bound value by value (query.BOUND_VALUES)
            query = query.where("n", "in", list(range(k, k + 256)))
        found = [record.key for record in query]
        assert found == [f"notes.jsonl:{n + 1}" for n in range(31, 200)]
        assert query.count() == len(found)
        assert [record.key for record in query.offset(5).limit(2)] == found[5:7]


def test_a_query_of_many_in_lists_is_answered(tmp_path: Path) -> None:
    """Each `in` list of up to 256 values is bound value by value: 1,000 of them bound
    256,000, past what any SQLite build takes in one statement, and the query failed
    with a generic "too many SQL variables" (130 lists, on SQLite's default build). The
    lists past SQLite's limit are bound as JSON arrays: the query is answered."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.jsonl").write_text("\n".join(json.dumps({"n": n}) for n in range(20)) + "\n")
    with Store(tmp_path / "store.db", registry=_versioned_registry()) as store:
        assert store.import_paths(home).ok
        query = store.query("note")
        for k in range(1000):
            query = query.where("n", "in", list(range(k % 5, k % 5 + 256)))
        found = [record.key for record in query]
        assert found == [f"notes.jsonl:{n + 1}" for n in range(4, 20)]
        assert query.count() == len(found)
