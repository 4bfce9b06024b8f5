"""Queries over records: filter by domain, version and JSON paths; order; page; stream.

Every value is a bound parameter. A JSON path is parsed first: a plain path (names of
letters, digits and ``_``, and array indexes, like ``metadata.model`` or
``messages[0].role``) is rendered as a quoted SQL literal, which is what lets SQLite use
a JSON-path index; any other path is bound as a parameter; a path that cannot be
expressed is refused with :class:`QueryError`.
"""

from __future__ import annotations

import contextlib
import decimal
import functools
import operator
import re
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import BindParameter, Boolean, ColumnElement, LargeBinary, and_, case, false, func, literal_column, not_, or_, select, union_all
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.visitors import InternalTraversal

from . import jsoncodec
from .connections import INT_MAX
from .engine import refuse_if_closed, translate_errors
from .errors import QueryError, StoreError, checked, printable, shown
from .tables import files, indexes, records

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["OPERATORS", "Query", "Record", "json_path"]

OPERATORS = ("=", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "exists", "missing")

INFINITY = float("inf")

#: The largest array index looked up as it is (see _path_pieces). No array holds an
#: element there: SQLite's texts are shorter than 2**31 bytes, and each element of an
#: array takes two at least.
MAX_INDEX = 2**31 - 1

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# (ASCII digits alone: ``\d`` would also read a[٣] as a[3].)
_SEGMENT = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Record:
    """One stored record. ``data`` is its decoded JSON object; ``text`` the stored JSON
    (``payload``: the same, as read: its UTF-8 bytes, from SQLite)."""

    domain: str
    key: str
    version: int
    source: str
    #: The stored JSON as it was read: its UTF-8 bytes (from SQLite), or its text.
    payload: str | bytes = field(repr=False)

    @cached_property
    def text(self) -> str:
        """The stored JSON text, made from its bytes when first asked for: a huge
        record's (a str of up to 4 bytes a character) is made only if it is."""
        payload = self.payload
        return payload if isinstance(payload, str) else payload.decode("utf-8", "surrogateescape")

    @cached_property
    def data(self) -> dict[str, Any]:
        """The record as a dict, decoded from its stored JSON when first asked for (a
        :class:`StoreError` if an older recordstore stored a text this one cannot read)."""
        try:
            value = jsoncodec.decode(self.payload)
        except jsoncodec.JSONError as exc:
            # A text an older recordstore took (the first took numbers no double holds,
            # such as 1e-400), which this one refuses on import: ``text`` holds it, and
            # export writes it back as it is.
            raise StoreError(
                f"{self.domain} {printable(self.key)}: its stored payload cannot be read: {exc.reason} "
                "(an older recordstore stored it; export writes it back as it is)"
            ) from exc
        assert isinstance(value, dict)
        return value

    def as_dict(self) -> dict[str, Any]:
        """The record's domain, key, version, source file and data."""
        return {"domain": self.domain, "key": self.key, "version": self.version, "source": self.source, "data": self.data}


def _payload(engine: Engine) -> Any:
    """The payload column as records are read: on SQLite, its UTF-8 bytes (what orjson
    reads; a str of a huge record's text, mostly not ASCII, takes up to 4 bytes a
    character, and was encoded again to be decoded)."""
    if engine.dialect.name == "sqlite":
        return sql_cast(records.c.payload, LargeBinary)
    return records.c.payload


def json_path(path: str) -> tuple[str, bool]:
    """Turn ``a.b[0]`` into SQLite's ``$.a.b[0]``; the flag says it is plain (safe to
    render as a literal)."""
    pieces = _path_pieces(path)
    return "$" + "".join(sql for sql, _ in pieces), all(key is None for _, key in pieces)


def typed_path(sql_path: str) -> str:
    """A JSON path as a user types it (``status``, ``items[0].x``), from SQLite's form
    (``$.status``): what ``store index add`` and ``--where`` take."""
    return sql_path.removeprefix("$").removeprefix(".")


