"""Queries built from hostile strings: as values they are literal data (a record holding
one is found by equality); as JSON paths, operators or domains they either work as
names or are refused with QueryError. Nothing is ever executed: the tables are all
still there and no count changes. Same through ``store query ... --where``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hostile
from conftest import Cli
from recordstore import QueryError, RecordStoreError, Registry, Store

HOSTILE = [
    "'; DROP TABLE records; --",
    '"; DROP TABLE records; --',
    "Robert'); DROP TABLE files;--",
    "' OR '1'='1",
    "1; DELETE FROM records",
    "x' UNION SELECT sql FROM sqlite_master --",
    'say "hi"',
    "it's",
    "back\\slash",
    "trailing backslash\\",
    "\\u0041",
    "\\",
    "$",
    "$.prompt",
    "$[0]",
    "%",
    "_",
    "*",
    "?",
    "?1",
    ":name",
    "@p",
    "--",
    "/* comment */",
    "ünïcødé ✓ 🎉",
    "日本語のテキスト",
    "\u202eright-to-left",
    "\u2028\u2029",
    "tab\there",
    "new\nline",
    "\x7f",
    "NULL",
    "null",
    "true",
    "",
    " ",
    "1e5",
    "0x10",
    "x" * 10_000,
]


def _key(i: int) -> str:
    return f"{hostile.TASKS}/h{i:03d}.json"


@pytest.fixture(scope="module")
def loaded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one task per hostile string, as ``prompt`` and as a key of
    ``tags`` (built once; each test gets a copy)."""
    base = tmp_path_factory.mktemp("hostile-values")
    home = hostile.build_home(base / "home")
    for i, value in enumerate(HOSTILE):
        record = hostile.task(f"h{i:03d}", prompt=value, tags={value: i}, n=i)
        home.add(_key(i), hostile.pretty(record), "task")
    with Store(base / "loaded.db") as store:
        assert store.import_paths([home.root]).ok
    return base / "loaded.db"


@pytest.fixture
def loaded(loaded_template: Path, db_path: Path) -> Iterator[Store]:
    shutil.copy(loaded_template, db_path)
    with Store(db_path) as store:
        yield store


