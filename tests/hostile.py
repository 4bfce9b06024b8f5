"""The hostile-input corpus, generated (nothing is checked in).

Every bad file is written next to good ones inside a DeepSeek-layout home
(``DEEPSEEK_LAYOUT.md``), so a test can check at once that the bad one is reported
and that everything beside it still goes in. The pieces:

* :func:`build_home` writes the good files and returns what they hold;
* :data:`CASES` is the case table: one :class:`Case` per hostile file (or group of
  files), with the exact problems it must produce and the records it must yield;
* the ``write_*`` helpers stream the heavy variants (a 1 GB JSON-lines file, a 200 MB
  array, 100,000 files) to disk without holding them in memory.

The project's decisions the table encodes: duplicate keys and NaN/Infinity are refused,
and so are numbers no double holds (too large: Infinity; too small: 0), while integers of
any size are kept exactly; a UTF-8 BOM starting a file is accepted and kept; lone
surrogate escapes are accepted and kept exactly; a missing ``schema_version`` is version
1; a ``schema_version`` must be a positive integer, and one above the domain's current
version is refused as newer.

A refusal names the file's line: for a JSON line, the file names the line and a syntax
error's reason gives its column alone (``:2: invalid JSON: Expecting value at column 1``);
for an object file or an array, the reason's ``line N`` is the file's line too.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TASKS = "tasks/tasks"
EVENTS = "tasks/runtime/events"
THREADS = "tasks/runtime/threads"
SESSIONS = "sessions"

DEEP = 100_000  # nesting depth of the "deep" cases
BIG = 2**70
#: Integers beyond Python's limit on int(str) and str(int) (4,300 digits by default).
DIGITS_5000 = b"8" + b"0123456789" * 499 + b"123456789"
DIGITS_20000 = b"9" + b"9876543210" * 1999 + b"876543210"
assert len(DIGITS_5000) == 5000 and len(DIGITS_20000) == 20000


# --------------------------------------------------------------------------- good records


def pretty(value: object) -> bytes:
    """The application's pretty style: 2-space indent, UTF-8, no trailing newline."""
    return json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8")


def compact(value: object) -> bytes:
    """The application's JSON-lines style: no spaces, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def task(ident: str, version: int | None = 2, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {}
    if version is not None:
        record["schema_version"] = version
    record.update({"id": ident, "prompt": f"prompt of {ident}", "status": "completed"})
    record.update(extra)
    return record


def event(seq: int, thread: str = "thr_good", **extra: object) -> dict[str, object]:
    record: dict[str, object] = {"schema_version": 2, "seq": seq, "thread_id": thread, "event": "item.started"}
    record.update(extra)
    return record


@dataclass
class Home:
    """A home and what it holds: ``records`` maps each key that must be imported to
    (domain, exact stored text); ``exact`` maps each file that export must give back
    byte for byte to its bytes; ``skipped`` counts files in no domain."""

    root: Path
    records: dict[str, tuple[str, str]] = field(default_factory=dict)
    exact: dict[str, bytes] = field(default_factory=dict)
    skipped: int = 0

    def add(self, relpath: str, data: bytes, domain: str | None, keys: list[str] | None = None) -> Path:
        """Write ``data`` to ``relpath``. By default the whole file is one good record
        whose text is ``data`` (BOM and surrounding whitespace aside); ``keys=[]`` means
        the caller registers what the file holds."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if domain is None:
            self.skipped += 1
        elif keys is None:
            self.records[relpath] = (domain, data.decode("utf-8").lstrip("\ufeff").strip())
            self.exact[relpath] = data
        return path

    def count(self, domain: str) -> int:
        return sum(1 for d, _ in self.records.values() if d == domain)

    def domains(self) -> set[str]:
        return {d for d, _ in self.records.values()}


def build_home(root: Path) -> Home:
    """Good files of three domains and one file in no domain."""
    home = Home(root)
    for ident in ("task_good_1", "task_good_2"):
        home.add(f"{TASKS}/{ident}.json", pretty(task(ident)), "task")
    home.add(f"{TASKS}/task_legacy.json", pretty(task("task_legacy", version=None)), "task")
    home.add(f"{THREADS}/thr_good.json", pretty({"schema_version": 2, "id": "thr_good", "archived": False}), "runtime")
    lines = [compact(event(seq)) for seq in (1, 2, 3)]
    add_lines(home, f"{EVENTS}/thr_good.jsonl", lines, good=[1, 2, 3])
    session = {"schema_version": 1, "metadata": {"id": "s1", "title": "Fix the test ✓"}, "messages": []}
    home.add(f"{SESSIONS}/s1.json", pretty(session), "session")
    home.add("tasks/queue.json", b'{"queue": []}', None)
    return home


def add_lines(home: Home, relpath: str, lines: list[bytes], good: list[int], domain: str = "runtime") -> None:
    """A JSON-lines file; ``good`` are the (1-based) line numbers that must be imported.
    Its export gives back every line as it was, on the same line: the good ones, the
    refused ones as the store kept them, and the blank ones."""
    data = b"".join(line + b"\n" for line in lines)
    home.add(relpath, data, domain, keys=[])
    for n in good:
        home.records[f"{relpath}:{n}"] = (domain, lines[n - 1].decode("utf-8"))
    home.exact[relpath] = data


