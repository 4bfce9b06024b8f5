"""Finding files, parsing their records, and writing them in batched transactions.

A file is read once; its records keep their exact JSON text (so an export of an
unmigrated record gives back the bytes it came from), and the text around them
(``head``, ``sep``, ``tail``) is kept on the file's row. A file whose bytes did not
change since the last import is not parsed again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, update

from . import jsoncodec, workers
from .engine import background_checkpoints, configure_connection, placeholder, sqlite_file
from .errors import InputError, NewerVersionError
from .registry import Domain, Registry
from .schema import drop_record_indexes, restore_record_indexes
from .tables import files, records

__all__ = ["DomainCounts", "ImportResult", "discover", "read_version"]

LINE_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json", *LINE_SUFFIXES)
#: JSON-lines files above this size are hashed, then parsed in a streaming pass (not held
#: in memory whole): peak memory does not grow with the size of such a file.
STREAM_THRESHOLD = 8 * 1024 * 1024
#: Records written per transaction.
BATCH_RECORDS = 5000
#: ... or this many bytes of record text, whichever comes first: memory stays bounded
#: whatever the records' sizes.
BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class DomainCounts:
    """What an import did to one domain's records."""

    imported: int = 0
    unchanged: int = 0
    updated: int = 0
    removed: int = 0
    rejected: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ImportResult:
    """The outcome of :meth:`Store.import_paths`."""

    run_id: int | None
    domains: dict[str, DomainCounts] = field(default_factory=dict)
    files: int = 0
    skipped: int = 0
    problems: list[InputError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self, domain: str) -> DomainCounts:
        return self.domains.setdefault(domain, DomainCounts())

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "files": self.files,
            "skipped": self.skipped,
            "domains": {d: c.as_dict() for d, c in sorted(self.domains.items())},
            "problems": [str(p) for p in self.problems],
        }


# --------------------------------------------------------------------------- finding


class Candidate(NamedTuple):
    """A file to import: where it is, its path relative to the import root, its domain."""

    path: str
    relpath: str
    domain: Domain | None


def discover(
    paths: Iterable[str | os.PathLike[str]],
    registry: Registry,
    domain: Domain | None = None,
    problems: list[InputError] | None = None,
) -> Iterator[Candidate]:
    """Yield the files below ``paths`` with their domains (``None``: no domain).

    Directories are walked without following links (so link loops end); a file given
    by itself is matched by the shortest trailing part of its path that a domain's
    pattern accepts, unless ``domain`` is given.
    """
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            top = os.fspath(root)
            cut = len(top.rstrip(os.sep)) + 1
            match = registry.match if domain is None else _forced(domain)
            for dirpath, dirnames, filenames in os.walk(top, onerror=_walk_error(problems, root)):
                dirnames.sort()
                base = dirpath if dirpath.endswith(os.sep) else dirpath + os.sep
                prefix = dirpath[cut:].replace(os.sep, "/")
                head = prefix + "/" if prefix else ""
                for name in sorted(filenames):
                    rel = head + name
                    yield Candidate(base + name, rel, match(rel))
        elif root.exists() or root.is_symlink():
            if domain is not None:
                yield Candidate(str(root), root.name, _forced(domain)(root.name))
                continue
            parts = root.absolute().parts
            for n in range(1, len(parts)):
                rel = "/".join(parts[-n:])
                found = registry.match(rel)
                if found is not None:
                    yield Candidate(str(root), rel, found)
                    break
            else:
                yield Candidate(str(root), root.name, None)
        elif problems is not None:
            problems.append(InputError(display_path(str(raw)), "no such file or directory"))


def display_path(path: str) -> str:
    """``path`` as one printable line: control characters and bytes that are not UTF-8
    (``os`` hands them over as lone surrogates) become backslash escapes."""
    if path.isprintable():
        return path
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _walk_error(problems: list[InputError] | None, root: Path) -> Any:
    def report(exc: OSError) -> None:
        if problems is not None:
            where = display_path(str(exc.filename or root))
            problems.append(InputError(where, f"cannot read directory: {exc.strerror}"))

    return report


def _forced(domain: Domain) -> Callable[[str], Domain | None]:
    """The domain of each file imported into ``domain`` (given, or below a directory
    given): ``domain`` for its JSON files, none for the others."""
    return lambda rel: domain if rel.endswith(JSON_SUFFIXES) else None


# --------------------------------------------------------------------------- parsing


class ParsedRecord(NamedTuple):
    key: str
    version: int
    text: str | bytes  # the record's exact JSON text; bytes: UTF-8, as read
    position: int


class DomainSpec(NamedTuple):
    """What parsing needs of a domain (a :class:`Domain` carries step functions, which
    need not pickle; this goes to worker processes)."""

    name: str
    version: int
    version_field: str


#: A record as it is written: (domain, key, version, text, file_id, position, run_id).
Row = tuple[str, str, int, str | bytes | bytearray, int, int, int]


class FileLayout(NamedTuple):
    """The text around a file's records: ``head + sep.join(records) + tail``."""

    container: str  # "object", "array" or "lines"
    head: str = ""
    sep: str = ""
    tail: str = ""
    indent: int | None = None


def element_prefix(head: str) -> str:
    """The whitespace that starts each line of an array's elements (from the head)."""
    return head[head.rfind("\n") + 1 :] if "\n" in head else ""


def dedent(element: str, prefix: str) -> str:
    """Store an array element as if it stood alone: JSON strings hold no raw newline,
    so every newline in the text is layout. Left as it is unless every line has ``prefix``."""
    if not prefix or "\n" not in element:
        return element
    lines = element.split("\n")
    if all(line.startswith(prefix) for line in lines[1:]):
        return "\n".join([lines[0]] + [line[len(prefix) :] for line in lines[1:]])
    return element


def read_version(value: dict[str, Any], domain: Domain | DomainSpec) -> int:
    """A record's version: its version field, or 1 when it has none. Raises ValueError."""
    if domain.version_field not in value:
        return 1
    version = value[domain.version_field]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(
            f"{domain.version_field} must be a positive integer, not {_describe(version)}"
        )
    if version < 1:
        raise ValueError(f"{domain.version_field} must be a positive integer, not {version}")
    return version


def _known_version(value: Any, domain: Domain | DomainSpec) -> int | None:
    """The version of an object whose version field holds a version the domain knows
    (or that has none: 1); ``None`` for anything else."""
    version = value.get(domain.version_field, 1) if type(value) is dict else None
    return version if type(version) is int and 0 < version <= domain.version else None


def _describe(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "a number",
        str: "a string",
        float: "a float",
        type(None): "null",
        list: "an array",
        dict: "an object",
    }
    name = kind.get(type(value), type(value).__name__)
    shown = jsoncodec.encode_compact(value) if not isinstance(value, (dict, list, type(None))) else ""
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{name} {shown}".strip()