def snapshot(db: Path) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Every schema object, and the row count of every table."""
    with sqlite3.connect(db) as conn:
        objects = sorted(conn.execute("SELECT type, name FROM sqlite_master"))
        counts = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for t, name in objects if t == "table"}
    conn.close()
    return objects, counts


TOTAL = len(HOSTILE) + 3  # the hostile tasks and build_home's three


@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=[repr(v)[:40] for v in HOSTILE])
def test_a_hostile_value_is_literal_data(loaded: Store, db_path: Path, index: int) -> None:
    value = HOSTILE[index]
    before = snapshot(db_path)
    tasks = loaded.query("task")
    assert [r.key for r in tasks.where("prompt", "=", value)] == [_key(index)]
    assert [r.key for r in tasks.where("prompt", "in", [value, "no such prompt"])] == [_key(index)]
    assert tasks.where("prompt", "!=", value).count() == TOTAL - 1
    assert tasks.where("prompt", "not in", [value]).count() == TOTAL - 1
    assert tasks.where("prompt", ">=", value).where("prompt", "<=", value).count() == 1
    record = loaded.get("task", _key(index))
    assert record is not None and record.data["prompt"] == value
    assert snapshot(db_path) == before


@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=[repr(v)[:40] for v in HOSTILE])
def test_a_hostile_key_in_a_path_is_a_name_or_refused(loaded: Store, db_path: Path, index: int) -> None:
    """``tags."<key>"`` names the key literally, unless the key holds a quote, a
    backslash or a control character, which a path cannot express: QueryError."""
    key = HOSTILE[index]
    before = snapshot(db_path)
    path = f'tags."{key}"'
    if '"' in key or "\\" in key or any(ord(c) < 32 for c in key):
        with pytest.raises(QueryError):
            loaded.query("task").where(path, "exists").count()
    else:
        assert [r.key for r in loaded.query("task").where(path, "=", index)] == [_key(index)]
        assert [r.key for r in loaded.query("task").where(f'tags["{key}"]', "exists")] == [_key(index)]
    assert snapshot(db_path) == before


HOSTILE_PATHS = [
    "a[\u0663]",  # an Arabic-Indic digit three: not an index (it was looked up as a[3])
    "'; DROP TABLE records; --",
    "prompt'; DROP TABLE records; --",
    "prompt') = 1 OR 1=1 --",
    "prompt = 1 OR 1",
    "prompt;",
    "prompt--",
    "prompt/**/",
    "a b",
    "a..b",
    ".a",
    "a.",
    "[0",
    "a[-1]",
    "a[0x1]",
    "a['b']",
    '"a',
    '"a\\"b"',
    '"a\\\\b"',
    '"a\x00b"',
    "prompt\n",
    "\x00",
    "$",
    "$.",
    "$$.a",
    "é",
    "",
    " ",
]

WORKING_PATHS = [  # odd, but names: they work and select by name, never run anything
    ("$.prompt", 1),
    ('"prompt"', 1),
    ('$."prompt"', 1),
    ('["prompt"]', 1),
    ("tags.\"'; DROP TABLE records; --\"", 1),
    ('"$"', 0),
    ('"é"', 0),
    ("a[99999999999999999999999]", 0),
    ("_", 0),
]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=[repr(p)[:40] for p in HOSTILE_PATHS])
def test_a_malformed_path_is_refused_everywhere(loaded: Store, db_path: Path, path: str) -> None:
    before = snapshot(db_path)
    with pytest.raises(QueryError) as caught:
        loaded.query("task").where(path, "=", "x").count()
    assert "\n" not in str(caught.value)
    with pytest.raises(QueryError):
        loaded.query("task").where(path, "exists").all()
    with pytest.raises(QueryError):
        loaded.query("task").order_by(path).all()
    with pytest.raises(QueryError):
        loaded.add_index("task", path)
    assert snapshot(db_path) == before


@pytest.mark.parametrize(("path", "equal"), WORKING_PATHS, ids=[repr(p[0])[:40] for p in WORKING_PATHS])
def test_an_odd_path_is_a_name(loaded: Store, db_path: Path, path: str, equal: int) -> None:
    before = snapshot(db_path)
    value = "'; DROP TABLE records; --" if "tags" not in path else HOSTILE.index("'; DROP TABLE records; --")
    assert loaded.query("task").where(path, "=", value).count() == equal
    assert len(loaded.query("task").order_by(path).all()) == TOTAL
    assert snapshot(db_path) == before


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a\x00b", "NUL"),
        ("\ud800", "surrogate"),
        (float("nan"), "NaN"),
        (2**70, "outside the range"),
        ({"a": 1}, "scalar"),
        ([1], "scalar"),
    ],
    ids=["nul", "lone-surrogate", "nan", "2^70", "object", "array"],
)
def test_a_value_sqlite_cannot_compare_exactly_is_refused(loaded: Store, db_path: Path, value: object, why: str) -> None:
    before = snapshot(db_path)
    with pytest.raises(QueryError, match=why):
        loaded.query("task").where("prompt", "=", value).count()
    assert snapshot(db_path) == before


def test_hostile_operators_and_domains_are_refused(loaded: Store, db_path: Path) -> None:
    before = snapshot(db_path)
    for op in ["= 1; DROP TABLE records; --", "==1", "LIKE", "GLOB", "", "; --"]:
        with pytest.raises(QueryError, match="unknown operator"):
            loaded.query("task").where("prompt", op, "x")
    for domain in ["task'; DROP TABLE records; --", "task OR 1=1", "%", ""]:
        with pytest.raises(RecordStoreError, match="unknown domain"):
            loaded.query(domain)
    assert loaded.query("task").key("' OR '1'='1").count() == 0
    assert snapshot(db_path) == before


# --------------------------------------------------------------------------- the CLI


def _keys(stdout: str) -> list[str]:
    # Only "\n" ends an output line (a value may hold U+2028, which splitlines() splits on).
    return [line.split("\t", 1)[0] for line in stdout.split("\n") if line]


@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=[repr(v)[:40] for v in HOSTILE])
def test_cli_finds_a_hostile_value_by_equality(loaded: Store, db_path: Path, cli: Cli, index: int) -> None:
    value = HOSTILE[index]
    before = snapshot(db_path)
    # Quoted as JSON, any string is taken as that string.
    result = cli("query", "task", "--where", "prompt", "=", json.dumps(value))
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert _keys(result.stdout) == [_key(index)]  # type: ignore[attr-defined]
    try:
        json.loads(value)
    except ValueError:  # not JSON: taken as text as it is
        result = cli("query", "task", "--where", "prompt", "=", value)
        if value == "--":  # the end-of-options marker of every command line: a usage error
            assert result.exit_code == 2 and "Traceback" not in result.stderr  # type: ignore[attr-defined]
        else:
            assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
            assert _keys(result.stdout) == [_key(index)]  # type: ignore[attr-defined]
    assert snapshot(db_path) == before


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=[repr(p)[:40] for p in HOSTILE_PATHS])
def test_cli_refuses_a_malformed_path_in_one_line(loaded: Store, db_path: Path, cli: Cli, path: str) -> None:
    before = snapshot(db_path)
    result = cli("query", "task", "--where", path, "=", "'; DROP TABLE records; --")
    assert result.exit_code == 3, result.stdout  # type: ignore[attr-defined]
    assert result.stdout == ""  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("store: error: "), lines
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert snapshot(db_path) == before


@pytest.mark.parametrize(
    "args",
    [
        ("task", "--where", "prompt", "= 1; DROP TABLE records; --", "x"),
        ("task'; DROP TABLE records; --", "--where", "prompt", "=", "x"),
        ("task", "--where", "prompt", "=", '"a\\u0000b"'),
        ("task", "--where", "prompt", "=", '"\\ud800"'),
        ("task", "--where", "n", "=", str(2**70)),
        ("task", "--where", "prompt", "=", '{"a": 1}'),
        ("task", "--order-by", "prompt'; DROP TABLE records; --"),
    ],
    ids=["operator", "domain", "nul", "lone-surrogate", "2^70", "object", "order-by"],
)
def test_cli_refuses_other_hostile_arguments_in_one_line(loaded: Store, db_path: Path, cli: Cli, args: tuple[str, ...]) -> None:
    before = snapshot(db_path)
    result = cli("query", *args)
    assert result.exit_code == 3, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("store: error: "), lines
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert snapshot(db_path) == before


def test_cli_index_commands_refuse_hostile_paths(loaded: Store, db_path: Path, cli: Cli) -> None:
    before = snapshot(db_path)
    for command in ("add", "drop"):
        result = cli("index", command, "task", "prompt'); DROP TABLE records; --")
        assert result.exit_code == 3 and "Traceback" not in result.stderr  # type: ignore[attr-defined]
        assert len(result.stderr.splitlines()) == 1  # type: ignore[attr-defined]
    assert snapshot(db_path) == before
    # A plain path is indexed, and equality through the index still treats values as data.
    assert cli("index", "add", "task", "prompt").exit_code == 0  # type: ignore[attr-defined]
    result = cli("query", "task", "--where", "prompt", "=", "'; DROP TABLE records; --")
    assert _keys(result.stdout) == [_key(0)]  # type: ignore[attr-defined]
    # (and the add is a run of its own in the history)
    assert snapshot(db_path)[1] == before[1] | {"indexes": before[1]["indexes"] + 1, "runs": before[1]["runs"] + 1}


def test_filters_compare_strings_with_strings_and_numbers_with_numbers(tmp_path: Path) -> None:
    """JSON's types stay apart in filters: true is not 1, the string "1" is not 1, an
    object or an array is not its JSON text, and no string is greater than 0 (SQLite
    alone would say otherwise for each)."""
    reg = Registry()
    reg.domain("item", version=1, files=["*.jsonl"])
    rows = [
        {"k": "true", "flag": True, "n": 1, "o": {"z": 1}, "a": [1, 2]},
        {"k": "false", "flag": False, "n": 0},
        {"k": "text", "n": "1", "s": "x", "flag": "1"},
        {"k": "real", "n": 2.5, "flag": 1},
        {"k": "null", "n": None},
    ]
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "i.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Store(tmp_path / "s.db", registry=reg) as s:
        s.import_paths([tmp_path / "h"])

        def keys(*where: Any) -> list[str]:
            return sorted(r.data["k"] for r in s.query("item").where(*where))

        assert keys("flag", "=", 1) == ["real"]
        assert keys("flag", "=", True) == ["true"]
        assert keys("flag", "=", "1") == ["text"]
        assert keys("flag", "<", 1) == []
        assert keys("flag", "in", [1]) == ["real"]
        assert keys("flag", "in", [1, "1"]) == ["real", "text"]
        assert keys("n", "=", 1) == ["true"]
        assert keys("n", ">", 1e20) == []
        assert keys("n", ">=", 0) == ["false", "real", "true"]
        assert keys("n", "!=", 1) == ["false", "null", "real", "text"]
        assert keys("n", "not in", [0, 1]) == ["null", "real", "text"]
        assert keys("o", "=", '{"z":1}') == []
        assert keys("a", "=", "[1,2]") == []
        assert keys("s", ">", 0) == []
        assert keys("s", ">", "a") == ["text"]


def test_limits_offsets_and_versions_must_be_integers(tmp_path: Path) -> None:
    """Not silently rounded (2.5, 1.9) nor failing outside the error tree ("5", None)."""
    with Store(tmp_path / "s.db") as s:
        q = s.query("task")
        for call, arg in ((q.limit, 2.5), (q.limit, "5"), (q.offset, None), (q.version, 1.9), (q.version, "x"), (q.limit, True)):
            with pytest.raises(QueryError, match=r"must be an integer, not "):
                call(arg)  # type: ignore[arg-type]
        assert q.limit(3).offset(0).version(2).count() == 0


def test_json_path_filters_and_indexes_are_refused_on_another_database(store: Store, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They use SQLite's JSON functions: on another database (PostgreSQL serves the rest)
    they are one clear QueryError, not the database's "function json_type does not
    exist", and an index add leaves no failed run."""
    store.import_paths([home])
    runs_before = len(store.history())
    monkeypatch.setattr(store.engine.dialect, "name", "postgresql")
    for use in (lambda: store.query("task").where("status", "=", "done"), lambda: store.query("task").order_by("status"),
                lambda: store.add_index("task", "status")):
        with pytest.raises(QueryError, match=r"need a SQLite store \(this one is postgresql\)"):
            use()
    assert len(store.query("task").order_by("key").limit(2).all()) == 2  # the rest is served
    monkeypatch.undo()
    assert len(store.history()) == runs_before
