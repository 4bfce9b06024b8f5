"""An adversarial review of queries: answers compared with the same filter done in
plain Python over the records' decoded payloads, where the reference property
(test_query_reference.py) does not reach: array indexes past 32 bits, Decimals and
infinities past the doubles, keys that only a quoted path names (and many of them in one
path), record keys past any line, and the command line's order of words and lists."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import MISSING, value_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recordstore import QueryError, Registry, Store, query
from recordstore.cli import app

REGISTRY_FILE = '''
from recordstore import Registry

registry = Registry()
registry.domain("d", version=1, files=["d/*.jsonl"])
'''


def make_store(tmp_path: Path, records: list[dict[str, Any]]) -> Store:
    """A store of ``records``, one a line of ``d/f.jsonl`` (keys ``d/f.jsonl:1``…)."""
    (tmp_path / "home" / "d").mkdir(parents=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (tmp_path / "home" / "d" / "f.jsonl").write_text(text, encoding="utf-8")
    (tmp_path / "reg.py").write_text(REGISTRY_FILE)
    registry = Registry()
    registry.domain("d", version=1, files=["d/*.jsonl"])
    store = Store(tmp_path / "s.db", registry=registry)
    assert store.import_paths([tmp_path / "home"], jobs=0).ok
    return store


def command(tmp_path: Path, *args: str) -> Any:
    argv = ["--db", str(tmp_path / "s.db"), "--registry", str(tmp_path / "reg.py"), *args]
    return CliRunner().invoke(app, argv, catch_exceptions=False)


def lines(q: Any) -> list[int]:
    """The lines of the records ``q`` gives, in its order."""
    return [int(r.key.rpartition(":")[2]) for r in q]


# --------------------------------------------------------------------------- array indexes


@pytest.fixture
def arrays(tmp_path: Path) -> Any:
    with make_store(tmp_path, [{"a": [10, 20]}, {"a": [5]}, {"a": []}, {"b": 1}]) as store:
        yield store


@pytest.mark.parametrize("index", ["4294967296", "4294967297", "18446744073709551616", "8589934592", "9" * 5000], ids=lambda i: i[:20])
def test_an_index_past_any_array_finds_nothing_rather_than_a_small_one(arrays: Store, tmp_path: Path, index: str) -> None:
    """SQLite reads a path's array index into 32 bits: a[4294967296] was a[0], so
    ``exists`` found every record with a non-empty array and ``= 10`` the record whose
    a[0] is 10, where no record has such an element (nor can: SQLite holds no array of
    2**31 elements). An index of more than 4,300 digits raised Python's ValueError
    ("Exceeds the limit (4300 digits) for integer string conversion"), outside the error
    tree: an internal error (exit 70) on the command line."""
    q = arrays.query("d")
    for path in (f"a[{index}]", f'["a"][{index}]', f"a[{index}].x"):
        assert lines(q.where(path, "exists")) == []
        assert lines(q.where(path, "missing")) == [1, 2, 3, 4]
        assert lines(q.where(path, "=", 10)) == lines(q.where(path, "!=", 10)) == []
        assert lines(q.order_by(path, descending=True)) == [1, 2, 3, 4]
    arrays.add_index("d", f"a[{index}]")
    assert lines(q.where(f"a[{index}]", "exists")) == []
    result = command(tmp_path, "query", "d", "--where", f"a[{index}]", "exists")
    assert (result.exit_code, result.output) == (0, "")
    result = command(tmp_path, "query", "d", "--where", f"a[{index}]", "missing", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == [f"d/f.jsonl:{n}" for n in (1, 2, 3, 4)]


def test_indexes_below_32_bits_are_looked_up_as_they_are(arrays: Store) -> None:
    q = arrays.query("d")
    assert lines(q.where("a[0]", "exists")) == [1, 2]
    assert lines(q.where("a[00001]", "=", 20)) == [1]
    assert lines(q.where("a[2147483647]", "exists")) == lines(q.where("a[4294967295]", "exists")) == []


# --------------------------------------------------------------------------- Decimal values


@pytest.mark.parametrize("op", ["=", "<", "in", "not in"])
def test_a_decimal_of_a_huge_exponent_is_refused_without_making_the_integer(arrays: Store, op: str) -> None:
    """An integral Decimal was made an int before it was refused as past 64 bits:
    Decimal("1e1000000") (as json.loads(parse_float=Decimal) gives for such a text)
    took 28 s to refuse, and Decimal("1e999999999999999999") raised MemoryError,
    outside the error tree."""
    from decimal import Decimal

    said = {
        "1e999999999999999999": r"10{39}… \(1000000000000000000 digits\)",
        "-1.5E+400": r"-150{37}… \(401 digits\)",
        "12345678901234567890": r"12345678901234567890",
    }
    for text, digits in said.items():
        value = [1, Decimal(text)] if "in" in op else Decimal(text)
        with pytest.raises(QueryError, match=rf"^a\[0\]: integer {digits} is outside the range SQLite can compare exactly$"):
            arrays.query("d").where("a[0]", op, value)
    # Within 64 bits, an integral Decimal is the integer it holds.
    assert lines(arrays.query("d").where("a[0]", "=", Decimal("1.0E+1"))) == [1]
    assert lines(arrays.query("d").where("a[0]", ">", Decimal("9223372036854775807E-18"))) == [1]


# --------------------------------------------------------------------------- infinity


@pytest.fixture
def huge(tmp_path: Path) -> Any:
    (tmp_path / "home" / "d").mkdir(parents=True)
    text = '{"n": 1' + "0" * 400 + '}\n{"n": 1e308}\n{"n": 5}\n{"n": -1' + "0" * 400 + "}\n"
    (tmp_path / "home" / "d" / "f.jsonl").write_text(text)
    registry = Registry()
    registry.domain("d", version=1, files=["d/*.jsonl"])
    with Store(tmp_path / "s.db", registry=registry) as store:
        assert store.import_paths([tmp_path / "home"], jobs=0).ok
        yield store


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">=", "in", "not in"])
def test_infinity_is_refused_as_no_json_number(huge: Store, op: str) -> None:
    """A float infinity was bound as it was, and SQLite compares a stored integer past
    the doubles' range as infinity: "= inf" found the record holding 10**400 and "< inf"
    left it out, where Python says 10**400 < inf; a Decimal of 400 digits and a fraction
    became infinity too, and was found equal to 10**400 (the command line refuses such a
    number: "1e400: number 1e400 is too large for a double")."""
    from decimal import Decimal

    inf = float("inf")
    assert [r.data["n"] < inf and r.data["n"] > -inf for r in huge.query("d")] == [True] * 4
    for value, said in ((inf, r"inf is not a JSON value"), (-inf, r"-inf is not a JSON value"),
                        (Decimal("1" * 400 + ".5"), r"1{40}… \(401 digits\) is too large for a double")):
        with pytest.raises(QueryError, match=rf"^n: {said}"):
            huge.query("d").where("n", op, [value] if "in" in op else value)
    # The largest double is a number still.
    assert lines(huge.query("d").where("n", ">=", 1.7976931348623157e308)) == [1]
    assert lines(huge.query("d").where("n", "<", 1e308)) == [3, 4]


# --------------------------------------------------------------------------- deep quoted paths


@pytest.mark.parametrize("depth", [8, 12])
def test_a_path_of_many_quoted_keys_is_looked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    """On an SQLite that compares path keys as written (3.40, Debian 12's), quoted keys
    are looked up by json_each, each key's lookup nested inside the next one twice: 8
    quoted keys failed with "database error: parser stack overflow", and 50 never
    finished building the query (2**50 lookups)."""
    monkeypatch.setattr(query, "_labels_decoded", lambda: False)
    keys = [f"k-{i}" for i in range(depth)]
    deep: Any = {"n": 1}
    for key in reversed(keys):
        deep = {key: deep}
    with make_store(tmp_path, [deep, {"k-0": "text"}, {"x": 1}]) as store:
        path = "".join(f'["{key}"]' for key in keys)
        q = store.query("d")
        assert lines(q.where(path, "exists")) == [1]
        assert lines(q.where(path + ".n", "=", 1)) == [1]
        assert lines(q.where(path + '["n"]', ">", 0)) == [1]
        assert lines(q.where(path, "missing")) == [2, 3]
        assert lines(q.order_by(path + ".n", descending=True)) == [1, 2, 3]
        with pytest.raises(QueryError, match=r"a path names at most 63 quoted keys on this SQLite"):
            q.where(path + '["n"]' * 64, "exists")

# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("place", ["9223372036854775808", "99999999999999999999", "9" * 5000], ids=lambda p: p[:20])
def test_a_key_past_any_line_or_index_is_no_record(arrays: Store, tmp_path: Path, place: str) -> None:
    """get() and restore by key look a key's record up at the places its line or index
    allows: a line or index of 20 digits raised OverflowError ("Python int too large to
    convert to SQLite INTEGER"), one of 5,000 ValueError, out of the error tree (store
    restore --key: "internal error", exit 70)."""
    for key in (f"d/f.jsonl:{place}", f"d/f.jsonl[{place}]"):
        assert arrays.get("d", key) is None
        assert arrays.query("d").key(key).first() is None
        result = command(tmp_path, "restore", "--domain", "d", "--key", key)
        assert result.exit_code == 3, result.output
        assert result.stderr.startswith("store: error: nothing to restore: no backups of record")
    assert arrays.get("d", "d/f.jsonl:9223372036854775807") is None
    found = arrays.get("d", "d/f.jsonl:2")
    assert found is not None and found.data == {"a": [5]}

# --------------------------------------------------------------------------- the command line


def test_a_where_before_the_domain_is_said_to_be_misplaced(arrays: Store, tmp_path: Path) -> None:
    """``store query --where a exists d`` (the filter before DOMAIN) said "unexpected
    argument 'a'": --where had been taken for DOMAIN."""
    for args in (["--where", "a", "exists", "d"], ["--where", "a[0]=10", "d"], ["--limit", "1", "--where", "a", "exists", "d"]):
        result = command(tmp_path, "query", *args)
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert "DOMAIN comes first: store query DOMAIN --where PATH OP VALUE" in result.stderr
        assert "unexpected argument" not in result.stderr
    result = command(tmp_path, "query", "d", "--where", "a[0]=10")
    assert (result.exit_code, result.stdout) == (0, 'd/f.jsonl:1\tv1\t{"a":[10,20]}\n')



@pytest.mark.parametrize(
    ("listed", "reason"),
    [("[1, 1e400]", "number 1e400 is too large for a double"), ("[1, NaN]", "NaN is not valid JSON"),
     ('["a" "b"]', "invalid JSON"), ("[1,]", "invalid JSON")],
)
def test_a_list_for_in_that_is_not_json_is_said_to_be_so(arrays: Store, tmp_path: Path, listed: str, reason: str) -> None:
    """``--where a in '[1, 1e400]'`` (or a list with a syntax error) was taken as text
    and refused as "'in' needs a list, tuple or set of values, not '[1, 1e400]'": a list,
    the user would say, with nothing said of what was wrong in it."""
    for op in ("in", "not in", "NOT IN"):
        result = command(tmp_path, "query", "d", "--where", "a[0]", op, listed)
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert f"Invalid value for --where: {listed}: {reason}" in result.stderr
        assert "needs a list" not in result.stderr
    result = command(tmp_path, "query", "d", "--where", "a[0]", "in", "[5, 1e308]")
    assert (result.exit_code, result.stdout) == (0, 'd/f.jsonl:2\tv1\t{"a":[5]}\n')

# --------------------------------------------------------------------------- awkward keys

#: Keys a path must quote: dots, brackets, spaces, quotes of the other kind, "$",
#: digits, nothing, non-ASCII; and plain names.
AWKWARD = ("", "a.b", "$", "$x", "1", "0", "a b", "[0]", "a]", "a[1]", "'", "é", "日本", "x y.z", "a", "key")
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([1.0, -0.0, 0.5]), st.sampled_from(["", "1", "a", "é"]))
_tree = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(AWKWARD), c, max_size=3), max_leaves=8)
_awkward_records = st.lists(st.dictionaries(st.sampled_from(AWKWARD), _tree, max_size=4), min_size=1, max_size=8)
_steps = st.lists(st.sampled_from(AWKWARD) | st.integers(0, 3) | st.sampled_from([2**32, 2**32 + 1, 2**64]), min_size=1, max_size=3).filter(
    lambda s: isinstance(s[0], str)
)