def _indent_of(text: str | bytes, start: int = 0) -> int | None:
    """The indent width of pretty JSON text (or its UTF-8 bytes) from ``start``
    (``None`` for one-line text). Trailing whitespace does not count; nothing is
    copied, so a huge text costs nothing."""
    patterns: tuple[Any, Any, Any] = (
        (b"\n", _TRAILING_SPACE_BYTES, _SPACES_BYTES) if isinstance(text, bytes) else ("\n", _TRAILING_SPACE, _SPACES)
    )
    newline, trailing, spaces = patterns
    nl = text.find(newline, start)
    if nl == -1 or trailing.match(text, nl):
        return None
    return (spaces.match(text, nl + 1).end() - nl - 1) or None


def _array_sep(head: str, seps: list[str]) -> str:
    """What goes between an array's elements: the first separator seen, else one in the
    style of its head."""
    if seps:
        return seps[0]
    indent = head[head.rfind("\n") + 1 :] if "\n" in head else ""
    return ",\n" + indent if "\n" in head else ","


_TRAILING_SPACE = re.compile(r"\s*\Z")
_TRAILING_SPACE_BYTES = re.compile(rb"\s*\Z")
_SPACES, _SPACES_BYTES = re.compile(" *"), re.compile(b" *")
_LOOSE = json.JSONDecoder()  # takes NaN and duplicate keys: only to find where a value ends
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _element_end(text: str, pos: int) -> int | None:
    """Where the JSON value at ``text[pos]`` ends, judged by its syntax alone (``None``
    when that cannot be told). Nesting too deep for the parser is delimited by its
    brackets, strings skipped."""
    try:
        return _LOOSE.raw_decode(text, pos)[1]
    except ValueError:
        return None
    except RecursionError:
        pass
    depth = 0
    for match in _TOKENS.finditer(text, pos):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                return match.end()
    return None


class FileParse:
    """Parse one file: ``layout`` is set once ``records()`` has been consumed;
    ``problems`` holds one :class:`InputError` per bad record (or one for the file)."""

    def __init__(self, path: str, relpath: str, domain: Domain | DomainSpec, data: bytes | None):
        self.path = path
        self.relpath = relpath
        self.shown = display_path(relpath)
        self.domain = domain
        self.data = data
        self.layout = FileLayout("object")
        self.problems: list[InputError] = []
        self.fatal = False  # the file as a whole is unreadable: keep its stored records
        self.slots = 0  # record slots seen, good or bad; positions run from 0 to slots - 1
        self._ends_with_newline = True  # of a JSON-lines file, as far as it was read

    def _fail(self, reason: str, line: int | None = None) -> None:
        self.problems.append(InputError(self.shown, reason, line=line))

    def records(self) -> Iterator[ParsedRecord]:
        if self.relpath.endswith(LINE_SUFFIXES):
            yield from self._lines()
            return
        assert self.data is not None
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.fatal = True
            line = self.data.count(b"\n", 0, exc.start) + 1
            self._fail(f"invalid UTF-8 at byte {exc.start}", line)
            return
        body = text.lstrip("\ufeff \t\r\n")
        head = text[: len(text) - len(body)]
        stripped = body.rstrip(" \t\r\n")
        tail = body[len(stripped) :]
        if not stripped:
            self.fatal = True
            self._fail("empty file: no JSON value")
            return
        first_line = head.count("\n") + 1
        if stripped[0] == "[":
            del body, stripped  # a huge array: keep only one copy of its text
            yield from self._array(text, len(head), first_line)
            return
        # The record's text as the file's bytes (the head is whitespace and BOMs, the
        # tail whitespace): decoded from them, and stored as them.
        start = len(head) + 2 * head.count("\ufeff")
        raw = self.data[start : len(self.data) - len(tail)]
        try:
            value = jsoncodec.decode(raw)
        except jsoncodec.JSONError as exc:
            if stripped[0] == "{" and "\n" in stripped and self._looks_like_lines(stripped):
                yield from self._lines()
                return
            self.fatal = True
            self._fail(exc.reason, None if exc.line is None else exc.line + first_line - 1)
            return
        self.layout = FileLayout("object", head=head, tail=tail, indent=_indent_of(stripped))
        self.slots = 1
        record = self._record(value, raw, 0, self.relpath, None)
        if record is not None:
            yield record

    @staticmethod
    def _looks_like_lines(text: str) -> bool:
        first = text.split("\n", 1)[0].strip()
        try:
            return isinstance(jsoncodec.decode(first), dict)
        except jsoncodec.JSONError:
            return False

    def _record(self, value: Any, text: str | bytes, position: int, key: str, line: int | None) -> ParsedRecord | None:
        version = _known_version(value, self.domain)  # the common case first
        if version is not None:
            return ParsedRecord(key, version, text, position)
        if not isinstance(value, dict):
            what = f"element {position}" if self.layout.container == "array" else "record"
            self._fail(f"{what} is {_describe(value)}, not a JSON object", line)
            return None
        try:
            version = read_version(value, self.domain)
        except ValueError as exc:
            self._fail(str(exc), line)
            return None
        if version > self.domain.version:
            self.problems.append(
                NewerVersionError(
                    self.shown,
                    domain=self.domain.name,
                    version=version,
                    current_version=self.domain.version,
                    line=line,
                )
            )
            return None
        return ParsedRecord(key, version, text, position)

    def _array(self, text: str, start: int, first_line: int) -> Iterator[ParsedRecord]:
        """Scan the array element by element, so a huge array never becomes one tree.
        Elements before a syntax error are imported; the error names its line."""
        ws = " \t\r\n"
        pos = start + 1
        while pos < len(text) and text[pos] in ws:
            pos += 1
        head = text[:pos]
        self.layout = FileLayout("array", head=head)
        seps: list[str] = []
        index = 0
        end = pos
        line, counted = 1, 0  # newlines are counted once, not from 0 for every element
        try:
            if pos < len(text) and text[pos] == "]":
                head, end = text[: start + 1], start + 1
            else:
                while True:
                    line += text.count("\n", counted, pos)
                    counted = pos
                    try:
                        value, end = jsoncodec.scan(text, pos)
                    except jsoncodec.JSONError as exc:
                        if exc.line is not None:  # a syntax error: the scan cannot go on
                            raise
                        # Well-formed but refused (duplicate key, NaN, too deep): refuse
                        # this element only, and go on after it.
                        skip = _element_end(text, pos)
                        if skip is None:
                            exc.line = line
                            raise
                        self._fail(f"element {index}: {exc.reason}", line)
                        index += 1
                        end = skip
                    else:
                        element = dedent(text[pos:end], element_prefix(head))
                        record = self._record(value, element, index, f"{self.relpath}[{index}]", line)
                        index += 1
                        if record is not None:
                            yield record
                    nxt = end
                    while nxt < len(text) and text[nxt] in ws:
                        nxt += 1
                    if nxt < len(text) and text[nxt] == "]":
                        end = nxt
                        break
                    if nxt >= len(text) or text[nxt] != ",":
                        raise jsoncodec.JSONError(
                            "invalid JSON: expected ',' or ']' after an array element",
                            text.count("\n", 0, nxt) + 1,
                        )
                    nxt += 1
                    while nxt < len(text) and text[nxt] in ws:
                        nxt += 1
                    seps.append(text[end:nxt])
                    pos = nxt
                # ``end`` is at the closing bracket; the tail starts there.
                end_of_elements = end
                while text[end_of_elements - 1] in ws:
                    end_of_elements -= 1
                end = end_of_elements
            after = text[end:].lstrip(ws)
            if not after.startswith("]") or after[1:].strip(ws):
                raise jsoncodec.JSONError(
                    "invalid JSON: unexpected data after the array", text.count("\n", 0, end) + 1
                )
        except jsoncodec.JSONError as exc:
            self.fatal = True
            self.slots = index
            self._fail(exc.reason, exc.line)
            # The elements before the error are kept: close the array after them, so
            # that exporting what was kept gives valid JSON.
            tail = "\n]" if "\n" in head else "]"
            self.layout = FileLayout("array", head=head, sep=_array_sep(head, seps), tail=tail)
            return
        self.slots = index
        sep = _array_sep(head, seps)
        self.layout = FileLayout(
            "array", head=head, sep=sep, tail=text[end:], indent=_indent_of(text, start)
        )

    def _lines(self) -> Iterator[ParsedRecord]:
        sep = "\n"
        head = ""
        # Set before reading: a read that fails midway keeps the lines read so far.
        self.layout = FileLayout("lines", sep=sep, tail=sep)
        self._ends_with_newline = True
        position = 0
        decode, refused, prefix = jsoncodec.decode, jsoncodec.JSONError, self.relpath + ":"
        for lineno, line in enumerate(self._raw_lines(), start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):  # a BOM starting the file: kept
                head, line = "\ufeff", line[3:]
            if line[-1:] == b"\r":
                sep = "\r\n"
                line = line[:-1]
            if not line or line.isspace():
                continue
            try:
                value = decode(line)
            except refused as exc:
                self._fail(exc.reason, lineno)
                position += 1
                continue
            # The line's bytes are its text (decoding proved them UTF-8); SQLite stores
            # them as TEXT without a round trip through a Python string.
            record = self._record(value, line, position, prefix + str(lineno), lineno)
            position += 1
            if record is not None:
                yield record
        self.slots = position
        self.layout = FileLayout("lines", head=head, sep=sep, tail=sep if self._ends_with_newline else "")

    def _raw_lines(self) -> Iterator[bytes]:
        """The file's lines without their newlines; ``_ends_with_newline`` says whether
        the last one had one."""
        if self.data is not None:
            lines, self._ends_with_newline = _split_lines(self.data)
            yield from lines
            return
        self._ends_with_newline = False  # an empty file has no newline
        with open(self.path, "rb") as fh:
            for raw in fh:
                self._ends_with_newline = raw[-1:] == b"\n"
                yield raw[:-1] if self._ends_with_newline else raw