# --------------------------------------------------------------------------- the case table


@dataclass(frozen=True)
class Problem:
    """One expected problem: where (as shown), which line, and a regex for the reason."""

    path: str
    line: int | None
    reason: str

    def matches(self, text: str) -> bool:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        prefix = where + ": "
        return text.startswith(prefix) and re.search(self.reason, text[len(prefix) :]) is not None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: /{self.reason}/"


@dataclass(frozen=True)
class Case:
    """One hostile input. ``build`` writes it into a home (registering the good records
    it holds) and returns the problems the import must report, exactly."""

    id: str
    kind: str  # the case class, for the report
    outcome: str  # "refused" or "accepted": what the table promises
    build: Callable[[Home], list[Problem]]
    exports_identically: bool = False  # accepted cases whose bytes must come back exactly

    def __repr__(self) -> str:
        return self.id


CASES: list[Case] = []


def _case(case: Case) -> None:
    assert all(c.id != case.id for c in CASES), case.id
    CASES.append(case)


def _bad_file(home: Home, ident: str, data: bytes, reason: str, line: int | None) -> list[Problem]:
    """A one-record file refused: the store keeps its text, and export writes it back."""
    rel = f"{TASKS}/{ident}.json"
    home.add(rel, data, "task", keys=[])
    home.exact[rel] = data
    return [Problem(rel, line, reason)]


def _bad_line(home: Home, ident: str, line: bytes, reason: str) -> list[Problem]:
    assert b"\n" not in line
    rel = f"{EVENTS}/{ident}.jsonl"
    add_lines(home, rel, [compact(event(1, ident)), line, compact(event(3, ident))], good=[1, 3])
    return [Problem(rel, 2, reason)]


def refused_file(ident: str, kind: str, data: bytes, reason: str, line: int | None = 1) -> None:
    """A task file (one object expected) that must be refused as a whole."""
    _case(Case(f"file-{ident}", kind, "refused", lambda home: _bad_file(home, ident, data, reason, line)))


def refused_line(ident: str, kind: str, line: bytes, reason: str) -> None:
    """A bad line 2 between two good lines of a runtime events file."""
    _case(Case(f"line-{ident}", kind, "refused", lambda home: _bad_line(home, ident, line, reason)))


def refused_both(
    ident: str, kind: str, data: bytes, reason: str, file_line: int | None = 1, line_data: bytes | None = None
) -> None:
    """The same bad text twice: as a task file, and as line 2 of a runtime events file."""

    def build(home: Home) -> list[Problem]:
        problems = _bad_file(home, ident, data, reason, file_line)
        return problems + _bad_line(home, ident, data if line_data is None else line_data, reason)

    _case(Case(ident, kind, "refused", build))


def accepted_file(ident: str, kind: str, data: bytes, rel: str | None = None, case_id: str | None = None) -> None:
    """A one-record task file that must be imported, its text kept exactly."""

    def build(home: Home) -> list[Problem]:
        home.add(rel or f"{TASKS}/{ident}.json", data, "task")
        return []

    _case(Case(case_id or f"file-{ident}", kind, "accepted", build, exports_identically=True))


def accepted_both(ident: str, kind: str, value: bytes) -> None:
    """``value`` (one line of JSON) as a task file and as line 2 of an events file."""

    def build(home: Home) -> list[Problem]:
        home.add(f"{TASKS}/{ident}.json", value, "task")
        rel = f"{EVENTS}/{ident}.jsonl"
        add_lines(home, rel, [compact(event(1, ident)), value, compact(event(3, ident))], good=[1, 2, 3])
        return []

    _case(Case(ident, kind, "accepted", build, exports_identically=True))


def custom(ident: str, kind: str, outcome: str, *, exports: bool = False) -> Callable[..., None]:
    def register(build: Callable[[Home], list[Problem]]) -> None:
        _case(Case(ident, kind, outcome, build, exports_identically=exports))

    return register


# ---- broken JSON

INVALID = r"^invalid JSON: "
refused_both("truncated", "truncated JSON", b'{"schema_version": 2, "id": "t", "prompt": "ab', INVALID + "Unterminated string")
refused_both("truncated-key", "truncated JSON", b'{"schema_version": 2, "id"', INVALID + "Expecting ':' delimiter")
refused_both("truncated-comma", "truncated JSON", b'{"schema_version": 2,', INVALID + "Expecting property name")
refused_both("truncated-open", "truncated JSON", b"{", INVALID + "Expecting property name")
refused_both("trailing-comma", "truncated JSON", b'{"schema_version": 2, "id": "x",}', INVALID + "Expecting property name")
refused_file(
    "truncated-pretty",
    "truncated JSON",
    b'{\n  "schema_version": 2,\n  "id": "task_cut",\n  "prompt": "cut here',
    INVALID + r"Unterminated string starting at line 4 column 13$",
    line=4,
)
refused_both("trailing-garbage", "trailing garbage", b'{"schema_version": 2, "id": "x"} garbage', INVALID + "Extra data")
refused_both("trailing-object", "trailing garbage", b'{"schema_version": 2}{"schema_version": 2}', INVALID + "Extra data")
refused_both("trailing-bracket", "trailing garbage", b'{"schema_version": 2}]', INVALID + "Extra data")
refused_both("not-json", "trailing garbage", b"schema_version = 2", INVALID + "Expecting value")
# A JSON line's reason gives the column alone: the line is the file's, named before it.
refused_line("column-expecting-value", "truncated JSON", b"nul", INVALID + "Expecting value at column 1$")
refused_line("column-extra-data", "trailing garbage", b'{"seq":2} x', INVALID + "Extra data at column 11$")
refused_line(
    "column-unterminated", "truncated JSON", b'{"seq":2,"id":"ab', INVALID + "Unterminated string starting at column 15$"
)
refused_line(
    "column-control-character",
    "NUL bytes",
    b'{"seq":2,"id":"a\x00b"}',
    INVALID + "Invalid control character at column 17$",
)

