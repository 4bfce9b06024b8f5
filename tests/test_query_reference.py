"""Queries against a reference: random records of mixed types (nested objects, arrays,
integers past 64 bits, floats, booleans, null, strings with NUL, escapes and lone
surrogates, fields missing) go into a store, and what a random query returns (its keys,
in order) is compared with a pure-Python evaluation of the same filters, order and page
as the README documents them. The same answers with an index on the paths, count() as
the rows iterated, and pages that partition the result."""

from __future__ import annotations

import decimal
import functools
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import MISSING, value_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordstore import QueryError, Registry, Store, query

#: Few examples in the suite; QUERY_EXAMPLES=2000 (with --hypothesis-seed) to hunt.
EXAMPLES = int(os.environ.get("QUERY_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

INT64 = (-(2**63), 2**63 - 1)
#: Keys a path names plainly, and keys it must quote.
PLAIN = ("a", "b", "n", "key", "schema_version")
QUOTED = ("größe", "odd key", "a/b", "<k>", "é")

# --------------------------------------------------------------------------- records

_strings = st.text(alphabet="ab\x00\n\"\\/é\u00ff\u2028\U0001f600\ud800\udc00zA1 ", max_size=4)
_numbers = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**63 - 1, 2**63, 2**63 + 1, -(2**63), -(2**63) - 1, 2**64 - 1, 10**30, -(10**30), 2**53 + 1, 10**400, -(10**400)]),
    st.integers(2**63, 2**80) | st.integers(-(2**80), -(2**63)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, -1.5, 1e16, 2.0**63, 9.223372036854776e18, 1.8446744073709552e19, 5e-324]),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _strings)
_values = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(PLAIN[:3] + QUOTED), c, max_size=3),
    max_leaves=6,
)
_records = st.dictionaries(st.sampled_from(PLAIN[:4] + QUOTED), _values, max_size=4).flatmap(
    lambda r: st.one_of(st.just(r), st.sampled_from([1, 2]).map(lambda v: {"schema_version": v, **r}))
)


@dataclass(frozen=True)
class Style:
    """How a line was written: escaped non-ASCII, spaces after : and ,, an escaped /."""

    ascii: bool
    spaced: bool
    slash: bool

    def dumps(self, value: Any, *, spaced: bool | None = None) -> str:
        spaced = self.spaced if spaced is None else spaced
        seps = (", ", ": ") if spaced else (",", ":")
        try:
            text = json.dumps(value, ensure_ascii=self.ascii, separators=seps)
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only an escape writes it
            text = json.dumps(value, ensure_ascii=True, separators=seps)
        # "/" is found only inside strings in a JSON text: escaping it changes no value.
        return text.replace("/", "\\/") if self.slash else text


_styles = st.builds(Style, st.booleans(), st.booleans(), st.booleans())


@dataclass
class Row:
    key: str
    file: str
    line: int
    version: int
    data: dict[str, Any]
    style: Style


