"""Filters and orders on keys that a file may have written with JSON escapes.

Python's ``json.dumps`` writes ``größe`` as ``"gr\\u00f6\\u00dfe"`` by default, PHP writes
``/`` as ``\\/``, Go ``<`` as ``\\u003c``. The records keep their text as the file held it,
and SQLite 3.40 (Debian 12's) compares a JSON path's key with the key as written: such
records were missed by every filter on the key until a migration re-encoded them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recordstore import Registry, Store, query

ESCAPED = json.dumps({"größe": {"a/b": 1, "n": [{"ü": "x"}], "s": "text"}, "<k>": 3, "id": "escaped"})
WRITTEN = json.dumps({"größe": {"a/b": 2, "n": [{"ü": "x"}], "s": "text"}, "<k>": "3", "id": "as is"}, ensure_ascii=False)
ABSENT = json.dumps({"grosse": 1, "id": "absent"})


@pytest.fixture(params=["this sqlite", "json_each"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A store holding one record whose file escaped its keys, one whose file did not,
    and one without the key; queried with this SQLite's own lookup (whichever it takes)
    and with the lookup by ``json_each`` that serves an SQLite comparing keys as written."""
    if request.param == "json_each":
        monkeypatch.setattr(query, "_labels_decoded", lambda: False)
    assert "\\u00f6" in ESCAPED and "\\u00f6" not in WRITTEN
    home = tmp_path / "home" / "a"
    home.mkdir(parents=True)
    for name, text in (("1.json", ESCAPED), ("2.json", WRITTEN.replace("/", "\\/")), ("3.json", ABSENT)):
        (home / name).write_text(text, encoding="utf-8")
    registry = Registry()
    registry.domain("a", version=1, files=["a/*.json"])
    with Store(tmp_path / "s.db", registry=registry) as opened:
        assert opened.import_paths(tmp_path / "home").ok
        yield opened


def ids(q: Any) -> list[str]:
    return [r.data["id"] for r in q]


def test_a_key_the_file_escaped_is_found_by_its_name(store: Store) -> None:
    q = store.query("a")
    assert ids(q.where('["größe"]', "exists")) == ["escaped", "as is"]
    assert ids(q.where('["größe"]', "missing")) == ["absent"]
    assert ids(q.where('["größe"]["a/b"]', "=", 1)) == ["escaped"]
    assert ids(q.where('["größe"]["a/b"]', ">", 0)) == ["escaped", "as is"]
    assert ids(q.where('["größe"].n[0]["ü"]', "=", "x")) == ["escaped", "as is"]
    assert ids(q.where('["größe"].s', "in", ["text"])) == ["escaped", "as is"]
    assert ids(q.where('["<k>"]', "=", 3)) == ["escaped"]  # a number, not the string "3"
    assert ids(q.where('["<k>"]', "=", "3")) == ["as is"]
    assert ids(q.where('["<k>"]', "!=", 3)) == ["as is"]  # the one without the key has no value to differ
    assert ids(q.order_by('["größe"]["a/b"]', descending=True).where('["größe"]', "exists")) == ["as is", "escaped"]


def test_a_path_through_a_string_or_a_missing_key_matches_nothing(store: Store) -> None:
    q = store.query("a")
    assert ids(q.where('["größe"].s.deeper', "exists")) == []
    assert ids(q.where('["größe"].s["x"]', "exists")) == []
    assert ids(q.where('["nope"]["a/b"]', "missing")) == ["escaped", "as is", "absent"]
    assert q.where('["größe"].n[5]["ü"]', "exists").count() == 0


@pytest.mark.parametrize(
    ("op", "value", "said"),
    [("=", __import__("datetime").date(2020, 1, 1), "not date"), ("=", b"1", "not bytes"),
     ("=", __import__("uuid").UUID(int=1), "not UUID"), ("=", __import__("fractions").Fraction(1, 1), "not Fraction"),
     ("in", [Path("1")], "not PosixPath"), (None, 1, "the operator must be a string")],
)
def test_a_value_json_has_no_type_for_is_refused_when_the_filter_is_made(store: Store, op: Any, value: Any, said: str) -> None:
    """A date, a UUID or bytes matched nothing, silently; a Fraction or a Path failed
    only as the query ran, with "Error binding parameter 4"; an operator of None, with
    an AttributeError."""
    from recordstore import QueryError

    with pytest.raises(QueryError, match=said):
        store.query("a").where("id", op, value)
    assert ids(store.query("a").where("id", "=", __import__("decimal").Decimal(1))) == []  # a number: no match, no error


def test_ordering_by_key_follows_each_file_s_lines(tmp_path: Path) -> None:
    """By key, a JSON-lines file's records come in their lines' order: they came
    ``:1, :10, :11, :12, :2, …``, by the keys' text."""
    registry = Registry()
    registry.domain("log", version=1, files=["*.jsonl"])
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text("".join(f'{{"n":{i}}}\n' for i in range(1, 13)))
    with Store(tmp_path / "s.db", registry=registry) as store:
        store.import_paths([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
        keys = [r.key for r in store.query("log").order_by("key")]
        assert keys == [f"{f}:{i}" for f in ("a.jsonl", "b.jsonl") for i in range(1, 13)]
        assert [r.key for r in store.query("log").order_by("key", descending=True).limit(3)] == [
            "b.jsonl:12", "b.jsonl:11", "b.jsonl:10"
        ]


def test_a_decimal_compares_as_the_number_a_record_holds(tmp_path: Path) -> None:
    """A Decimal was bound as a double: Decimal(2**63 - 1) matched the record holding
    2**63 and not its own; a NaN one matched nothing where a float NaN is refused."""
    from decimal import Decimal

    from recordstore import QueryError

    registry = Registry()
    registry.domain("n", version=1, files=["*.jsonl"])
    (tmp_path / "n.jsonl").write_text(
        "".join(json.dumps({"id": name, "v": v}) + "\n" for name, v in [("max", 2**63 - 1), ("over", 2**63), ("half", 1.5)])
    )
    with Store(tmp_path / "s.db", registry=registry) as store:
        assert store.import_paths([tmp_path / "n.jsonl"]).ok
        found = {
            str(value): sorted(r.data["id"] for r in store.query("n").where("v", "=", value))
            for value in (Decimal(2**63 - 1), Decimal("1.5"), Decimal("1.50"))
        }
        assert found == {str(2**63 - 1): ["max"], "1.5": ["half"], "1.50": ["half"]}
        for bad in (Decimal("NaN"), Decimal("Infinity"), Decimal(2**64)):
            with pytest.raises(QueryError):
                store.query("n").where("v", "=", bad)