# ---- empty

refused_file("empty", "empty file", b"", r"^empty file", line=None)
refused_file("whitespace", "empty file", b" \n\t\r\n  ", r"^empty file", line=None)
refused_file("only-bom", "empty file", b"\xef\xbb\xbf", r"^empty file", line=None)


@custom("line-empty-file", "empty file", "accepted", exports=True)
def _empty_lines_file(home: Home) -> list[Problem]:
    # Deliberate: a JSON-lines file with no lines holds no records (blank lines too);
    # an empty one is written back empty.
    home.add(f"{EVENTS}/empty.jsonl", b"", "runtime", keys=[])
    home.exact[f"{EVENTS}/empty.jsonl"] = b""
    add_lines(home, f"{EVENTS}/blanks.jsonl", [compact(event(1, "blanks")), b"", b"  ", compact(event(4, "blanks"))], good=[1, 4])
    return []


# ---- byte order marks

BOM = b"\xef\xbb\xbf"
accepted_file("bom", "UTF-8 BOM", BOM + pretty(task("task_bom")))


@custom("file-bom-array", "UTF-8 BOM", "accepted", exports=True)
def _bom_array(home: Home) -> list[Problem]:
    rel = f"{TASKS}/bom_array.json"
    elements = [pretty(task("task_bom_a")), pretty(task("task_bom_b"))]
    data = BOM + b"[\n" + b",\n".join(elements) + b"\n]"
    home.add(rel, data, "task", keys=[])
    for i, e in enumerate(elements):
        home.records[f"{rel}[{i}]"] = ("task", e.decode("utf-8"))
    home.exact[rel] = data
    return []


@custom("line-bom-first", "UTF-8 BOM", "accepted", exports=True)
def _bom_lines(home: Home) -> list[Problem]:
    rel = f"{EVENTS}/bom.jsonl"
    lines = [compact(event(1, "bom")), compact(event(2, "bom"))]
    data = BOM + lines[0] + b"\n" + lines[1] + b"\n"
    home.add(rel, data, "runtime", keys=[])
    home.records[f"{rel}:1"] = ("runtime", lines[0].decode())
    home.records[f"{rel}:2"] = ("runtime", lines[1].decode())
    home.exact[rel] = data
    return []


refused_line("bom-mid-file", "UTF-8 BOM", BOM + compact(event(2)), r"byte order mark")

# ---- encodings and bytes

refused_both("invalid-utf8", "invalid UTF-8", b'{"schema_version": 2, "id": "caf\xe9"}', r"^invalid UTF-8 at byte \d+$")
refused_both("overlong-utf8", "invalid UTF-8", b'{"schema_version": 2, "id": "\xc0\xaf"}', r"^invalid UTF-8 at byte \d+$")
refused_both(
    "utf8-encoded-surrogate", "invalid UTF-8", b'{"schema_version": 2, "id": "\xed\xa0\x80"}', r"^invalid UTF-8 at byte \d+$"
)
refused_both("latin1-key", "invalid UTF-8", b'{"schema_version": 2, "\xff": 1}', r"^invalid UTF-8 at byte \d+$")
refused_file(
    "invalid-utf8-line-3",
    "invalid UTF-8",
    b'{\n  "schema_version": 2,\n  "id": "\xff"\n}',
    r"^invalid UTF-8 at byte 34$",
    line=3,
)
refused_both(
    "nul-in-string",
    "NUL bytes",
    b'{"schema_version": 2, "id": "a\x00b"}',
    INVALID + "Invalid control character at (line 1 )?column 31$",  # the file's line; a JSON line's column
)
refused_both("nul-after", "NUL bytes", b'{"schema_version": 2, "id": "x"}\x00', INVALID + "Extra data")
refused_both("nul-only", "NUL bytes", b"\x00\x00\x00\x00", INVALID + "Expecting value")
refused_both("nul-before", "NUL bytes", b'\x00{"schema_version": 2}', INVALID + "Expecting value")
accepted_both("nul-escaped", "NUL bytes", b'{"schema_version":2,"id":"a\\u0000b"}')

# ---- lone surrogates (legal escapes, not Unicode): accepted and kept exactly