def _split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """A JSON-lines file's lines without their newlines, and whether the last one had
    one (an empty file has no lines, and so no newline to give back)."""
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    return lines, data.endswith(b"\n")


class FileRead(NamedTuple):
    """What :func:`read_file` found. ``data`` is ``None`` for a file to stream (or one
    over the size asked for); ``torn``: the file changed while it was read whole."""

    data: bytes | None
    digest: str
    info: os.stat_result
    torn: bool = False


def read_file(path: str, max_size: int | None = None) -> FileRead:
    """Read (or, for a JSON-lines file to stream, hash) one file. Opened without
    blocking and checked to be a regular file, so a FIFO or a device never hangs an
    import. Raises OSError, or InputError for non-files."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(display_path(path), "not a regular file")
        if max_size is not None and info.st_size > max_size:
            return FileRead(None, "", info)
        if info.st_size <= STREAM_THRESHOLD or not path.endswith(LINE_SUFFIXES):
            data = _read_whole(fd, info.st_size)
            # Bytes read whole are stored with their own digest, so a change after this
            # point is simply seen by the next import; one during the read is reported.
            return FileRead(data, hashlib.sha256(data).hexdigest(), info, _moved(info, os.fstat(fd)))
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return FileRead(None, digest.hexdigest(), info)
    finally:
        os.close(fd)


def _read_whole(fd: int, size: int) -> bytes:
    """The file's bytes: one read of its size and one more byte, which gives exactly
    ``size`` bytes when the file is as it was looked at. Otherwise (it grew, or a file
    system returned less than asked) read on to the end."""
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    parts = [data]
    while chunk := os.read(fd, 1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def read_records(parse: FileParse, read: FileRead) -> Iterator[ParsedRecord]:
    """The file's records; read errors and changes during the read become problems."""
    try:
        yield from parse.records()
    except OSError as exc:  # the file vanished or became unreadable mid-read
        parse.fatal = True
        parse.problems.append(InputError(parse.shown, f"cannot read: {exc.strerror or exc}"))
        return
    if parse.data is not None:
        changed = read.torn
    else:  # a streamed file is read a second time, as it is parsed: compare it with what it was
        changed = _changed_since(parse.path, read.info)
    if changed:
        # What was read is stored (a complete record, or a reported error); the
        # empty digest makes the next import read the file again.
        parse.problems.append(InputError(parse.shown, "changed while being imported; import again to pick up the change"))


# --------------------------------------------------------------------------- parsing tasks

#: Files up to this size are read and parsed whole, as a Task (in worker processes
#: when an import is large); larger ones are streamed by the importer itself.
TASK_MAX_BYTES = 1 << 20


class Task(NamedTuple):
    """One small file to read, hash and parse, here or in a worker process."""

    path: str
    relpath: str
    domain: DomainSpec
    known_digest: str | None  # the digest stored for this path and domain, if any
    file_id: int | None = None  # a new file's id, when the worker writes it itself


class Outcome(NamedTuple):
    """What :func:`parse_task` found: ``kind`` is ``parsed``, ``unchanged`` (the digest
    is the stored one), ``unreadable`` (one problem) or ``large`` (not read: the importer
    streams it); or ``written``: a worker wrote the new file's ``written`` records and
    its row itself, and only the problems are left to report. The records come as
    columns."""

    kind: str
    digest: str = ""
    keys: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    texts: tuple[str | bytes, ...] = ()
    positions: tuple[int, ...] = ()
    nbytes: int = 0
    layout: FileLayout | None = None
    problems: list[InputError] = []
    fatal: bool = False
    slots: int = 0  # record slots seen, good or bad (FileParse.slots)
    written: int = 0


def read_or_problem(path: str, relpath: str, max_size: int | None = None) -> FileRead | InputError:
    """:func:`read_file`, or the problem that stops the file being read, naming it by
    ``relpath``."""
    try:
        return read_file(path, max_size)
    except OSError as exc:
        return InputError(display_path(relpath), f"cannot read: {exc.strerror or exc}")
    except InputError as exc:
        return InputError(display_path(relpath), exc.reason)


def parse_task(task: Task) -> Outcome:
    read = read_or_problem(task.path, task.relpath, min(TASK_MAX_BYTES, STREAM_THRESHOLD))
    if isinstance(read, InputError):
        return Outcome("unreadable", problems=[read])
    if read.data is None:
        return Outcome("large")
    if read.digest == task.known_digest:
        return Outcome("unchanged", read.digest)
    fast = _parse_plain(task, read)
    if fast is not None:
        return fast
    parse = FileParse(task.path, task.relpath, task.domain, read.data)
    found = list(read_records(parse, read))
    keys, versions, texts, positions = tuple(zip(*found)) if found else ((), (), (), ())
    nbytes = sum(map(len, texts))
    return Outcome(
        "parsed", read.digest, keys, versions, texts, positions, nbytes, parse.layout, parse.problems, parse.fatal, parse.slots
    )