def spelled(steps: list[Any]) -> str:
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):
            out += f".{step}" if out else step
        else:
            out += f'["{step}"]'
    return out


def equal(stored: Any, value: Any) -> bool:
    """``=`` as the README has it: null, true and false by kind; numbers with numbers,
    strings with strings."""
    if value is None or isinstance(value, bool):
        return stored is value
    if isinstance(value, str) or isinstance(stored, str):
        return isinstance(stored, str) and isinstance(value, str) and stored == value
    return isinstance(stored, (int, float)) and not isinstance(stored, bool) and stored == value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=_awkward_records, paths=st.lists(_steps, min_size=1, max_size=3), value=_leaf, decoded=st.booleans())
def test_awkward_keys_and_indexes_answer_as_python_does(records: list[dict[str, Any]], paths: list[list[Any]], value: Any, decoded: bool) -> None:
    """Paths through keys a path must quote (dots, brackets, "$", digits, nothing,
    spaces) and array indexes, small and past 32 bits, by this SQLite's own lookup of a
    quoted key and by json_each: exists, missing, = and order, as Python finds them in
    the decoded records."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(query, "_labels_decoded", lambda: decoded)  # the files escape nothing: both serve
        with make_store(Path(tmp), records) as store:
            q = store.query("d")
            for steps in paths:
                path = spelled(steps)
                found = [value_at(r, steps) for r in records]
                assert lines(q.where(path, "exists")) == [n for n, v in enumerate(found, 1) if v is not MISSING], path
                assert lines(q.where(path, "missing")) == [n for n, v in enumerate(found, 1) if v is MISSING], path
                expected = [n for n, v in enumerate(found, 1) if v is not MISSING and equal(v, value)]
                assert lines(q.where(path, "=", value)) == expected, (path, value)
                # Ordered by the path: the records without it (or null there) first, in order.
                nothing = [n for n, v in enumerate(found, 1) if v is MISSING or v is None]
                assert lines(q.order_by(path))[: len(nothing)] == nothing, path