for _name, _esc in [("high", b"\\ud800"), ("low", b"\\udfff"), ("reversed", b"\\udc00\\ud800"), ("pair", b"\\ud83d\\ude00")]:
    accepted_both(f"surrogate-{_name}", "lone surrogates", b'{"schema_version":2,"id":"x' + _esc + b'y","seq":7}')
accepted_both("surrogate-key", "lone surrogates", b'{"schema_version":2,"\\ud800":"key is a lone surrogate"}')
accepted_both("surrogate-upper-hex", "lone surrogates", b'{"schema_version":2,"id":"\\uDBFF"}')

# ---- NaN and Infinity: refused

for _name, _lit in [("nan", b"NaN"), ("infinity", b"Infinity"), ("minus-infinity", b"-Infinity")]:
    _text = b'{"schema_version": 2, "cost": ' + _lit + b"}"
    refused_both(_name, "NaN/Infinity", _text, "^" + re.escape(_lit.decode()) + " is not valid JSON$")
refused_both("nan-nested", "NaN/Infinity", b'{"schema_version": 2, "xs": [1, [NaN]]}', "^NaN is not valid JSON$")
refused_both("nan-lowercase", "NaN/Infinity", b'{"schema_version": 2, "cost": nan}', INVALID + "Expecting value")
refused_both(
    "huge-float",
    "NaN/Infinity",
    b'{"schema_version": 2, "cost": 1e999}',
    r"^number -?1e999 is too large for a double$",
    line_data=b'{"schema_version": 2, "cost": -1e999}',
)

# ---- numbers a double holds only as 0 (refused, as Infinity is), and ones it holds

refused_both(
    "tiny-float",
    "numbers beyond a double",
    b'{"schema_version": 2, "cost": 1e-400}',
    r"^number -?1e-400 is too small for a double \(it would become 0\)$",
    line_data=b'{"schema_version": 2, "cost": -1e-400}',
)
refused_both(
    "tiny-float-rounds-to-0",
    "numbers beyond a double",
    b'{"schema_version": 2, "cost": 0.00002e-319}',  # 2e-324: below half the least subnormal
    r"^number 0\.00002e-319 is too small for a double \(it would become 0\)$",
)
accepted_both("zero-floats", "numbers beyond a double", b'{"schema_version":2,"z":[0,-0,0.0,-0.0,0e5,0E-5,0.000e-999]}')
accepted_both("subnormal-floats", "numbers beyond a double", b'{"schema_version":2,"least":5e-324,"neg":-5e-324,"up":3e-324}')

# ---- integers beyond Python's digit limit: kept exactly

accepted_both("int-5000-digits", "huge integers", b'{"schema_version":2,"n":' + DIGITS_5000 + b"}")
accepted_both(
    "int-20000-digits-nested",
    "huge integers",
    b'{"schema_version":2,"xs":[1,-' + DIGITS_20000 + b',{"n":-' + DIGITS_5000 + b"}]}",
)
accepted_file(
    "int-20000-digits-pretty", "huge integers", b'{\n  "schema_version": 2,\n  "n": [\n    ' + DIGITS_20000 + b"\n  ]\n}"
)
refused_both(
    "version-5000-digits",
    "huge integers",
    b'{"schema_version": ' + DIGITS_5000 + b', "id": "v"}',
    r"^schema_version 80123456789012345678\.\.\. \(5000 digits\) is newer than current version 2 of domain '(task|runtime)'$",
    None,
)
refused_both(
    "version-minus-5000-digits",
    "huge integers",
    b'{"schema_version": -' + DIGITS_5000 + b', "id": "v"}',
    r"^schema_version must be a positive integer, not -80123456789012345678\.\.\. \(5000 digits\)$",
    None,
)

# ---- duplicate keys: refused, naming the key

for _ident, _text, _key in [
    ("dup-top", b'{"schema_version": 2, "id": "a", "id": "b"}', "id"),
    ("dup-same-value", b'{"schema_version": 2, "id": "a", "id": "a"}', "id"),
    ("dup-version", b'{"schema_version": 1, "schema_version": 2}', "schema_version"),
    ("dup-nested", b'{"schema_version": 2, "o": {"k": 1, "x": [{"k": 1, "k": 2}]}}', "k"),
    ("dup-escaped", b'{"schema_version": 2, "a": 1, "\\u0061": 2}', "a"),
    ("dup-colon-key", b'{"schema_version": 2, "a:b": 1, "a\\u003ab": 2}', "a:b"),
]:
    refused_both(_ident, "duplicate keys", _text, "^duplicate key " + re.escape(repr(_key)) + " in one object$")
accepted_both("no-dup-case", "duplicate keys", b'{"schema_version":2,"id":"a","ID":"b","Id":"c"}')