def _plain_version(text: bytes, domain: DomainSpec) -> int | None:
    """The version of a record that is an object at a version the domain knows, read
    from its text; ``None`` for any other (:class:`FileParse` says what is wrong)."""
    try:
        return _known_version(jsoncodec.decode(text), domain)
    except jsoncodec.JSONError:
        return None


def _plain_lines(lines: list[bytes], domain: DomainSpec) -> tuple[Iterable[int], tuple[int, ...], tuple[bytes, ...]] | None:
    """The line numbers, versions and texts of JSON lines whose records are all good
    (blank lines skipped); ``None`` if any is not."""
    values = jsoncodec.decode_compact_lines(lines)
    if values is not None:  # no blank lines, each line compact: all decoded at once
        # _known_version's test, for all the lines at once (a bool is not an int here;
        # a line that is not an object gets 0, which fails it).
        field = domain.version_field
        versions = tuple([v.get(field, 1) if type(v) is dict else 0 for v in values])
        if versions and not (set(map(type, versions)) == {int} and 0 < min(versions) and max(versions) <= domain.version):
            return None
        return range(1, len(lines) + 1), versions, tuple(lines)
    linenos: list[int] = []
    found: list[int] = []
    texts: list[bytes] = []
    for lineno, line in enumerate(lines, start=1):
        if not line or line.isspace():
            continue
        version = _plain_version(line, domain)
        if version is None:  # FileParse says what is wrong
            return None
        linenos.append(lineno)
        found.append(version)
        texts.append(line)
    return linenos, tuple(found), tuple(texts)


def _parse_plain(task: Task, read: FileRead) -> Outcome | None:
    """The common case, parsed lean: a file whose records are all good, with nothing
    unusual around them (an object file starting with ``{``; JSON lines without a BOM or
    ``\r``). ``None`` for anything else (a refused record, a syntax error, an array, a
    file torn while read): :class:`FileParse` decides those, and its result for any
    file this accepts is the same (a property test compares the two)."""
    data = read.data
    if data is None or read.torn:
        return None
    domain = task.domain
    if task.relpath.endswith(LINE_SUFFIXES):
        if data.startswith(b"\xef\xbb\xbf") or b"\r" in data:
            return None
        lines, ends_with_newline = _split_lines(data)
        found = _plain_lines(lines, domain)
        if found is None:
            return None
        linenos, versions, texts = found
        prefix, n = task.relpath + ":", len(texts)
        return Outcome(
            "parsed",
            read.digest,
            tuple([f"{prefix}{lineno}" for lineno in linenos]),
            versions,
            texts,
            tuple(range(n)),
            sum(map(len, texts)),
            FileLayout("lines", sep="\n", tail="\n" if ends_with_newline else ""),
            [],
            False,
            n,
        )
    if data[:1] != b"{":
        return None
    text = data.rstrip(b" \t\r\n")
    version = _plain_version(text, domain)
    if version is None:
        return None
    layout = FileLayout("object", tail=data[len(text) :].decode("ascii"), indent=_indent_of(text))
    return Outcome("parsed", read.digest, (task.relpath,), (version,), (text,), (0,), len(text), layout, [], False, 1)


# Tasks and outcomes cross to and from worker processes as plain tuples: 48,000 outcomes
# unpickled in 0.07 s, against 0.4 s as named tuples holding a dataclass (each of those
# costs a Python call to rebuild), on the writer, which is the import's bottleneck.
_WireTask = tuple[str, str, tuple[str, int, str], str | None, int | None]
_WireOutcome = tuple[Any, ...]


def _to_wire(tasks: list[Task | None]) -> list[_WireTask | None]:
    return [
        None
        if t is None
        else (t.path, t.relpath, (t.domain.name, t.domain.version, t.domain.version_field), t.known_digest, t.file_id)
        for t in tasks
    ]


def parse_wire(tasks: list[_WireTask | None]) -> list[_WireOutcome | int | None]:
    """:func:`parse_tasks` as a worker process runs it, tuples in and out. A worker
    that writes (see :class:`_WorkerWriter`) stores the new files it parsed itself."""
    chunk = [None if t is None else Task(t[0], t[1], DomainSpec(*t[2]), t[3], t[4]) for t in tasks]
    parsed: list[Outcome | int | None] = list(parse_tasks(chunk)) if _writer is None else _writer.parse_and_write(chunk)
    return [(*o[:7], None if o.layout is None else tuple(o.layout), *o[8:]) if isinstance(o, Outcome) else o for o in parsed]


def _from_wire(outcomes: list[_WireOutcome | int | None]) -> list[Outcome | int | None]:
    return [Outcome._make((*o[:7], None if o[7] is None else FileLayout(*o[7]), *o[8:])) if isinstance(o, tuple) else o for o in outcomes]


def _insert_statements(mark: str, cast_payload: bool) -> tuple[str, str, str]:
    """The INSERTs of a new file's row, its records and failures (``cast_payload``: a
    payload given as UTF-8 bytes is stored as the TEXT it is, in SQLite)."""

    def sql(table: str, columns: str, values: list[str]) -> str:
        return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(values)})"

    payload = "CAST(? AS TEXT)" if cast_payload else mark
    return (
        sql("files", "id, path, domain, container, head, sep, tail, indent, digest, run_id", [mark] * 10),
        sql("records", "domain, key, version, payload, file_id, position, run_id", [mark] * 3 + [payload] + [mark] * 3),
        sql("failures", "run_id, domain, source, line, from_version, to_version, reason", [mark] * 7),
    )


def _new_file_rows(relpath: str, domain: str, file_id: int, run_id: int, outcome: Outcome) -> tuple[tuple[Any, ...] | None, list[Row]]:
    """A parsed new file's row (``None`` when nothing of it could be read) and its
    records' rows. A file with problems gets no digest, so the next import reads it
    again."""
    # Texts read as bytes go in as bytearrays: Python's sqlite3 passes every bytes
    # parameter through its adapter registry first (a tuple built, a dictionary lookup,
    # two attribute lookups: ~3,000 instructions), and binds a bytearray, like str and
    # int, as it is. Copying it here costs less, and it is done outside the write lock.
    texts = [bytearray(t) if type(t) is bytes else t for t in outcome.texts]
    rows = list(zip(repeat(domain), outcome.keys, outcome.versions, texts, repeat(file_id), outcome.positions, repeat(run_id)))
    if outcome.fatal and not rows:
        return None, rows
    layout = outcome.layout
    assert layout is not None  # set by every parse that got this far
    digest = "" if outcome.problems else outcome.digest
    return (file_id, relpath, domain, layout.container, layout.head, layout.sep, layout.tail, layout.indent, digest, run_id), rows


#: How long a writing worker waits for SQLite's write lock (see _WorkerWriter).
WORKER_BUSY_TIMEOUT_S = 24 * 3600.0