def _path_pieces(path: str) -> list[tuple[str, str | None]]:
    """The steps of a JSON path, each as SQLite's path syntax with, for a quoted key, the
    key itself (``None`` for a plain name or an index)."""
    if not isinstance(path, str) or not path:
        raise QueryError(f"a JSON path must be a non-empty string, not {path!r}")
    text = path[2:] if path.startswith("$.") else path
    if not text:
        raise QueryError(f"malformed JSON path {path!r}: it names no field")
    pos = 0
    parts: list[tuple[str, str | None]] = []
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if m is None or (pos > 0 and text[pos] not in ".[" ) or (pos == 0 and text[0] == "."):
            at = pos + len(path) - len(text)  # counted in the path as given, "$." included
            raise QueryError(f"malformed JSON path {path!r} at character {at + 1}{_quoting_hint(text, pos)}")
        name, index, bracketed, quoted = m.groups()
        if name is not None:
            parts.append(("." + name, None))
        elif index is not None:
            # SQLite reads an index into 32 bits: [4294967296] looked up [0]. No array
            # has an element past MAX_INDEX, so such an index is looked up as MAX_INDEX:
            # there is nothing there either (its digits are not read as a Python int
            # either: past 4,300, that raised ValueError).
            too_far = len(index.lstrip("0")) > len(str(MAX_INDEX)) or int(index) > MAX_INDEX
            parts.append((f"[{MAX_INDEX if too_far else int(index)}]", None))
        else:
            key = bracketed if bracketed is not None else quoted
            if '"' in key.replace('\\"', '"') or "\\" in key or any(ord(c) < 32 for c in key) or not jsoncodec.is_utf8(key):
                raise QueryError(f"JSON path {path!r}: keys with quotes, backslashes, control characters or lone surrogates cannot be queried")
            parts.append((f'."{key}"', key))
        pos = m.end()
    return parts


def _quoting_hint(text: str, pos: int) -> str:
    """How to write the key at ``pos`` of a path that a plain name cannot spell (``größe``,
    ``odd key``, ``a-b``, ``1st``): quoted, as ``["größe"]``; nothing when the path's own
    syntax is what is broken there (``a..b``, ``a[x]``)."""
    start = max(text.rfind(".", 0, pos), text.rfind("]", 0, pos)) + 1
    ends = [i for i in (text.find(".", pos), text.find("[", pos)) if i != -1]
    end = min(ends, default=len(text))
    key = text[start:end]
    if not key or _NAME.fullmatch(key) or any(c in key for c in '"\\[]') or any(ord(c) < 32 for c in key):
        return ""
    before = text[:start].removesuffix(".")
    return f"; a key other than a plain name (letters, digits and _, no digit first) is quoted: {before}[\"{key}\"]{text[end:]}"


def json_paths_served(engine: Engine) -> None:
    """Filters, orders and indexes on JSON paths use SQLite's JSON functions: refused,
    saying so, on another database (which serves the rest)."""
    if engine.dialect.name != "sqlite":
        raise QueryError(f"filters, orders and indexes on JSON paths need a SQLite store (this one is {engine.dialect.name})")


def path_expr(path: str) -> ColumnElement[Any]:
    """The value at ``path`` (as ``json_extract`` gives it)."""
    return _lookup(path)[0]


def _type_expr(path: str) -> ColumnElement[Any]:
    """The JSON type of the value at ``path`` (as ``json_type`` names it; NULL: none)."""
    return _lookup(path)[1]