#: Pretty (multi-line) files with a value refused for what it is: the problem names the
#: line where it stands (a duplicate key: where its second occurrence stands).
PRETTY_REFUSALS = [
    ("dup_line3", b'{\n  "a": 1,\n  "a": 2,\n  "schema_version": 1\n}', 3, "duplicate key 'a' in one object"),
    (
        "dup_nested_line6",
        b'{\n  "schema_version": 1,\n  "metadata": {\n    "id": "s",\n    "title": "t",\n'
        b'    "id": "again"\n  },\n  "messages": []\n}',
        6,
        "duplicate key 'id' in one object",
    ),
    (
        "dup_escaped_line4",
        b'{\n  "schema_version": 1,\n  "ab": 1,\n  "a\\u0062": 2\n}',
        4,
        "duplicate key 'ab' in one object",
    ),
    (
        "dup_after_blank_lines",  # the head's lines count: the file's line 5
        b'\n\n{\n  "a": 1,\n  "a": 2\n}\n',
        5,
        "duplicate key 'a' in one object",
    ),
    (
        "nan_line4",
        b'{\n  "schema_version": 1,\n  "note": "NaN, in a string",\n  "cost": [1, NaN]\n}',
        4,
        "NaN is not valid JSON",
    ),
    ("infinity_line3", b'{\n  "schema_version": 1,\n  "cost":\n    -Infinity\n}', 4, "-Infinity is not valid JSON"),
    ("huge_line2", b'{\n  "cost": 1e999,\n  "schema_version": 1\n}', 2, "number 1e999 is too large for a double"),
    (
        "tiny_line3",
        b'{\n  "schema_version": 1,\n  "cost": 1e-400\n}',
        3,
        "number 1e-400 is too small for a double (it would become 0)",
    ),
]


@custom("file-pretty-refusals", "refused values in pretty files", "refused")
def _pretty_refusals(home: Home) -> list[Problem]:
    problems: list[Problem] = []
    for name, data, line, reason in PRETTY_REFUSALS:
        rel = f"{SESSIONS}/{name}.json"
        home.add(rel, data, "session", keys=[])
        home.exact[rel] = data
        problems.append(Problem(rel, line, "^" + re.escape(reason) + "$"))
    return problems

# ---- not an object at top level

for _ident, _text, _what in [
    ("scalar-int", b"42", r"a number 42"),
    ("scalar-float", b"1.5", r"a float 1\.5"),
    ("scalar-string", b'"hello"', r'a string "hello"'),
    ("scalar-null", b"null", r"null"),
    ("scalar-true", b"true", r"a boolean true"),
    ("scalar-false", b"false", r"a boolean false"),
]:
    refused_both(_ident, "scalar at top level", _text, f"^record is {_what}, not a JSON object$", None)
refused_line("array-line", "array of non-objects", b'[{"schema_version":2}]', r"^record is an array, not a JSON object$")


@custom("file-array-of-non-objects", "array of non-objects", "refused")
def _array_of_non_objects(home: Home) -> list[Problem]:
    rel = f"{TASKS}/scalars.json"
    home.add(rel, b'[\n  1,\n  "two",\n  null,\n  true,\n  [],\n  2.5\n]', "task", keys=[])
    home.exact[rel] = home.root.joinpath(rel).read_bytes()  # each element kept in its place
    whats = ["a number 1", 'a string "two"', "null", "a boolean true", "an array", "a float 2.5"]
    return [Problem(rel, i + 2, f"^element {i} is {re.escape(w)}, not a JSON object$") for i, w in enumerate(whats)]


@custom("file-array-mixed", "array of non-objects", "refused")
def _array_mixed(home: Home) -> list[Problem]:
    rel = f"{TASKS}/mixed.json"
    good = [pretty(task("task_m0")), pretty(task("task_m2"))]
    text = b"[\n" + good[0] + b',\n"not a record",\n' + good[1] + b"\n]"
    home.add(rel, text, "task", keys=[])
    home.exact[rel] = text
    home.records[f"{rel}[0]"] = ("task", good[0].decode())
    home.records[f"{rel}[2]"] = ("task", good[1].decode())
    return [Problem(rel, 8, r'^element 1 is a string "not a record", not a JSON object$')]


@custom("file-array-truncated", "truncated JSON", "refused")
def _array_truncated(home: Home) -> list[Problem]:
    # Elements before the syntax error are imported; the error names its line.
    rel = f"{TASKS}/cut_array.json"
    good = compact(task("task_before_cut"))
    home.add(rel, b"[\n" + good + b',\n{"schema_version": 2, "id"', "task", keys=[])
    home.exact[rel] = b"[\n" + good + b',\n{"schema_version": 2, "id"'  # the rest kept, to be mended
    home.records[f"{rel}[0]"] = ("task", good.decode())
    return [Problem(rel, 3, INVALID + "Expecting ':' delimiter")]


@custom("file-array-broken-at-once", "truncated JSON", "refused")
def _array_broken_at_once(home: Home) -> list[Problem]:
    # Nothing read before the error: the whole file is one refused text, written back.
    rel = f"{TASKS}/cut_at_once.json"
    home.add(rel, b'[\n{"schema_version": 2, "id"', "task", keys=[])
    home.exact[rel] = b'[\n{"schema_version": 2, "id"'
    return [Problem(rel, 2, INVALID + "Expecting ':' delimiter")]