class _WorkerWriter:
    """In a worker process of an import into a SQLite file: writes the new files of each
    chunk it parsed (their rows and records) in one transaction of its own, in its turn
    (``turns``, shared with the other workers and the importing process, which takes
    its turn only around its own writes). Nothing but counts and problems goes back."""

    def __init__(self, database: str, run_id: int, turns: workers.Turns):
        # Only this import's own processes contend for the lock (the run lock keeps other
        # writers out), and the importing process holds it only while it writes a file
        # of its own, which may be a huge one streamed in many batches: wait for it.
        self.conn = sqlite3.connect(database, timeout=WORKER_BUSY_TIMEOUT_S)
        configure_connection(self.conn)
        # No foreign key checks (two lookups a record, ~7% of what a record's INSERT
        # costs, in the write lock): this connection only adds files under ids the
        # importing process reserved, each with its records in the same transaction, in
        # the run that process began. `store check` verifies the keys, as tests do after
        # imports whose workers write.
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.run_id = run_id
        self.turns = turns
        self.sql_file, self.sql_record, _ = _insert_statements("?", cast_payload=True)
        self.file_rows: list[tuple[Any, ...]] = []
        self.record_rows: list[Row] = []

    def parse_and_write(self, tasks: list[Task | None]) -> list[Outcome | int | None]:
        """Parse a chunk, writing the new files as it goes: in one transaction every
        BATCH_RECORDS records or BATCH_BYTES of them (so a worker holds at most that
        much), a file's row always with its records. A file written whole, with nothing
        to report, comes back as its number of records (the common case, cheapest to
        hand back)."""
        pending = 0
        out: list[Outcome | int | None] = []
        for task in tasks:
            outcome = None if task is None else parse_task(task)
            if task is None or task.file_id is None or outcome is None or outcome.kind != "parsed":
                out.append(outcome)
                continue
            file_row, rows = _new_file_rows(task.relpath, task.domain.name, task.file_id, self.run_id, outcome)
            if file_row is not None:
                self.file_rows.append(file_row)
            self.record_rows += rows
            pending += outcome.nbytes
            if file_row is not None and not outcome.problems:
                out.append(len(rows))
            else:
                out.append(Outcome("written", outcome.digest, problems=outcome.problems, fatal=outcome.fatal, slots=outcome.slots, written=len(rows)))
            if pending >= BATCH_BYTES or len(self.record_rows) >= BATCH_RECORDS:
                self._commit()
                pending = 0
        self._commit()
        return out

    def _commit(self) -> None:
        if not (self.file_rows or self.record_rows):
            return
        with self.turns:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(self.sql_file, self.file_rows)
                self.conn.executemany(self.sql_record, self.record_rows)
                if workers.orphaned():
                    # The import was killed (its workers end within PARENT_CHECK_S):
                    # commit nothing more, or a rerun that started by then could meet
                    # files appearing under it.
                    os._exit(1)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        self.file_rows, self.record_rows = [], []


_writer: _WorkerWriter | None = None


def _start_writer(database: str, run_id: int, turns: workers.Turns) -> None:
    """A worker's initializer: it writes the new files it parses (see _WorkerWriter)."""
    global _writer
    _writer = _WorkerWriter(database, run_id, turns)


@dataclass
class _Chunk:
    """Files handed to the workers together; ``outcomes`` once parsed here instead."""

    candidates: list[Candidate]
    tasks: list[Task | None]
    future: Future[list[_WireOutcome | int | None]]
    outcomes: list[Outcome | int | None] | None = None


def _steal(queued: collections.deque[_Chunk]) -> _Chunk | None:
    """The newest queued chunk whose task no worker has started (now cancelled)."""
    for chunk in reversed(queued):
        if chunk.outcomes is None and chunk.future.cancel():
            return chunk
    return None


def parse_tasks(tasks: list[Task | None]) -> list[Outcome | None]:
    """:func:`parse_task` over a chunk of files."""
    return [None if t is None else parse_task(t) for t in tasks]


#: Files per chunk handed to a worker that parses (and to one that also writes: fewer
#: hand-outs and turns at the write lock; 246,423 records took 3.5-4.1 s in chunks of
#: 256 files, 4.0-4.3 s in chunks of 64, best and median of four).
CHUNK_FILES = 64
CHUNK_FILES_WRITING = 256
#: Files whose stored state is looked up together, when parsing in this process.
LOOKUP_FILES = 256
#: How much record text workers may have parsed ahead of the writer; with at most
#: TASK_MAX_BYTES per file, this bounds the memory in flight.
AHEAD_BYTES = 8 * 1024 * 1024
MAX_CHUNKS_AHEAD = 64
#: Below this many files an import parses in its own process (a pool costs more).
PARALLEL_MIN_FILES = 512


def default_jobs(writing: bool = False) -> int:
    """Worker processes for a large import, at most 8; none on one CPU. One per CPU when
    they write what they parse (``writing``: the importing process only hands out
    files); otherwise one per CPU but the writer's. On 2 CPUs, for 246,423 records into
    an empty store: two writing workers took 3.0-3.4 s, where one parsing worker and
    the writer took 3.7-4.5 s; one writing worker 4.3-4.5 s; three, no better."""
    jobs = workers.default_jobs(8)
    return min(jobs + 1, 8) if writing and jobs else jobs


# --------------------------------------------------------------------------- writing