def _lookup(path: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(value, type) at ``path`` in a record's payload. A quoted key is looked up by
    ``json_each``, which compares keys decoded, where this SQLite's path lookup compares
    them as the file wrote them (``"gr\\u00f6\\u00dfe"`` is not ``größe`` to it)."""
    pieces = _path_pieces(path)
    if all(key is None for _, key in pieces):
        sql_path: Any = literal_column("'$" + "".join(sql for sql, _ in pieces) + "'")
        return func.json_extract(records.c.payload, sql_path), func.json_type(records.c.payload, sql_path)
    if _labels_decoded():
        sql_path = "$" + "".join(sql for sql, _ in pieces)
        return func.json_extract(records.c.payload, sql_path), func.json_type(records.c.payload, sql_path)
    # One json_each a quoted key, joined in one subquery, each reading the value the one
    # before found (SQLite lets a table-valued function read the tables to its left).
    # Nested, a subquery a key inside the next one's json_each, 10 quoted keys
    # overflowed SQLite's parser ("parser stack overflow", a database error); a value
    # and a type a key, each holding both of the key before, doubled with every key, and
    # 50 never finished building.
    if sum(key is not None for _, key in pieces) > MAX_QUOTED:
        raise QueryError(f"JSON path {path!r}: a path names at most {MAX_QUOTED} quoted keys on this SQLite (a join of one table a key)")
    doc: ColumnElement[Any] = records.c.payload
    prefix = "$"
    joined: Any = None
    entries: Any = None
    for sql, key in pieces:
        if key is None:
            prefix += sql
            continue
        entries = func.json_each(doc, prefix).table_valued("key", "value", "type")
        found = entries.c.key == key
        joined = entries if joined is None else joined.join(entries, found)
        if joined is entries:
            first = found
        # Only an object or an array has anything inside (json_each of a string's text
        # would read it as JSON).
        doc = case((entries.c.type.in_(("object", "array")), entries.c.value))
        prefix = "$"
    assert entries is not None  # (a path of plain pieces is looked up by json_extract)
    if prefix == "$":  # the path ended with a quoted key
        value, kind = entries.c.value, entries.c.type
    else:
        value, kind = func.json_extract(doc, prefix), func.json_type(doc, prefix)
    return select(value).select_from(joined).where(first).scalar_subquery(), select(kind).select_from(joined).where(first).scalar_subquery()


#: The most quoted keys a path looked up by json_each may name: SQLite joins at most 64
#: tables (the subquery's own one aside).
MAX_QUOTED = 63


@functools.cache
def _labels_decoded() -> bool:
    """Whether this process's SQLite finds a key its JSON text wrote with escapes by the
    decoded name (newer versions do; 3.40, Debian 12's, does not)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        return conn.execute("""SELECT json_extract('{"\\u00e9":1}', '$."é"')""").fetchone()[0] == 1  # type: ignore[no-any-return]


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, decimal.Decimal):
        # As the number a record's text holds: SQLite reads an integer exactly, anything
        # else as the nearest double (bound as it was, 2**63 - 1 matched 2**63).
        if not value.is_finite():
            raise QueryError(f"{path}: {value} is not a JSON number and cannot be compared")
        if value == value.to_integral_value():
            if value.adjusted() >= 19:  # past 64 bits: refused as such, without making the integer
                # (int() of a Decimal is quadratic: Decimal("1e1000000") took 28 s.)
                raise QueryError(f"{path}: integer {_decimal_digits(value)} is outside the range SQLite can compare exactly")
            value = int(value)
        else:
            number = float(value)
            if number in (INFINITY, -INFINITY):
                # As import refuses such a number in a record and the command line as a
                # --where value: as infinity it would equal every integer past the doubles.
                raise QueryError(f"{path}: {jsoncodec.quoted_number(str(value))} is too large for a double")
            if not number and value:
                # 1e-400 would compare as 0 and match it: refused, as import refuses such a
                # number in a record and the command line as a --where value.
                raise QueryError(f"{path}: {value} is too small for a double (it would become 0)")
            value = number
    if value is not None and not isinstance(value, (str, int, float)):
        # A date, a UUID or bytes would match nothing (or fail as the query runs): JSON
        # has no such values, and the record holds its text.
        raise QueryError(f"{path}: compare with a scalar (string, number, true, false, null), not {type(value).__name__}")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_MAX - 1 <= value <= INT_MAX:
        # (Its digits cut short: str() refuses an integer past 4,300 digits, which a record may hold.)
        digits = jsoncodec.quoted_number(jsoncodec.int_text(value))
        raise QueryError(f"{path}: integer {digits} is outside the range SQLite can compare exactly")
    if isinstance(value, float) and value != value:  # SQLite binds NaN as NULL: nothing would match
        raise QueryError(f"{path}: NaN is not a JSON value and cannot be compared")
    if isinstance(value, float) and value in (INFINITY, -INFINITY):
        # SQLite compares a stored integer past the doubles' range as infinity: = inf
        # found 10**400, and < inf missed it (the command line refuses 1e400).
        raise QueryError(f"{path}: {value} is not a JSON value and cannot be compared")
    if isinstance(value, str) and ("\x00" in value or not jsoncodec.is_utf8(value)):
        # SQLite's JSON functions cut strings at NUL; lone surrogates cannot be bound.
        raise QueryError(f"{path}: strings holding NUL (\\u0000) or lone surrogates cannot be compared")
    return value


def _decimal_digits(value: decimal.Decimal) -> str:
    """An integral Decimal written out as :func:`jsoncodec.quoted_number` shows an
    integer (its first digits, and how many it has), from its own digits and exponent."""
    sign, digits, exponent = value.as_tuple()
    count = value.adjusted() + 1
    assert isinstance(exponent, int)
    head = "".join(map(str, digits[:count])) + "0" * min(max(exponent, 0), jsoncodec.NUMBER_SHOWN)
    text = ("-" if sign else "") + head[:count]
    return text if len(text) <= jsoncodec.NUMBER_SHOWN else f"{text[: jsoncodec.NUMBER_SHOWN]}… ({count} digits)"


def _count(n: int, what: str) -> int:
    """``n`` if SQLite can take it as a limit, an offset or a version."""
    return checked(what, n, int, least=0, most=INT_MAX, error=QueryError)


def condition(path: str, op: str, value: Any = None, *, bound_each: int | None = None) -> ColumnElement[bool]:
    """``path op value`` as SQL; an ``in`` list of up to ``bound_each`` values
    (``None``: BOUND_VALUES) is bound value by value, a longer one as one JSON array."""
    if not isinstance(op, str):
        raise QueryError(f"{path}: the operator must be a string (one of: {', '.join(OPERATORS)}), not {op!r}")
    op = op.lower().strip()
    if op not in OPERATORS:
        raise QueryError(f"unknown operator {op!r} (use one of: {', '.join(OPERATORS)})")
    if op in ("exists", "missing"):
        # No value, or true/false: "exists false" is "missing". Any other value is refused
        # rather than read as false.
        if value is not None and not isinstance(value, bool):
            raise QueryError(f"{path}: '{op}' takes no value (or true/false), not {jsoncodec.encode_compact(value)}")
        present = (op == "exists") == (value is not False)
        return _type_expr(path).is_not(None) if present else _type_expr(path).is_(None)
    if op in ("in", "not in"):
        if not isinstance(value, (Sequence, AbstractSet)) or isinstance(value, (str, bytes, bytearray)):
            raise QueryError(f"{path}: '{op}' needs a list, tuple or set of values, not {shown(value)}")
        values = [_scalar(v, path) for v in value]
        if any(isinstance(v, bool) or v is None for v in values):
            raise QueryError(f"{path}: '{op}' takes strings and numbers; use '=' for true, false and null")
        texts = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if not isinstance(v, str)]
        member = or_(
            *([and_(_typed(path, text=True), _member(path_expr(path), texts, bound_each))] if texts else []),
            *([and_(_typed(path, text=False), _member(path_expr(path), numbers, bound_each))] if numbers else []),
            false(),
        )
        return member if op == "in" else and_(_type_expr(path).is_not(None), not_(member))
    value = _scalar(value, path)
    if value is None or isinstance(value, bool):
        if op not in ("=", "==", "!="):
            raise QueryError(f"{path}: {jsoncodec.encode_compact(value)} can only be compared with = or !=")
        kind = "null" if value is None else ("true" if value else "false")
        typed = _type_expr(path) == kind
        return typed if op != "!=" else and_(_type_expr(path).is_not(None), _type_expr(path) != kind)
    compare = {
        "=": operator.eq,
        "==": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]
    # A string compares with strings only, a number with numbers only: SQLite reads true
    # as 1, and an object or an array as its JSON text.
    typed = _typed(path, text=isinstance(value, str))
    if op == "!=":
        return and_(_type_expr(path).is_not(None), not_(and_(typed, path_expr(path) == value)))
    return and_(typed, cast(ColumnElement[bool], compare(path_expr(path), value)))