@custom("file-array-trailing-garbage", "trailing garbage", "refused")
def _array_trailing(home: Home) -> list[Problem]:
    rel = f"{TASKS}/array_tail.json"
    good = compact(task("task_before_tail"))
    home.add(rel, b"[" + good + b"]\nxyz", "task", keys=[])
    home.exact[rel] = b"[" + good + b"]\nxyz"
    home.records[f"{rel}[0]"] = ("task", good.decode())
    return [Problem(rel, 2, INVALID + "unexpected data after the array")]  # (xyz is on line 2)


@custom("file-pretty-array-garbage-lines-below", "trailing garbage", "refused")
def _array_garbage_below(home: Home) -> list[Problem]:
    rel = f"{TASKS}/array_garbage_below.json"
    good = compact(task("task_above_garbage"))
    text = b"[\n  " + good + b"\n]\n\ngarbage\n"
    home.add(rel, text, "task", keys=[])
    home.exact[rel] = text
    home.records[f"{rel}[0]"] = ("task", good.decode())
    return [Problem(rel, 5, INVALID + "unexpected data after the array")]


@custom("file-empty-array", "array of non-objects", "accepted", exports=True)
def _empty_array(home: Home) -> list[Problem]:
    # Deliberate: an empty array is a file of zero records, written back as it was.
    home.add(f"{TASKS}/empty_array.json", b"[]", "task", keys=[])
    home.exact[f"{TASKS}/empty_array.json"] = b"[]"
    return []


@custom("file-two-lines-in-json", "trailing garbage", "accepted")
def _lines_in_json(home: Home) -> list[Problem]:
    # Deliberate: a .json file of one compact object per line is read as JSON lines.
    rel = f"{TASKS}/as_lines.json"
    lines = [compact(task("task_l1")), compact(task("task_l2"))]
    add_lines(home, rel, lines, good=[1, 2], domain="task")
    return []


# ---- schema_version

_POSITIVE = r"^schema_version must be a positive integer, not "
for _ident, _value, _what in [
    ("version-string", b'"2"', r'a string "2"'),
    ("version-empty-string", b'""', r'a string ""'),
    ("version-float", b"2.0", r"a float 2\.0"),
    ("version-fraction", b"1.5", r"a float 1\.5"),
    ("version-exponent", b"1e0", r"a float 1\.0"),
    ("version-true", b"true", r"a boolean true"),
    ("version-false", b"false", r"a boolean false"),
    ("version-null", b"null", r"null"),
    ("version-zero", b"0", r"0"),
    ("version-negative", b"-1", r"-1"),
    ("version-minus-2-70", b"-" + str(BIG).encode(), "-" + str(BIG)),
    ("version-array", b"[2]", r"an array"),
    ("version-object", b'{"major": 2}', r"an object"),
]:
    _text = b'{"schema_version": ' + _value + b', "id": "v"}'
    refused_both(_ident, "schema_version not a positive integer", _text, _POSITIVE + _what + "$", None)

for _ident, _version in [("version-3", 3), ("version-2-63", 2**63), ("version-2-70", BIG)]:
    _text = b'{"schema_version": ' + str(_version).encode() + b', "id": "v"}'
    # task and runtime are both at version 2
    _reason = f"^schema_version {_version} is newer than current version 2 of domain '(task|runtime)'$"
    refused_both(_ident, "schema_version newer than current", _text, _reason, None)

accepted_both("version-missing", "schema_version missing (= v1)", b'{"id":"no version","seq":9}')
accepted_both("version-1", "schema_version missing (= v1)", b'{"schema_version":1,"id":"v1"}')
accepted_both("version-nested-only", "schema_version missing (= v1)", b'{"payload":{"schema_version":99}}')

# ---- nesting 100,000 levels deep

_DEEP_ARRAY = b"[" * DEEP + b"]" * DEEP
_DEEP_OBJECT = b'{"a":' * DEEP + b"1" + b"}" * DEEP
refused_both("deep-array-field", "nesting 100,000 deep", b'{"schema_version": 2, "x": ' + _DEEP_ARRAY + b"}", "^nested too deeply$", None)
refused_both("deep-object-field", "nesting 100,000 deep", b'{"schema_version": 2, "x": ' + _DEEP_OBJECT + b"}", "^nested too deeply$", None)
refused_both("deep-object", "nesting 100,000 deep", _DEEP_OBJECT, "^nested too deeply$", None)
refused_both("deep-unclosed", "nesting 100,000 deep", b'{"schema_version": 2, "x": ' + b"[" * DEEP, "^nested too deeply$|^invalid JSON", None)
# Deeper than orjson encodes (255 levels), well within what the exact decoder reads.
accepted_both("deep-300-array", "nesting 300 deep", b'{"schema_version":2,"x":' + b"[" * 300 + b"]" * 300 + b"}")
accepted_both("deep-300-object", "nesting 300 deep", b'{"schema_version":2,"x":' + b'{"a":' * 300 + b"1" + b"}" * 301)
accepted_file("deep-300-pretty", "nesting 300 deep", pretty(task("task_deep_300", x=json.loads("[" * 300 + "]" * 300))))