def write_home(root: Path, files: list[list[tuple[int, dict[str, Any], Style]]]) -> list[Row]:
    """JSON-lines files ``d/f0.jsonl``… (and one record of another domain), each record
    after its blank lines; the rows as the reference sees them (decoded from the text
    written, as the store decodes it)."""
    (root / "d").mkdir(parents=True)
    (root / "o").mkdir()
    (root / "o" / "x.jsonl").write_text('{"a": 1, "b": "x", "n": null}\n', encoding="utf-8")
    rows = []
    for f, records in enumerate(files):
        name = f"d/f{f}.jsonl"
        lines: list[str] = []
        for blanks, record, style in records:
            lines += [""] * blanks
            text = style.dumps(record)
            lines.append(text)
            data = json.loads(text)
            rows.append(Row(f"{name}:{len(lines)}", name, len(lines), data.get("schema_version", 1), data, style))
        (root / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return rows


def registry() -> Registry:
    reg = Registry()
    d = reg.domain("d", version=2, files=["d/*.jsonl"])

    @d.step(1)
    def nothing(record: dict[str, Any]) -> None:
        pass

    reg.domain("o", version=1, files=["o/*.jsonl"])
    return reg


# --------------------------------------------------------------------------- paths


def render(steps: tuple[Any, ...], choice: list[int]) -> str:
    """A path in one of the ways the README spells it: ``a.b``, ``a[0]``, ``["odd key"]``,
    ``a."odd key"``, ``$.a``; ``choice`` picks among them."""
    out = "$." if choice[0] % 4 == 3 else ""
    for i, step in enumerate(steps):
        pick = choice[(i + 1) % len(choice)]
        if isinstance(step, int):
            assert i, "a path starts with a key"
            out += f"[{step}]"
        elif step in PLAIN and pick % 3 != 2:
            out += ("." if i else "") + step
        elif pick % 2:
            out += f'["{step}"]'
        else:
            out += ("." if i else "") + f'"{step}"'
    return out


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    found = {prefix} if prefix else set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= paths_in(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= paths_in(v, (*prefix, i))
    return found


# --------------------------------------------------------------------------- the reference


class Refused(Exception):
    """The reference's word for a filter the query must refuse (a QueryError)."""


def number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def as_sqlite(v: Any) -> Any:
    """A stored number as SQLite compares it: an integer past 64 bits as the nearest double;
    a stored string up to its first NUL."""
    if isinstance(v, int) and not isinstance(v, bool) and not INT64[0] <= v <= INT64[1]:
        try:
            return float(v)
        except OverflowError:  # past the doubles: infinity
            return float("inf") if v > 0 else float("-inf")
    if isinstance(v, str):
        return v.split("\x00", 1)[0]
    return v


def plain(v: Any) -> Any:
    """A Decimal value as the README's number: an integer, or else the nearest double
    (refused when that would be 0 and the Decimal is not)."""
    if not isinstance(v, decimal.Decimal):
        return v
    if v == v.to_integral_value():
        return int(v)
    if not float(v) and v:
        raise Refused("no double holds it")
    return float(v)


def check_value(v: Any) -> None:
    if isinstance(v, int) and not isinstance(v, bool) and not INT64[0] <= v <= INT64[1]:
        raise Refused("integer outside 64 bits")
    if isinstance(v, str):
        if "\x00" in v:
            raise Refused("NUL")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("lone surrogate") from None


def same(stored: Any, v: Any) -> bool:
    """``stored = v`` with JSON's types apart."""
    if isinstance(v, str):
        return isinstance(stored, str) and as_sqlite(stored) == v
    return number(stored) and as_sqlite(stored) == v


COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def predicate(steps: tuple[Any, ...], op: str, value: Any) -> Any:
    """The README's filter as a function of a record's data (``Refused`` when the query must
    refuse it)."""
    if op in ("exists", "missing"):
        if value is not None and not isinstance(value, bool):
            raise Refused("exists takes no value")
        present = (op == "exists") == (value is not False)
        return lambda d: (value_at(d, steps) is not MISSING) == present
    if op in ("in", "not in"):
        value = [plain(v) for v in value]
        for v in value:
            check_value(v)
            if v is None or isinstance(v, bool):
                raise Refused("in takes strings and numbers")
        member = lambda d: any(same(value_at(d, steps), v) for v in value)
        if op == "in":
            return member
        return lambda d: value_at(d, steps) is not MISSING and not member(d)
    value = plain(value)
    check_value(value)
    if value is None or isinstance(value, bool):
        if op not in ("=", "==", "!="):
            raise Refused("true, false and null take = and != only")
        # (``is``: True is not 1, False is not 0.)
        is_it = lambda d: (s := value_at(d, steps)) is not MISSING and s is value
        if op == "!=":
            return lambda d: value_at(d, steps) is not MISSING and not is_it(d)
        return is_it
    if op in ("=", "=="):
        return lambda d: same(value_at(d, steps), value)
    if op == "!=":
        return lambda d: value_at(d, steps) is not MISSING and not same(value_at(d, steps), value)
    compare = COMPARE[op]

    def ordered(d: Any) -> bool:
        s = value_at(d, steps)
        if isinstance(value, str):
            return isinstance(s, str) and compare(as_sqlite(s), value)
        return number(s) and compare(as_sqlite(s), value)

    return ordered


def sort_value(row: Row, steps: tuple[Any, ...]) -> tuple[int, Any]:
    """Where a record sorts by a path, as the README says SQLite's values go: nothing or
    null first, then numbers (false and true as 0 and 1), then strings, arrays and objects
    (those by their JSON text, compact, escapes as the file wrote them)."""
    v = value_at(row.data, steps)
    if v is MISSING or v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if number(v):
        return (1, as_sqlite(v))
    if isinstance(v, str):
        return (2, as_sqlite(v))
    return (2, row.style.dumps(v, spaced=False))


def reference(rows: list[Row], ids: dict[str, int], conds: list[Any], version: int | None, order: list[tuple[Any, bool]]) -> list[str]:
    """The keys the README says the query returns, unpaged."""
    chosen = [r for r in rows if all(p(r.data) for p in conds) and (version is None or r.version == version)]

    def cmp(x: Row, y: Row) -> int:
        for steps, desc in order:
            a, b = ((x.file, x.line), (y.file, y.line)) if steps == "key" else (sort_value(x, steps), sort_value(y, steps))
            if a != b:
                return (-1 if a < b else 1) * (-1 if desc else 1)
        return ids[x.key] - ids[y.key]  # ties: in the order the records were imported

    return [r.key for r in sorted(chosen, key=functools.cmp_to_key(cmp))]


# --------------------------------------------------------------------------- queries


@st.composite
def scenario(draw: st.DrawFn, decimals: bool = False) -> tuple[Any, ...]:
    files = draw(
        st.lists(
            st.lists(st.tuples(st.integers(0, 3) | st.just(0), _records, _styles), max_size=8), min_size=1, max_size=3
        )
    )
    records = [r for f in files for _, r, _ in f]
    known = sorted(set().union(*(paths_in(r) for r in records)), key=repr)
    any_path = st.tuples(st.sampled_from(PLAIN + QUOTED), st.lists(st.sampled_from(PLAIN[:3] + QUOTED) | st.integers(0, 2), max_size=2))
    made = any_path.map(lambda p: (p[0], *p[1]))
    path = st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known), made) if known else made
    choice = st.lists(st.integers(0, 11), min_size=1, max_size=4)

    def near(v: Any) -> list[Any]:
        """Values at and around a stored one: equal, just below and above, a prefix."""
        if isinstance(v, str):
            return [v, v[:1], v + "a"]
        if number(v):
            return [v, v - 1, v + 1, as_sqlite(v), v / 2 if isinstance(v, float) else v // 2]
        return [v]

    def condition(steps: tuple[Any, ...]) -> Any:
        stored = [w for r in records if (w := value_at(r, steps)) is not MISSING and not isinstance(w, (list, dict))]
        nearby = [x for w in stored for x in near(w)]
        value = st.one_of(st.sampled_from(nearby), st.sampled_from(nearby), _scalars) if nearby else _scalars
        op = draw(st.sampled_from(query.OPERATORS))
        if op in ("exists", "missing"):
            v = draw(st.none() | st.booleans())
        elif op in ("in", "not in"):
            v = draw(st.lists(value, max_size=3))
        else:
            v = draw(value)
        if decimals and number(v) and draw(st.booleans()):  # as json.loads(parse_float=Decimal) gives
            v = decimal.Decimal(repr(v) if isinstance(v, float) else v)
        return steps, op, v

    conds = [(condition(steps), draw(choice)) for steps in draw(st.lists(path, max_size=2))]
    order = [(steps, draw(st.booleans()), draw(choice)) for steps in draw(st.lists(st.just("key") | path, max_size=2))]
    version = draw(st.sampled_from([None, None, None, 1, 2]))
    return files, conds, order, version


def store_ids(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT key, id FROM records WHERE domain = 'd'"))


@SETTINGS
@given(scenario(decimals=True))
def test_queries_answer_as_the_reference_does(case: tuple[Any, ...]) -> None:
    files, conds, order, version = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = write_home(root / "home", files)
        with Store(root / "s.db", registry=registry()) as store:
            result = store.import_paths([root / "home"], jobs=0)
            assert result.ok, result.problems
            ids = store_ids(root / "s.db")
            assert sorted(ids) == sorted(r.key for r in rows)
            q = store.query("d")
            preds = []
            refused = False
            for (steps, op, v), choice in conds:
                text = render(steps, choice)
                try:
                    preds.append(predicate(steps, op, v))
                except Refused:
                    with pytest.raises(QueryError):
                        q.where(text, op, v)
                    refused = True
                    continue
                q = q.where(text, op, v)
            if refused:
                return
            if version is not None:
                q = q.version(version)
            sort: list[tuple[Any, bool]] = []
            for steps, desc, choice in order:
                text = "key" if steps == "key" else render(steps, choice)
                if text == "key":  # a field named key is ["key"]: "key" orders by the record's key
                    steps = "key"
                q = q.order_by(text, descending=desc)
                sort.append((steps, desc))
            expected = reference(rows, ids, preds, version, sort)
            got = [r.key for r in q]
            assert got == expected
            # count() is what iterating gives; pages partition the result.
            assert q.count() == len(got)
            for size in (1, 2, 3):
                pages = [[r.key for r in q.offset(start).limit(size)] for start in range(0, len(got) + 1, size)]
                assert [k for page in pages for k in page] == got
                assert all(len(page) == size for page in pages[:-1])
            assert q.offset(len(got)).all() == [] and q.limit(0).all() == []
            # Indexes never change an answer.
            plain = {
                text
                for text in [render(s, c) for (s, _, _), c in conds] + [render(s, c) for s, _, c in order if s != "key"]
                if text != "key" and query.json_path(text)[1]
            }
            for text in sorted(plain):
                store.add_index("d", text)
            assert [r.key for r in q] == got
            assert q.count() == len(got)


REGISTRY_FILE = '''
from recordstore import Registry

registry = Registry()
d = registry.domain("d", version=2, files=["d/*.jsonl"])


@d.step(1)
def nothing(record):
    pass


registry.domain("o", version=1, files=["o/*.jsonl"])
'''


def cli_value(v: Any, raw: bool) -> str:
    """A --where value as a user types it: JSON, or a string as it is when it is not JSON."""
    if isinstance(v, str) and raw:
        try:
            json.loads(v)
        except ValueError:
            if not query.jsoncodec.NUMBER.fullmatch(v.strip()):
                return v
    return json.dumps(v, ensure_ascii=False)


@settings(SETTINGS, max_examples=max(EXAMPLES // 4, 10))
@given(scenario(), st.booleans())
def test_the_command_answers_as_the_reference_does(case: tuple[Any, ...], raw: bool) -> None:
    from typer.testing import CliRunner

    from recordstore.cli import app

    files, conds, order, version = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = write_home(root / "home", files)
        (root / "reg.py").write_text(REGISTRY_FILE)
        runner = CliRunner()

        def store(*args: str) -> Any:
            return runner.invoke(app, ["--db", str(root / "s.db"), "--registry", str(root / "reg.py"), *args], catch_exceptions=False)

        assert store("import", "--jobs", "0", str(root / "home")).exit_code == 0
        ids = store_ids(root / "s.db")
        args: list[str] = []
        preds = []
        refused = False
        for (steps, op, v), choice in conds:
            text = render(steps, choice)
            try:
                preds.append(predicate(steps, op, v))
            except Refused:
                refused = True
            args += ["--where", text, op]
            if op in ("exists", "missing"):
                args += [] if v is None else [json.dumps(v)]
            elif op in ("in", "not in"):
                args.append(json.dumps(v, ensure_ascii=False))
            else:
                args.append(cli_value(v, raw))
        sort: list[tuple[Any, bool]] = []
        if order:
            steps, desc, choice = order[0]
            text = "key" if steps == "key" else render(steps, choice)
            args += ["--order-by", text] + (["--desc"] if desc else [])
            sort.append(("key" if text == "key" else steps, desc))
        if version is not None:
            args += ["--version", str(version)]
        try:
            args.append("--json")
            result = store("query", "d", *args)
        except UnicodeEncodeError:  # a lone surrogate cannot be an argument of a command
            return
        if refused:
            assert result.exit_code == 3, result.output
            assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("store: error: ")
            return
        assert result.exit_code == 0, result.output
        # (Lines end in \n only: a record's U+2028 is written as it is, and splitlines() would
        # break the line there.)
        got = [json.loads(line)["key"] for line in result.stdout.split("\n")[:-1]]
        assert got == reference(rows, ids, preds, version, sort)


# --------------------------------------------------------------------------- regressions


@pytest.fixture
def numbers(tmp_path: Path) -> Any:
    reg = Registry()
    reg.domain("d", version=1, files=["d/*.jsonl"])
    (tmp_path / "h" / "d").mkdir(parents=True)
    (tmp_path / "h" / "d" / "n.jsonl").write_text('{"n": 0}\n{"n": 5e-324}\n{"n": 1}\n')
    with Store(tmp_path / "s.db", registry=reg) as store:
        assert store.import_paths([tmp_path / "h"], jobs=0).ok
        yield store


def test_a_decimal_no_double_holds_is_refused_not_compared_as_0(numbers: Store) -> None:
    """Decimal("1e-400") compared as 0: "= 1e-400" matched the record holding 0, where
    the command line refuses 1e-400 ("it would become 0") and so does an import."""
    from decimal import Decimal

    for value in (Decimal("1e-400"), Decimal("-2E-324")):
        for op in ("=", ">=", "in"):
            with pytest.raises(QueryError, match=r"n: -?\d+E-\d+ is too small for a double \(it would become 0\)"):
                numbers.query("d").where("n", op, [value] if op == "in" else value)
    # The smallest double is a double still, and zero is zero.
    assert [r.key for r in numbers.query("d").where("n", "=", Decimal("5e-324"))] == ["d/n.jsonl:2"]
    assert [r.key for r in numbers.query("d").where("n", "=", Decimal("0E-400"))] == ["d/n.jsonl:1"]


def test_an_integer_past_pythons_digit_limit_is_refused_in_one_line(numbers: Store) -> None:
    """An integer of more than 4,300 digits (which a record may hold) given as a value
    raised Python's ValueError ("Exceeds the limit (4300 digits) for integer string
    conversion") from the refusal's own message, outside the error tree."""
    from decimal import Decimal

    for value in (10**5000, -(10**5000), Decimal("1e5000")):
        with pytest.raises(QueryError, match=r"^n: integer -?10{38,39}… \(5001 digits\) is outside"):
            numbers.query("d").where("n", "=", value)
        with pytest.raises(QueryError, match=r"\(5001 digits\)"):
            numbers.query("d").where("n", "in", [1, value])


def test_a_huge_integer_where_a_query_takes_another_is_refused_in_one_line(numbers: Store) -> None:
    """limit(10**5000), offset, version, or 'in' with such an integer instead of a list
    raised Python's ValueError from the message that refuses it."""
    q = numbers.query("d")
    for call in (q.limit, q.offset, q.version):
        with pytest.raises(QueryError, match=r"must be between 0 and \d+, not an integer of more than \d+ digits$"):
            call(10**5000)
    with pytest.raises(QueryError, match=r"^n: 'in' needs a list, tuple or set of values, not an integer of more than \d+ digits$"):
        q.where("n", "in", -(10**5000))


def test_a_run_number_past_pythons_digit_limit_is_no_run(numbers: Store) -> None:
    """history(10**5000) and restore(run=10**5000) raised Python's ValueError from the
    message saying there is no such run."""
    from recordstore import RecordStoreError

    for call in (numbers.history, lambda run: numbers.restore(run=run)):
        with pytest.raises(RecordStoreError, match=r"^an integer of more than \d+ digits is no run number$"):
            call(10**5000)
        with pytest.raises(RecordStoreError, match=r"^no run -1 in this store$"):
            call(-1)