#: An ``in`` list longer than this is bound as one JSON array, whose values json_each
#: gives: SQLite takes at most 32,766 bound values in a statement (250,000 in some
#: builds), and a query merged by version binds the list once a version.
BOUND_VALUES = 256


def _member(expr: ColumnElement[Any], values: list[Any], bound_each: int | None = None) -> ColumnElement[bool]:
    """``expr IN values``: strings or numbers, bound each, or, when there are many (and
    none is a float, whose text SQLite would read again), as one JSON array."""
    if len(values) <= (BOUND_VALUES if bound_each is None else bound_each) or any(isinstance(v, float) for v in values):
        return expr.in_(values)
    array = func.json_each(jsoncodec.encode_compact(values)).table_valued("value")
    return expr.in_(select(array.c.value))


def _typed(path: str, *, text: bool) -> ColumnElement[bool]:
    """Whether the value at ``path`` is a JSON string (``text``) or a number."""
    kind = _type_expr(path)
    return kind == "text" if text else or_(kind == "integer", kind == "real")


#: Conditions joined by AND in groups of at most this many, groups of groups beyond (see
#: all_of).
GROUP_CONDITIONS = 16


class _AllOf(ColumnElement[bool]):
    """Conditions joined by AND, in parentheses, that SQLAlchemy keeps as they are: it
    merges an ``and_()`` (grouped or not) into the AND that holds it."""

    __visit_name__ = "recordstore_all_of"
    inherit_cache = True
    _is_implicitly_boolean = True  # (else a WHERE compares it with 1: no term an index could serve)
    _traverse_internals = [("clauses", InternalTraversal.dp_clauseelement_tuple)]
    type = Boolean()

    def __init__(self, clauses: Sequence[ColumnElement[bool]]):
        self.clauses = tuple(clauses)