@custom("file-deep-array-element", "nesting 100,000 deep", "refused")
def _deep_element(home: Home) -> list[Problem]:
    rel = f"{TASKS}/deep_element.json"
    good = compact(task("task_before_deep"))
    home.add(rel, b"[\n" + good + b",\n" + _DEEP_ARRAY + b"\n]", "task", keys=[])
    home.exact[rel] = b"[\n" + good + b",\n" + _DEEP_ARRAY + b"\n]"
    home.records[f"{rel}[0]"] = ("task", good.decode())
    return [Problem(rel, 3, "^element 1: nested too deeply$")]


@custom("file-array-refused-elements", "refused elements in an array", "refused")
def _array_refused_elements(home: Home) -> list[Problem]:
    """Elements refused for what they hold (not for their syntax) are refused one by
    one; the elements after them still go in."""
    rel = f"{TASKS}/refused_elements.json"
    bad = [
        (b'{"schema_version": 2, "k": 1, "k": 2}', "^element 1: duplicate key 'k' in one object$"),
        (b'{"schema_version": 2, "cost": NaN}', "^element 3: NaN is not valid JSON$"),
        (b'{"schema_version": 2, "x": ' + _DEEP_ARRAY + b"}", "^element 5: nested too deeply$"),
        (b'{"schema_version": 2, "cost": 1e999}', "^element 7: number 1e999 is too large for a double$"),
        (b'{"schema_version": 2, "deep": ' + _DEEP_OBJECT + b', "k": 1, "k": 2}', "^element 9: nested too deeply$"),
        (
            b'{"schema_version": 2, "n": ' + DIGITS_20000 + b', "k": 1, "k": 2}',
            "^element 11: duplicate key 'k' in one object$",
        ),
        (
            b'{"schema_version": 2, "cost": 1e-400}',
            r"^element 13: number 1e-400 is too small for a double \(it would become 0\)$",
        ),
    ]
    parts: list[bytes] = []
    problems: list[Problem] = []
    for i, (text, reason) in enumerate(bad):
        good = compact(task(f"task_between_{i}"))
        home.records[f"{rel}[{2 * i}]"] = ("task", good.decode())
        parts += [good, text]
        problems.append(Problem(rel, 2 * i + 2 + 1, reason))  # one element per line, after "[\n"
    last = compact(task("task_last"))
    home.records[f"{rel}[{len(parts)}]"] = ("task", last.decode())
    parts.append(last)
    home.add(rel, b"[\n" + b",\n".join(parts) + b"\n]", "task", keys=[])
    home.exact[rel] = b"[\n" + b",\n".join(parts) + b"\n]"
    return problems


# ---- the file system

def _unreadable(home: Home) -> list[Problem]:
    rel = f"{TASKS}/unreadable.json"
    path = home.root / rel
    if os.geteuid() != 0:
        home.add(rel, pretty(task("task_secret")), "task", keys=[])
        path.chmod(0)
        return [Problem(rel, None, "^cannot read: Permission denied$")]
    # As root, chmod 000 does not stop reads. /proc/self/mem is a regular file that
    # fails every read at offset 0 (nothing is mapped there): a real read error.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/proc/self/mem")
    return [Problem(rel, None, "^cannot read: " + re.escape(_proc_mem_error() or "?") + "$")]