class Importer:
    """Writes parsed files into the store within one import run.

    Small files are read, hashed and parsed as :class:`Task`\\ s, in worker processes
    for a large import, and written in the order they were found; larger files are
    streamed here. New files (the common case) are written in batches: their ``files``
    rows, records and failures go in with one ``executemany`` each and one commit per
    batch, file ids being handed out here (the run holds the writer lock). A file's row
    is written in the same transaction as its last records, with its digest; so after a
    crash a file is either fully imported or read again. Changed files are compared
    record by record, backing up every row they replace.
    """

    def __init__(self, conn: Connection, run_id: int, result: ImportResult):
        self.conn = conn
        self.run_id = run_id
        self.result = result
        self._tx = conn.begin()
        self.next_file_id = int(conn.execute(select(func.max(files.c.id))).scalar() or 0) + 1
        # What the store held, before this run, for the files about to be dispatched
        # (None: nothing); looked up a window of files at a time, so memory does not
        # grow with the number of files stored.
        self._window: dict[str, tuple[int, str, str, int] | None] = {}
        self._had_files = self.next_file_id > 1
        self._deferred_indexes = False  # see _defer_indexes
        self.file_rows: list[tuple[Any, ...]] = []
        self.record_rows: list[Row] = []
        self.failure_rows: list[tuple[Any, ...]] = []
        self.pending_bytes = 0
        self._specs: dict[str, DomainSpec] = {}
        # Paths handed out as tasks and not written yet, with what the store held for
        # them then (still true when written: a path is never in flight twice).
        self._in_flight: dict[str, tuple[int, str, str, int] | None] = {}
        self._written = _PathFilter()  # the paths of the new files written in this run
        self.bytes_as_text = conn.dialect.name == "sqlite"
        self.sql_file, self.sql_record, self.sql_failure = _insert_statements(placeholder(conn), self.bytes_as_text)
        # While worker processes write the new files they parse, the turns they take at
        # the write lock: this importer then holds a transaction only around its own
        # writes, in its turn.
        self._turns: workers.Turns | None = None

    def flush(self, *, again: bool = True) -> None:
        """Write what is pending and commit (``again``: and begin the next transaction;
        never while workers write, see :meth:`_exclusive`)."""
        if self._turns is not None and not self._tx.is_active:
            self._tx = self.conn.begin()
            again = False
        self._execute_pending()
        self.pending_bytes = 0
        self._tx.commit()
        if again:
            self._tx = self.conn.begin()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """While workers write (``_turns``): one transaction of this importer's own,
        begun here in its turn and committed at the end, so no transaction is held while
        the workers write. Otherwise, the running one."""
        if self._turns is None or self._tx.is_active:
            yield
            return
        with self._turns:
            self._tx = self.conn.begin()
            try:
                yield
                self.flush(again=False)
            except BaseException:
                # Before the turn passes: a worker in its turn would wait on this
                # transaction, and the pool being shut down, on that worker.
                self._tx.rollback()
                raise

    def _execute_pending(self) -> None:
        if self.file_rows:
            self.conn.exec_driver_sql(self.sql_file, self.file_rows)
        if self.record_rows:
            rows = self.record_rows
            if not self.bytes_as_text:
                rows = [(d, k, v, as_text(t), f, p, r) for d, k, v, t, f, p, r in rows]
            self.conn.exec_driver_sql(self.sql_record, rows)
        if self.failure_rows:
            self.conn.exec_driver_sql(self.sql_failure, self.failure_rows)
        self.file_rows, self.record_rows, self.failure_rows = [], [], []

    def _batch_full(self) -> bool:
        rows = len(self.record_rows) + len(self.file_rows) + len(self.failure_rows)
        return rows >= BATCH_RECORDS or self.pending_bytes >= BATCH_BYTES

    def _stored(self, relpaths: list[str]) -> dict[str, tuple[int, str, str, int]]:
        """What the store holds for ``relpaths``, in one statement: (file id, digest,
        domain, records) by path."""
        if not relpaths:
            return {}
        mark = placeholder(self.conn)
        rows = self.conn.exec_driver_sql(
            "SELECT path, id, digest, domain, (SELECT count(*) FROM records WHERE records.file_id = files.id) "
            f"FROM files WHERE path IN ({', '.join([mark] * len(relpaths))})",
            tuple(relpaths),
        )
        return {path: (fid, digest, dom, count) for path, fid, digest, dom, count in rows}

    def _look_ahead(self, relpaths: list[str]) -> None:
        """Look up what the store held before this run for the files about to be
        dispatched (paths that are not UTF-8 are refused unread)."""
        self._window = dict.fromkeys(relpaths)
        if self._had_files:
            self._window.update(self._stored([p for p in relpaths if jsoncodec.is_utf8(p)]))

    def _known(self, relpath: str) -> tuple[int, str, str, int] | None:
        """What the store holds for ``relpath``: (file id, digest, domain, records). A
        file written or changed in this run (rare: a path given twice) is looked up
        again; any other, in the window looked up ahead, else on its own."""
        if relpath in self._written:
            with self._exclusive():
                self._execute_pending()
                entry = self._stored([relpath]).get(relpath)
                if entry is not None:  # not one of the filter's rare false alarms
                    self._build_indexes()  # from here on, this import reads what it wrote
            return entry
        if relpath in self._window:
            return self._window[relpath]
        return self._stored([relpath]).get(relpath) if self._had_files else None

    def _defer_indexes(self) -> None:
        """Into an empty store, records go in without the indexes on them, which are built
        once at the end (or as soon as the import must look up what it wrote). Batches
        still commit as they go; a stopped import leaves the indexes to the next writer.
        Not when workers write: they keep the indexes as they go, which spreads that
        work over them instead of leaving it all to this process at the end (246,423
        records: 3.4-3.6 s, against 3.5-4.1 s)."""
        drop_record_indexes(self.conn)
        self._deferred_indexes = True

    def _build_indexes(self) -> None:
        if self._deferred_indexes:
            restore_record_indexes(self.conn)
            self._deferred_indexes = False

    def close(self) -> None:
        self._execute_pending()
        self._build_indexes()
        self._tx.commit()

    def rollback(self) -> None:
        """Give up the batch being written; what was committed keeps its indexes."""
        if self._tx.is_active:
            self._tx.rollback()
        if self._deferred_indexes:
            # Best effort: the error being raised is the one to show, and if the indexes
            # cannot be built now (a full disk), the next writer builds them first thing.
            with contextlib.suppress(Exception), self.conn.begin():
                self._build_indexes()

    # ------------------------------------------------------------------ a run's files

    def import_all(self, candidates: Iterable[Candidate], jobs: int | None = None, advance: Any = None) -> None:
        """Import every candidate, in order. ``jobs``: worker processes parsing small
        files (``None``: :func:`default_jobs` when there are many files; 0: none)."""
        result = self.result
        for cand, outcome in self._outcomes(iter(candidates), jobs):
            if cand.domain is None:
                result.skipped += 1
            elif isinstance(outcome, int):  # a new file a worker wrote whole: nothing to report
                result.files += 1
                result.counts(cand.domain.name).imported += outcome
                del self._in_flight[cand.relpath]
                self._written.add(cand.relpath)
            else:
                result.files += 1
                self.import_one(cand, outcome)
            if advance is not None:
                advance(1)

    def import_one(self, cand: Candidate, outcome: Outcome | None) -> None:
        """Write one file: what its task found, or (``None``, ``large``) read it here."""
        known = self._in_flight.pop(cand.relpath, None) if outcome is not None else None
        if outcome is None or outcome.kind == "large":
            with self._exclusive():
                self.import_file(cand)
        elif known is not None:  # compared with what the store holds
            with self._exclusive():
                self.write(cand, outcome, known)
        else:  # rows to add to the batch, at most
            self.write(cand, outcome, known)
        if self._batch_full():
            self.flush()

    def _task(self, cand: Candidate) -> Task | None:
        """The task for ``cand``, or ``None`` when it is imported here: no domain, a name
        that is not UTF-8, or a path handed out and not written yet (given twice: the
        second must see the first one written)."""
        domain = cand.domain
        if domain is None or cand.relpath in self._in_flight or not jsoncodec.is_utf8(cand.relpath):
            return None
        known = self._in_flight[cand.relpath] = self._known(cand.relpath)
        spec = self._specs.get(domain.name)
        if spec is None:
            spec = self._specs[domain.name] = DomainSpec(domain.name, domain.version, domain.version_field)
        if known is None and self._turns is not None:  # new: the worker writes it, under this id
            return Task(cand.path, cand.relpath, spec, None, self._new_file_id())
        return Task(cand.path, cand.relpath, spec, known[1] if known and known[2] == domain.name else None)

    def _outcomes(self, candidates: Iterator[Candidate], jobs: int | None) -> Iterator[tuple[Candidate, Outcome | int | None]]:
        # Into a store with no files yet (a first, bulk import: no file is looked up or
        # changed), the workers write the new files they parse themselves.
        database = None if self._had_files else sqlite_file(self.conn.engine)
        if jobs is None:
            head = list(itertools.islice(candidates, PARALLEL_MIN_FILES))
            jobs = default_jobs(database is not None) if len(head) == PARALLEL_MIN_FILES else 0
            candidates = itertools.chain(head, candidates)
        if not self._had_files and not (database is not None and jobs > 0):
            self._defer_indexes()
        if jobs < 1:
            with background_checkpoints(self.conn.engine):
                while window := list(itertools.islice(candidates, LOOKUP_FILES)):
                    self._look_ahead([c.relpath for c in window if c.domain is not None])
                    for cand in window:
                        task = self._task(cand)
                        yield cand, None if task is None else parse_task(task)
            return
        if database is not None:
            self.flush(again=False)  # the workers write from here on: no transaction held
        try:
            yield from self._pooled(candidates, jobs, database)
        finally:
            if database is not None:
                self._turns = None
                if not self._tx.is_active:  # (one is, when writing a file here failed)
                    self._tx = self.conn.begin()

    def _pooled(self, candidates: Iterator[Candidate], jobs: int, database: str | None) -> Iterator[tuple[Candidate, Outcome | int | None]]:
        with contextlib.ExitStack() as stack:
            start: tuple[Any, tuple[Any, ...]] = (None, ())
            if database is not None:
                self._turns = stack.enter_context(workers.turns())
                start = (_start_writer, (database, self.run_id, self._turns))
            pool = stack.enter_context(workers.pool(jobs, "import", initializer=start[0], initargs=start[1]))
            stack.enter_context(background_checkpoints(self.conn.engine))
            assert pool is not None  # import tasks can be pickled: any start method will do
            queued: collections.deque[_Chunk] = collections.deque()
            seen_bytes = seen_chunks = 0

            def room() -> bool:
                """Whether one more chunk may be parsed ahead of the writer (which pauses
                for every batch): as far as AHEAD_BYTES of record text, judged by the
                chunks seen so far."""
                if len(queued) >= MAX_CHUNKS_AHEAD:
                    return False
                if len(queued) <= 2 * jobs:
                    return True
                return seen_chunks > 0 and len(queued) * seen_bytes <= AHEAD_BYTES * seen_chunks

            while True:
                chunk = list(itertools.islice(candidates, CHUNK_FILES if database is None else CHUNK_FILES_WRITING))
                if chunk:
                    self._look_ahead([c.relpath for c in chunk if c.domain is not None])
                    tasks = [self._task(c) for c in chunk]
                    queued.append(_Chunk(chunk, tasks, workers.submit(pool, "import", parse_wire, _to_wire(tasks))))
                while queued and (not chunk or not room()):
                    oldest = queued.popleft()
                    # Rather than wait for the workers, parse here the newest chunk
                    # none of them has started: the writer's idle time becomes parsing.
                    # Not when the workers write: this process, which hands out the
                    # files, would become the bottleneck (measured in the sixth
                    # session: with it, 4.5-5.1 s; without, 3.1-3.7 s).
                    while database is None and not oldest.future.done() and (stolen := _steal(queued)) is not None:
                        stolen.outcomes = list(parse_tasks(stolen.tasks))
                    outcomes = oldest.outcomes
                    if outcomes is None:
                        outcomes = _from_wire(workers.result(oldest.future, "import"))
                    seen_bytes += sum(o.nbytes for o in outcomes if isinstance(o, Outcome))
                    seen_chunks += 1
                    yield from zip(oldest.candidates, outcomes)
                if not chunk:
                    return

    def write(self, cand: Candidate, outcome: Outcome, known: tuple[int, str, str, int] | None) -> None:
        """Write what a task found (``parsed``, ``unchanged`` or ``unreadable``), given
        what the store held for the file (``known``)."""
        assert cand.domain is not None
        name = cand.domain.name
        counts = self.result.counts(name)
        if outcome.kind == "unreadable":
            counts.failed += 1
            self.record_problem(outcome.problems[0], name)
            return
        if outcome.kind == "unchanged":
            assert known is not None
            counts.unchanged += known[3]
            return
        if outcome.kind == "written":
            counts.imported += outcome.written
            self._report(outcome, name, counts)
            if outcome.written or not outcome.fatal:
                self._written.add(cand.relpath)
            return
        if known is None:
            file_row, rows = _new_file_rows(cand.relpath, name, self._new_file_id(), self.run_id, outcome)
            self.record_rows += rows
            self.pending_bytes += outcome.nbytes
            counts.imported += len(rows)
            self._report(outcome, name, counts)
            if file_row is not None:
                self.file_rows.append(file_row)
                self._written.add(cand.relpath)
        else:
            found = itertools.starmap(ParsedRecord, zip(outcome.keys, outcome.versions, outcome.texts, outcome.positions))
            self._import_changed(cand, found, outcome, outcome.digest, counts, known[0])

    def _new_file_id(self) -> int:
        self.next_file_id += 1
        return self.next_file_id - 1

    def import_file(self, cand: Candidate) -> None:
        """Read and import one file here, streaming its records."""
        assert cand.domain is not None
        domain = cand.domain
        counts = self.result.counts(domain.name)
        if not jsoncodec.is_utf8(cand.relpath):
            read: FileRead | InputError = InputError(
                display_path(cand.relpath), "file name is not valid UTF-8; rename the file to import it"
            )
        else:
            read = read_or_problem(cand.path, cand.relpath)
        if isinstance(read, InputError):
            counts.failed += 1
            self.record_problem(read, domain.name)
            return
        digest = read.digest
        known = self._known(cand.relpath)
        if known is not None and known[1] == digest and known[2] == domain.name:
            counts.unchanged += known[3]
            return
        parse = FileParse(cand.path, cand.relpath, domain, read.data)
        found = read_records(parse, read)
        if known is None:
            file_id, name, run = self._new_file_id(), domain.name, self.run_id
            rows = ((name, r.key, r.version, r.text, file_id, r.position, run) for r in found)
            self._import_new(cand, rows, parse, digest, counts, file_id)
        else:
            self._import_changed(cand, found, parse, digest, counts, known[0])

    def _report(self, parse: Outcome | FileParse, domain: str, counts: DomainCounts) -> None:
        for problem in parse.problems:
            if isinstance(problem, NewerVersionError):
                counts.rejected += 1
            else:
                counts.failed += 1
            self.record_problem(problem, domain)

    def _import_new(
        self,
        cand: Candidate,
        rows: Iterable[Row],
        parse: Outcome | FileParse,
        digest: str,
        counts: DomainCounts,
        file_id: int,
    ) -> None:
        """A new file read here: ``rows``, an iterator, written in batches, for a file of
        any size. ``parse`` is read after."""
        assert cand.domain is not None
        name, run = cand.domain.name, self.run_id
        row_written = False  # the file's row went in early, to carry a huge file's first batches
        n = 0
        batch = self.record_rows
        for row in rows:
            batch.append(row)
            self.pending_bytes += len(row[3])
            n += 1
            if self._batch_full():
                if not row_written:
                    self.file_rows.append((file_id, cand.relpath, name, "lines", "", "", "", None, "", run))
                    row_written = True
                self.flush()
                batch = self.record_rows
        counts.imported += n
        self._report(parse, name, counts)
        if parse.fatal and not n:
            return
        layout = parse.layout
        assert layout is not None  # set by every parse that got this far
        final_digest = "" if parse.problems else digest  # refused records: look again next time
        values = (name, layout.container, layout.head, layout.sep, layout.tail, layout.indent, final_digest, run)
        if row_written:  # a new file has no old layout to keep: even a broken one gets what was read
            self.conn.execute(
                update(files)
                .where(files.c.id == file_id)
                .values(dict(zip(("domain", "container", "head", "sep", "tail", "indent", "digest", "run_id"), values)))
            )
        else:
            self.file_rows.append((file_id, cand.relpath, *values))
        self._written.add(cand.relpath)

    def _import_changed(
        self,
        cand: Candidate,
        found: Iterable[ParsedRecord],
        parse: Outcome | FileParse,
        digest: str,
        counts: DomainCounts,
        file_id: int,
    ) -> None:
        assert cand.domain is not None
        name = cand.domain.name
        self.flush()  # new files' rows first: this path writes directly
        batch: list[ParsedRecord] = []
        for rec in found:
            batch.append(rec)
            if len(batch) >= BATCH_RECORDS:
                self._write_changed(batch, file_id, name, counts)
                batch = []
                self.flush()
        self._write_changed(batch, file_id, name, counts)
        self._report(parse, name, counts)
        if parse.fatal:  # keep the old layout and the records not reached
            self.conn.execute(update(files).where(files.c.id == file_id).values(digest=""))
            self._written.add(cand.relpath)  # a later copy of the path reads the store again
            return
        # Records past the new end of the file: back them up, then remove them.
        counts.removed += self._remove_beyond(file_id, parse.slots)
        layout = parse.layout
        assert layout is not None  # set by every parse that got this far
        final_digest = "" if parse.problems else digest
        self.conn.execute(
            update(files)
            .where(files.c.id == file_id)
            .values(
                domain=name,
                container=layout.container,
                head=layout.head,
                sep=layout.sep,
                tail=layout.tail,
                indent=layout.indent,
                digest=final_digest,
                run_id=self.run_id,
            )
        )
        self._written.add(cand.relpath)  # a later copy of the path reads the store again

    def record_problem(self, problem: InputError, domain: str | None) -> None:
        self.result.problems.append(problem)
        self.failure_rows.append(
            (
                self.run_id,
                domain,
                problem.path,
                problem.line,
                _sql_int(getattr(problem, "version", None)),
                _sql_int(getattr(problem, "current_version", None)),
                problem.reason,
            )
        )

    def _write_changed(self, batch: list[ParsedRecord], file_id: int, domain: str, counts: DomainCounts) -> None:
        if not batch:
            return
        positions = [r.position for r in batch]
        old = {
            row.position: row
            for row in self.conn.execute(
                select(records.c.id, records.c.position, records.c.key, records.c.payload, records.c.domain).where(
                    records.c.file_id == file_id, records.c.position.in_(positions)
                )
            )
        }
        changed: list[dict[str, Any]] = []
        for r in batch:
            row = old.get(r.position)
            r = r._replace(text=as_text(r.text))
            if row is None:
                self.record_rows.append((domain, r.key, r.version, r.text, file_id, r.position, self.run_id))
                counts.imported += 1
            elif row.payload == r.text and row.key == r.key and row.domain == domain:
                counts.unchanged += 1
            else:
                changed.append(
                    {"rid": row.id, "domain": domain, "key": r.key, "version": r.version, "payload": r.text}
                )
        if changed:
            backup_rows(self.conn, [c["rid"] for c in changed], self.run_id, "import")
            self.conn.execute(
                update(records)
                .where(records.c.id == bindparam("rid"))
                .values(
                    domain=bindparam("domain"),
                    key=bindparam("key"),
                    version=bindparam("version"),
                    payload=bindparam("payload"),
                    run_id=self.run_id,
                ),
                changed,
            )
            counts.updated += len(changed)

    def _remove_beyond(self, file_id: int, count: int) -> int:
        ids = list(
            self.conn.execute(
                select(records.c.id).where(records.c.file_id == file_id, records.c.position >= count)
            ).scalars()
        )
        if ids:
            backup_rows(self.conn, ids, self.run_id, "remove")
            self.conn.execute(records.delete().where(records.c.id.in_(ids)))
        return len(ids)