@compiles(_AllOf)
def _all_of_sql(element: _AllOf, compiler: Any, **kw: Any) -> str:
    return "(" + " AND ".join(compiler.process(c.self_group(against=operators.and_), **kw) for c in element.clauses) + ")"


def all_of(conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``conditions`` joined by AND, as a tree of groups of at most GROUP_CONDITIONS: SQLite
    parses ``a AND b AND c ...`` as a chain one level deeper a term and refuses an
    expression over 1,000 levels deep (SQLITE_MAX_EXPR_DEPTH), which some 300 ``!=``
    filters reached (a generic database error). Grouped, 100,000 conditions are 5 groups
    deep, and SQLite's planner still sees each condition as a term of the WHERE clause
    (parentheses make no node of their own), so an index serves a filter as before."""
    if len(conditions) <= GROUP_CONDITIONS:
        return and_(*conditions)
    step = GROUP_CONDITIONS
    while len(conditions) > step * GROUP_CONDITIONS:
        step *= GROUP_CONDITIONS
    return _AllOf([all_of(conditions[i : i + step]) for i in range(0, len(conditions), step)])


def key_paths(key: str) -> set[str]:
    """The paths of the files a record with ``key`` may be in: a key is its file's path,
    then ``:LINE`` (JSON lines) or ``[INDEX]`` (arrays), and a path may hold ``:`` or
    ``[`` itself."""
    paths = {key}
    if ":" in key:
        paths.add(key.rpartition(":")[0])
    if key.endswith("]") and "[" in key:
        paths.add(key[: key.rfind("[")])
    return paths


#: The most terms order_by() calls may give a query (the key is two: file and place;
#: a path one): with the record's id last, SQLite's 2,000 (SQLITE_MAX_COLUMN), beyond
#: which its "too many terms in ORDER BY clause" came as a generic database error.
MAX_ORDER_TERMS = 1999

#: A query of more conditions than this is not merged by version (see Query._statement_in):
#: each arm binds the values of every condition again, and SQLite binds at most 32,766
#: in a statement (its default build): 600 conditions on a domain at 32 versions failed.
MERGED_CONDITIONS = 64

#: A domain whose records are stored at more versions than this is read sorted as a whole
#: (see Query._statement_in): one arm of the merge per version.
MERGED_VERSIONS = 32

#: The most values a query's statement binds: within SQLite's default 32,766, with room
#: for the domain, version, limit and offset it binds besides its conditions. Past it
#: ("too many SQL variables", a generic database error), a query's further ``in`` lists
#: are bound as JSON arrays (1,000 lists of 256 values were 256,000), and a merge by
#: version takes fewer arms, each binding every condition's values again (four lists of
#: 256 values on a domain at 32 versions were 32,768).
STATEMENT_BOUND_VALUES = 30_000


def _bound_values(conditions: Sequence[ColumnElement[bool]]) -> int:
    """How many values ``conditions`` bind when run: one a bound parameter, and one for
    each value of an ``in`` list bound value by value."""
    n = 0
    for cond in conditions:
        for element in visitors.iterate(cond):
            if isinstance(element, BindParameter):
                n += len(element.value) if element.expanding and isinstance(element.value, Sequence) else 1
    return n


def key_slots(key: str) -> dict[str, int | None]:
    """Each file a record with ``key`` may be in (see :func:`key_paths`), with the last
    place (position) it can hold there: the record on line N of a JSON-lines file is in
    its Nth slot at most (blank lines take none), an array's element I in its (I+1)th;
    ``None``: anywhere."""
    slots: dict[str, int | None] = dict.fromkeys(key_paths(key))
    path, _, number = key.rpartition(":")
    line = _place(number)
    if path in slots and line is not None and line >= 1:
        slots[path] = line - 1
    if key.endswith("]") and "[" in key:
        path, index = key[: key.rfind("[")], key[key.rfind("[") + 1 : -1]
        place = _place(index)
        if place is not None and path != key.rpartition(":")[0]:
            slots[path] = place
    return slots


def _place(digits: str) -> int | None:
    """``digits`` as a line or an index, when a record's place can be that far: ``None``
    when they are not ASCII digits or past INT_MAX (bound as a place, a key's line of 20
    digits raised OverflowError, out of the error tree, and one of 5,000 ValueError: such
    a record is looked for anywhere in its file, where it is not)."""
    if not (digits.isascii() and digits.isdigit()) or len(digits.lstrip("0")) > len(str(INT_MAX)):
        return None
    number = int(digits)
    return number if number <= INT_MAX else None


def _place_number(key: str, path: str) -> int | None:
    """The line of a JSON-lines record of the file ``path`` (``path:LINE``), or its index
    plus one in an array (``path[INDEX]``): a number at least one more than its place;
    ``None`` for a key of another form."""
    rest = key[len(path) :] if key.startswith(path) else ""
    if rest[:1] == ":" and rest[1:].isascii() and rest[1:].isdigit():
        return int(rest[1:])
    if rest[:1] == "[" and rest[-1:] == "]" and rest[1:-1].isascii() and rest[1:-1].isdigit():
        return int(rest[1:-1]) + 1
    return None


@dataclass(frozen=True)
class Query:
    """An immutable query over one domain's records; iterate it to stream results."""

    engine: Engine
    domain: str | None
    conditions: tuple[ColumnElement[bool], ...] = ()
    order: tuple[tuple[str, bool], ...] = ()
    _limit: int | None = None
    _offset: int = 0
    batch: int = field(default=200)
    #: The plain JSON paths filtered on (SQLite's form), and whether a key is looked up:
    #: what an index may serve better than reading the domain in id order.
    _paths: tuple[str, ...] = ()
    _by_key: bool = False
    #: The values the conditions bind (see STATEMENT_BOUND_VALUES).
    _bound: int = 0

    def where(self, path: str, op: str = "=", value: Any = None) -> Query:
        """Only records whose JSON ``path`` (``metadata.model``, ``messages[0].role``,
        ``["odd key"]``) compares with ``value`` by ``op``: one of ``= != < <= > >=``, ``in``
        and ``not in`` (with a list, tuple or set), ``exists`` and ``missing`` (no value).
        A number matches numbers and a string strings; ``True``, ``False`` and ``None``
        take ``=`` and ``!=`` only. Without ``op`` and ``value``, the path must hold
        ``null``. A bad path, operator or value is a :class:`QueryError` here."""
        json_paths_served(self.engine)
        found = condition(path, op, value)
        bound = _bound_values([found])
        if self._bound + bound > STATEMENT_BOUND_VALUES:  # an in list bound value by value: as an array
            found = condition(path, op, value, bound_each=0)
            bound = _bound_values([found])
        sql_path, plain = json_path(path)
        return replace(
            self, conditions=(*self.conditions, found), _paths=(*self._paths, *([sql_path] if plain else [])),
            _bound=self._bound + bound,
        )

    def version(self, version: int) -> Query:
        """Only records stored at schema version ``version``."""
        return replace(self, conditions=(*self.conditions, records.c.version == _count(version, "version")), _bound=self._bound + 1)

    def key(self, key: str) -> Query:
        """Only the record with ``key`` (``sessions/a.json``, ``events.jsonl:3``, ``data.json[0]``)."""
        checked("key", key, str, error=QueryError)
        if not jsoncodec.is_utf8(key):  # a file name that is not UTF-8: the store keeps none
            return replace(self, conditions=(*self.conditions, false()))
        # Keys have no index of their own: the file's path (unique, indexed) narrows the
        # lookup to that file's records first.
        in_file = files.c.path.in_(sorted(key_paths(key)))
        return replace(self, conditions=(*self.conditions, in_file, records.c.key == key), _by_key=True, _bound=self._bound + _bound_values([in_file]) + 1)

    def find(self, key: str) -> Record | None:
        """The record with ``key`` among those the query matches (its order, limit and
        offset aside), or ``None``: what ``key(key).first()`` gives, without reading
        every record of the file, which that does (a JSON-lines file of a million lines:
        0.15 s a lookup). A file's records are in the order of their lines (or indexes),
        each line at least one place on: the record on line N is at most at place N - 1
        (see key_slots), and the record found there, on line M, says how far back it can
        be (M - N places). So a lookup reads the records between, mostly none."""
        checked("key", key, str, error=QueryError)
        if not jsoncodec.is_utf8(key):  # a file name that is not UTF-8: the store keeps none
            return None
        columns = [records.c.domain, records.c.key, records.c.version, files.c.path, _payload(self.engine), records.c.id]
        in_file = records.join(files, files.c.id == records.c.file_id)
        found = []
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            for path, last in sorted(key_slots(key).items()):
                stmt = self._select(columns).where(files.c.path == path, records.c.key == key)
                if last is not None:
                    probe = conn.execute(
                        select(records.c.position, records.c.key)
                        .select_from(in_file)
                        .where(files.c.path == path, records.c.position <= last)
                        .order_by(records.c.position.desc())
                        .limit(1)
                    ).first()
                    number = None if probe is None else _place_number(probe.key, path)
                    if probe is None or (number is not None and number <= last):
                        continue  # the file's records end before that line (or it has none)
                    lowest = 0 if number is None else probe.position - (number - last - 1)
                    stmt = stmt.where(records.c.position.between(lowest, last))
                row = conn.execute(stmt.order_by(records.c.id).limit(1)).first()
                if row is not None:
                    found.append(row)
        if not found:
            return None
        domain, key, version, source, payload, _ = min(found, key=lambda row: row.id)  # as first() would
        return Record(domain, key, version, source, payload)

    def order_by(self, path: str = "key", *, descending: bool = False) -> Query:
        """Order by ``"key"`` (file by file, each in its own order) or by a JSON path
        (``["key"]`` for a field named key); called again, a tie-breaker. A record with
        nothing or null at the path sorts as SQLite's NULL: first, or last descending."""
        checked("descending", descending, bool, error=QueryError)
        if path != "key":
            json_paths_served(self.engine)
            json_path(path)
        order = (*self.order, (path, descending))
        if sum(2 if p == "key" else 1 for p, _ in order) > MAX_ORDER_TERMS:
            raise QueryError(
                f"a query orders by at most {MAX_ORDER_TERMS:,} terms, the key counting as two and a path as one "
                "(SQLite sorts by at most 2,000, the record's id last)"
            )
        return replace(self, order=order)

    def limit(self, n: int | None) -> Query:
        """At most ``n`` records (``None``: all)."""
        return replace(self, _limit=None if n is None else _count(n, "limit"))

    def offset(self, n: int) -> Query:
        """Skip the first ``n`` records matched."""
        return replace(self, _offset=_count(n, "offset"))

    def _select(self, columns: Sequence[Any], *, with_files: bool = True) -> Any:
        """The records the domain and filters match, joined to their files (every record
        has one) unless ``with_files`` is False and no filter names a file."""
        source = records.join(files, files.c.id == records.c.file_id) if with_files or self._by_key else records
        stmt = select(*columns).select_from(source)
        if self.domain is not None:
            stmt = stmt.where(records.c.domain == self.domain)
        if self.conditions:
            stmt = stmt.where(all_of(self.conditions))
        return stmt

    def statement(self) -> Any:
        """The SQLAlchemy ``SELECT`` of the query (domain, key, version, source, payload).
        Iterating runs it as it is or, ordered by id alone within a domain, one stored
        version at a time, merged: the same rows in the same order (the payloads read
        as their UTF-8 bytes, on SQLite)."""
        return self._statement(records.c.payload)

    def _statement(self, payload: Any) -> Any:
        stmt = self._select([records.c.domain, records.c.key, records.c.version, files.c.path, payload])
        for path, desc in self.order:
            # By key: by file, then by place in it (line 2 before line 10, as the file
            # has them, where the keys' text would put "…:10" first).
            columns: list[Any] = [files.c.path, records.c.position] if path == "key" else [path_expr(path)]
            stmt = stmt.order_by(*(col.desc() if desc else col for col in columns))
        return self._paged(stmt.order_by(records.c.id))

    def _paged(self, stmt: Any) -> Any:
        """``stmt`` with the query's limit and offset."""
        if self._limit is not None:
            stmt = stmt.limit(self._limit)
        return stmt.offset(self._offset) if self._offset else stmt

    def _statement_in(self, conn: Any) -> Any:
        """What iterating runs: :meth:`statement`, or, ordered by id alone within a domain,
        the same rows one stored version at a time, merged in id order. The records'
        (domain, version, id) index gives each version's in id order, where the domain's
        as a whole had to be sorted first, payloads and all: the first page of a domain
        of a million records waited for that sort (0.3 s, and seconds past an offset or
        behind a filter), writing every payload to a temporary file on the way."""
        payload = _payload(self.engine)
        if self.order and self._limit is not None and self._offset > self._limit:
            return self._page(payload)
        if self.order or self.domain is None or self._by_key:
            return self._statement(payload)  # a sort of all the matches, in id order from the table itself, or one file's records
        if len(self.conditions) > MERGED_CONDITIONS:
            return self._statement(payload)  # each arm would bind every condition's values again
        if self._paths and conn.execute(select(indexes.c.path).where(indexes.c.path.in_(self._paths)).limit(1)).first():
            return self._statement(payload)  # an index on a path filtered on finds the matches (any domain's serves)
        # Each arm binds every condition's values again: no more arms than SQLite binds.
        most = min(MERGED_VERSIONS, STATEMENT_BOUND_VALUES // max(1, self._bound))
        versions: list[int] = []
        while len(versions) <= most:  # each one seek into the index
            above = (records.c.version > versions[-1],) if versions else ()
            found = conn.execute(
                select(func.min(records.c.version)).where(records.c.domain == self.domain, *above)
            ).scalar()
            if found is None:
                break
            versions.append(found)
        if not versions or len(versions) > most:
            return self._statement(payload)
        columns = [records.c.domain, records.c.key, records.c.version, files.c.path, payload]
        arms = [self._select([*columns, records.c.id.label("rid")]).where(records.c.version == v) for v in versions]
        stmt: Any = union_all(*arms) if len(arms) > 1 else arms[0]
        return self._paged(stmt.order_by(stmt.selected_columns.rid))

    def _page(self, payload: Any) -> Any:
        """A page past an offset, ordered by key or by paths: the matches' ids sorted by
        what orders them, the page taken from those, and only its records read whole.
        Sorted with their payloads, the records of the whole offset were carried through
        the sort (100,000 sessions of 4 kB, --offset 50000 --limit 5: 3.1 s by created_at,
        1.2 s by key). A first page is left to SQLite, which keeps no more than the page
        while it sorts (and reads the ids again here: slower for small records)."""
        keys: list[tuple[Any, bool]] = []
        for path, desc in self.order:
            keys += [(col, desc) for col in ([files.c.path, records.c.position] if path == "key" else [path_expr(path)])]
        labels = [col.label(f"k{i}") for i, (col, _) in enumerate(keys)]
        inner = self._select([records.c.id.label("rid"), *labels])
        inner = inner.order_by(*(label.desc() if desc else label for label, (_, desc) in zip(labels, keys)), records.c.id)
        page = self._paged(inner).subquery("page")
        columns = [page.c[f"k{i}"] for i in range(len(keys))]
        return (
            select(records.c.domain, records.c.key, records.c.version, files.c.path, payload)
            .select_from(page.join(records, records.c.id == page.c.rid).join(files, files.c.id == records.c.file_id))
            .order_by(*(col.desc() if desc else col for col, (_, desc) in zip(columns, keys)), page.c.rid)
        )

    def __iter__(self) -> Iterator[Record]:
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            stmt = self._statement_in(conn)
            result = conn.execution_options(stream_results=True, yield_per=self.batch).execute(stmt)
            for domain, key, version, source, payload, *_ in result:
                yield Record(domain, key, version, source, payload)
                # Closed (Store.close) while the caller held this record: refused at once,
                # not after the records fetched ahead (a batch).
                refuse_if_closed(self.engine)

    def all(self) -> list[Record]:
        """Every record matched, in a list (iterate the query itself to stream them)."""
        return list(self)

    def first(self) -> Record | None:
        """The first record matched (within ``offset`` and ``limit``), or ``None``."""
        # limit(1) of a query limited to 0 records would be a page of one.
        for record in self.limit(1 if self._limit is None else min(1, self._limit)):
            return record
        return None

    def count(self) -> int:
        """How many records the domain, version and filters match, whatever ``limit``
        and ``offset`` (the total a page is taken from)."""
        with translate_errors(), self.engine.connect() as conn:
            # Counted from the records alone, without their files: a million in 0.04 s,
            # not 0.18 s.
            sub = self._select([records.c.id], with_files=False).subquery()
            return int(conn.execute(select(func.count()).select_from(sub)).scalar() or 0)


def index_ddl(path: str) -> tuple[str, str, str]:
    """(index name, SQLite path, ``CREATE INDEX``) for lookups on ``path`` by domain."""
    import hashlib

    sql_path, plain = json_path(path)
    if not plain:
        raise QueryError(f"only plain paths (names of letters, digits and _, and [N]) can be indexed, not {path!r}")
    name = "ix_json_" + hashlib.sha1(sql_path.encode()).hexdigest()[:12]
    ddl = f"CREATE INDEX IF NOT EXISTS {name} ON records (domain, json_extract(payload, '{sql_path}'))"
    return name, sql_path, ddl