def _proc_mem_error() -> str | None:
    """Why reading /proc/self/mem fails (``None`` if it does not fail)."""
    try:
        with open("/proc/self/mem", "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return exc.strerror
    return None


def unreadable_supported() -> str | None:
    """``None`` when :func:`_unreadable` can make a file that really fails to read,
    otherwise why it cannot."""
    if os.geteuid() != 0:
        return None
    if not os.path.exists("/proc/self/mem"):
        return "running as root (chmod 000 does not stop reads) and there is no /proc/self/mem"
    if _proc_mem_error() is None:
        return "running as root (chmod 000 does not stop reads) and /proc/self/mem reads fine here"
    return None


_case(Case("fs-unreadable", "unreadable file", "refused", _unreadable))


@custom("fs-fifo", "unreadable file", "refused")
def _fifo(home: Home) -> list[Problem]:
    rel = f"{TASKS}/fifo.json"
    (home.root / TASKS).mkdir(parents=True, exist_ok=True)
    os.mkfifo(home.root / rel)
    return [Problem(rel, None, "^not a regular file$")]


@custom("fs-directory-named-json", "unreadable file", "accepted")
def _directory_named_json(home: Home) -> list[Problem]:
    # Deliberate: a directory is walked, never read as a file; a file below it is two
    # levels down, which tasks/tasks/*.json does not match, so it is skipped.
    home.add(f"{TASKS}/dir.json/inner.json", pretty(task("task_inner")), None)
    return []


@custom("fs-symlink-self-loop", "symlink loops", "refused")
def _self_loop(home: Home) -> list[Problem]:
    rel = f"{TASKS}/loop.json"
    (home.root / rel).symlink_to("loop.json")
    return [Problem(rel, None, "^cannot read: Too many levels of symbolic links$")]


@custom("fs-symlink-pair-loop", "symlink loops", "refused")
def _pair_loop(home: Home) -> list[Problem]:
    (home.root / TASKS / "ping.json").symlink_to("pong.json")
    (home.root / TASKS / "pong.json").symlink_to("ping.json")
    return [Problem(f"{TASKS}/{n}.json", None, "^cannot read: Too many levels of symbolic links$") for n in ("ping", "pong")]


@custom("fs-directory-link-loops", "symlink loops", "accepted")
def _directory_loops(home: Home) -> list[Problem]:
    # Links to directories are followed, each directory once: loops end, and nothing is
    # imported twice.
    (home.root / TASKS / "again").symlink_to("..")
    (home.root / "tasks" / "runtime" / "up").symlink_to("../..")
    (home.root / "self").symlink_to(".")
    return []


@custom("fs-dangling-symlink", "symlink loops", "refused")
def _dangling(home: Home) -> list[Problem]:
    rel = f"{TASKS}/dangling.json"
    (home.root / rel).symlink_to("nowhere.json")
    return [Problem(rel, None, "^cannot read: No such file or directory$")]


@custom("fs-symlink-to-file", "symlink loops", "accepted")
def _link_to_file(home: Home) -> list[Problem]:
    # Deliberate: a link to a file is read through, as its own record.
    rel = f"{TASKS}/link.json"
    (home.root / rel).symlink_to("task_good_1.json")
    home.records[rel] = home.records[f"{TASKS}/task_good_1.json"]
    home.exact[rel] = home.exact[f"{TASKS}/task_good_1.json"]
    return []


for _ident, _name in [
    ("space", "task with spaces.json"),
    ("leading-dash", "-rf.json"),
    ("unicode", "tâche ✓ 日本.json"),
    ("quote", "it's \"quoted\".json"),
    ("dollar", "$HOME;rm -rf.json"),
]:
    accepted_file(_ident, "file names", pretty(task(_ident)), rel=f"{TASKS}/{_name}", case_id=f"name-{_ident}")


@custom("name-newline", "file names", "refused", exports=True)
def _newline_name(home: Home) -> list[Problem]:
    # The name is accepted as it is; a problem naming it is still one line (escaped).
    home.add(f"{TASKS}/new\nline.json", pretty(task("newline")), "task")
    home.add(f"{TASKS}/tab\tand\nnewline.json", b"{", "task", keys=[])
    return [Problem(f"{TASKS}/tab\\tand\\nnewline.json", 1, INVALID + "Expecting property name")]


@custom("name-non-utf8", "file names", "refused")
def _non_utf8_name(home: Home) -> list[Problem]:
    # Deliberate: a name that is not UTF-8 cannot be stored as text or exported by
    # name; it is refused, shown with the bad byte escaped.
    directory = os.fsencode(home.root / TASKS)
    for raw in (b"caf\xe9.json", b"\xff\xfe.json"):
        with open(directory + b"/" + raw, "wb") as fh:
            fh.write(pretty(task("latin1")))
    reason = "^file name is not valid UTF-8"
    return [Problem(f"{TASKS}/caf\\xe9.json", None, reason), Problem(f"{TASKS}/\\xff\\xfe.json", None, reason)]


def case_ids() -> list[str]:
    return [c.id for c in CASES]


# --------------------------------------------------------------------------- heavy writers


def write_jsonl(path: Path, target_bytes: int, bad_every: int = 0, line_size: int = 1000) -> tuple[int, list[int]]:
    """Write about ``target_bytes`` of runtime events, a broken line every ``bad_every``
    lines (0: none); return (lines written, the bad line numbers). Streams: bounded memory."""
    pad = "x" * max(0, line_size - 120)
    bad: list[int] = []
    n = 0
    written = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        while written < target_bytes:
            chunk: list[bytes] = []
            for _ in range(1000):
                n += 1
                if bad_every and n % bad_every == 0:
                    line = b'{"schema_version":2,"seq":' + str(n).encode() + b',"broken":'
                    bad.append(n)
                else:
                    line = compact(event(n, "thr_big", pad=pad))
                chunk.append(line + b"\n")
            data = b"".join(chunk)
            fh.write(data)
            written += len(data)
    return n, bad


def iter_array_elements(size: int = 1000) -> Iterator[bytes]:
    """Pretty task objects of about ``size`` bytes, indented as array elements, forever."""
    pad = "y" * max(0, size - 150)
    for i in itertools.count():
        yield pretty(task(f"task_{i:08d}", pad=pad)).replace(b"\n", b"\n  ")


def write_array(path: Path, target_bytes: int, size: int = 1000) -> int:
    """A pretty top-level array of about ``target_bytes``; returns its element count."""
    n = 0
    written = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        fh.write(b"[\n  ")
        for element in iter_array_elements(size):
            if n:
                fh.write(b",\n  ")
            fh.write(element)
            written += len(element) + 4
            n += 1
            if written >= target_bytes:
                break
        fh.write(b"\n]")
    return n


def write_many_files(directory: Path, count: int, bad_every: int = 0) -> list[str]:
    """``count`` small task files in one directory; returns the names of the broken ones."""
    directory.mkdir(parents=True, exist_ok=True)
    bad: list[str] = []
    for i in range(count):
        name = f"task_{i:06d}.json"
        if bad_every and i % bad_every == bad_every - 1:
            (directory / name).write_bytes(b'{"schema_version": 2, "id": ')
            bad.append(name)
        else:
            (directory / name).write_bytes(pretty(task(f"task_{i:06d}")))
    return bad