class _PathFilter:
    """A set of paths that may answer "maybe" for a path never added (a Bloom filter of
    fixed size, 2 MB): memory does not grow with the paths added; a false "maybe" costs
    one lookup in the store (about 1% of paths after a million)."""

    BITS = 1 << 24

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS // 8)

    def add(self, path: str) -> None:
        h, mask = hash(path), self.BITS - 1
        for i in (h & mask, (h >> 24) & mask):
            self.bits[i >> 3] |= 1 << (i & 7)

    def __contains__(self, path: str) -> bool:
        h, mask, bits = hash(path), self.BITS - 1, self.bits
        i, j = h & mask, (h >> 24) & mask
        return bool(bits[i >> 3] & (1 << (i & 7))) and bool(bits[j >> 3] & (1 << (j & 7)))


def as_text(text: str | bytes | bytearray) -> str:
    return text if isinstance(text, str) else text.decode("utf-8")


def _changed_since(path: str, before: os.stat_result) -> bool:
    try:
        return _moved(before, os.stat(path))
    except OSError:
        return True


def _moved(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether ``after`` shows another file, or the same one written to."""
    return (before.st_ino, before.st_dev, before.st_size, before.st_mtime_ns) != (
        after.st_ino, after.st_dev, after.st_size, after.st_mtime_ns
    )


def _sql_int(value: int | None) -> int | None:
    """``value`` if SQLite can store it as an INTEGER, else ``None`` (the reason names it)."""
    return value if value is None or -(2**63) <= value < 2**63 else None


_BACKUP = (
    "INSERT INTO backups (run_id, record_id, domain, key, version, payload, file_id, position, "
    "origin_run_id, reason) SELECT {mark}, id, domain, key, version, payload, file_id, position, "
    "run_id, {mark} FROM records WHERE "
)


def backup_rows(conn: Connection, record_ids: list[int], run_id: int, reason: str) -> None:
    """Copy the current rows of ``record_ids`` into ``backups``, exactly as they are."""
    if not record_ids:
        return
    mark = placeholder(conn)
    conn.exec_driver_sql(_BACKUP.format(mark=mark) + f"id = {mark}", [(run_id, reason, rid) for rid in record_ids])


def backup_span(conn: Connection, domain: str, version: int, first_id: int, last_id: int, run_id: int, reason: str) -> None:
    """Copy the current rows of ``domain`` at ``version`` with ids from ``first_id`` to
    ``last_id`` into ``backups``: one range scan of the (domain, version, id) index
    instead of one statement per row."""
    mark = placeholder(conn)
    conn.exec_driver_sql(
        _BACKUP.format(mark=mark) + f"domain = {mark} AND version = {mark} AND id >= {mark} AND id <= {mark}",
        (run_id, reason, domain, version, first_id, last_id),
    )
