"""Finding files and parsing their records: in the importing process, or in worker
processes that hand back what they found or (into a store without files yet) write it.

Nothing here uses SQLAlchemy: the workers write with :mod:`sqlite3` directly, and the
importer (:mod:`recordstore.importer`) writes the rest. A file is read once; its records
keep their exact JSON text (so an export of an unmigrated record gives back the bytes it
came from), and the text around them (``head``, ``sep``, ``tail``) is kept for its row
in ``files``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

from . import jsoncodec, workers
from .connections import configure_connection
from .errors import InputError, NewerVersionError, printable
from .registry import Domain, Registry

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
    gone: list[str] | None = None,
) -> Iterator[Candidate]:
    """Yield the files below ``paths`` with their domains (``None``: no domain).
    A directory below one given that is gone when the walk comes to it (see
    :func:`vanished`) is added to ``gone``, not to ``problems``.

    Directories are walked following links to directories, each directory once (so
    link loops end and nothing is read twice); a file given by itself is matched by the
    shortest trailing part of its path that a domain's pattern accepts, unless
    ``domain`` is given. A path given again (however it is spelled: ``home``,
    ``home/``, ``./home``) is read once; a link is a path of its own. A file given by
    itself whose key (that trailing part, or with ``domain`` its name) is another
    given file's is refused, as a problem: one would replace the other's records; one
    that is also below a given directory, under the same key, is read once.
    """
    given_paths = list(paths)
    # (os.path's tests: pathlib's raise OSError for a name too long, say, where these
    # say False, and the path is then reported below as one that cannot be read.)
    homes = [Path(raw) for raw in given_paths if os.path.isdir(raw)]
    lone: dict[str, str] = {}  # the key of each file given by itself: its real path
    # The keys of the files given by themselves, and of those keys, the real paths read
    # by themselves and below a directory: a file given both ways is read once.
    lone_keys = {_lone(Path(raw), registry, domain).relpath for raw in given_paths if os.path.isfile(raw)}
    read_alone: dict[str, str] = {}
    read_below: dict[str, str] = {}
    seen: set[str] = set()
    for raw in given_paths:
        root = Path(raw)
        given = os.path.normpath(os.path.abspath(root))
        if given in seen:
            continue
        seen.add(given)
        if os.path.isdir(root):
            top = os.fspath(root)
            cut = len(top.rstrip(os.sep)) + 1
            match = registry.match if domain is None else _forced(domain)
            walked: set[tuple[int, int]] = set()
            _first_visit(walked, top)
            # A directory that cannot be read is a problem only where a record could be.
            may_hold = (lambda rel: not _hidden(rel)) if domain is not None else registry.may_match_below
            onerror = _walk_error(problems, root, top, may_hold, gone)
            for dirpath, dirnames, filenames in os.walk(top, onerror=onerror, followlinks=True):
                base = dirpath if dirpath.endswith(os.sep) else dirpath + os.sep
                dirnames[:] = [d for d in sorted(dirnames) if _first_visit(walked, base + d)]
                prefix = dirpath[cut:].replace(os.sep, "/")
                head = prefix + "/" if prefix else ""
                for name in sorted(filenames):
                    rel = head + name
                    found = match(rel)
                    if rel in lone_keys and found is not None:
                        real = os.path.realpath(base + name)
                        if read_alone.get(rel) == real:
                            continue  # read already, given by itself
                        read_below.setdefault(rel, real)
                    yield Candidate(base + name, rel, found)
            continue
        absent = not_there(raw)
        if absent is not None:
            if problems is not None:
                problems.append(absent)
            continue
        cand = _lone(root, registry, domain)
        other = _keyed_alike(cand, lone, homes)
        if other is not None:
            if problems is not None:
                problems.append(
                    InputError(
                        display_path(str(raw)),
                        f"not imported: its key {cand.relpath!r} is also that of {display_path(other)}, given in "
                        "this import (one would replace the other's records)",
                    )
                )
            continue
        if cand.domain is not None:
            real = os.path.realpath(cand.path)
            if read_below.get(cand.relpath) == real:
                continue  # read already, below a directory given
            read_alone.setdefault(cand.relpath, real)
        yield cand


def not_there(raw: str | os.PathLike[str]) -> InputError | None:
    """The problem of a path given to import that names nothing to read: not there, or
    a link to nothing (a home moved from under its link: a problem, as a path that is
    not there is; not a file in no domain, skipped); ``None`` for any other."""
    try:
        os.lstat(raw)
    except (OSError, ValueError) as exc:  # (ValueError: a NUL in it)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no such file or directory"
        return InputError(display_path(str(raw)), reason[:1].lower() + reason[1:])
    broken = broken_link(raw)
    if broken is not None:
        return InputError(display_path(str(raw)), f"it is {broken}")
    return None


def check_given(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an import none of whose ``paths`` is there (a home the application moved,
    a mistyped path), with the :class:`InputError` of the first: there is nothing to
    import, so no store is made for it and no run recorded. One path missing among
    others is one of the import's problems, and the others are imported."""
    given = [os.path.expanduser(p) for p in paths]  # as the import expands them
    absent = [problem for problem in map(not_there, given) if problem is not None]
    if given and len(absent) == len(given):
        first = absent[0]
        more = " (nor is any other path given)" if len(given) > 1 else ""
        raise InputError(first.path, f"{first.reason}{more}: nothing to import")


def several_roots(paths: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether ``paths`` name more than one directory (however each is spelled): files
    below two of them may have the same path from their roots."""
    return len({os.path.normpath(os.path.abspath(p)) for p in paths if os.path.isdir(p)}) > 1


def _lone(root: Path, registry: Registry, domain: Domain | None) -> Candidate:
    """A file given by itself, with its key and domain."""
    if domain is not None:  # named itself: in the domain, whatever its name
        return Candidate(str(root), root.name, domain)
    parts = root.absolute().parts
    for n in range(1, len(parts)):
        rel = "/".join(parts[-n:])
        found = registry.match(rel)
        if found is not None:
            return Candidate(str(root), rel, found)
    return Candidate(str(root), root.name, None)


def _keyed_alike(cand: Candidate, lone: dict[str, str], homes: list[Path]) -> str | None:
    """Another file given in this import (by itself, or below a directory) that has the
    key of ``cand``, a file given by itself; ``None`` if there is none."""
    if cand.domain is None:  # not imported anyway
        return None
    real = os.path.realpath(cand.path)
    known = lone.setdefault(cand.relpath, real)
    if known != real:
        return known
    for home in homes:
        other = os.path.join(home, *cand.relpath.split("/"))
        if os.path.isfile(other) and os.path.realpath(other) != real:
            return other
    return None


def _first_visit(walked: set[tuple[int, int]], path: str) -> bool:
    """Whether the directory at ``path`` (perhaps through a link) is walked for the first
    time in this walk; a loop or a second way to one directory is walked once."""
    try:
        info = os.stat(path)
    except OSError:
        return True  # os.walk reports it
    found = (info.st_dev, info.st_ino)
    if found in walked:
        return False
    walked.add(found)
    return True


#: A file's path as one printable line (see :func:`~recordstore.errors.printable`).
display_path = printable


def broken_link(path: str | os.PathLike[str]) -> str | None:
    """What the link at ``path`` is, if it leads nowhere: ``a symbolic link loop`` or
    ``a link to TARGET, which does not exist``; ``None`` for anything else."""
    if not os.path.islink(path) or os.path.exists(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
    try:
        return f"a link to {display_path(os.readlink(path))}, which does not exist"
    except OSError:  # (gone meanwhile)
        return None


def _walk_error(
    problems: list[InputError] | None, root: Path, top: str, may_hold: Callable[[str], bool], gone: list[str] | None
) -> Any:
    def report(exc: OSError) -> None:
        if exc.filename is not None:
            rel = os.path.relpath(exc.filename, top).replace(os.sep, "/")
            if rel != ".." and not rel.startswith("../") and not may_hold("" if rel == "." else rel):
                # No pattern reaches below it (an application's artifacts, say, made
                # unreadable by a sandbox): its files would all be skipped anyway.
                return
            if rel != "." and vanished(os.fspath(exc.filename), exc):
                # Listed by its parent, then removed or renamed before the walk came to
                # it: counted as a file gone is. (The directory given itself, gone, is
                # a problem, as a path given that is not there is.)
                if gone is not None:
                    gone.append(display_path(os.fspath(exc.filename)))
                return
        if problems is not None:
            where = display_path(str(exc.filename or root))
            problems.append(InputError(where, f"cannot read directory: {exc.strerror}"))

    return report


def _forced(domain: Domain) -> Callable[[str], Domain | None]:
    """The domain of each file below a directory imported into ``domain``: ``domain``
    for its JSON files, none for the others, nor for a hidden one (a file named itself
    is in ``domain`` whatever its name)."""
    return lambda rel: domain if rel.endswith(JSON_SUFFIXES) and not _hidden(rel) else None


def _hidden(rel: str) -> bool:
    """Whether the path ``rel`` below a directory given has a part whose name starts
    with ``.``: no application names a record so, and what lies in its directories so
    is a macOS ``._x.json`` fork, an editor's lock or a temporary file (``.tmpA.json``),
    which the built-in registry's patterns (``[!.]*.json``) skip too."""
    return rel.startswith(".") or "/." in rel


# --------------------------------------------------------------------------- parsing


class ParsedRecord(NamedTuple):
    key: str
    version: int
    text: str | bytes  # the record's exact JSON text; bytes: UTF-8, as read
    position: int


class Refused(NamedTuple):
    """A record the import refused (its problem says why), as its file held it: kept in
    its slot so that export writes it back where it was."""

    key: str
    text: bytes
    position: int


#: What parsing a file yields, slot by slot.
Slot = ParsedRecord | Refused


class DomainSpec(NamedTuple):
    """What parsing needs of a domain (a :class:`Domain` carries step functions, which
    need not pickle; this goes to worker processes)."""

    name: str
    version: int
    version_field: str


#: A record as it is written: (domain, key, version, text, file_id, position, run_id).
Row = tuple[str, str, int, str | bytes | bytearray, int, int, int]
#: A refused record's text as it is written: (file_id, position, key, text, run_id).
RefusedRow = tuple[int, int, str, bytes, int]


class FileLayout(NamedTuple):
    """The text around a file's records: ``head + sep.join(records) + tail``, where
    ``gaps`` (JSON: slot number -> text) holds each text between two slots that is not
    ``sep`` (an array's odd separator; in a JSON-lines file, the line ending before a
    slot and the blank lines between, when they are not ``sep`` each and empty)."""

    container: str  # "object", "array" or "lines"
    head: str = ""
    sep: str = ""
    tail: str = ""
    indent: int | None = None
    gaps: str | None = None


#: The most text a file's ``gaps`` keep; odd separators beyond it (only a hostile file
#: has so many) come back as the file's usual one.
GAPS_MAX_BYTES = 64 * 1024


class _Gaps:
    """A file's odd gaps (see :class:`FileLayout`) as they are found, up to GAPS_MAX_BYTES.
    A gap the slot before had too is kept with it, as a run (``"FIRST-LAST"``): a log
    whose first line ends in LF and the thousands after it in CRLF keeps them all in one
    (one entry a line, they went past the limit and came back as LF)."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.size = 0
        self.run: tuple[int, int, str] | None = None  # the last gap kept: its first and last slot, its text

    def add(self, slot: int, text: str) -> None:
        run = self.run
        if run is not None and slot == run[1] + 1 and text == run[2]:
            del self.found[str(run[0]) if run[0] == run[1] else f"{run[0]}-{run[1]}"]
            self.found[f"{run[0]}-{slot}"] = text
            self.run = (run[0], slot, text)
            return
        self.size += len(text) + 8
        if self.size <= GAPS_MAX_BYTES:
            self.found[str(slot)] = text
            self.run = (slot, slot, text)
        else:
            self.run = None

    def text(self) -> str | None:
        return json.dumps(self.found, separators=(",", ":")) if self.found else None


class OddGaps:
    """A file's ``gaps`` (its flags taken out) as export reads them: the gap of each
    slot, or ``None`` for the usual separator, asked for in slot order."""

    def __init__(self, found: dict[str, str]):
        self.one: dict[int, str] = {}
        runs: list[tuple[int, int, str]] = []
        for key, text in found.items():
            first, dash, last = key.partition("-")
            if not (first.isdigit() and first.isascii() and (not dash or (last.isdigit() and last.isascii()))):
                continue  # a word of a later recordstore's, which this one does not know
            if dash:
                runs.append((int(first), int(last), text))
            else:
                self.one[int(key)] = text
        self.runs = sorted(runs)
        self.next = 0  # the first run that may hold the slots still to be asked for

    def __bool__(self) -> bool:
        return bool(self.one or self.runs)

    def get(self, slot: int) -> str | None:
        text = self.one.get(slot)
        if text is not None or not self.runs:
            return text
        runs, i = self.runs, self.next
        while i < len(runs) and runs[i][1] < slot:
            i += 1
        self.next = i
        return runs[i][2] if i < len(runs) and runs[i][0] <= slot else None


def element_prefix(head: str) -> str:
    """The whitespace that starts each line of an array's elements (from the head):
    what follows the head's last newline, when that comes after the bracket. One before
    it (``\n[``) leaves the bracket on the last line, which is no indent: taking it for
    one cut a ``[`` off the element's lines, and wrote one into them on export."""
    last = head[head.rfind("\n") + 1 :] if "\n" in head else ""
    return last if not last.strip(" \t\r") else ""


def own_prefix(before: str, first: str) -> str:
    """The indent of an array element's lines: that of the line it starts, when the
    text before it (its separator) breaks the line; else ``first``, the first element's
    (:func:`element_prefix`). So an element indented otherwise than the first (tabs
    where it has spaces, or less) keeps its own indent on export."""
    return element_prefix(before) if "\n" in before else first


def dedent(element: str, prefix: str) -> str:
    """Store an array element as if it stood alone: JSON strings hold no raw newline,
    so every newline in the text is layout. Left as it is unless every line has ``prefix``
    or is blank (whitespace alone, or nothing: an editor that trims trailing whitespace
    leaves a blank line within an element without its indent); a blank line is kept as
    it is (see BLANK_LINES)."""
    if not prefix or "\n" not in element:
        return element
    lines = element.split("\n")
    if _BLANK_LINE.search(element) is None:  # the common case
        if all(line.startswith(prefix) for line in lines[1:]):
            return "\n".join([lines[0]] + [line[len(prefix) :] for line in lines[1:]])
        return element
    if all(line.startswith(prefix) or not line.strip(" \t\r") for line in lines[1:]):
        return "\n".join([lines[0]] + [line[len(prefix) :] if line.strip(" \t\r") else line for line in lines[1:]])
    return element


#: In an element's text: a line of whitespace alone, or nothing.
_BLANK_LINE = re.compile(r"\n[ \t\r]*(?=\n|\Z)")
#: ... and a newline that starts any other line.
_FILLED_LINE = re.compile(r"\n(?![ \t\r]*(?:\n|\Z))")


def indent_lines(text: str, prefix: str, blanks: bool) -> str:
    """An array element's text with ``prefix`` put back at the start of its lines (but
    the first), as :func:`dedent` took it off; with ``blanks`` (see BLANK_LINES), not on
    its blank lines, which dedent kept as they were."""
    if not blanks or _BLANK_LINE.search(text) is None:
        return text.replace("\n", "\n" + prefix)
    return _FILLED_LINE.sub(lambda _: "\n" + prefix, text)


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
        raise ValueError(f"{domain.version_field} must be a positive integer, not {_int_shown(version)}")
    return version


def _int_shown(value: int) -> str:
    """An integer as a problem shows it: its digits, or for one beyond the interpreter's
    digit limit (which ``str()`` refuses: thousands of digits), the first of them and
    how many there are."""
    try:
        return int.__repr__(value)
    except ValueError:
        digits = jsoncodec.int_text(abs(value))
        return f"{'-' if value < 0 else ''}{digits[:20]}... ({len(digits)} digits)"


class _ShownInt(int):
    """An integer that formats as :func:`_int_shown` shows it, for a message built
    elsewhere (:class:`NewerVersionError` formats the version it is given)."""

    def __format__(self, spec: str) -> str:
        return _int_shown(self) if not spec else super().__format__(spec)

    def __str__(self) -> str:
        return _int_shown(self)


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


def indent_of(text: str | bytes, start: int = 0) -> int | None:
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


#: In an array's ``gaps``: its elements are indented each its own way (:func:`own_prefix`).
#: Without it, every element has the first's indent: so stores imported before each
#: element kept its own write their arrays back as they always did.
OWN_INDENTS = "indents"
#: In an array's ``gaps``: its elements' blank lines were stored as they were, not
#: dedented (:func:`dedent`), and go back so. Every array imported since says so (a
#: record put back by a restore may hold blank lines that the file's other records, as
#: a later import found them, do not). Without it, every line of an element gets its
#: indent back: so stores imported before write their arrays back as they always did.
BLANK_LINES = "blanks"


def _odd_seps(seps: list[str], sep: str, own: bool) -> str | None:
    """An array's ``gaps``: its separators that are not ``sep`` (the one before element
    ``i`` is ``seps[i - 1]``), whether its elements have indents of their own, and that
    blank lines in them were kept as they were."""
    gaps = _Gaps()
    gaps.found[BLANK_LINES] = "kept"
    if own:
        gaps.found[OWN_INDENTS] = "own"
    for i, found in enumerate(seps, start=1):
        if found != sep:
            gaps.add(i, found)
    return gaps.text()


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
#: Takes NaN and duplicate keys, and converts no integer (one beyond the digit limit of
#: int() would stop it): only to find where a value ends.
_LOOSE = json.JSONDecoder(parse_int=len)
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
        # Problems already taken from ``problems`` (the importer reports those of a
        # streamed file as they come, so that it never holds one for each bad line).
        self.reported = 0
        self.fatal = False  # not read to its end (an I/O error): the slots not reached keep what the store holds
        self.vanished = False  # gone before any of it was read (see read_records)
        self.opened = False  # of a file streamed, once its streaming pass has opened it
        # ... and once it has read it to its end, what the file it read was then and at first.
        self.streamed: tuple[os.stat_result, os.stat_result] | None = None
        self.slots = 0  # record slots seen, good or bad; positions run from 0 to slots - 1
        self._ends_with_newline = True  # of a JSON-lines file, as far as it was read

    @property
    def had_problems(self) -> bool:
        """Whether any problem was found, reported already or not."""
        return bool(self.problems or self.reported)

    def _fail(self, reason: str, line: int | None = None) -> None:
        self.problems.append(InputError(self.shown, reason, line=line))

    def records(self) -> Iterator[Slot]:
        if self.relpath.endswith(LINE_SUFFIXES):
            yield from self._lines()
            return
        assert self.data is not None
        plain = self._plain_object()
        if plain is not None:
            yield plain
            return
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = self.data.count(b"\n", 0, exc.start) + 1
            self._fail(f"invalid UTF-8 at byte {exc.start}", line)
            yield self._refused_whole()
            return
        body = text.lstrip("\ufeff \t\r\n")
        head = text[: len(text) - len(body)]
        stripped = body.rstrip(" \t\r\n")
        tail = body[len(stripped) :]
        if not stripped:
            self._fail("empty file: no JSON value")
            yield self._refused_whole()
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
            if exc.line is None:
                self._fail(exc.reason)
            else:
                # The text was decoded from where the head ends: its line 1 is the file's
                # line ``first_line``, and on it the head's last line comes first.
                line = exc.line + first_line - 1
                column = exc.column
                if column is not None and exc.line == 1:
                    column += len(head[head.rfind("\n") + 1 :].replace("\ufeff", ""))
                self._fail(exc.reason_at(line, column), line)
            yield self._refused_whole()
            return
        self.layout = FileLayout("object", head=head, tail=tail, indent=indent_of(stripped))
        self.slots = 1
        yield self._record(value, raw, 0, self.relpath, None)

    def _plain_object(self) -> ParsedRecord | None:
        """A one-record file whose record is good, parsed from its bytes alone; ``None``
        for anything else, which :meth:`records` parses as text (and says what is
        wrong). A huge session is then held as its bytes and, while decoded, its value:
        not also as a str (up to 4 bytes a character) nor a copy of the bytes, and its
        value is let go before the record is written."""
        data = self.data
        assert data is not None
        leading = _LEADING_BYTES.match(data)
        start = leading.end() if leading is not None else 0
        if data[start : start + 1] != b"{":
            return None
        # The trailing whitespace, looked for at the end only (a file ending in a long run
        # of it, which only a hostile one has, goes the general way).
        end_part = data[-TAIL_LOOK :]
        kept = end_part.rstrip(b" \t\r\n")
        if not kept:
            return None
        end = len(data) - len(end_part) + len(kept)
        raw = data if start == 0 and end == len(data) else data[start:end]
        try:
            version = _known_version(jsoncodec.decode(raw), self.domain)
        except jsoncodec.JSONError:
            return None
        if version is None:  # not an object, a bad or a newer version: said by the general way
            return None
        self.data = raw  # the file's bytes are no longer needed (the head and tail are whitespace)
        self.layout = FileLayout(
            "object", head=data[:start].decode("utf-8"), tail=data[end:].decode("ascii"), indent=indent_of(raw)
        )
        self.slots = 1
        return ParsedRecord(self.relpath, version, raw, 0)

    def _refused_whole(self) -> Refused:
        """A file meant to hold one record that holds no JSON value the store can take:
        all of it is the refused text of its one slot."""
        assert self.data is not None
        self.layout = FileLayout("object")
        self.slots = 1
        return Refused(self.relpath, self.data, 0)

    @staticmethod
    def _looks_like_lines(text: str) -> bool:
        first = text.split("\n", 1)[0].strip()
        try:
            return isinstance(jsoncodec.decode(first), dict)
        except jsoncodec.JSONError:
            return False

    def _record(self, value: Any, text: str | bytes, position: int, key: str, line: int | None) -> Slot:
        """The record ``value`` parsed from ``text``, or its refusal (with the problem)."""
        version = _known_version(value, self.domain)  # the common case first
        if version is not None:
            return ParsedRecord(key, version, text, position)
        refused = Refused(key, text.encode("utf-8") if isinstance(text, str) else text, position)
        if not isinstance(value, dict):
            what = f"element {position}" if self.layout.container == "array" else "record"
            self._fail(f"{what} is {_describe(value)}, not a JSON object", line)
            return refused
        try:
            version = read_version(value, self.domain)
        except ValueError as exc:
            self._fail(str(exc), line)
            return refused
        if version > self.domain.version:
            newer = NewerVersionError(
                self.shown,
                domain=self.domain.name,
                version=_ShownInt(version),  # formatted even beyond the digit limit of str()
                current_version=self.domain.version,
                line=line,
                version_field=self.domain.version_field,
            )
            newer.version = version
            self.problems.append(newer)
            return refused
        return ParsedRecord(key, version, text, position)

    def _array(self, text: str, start: int, first_line: int) -> Iterator[Slot]:
        """Scan the array element by element, so a huge array never becomes one tree.
        Elements before a syntax error are imported; the error names its line."""
        ws = " \t\r\n"
        pos = start + 1
        while pos < len(text) and text[pos] in ws:
            pos += 1
        head = text[:pos]
        self.layout = FileLayout("array", head=head)
        seps: list[str] = []
        first = prefix = element_prefix(head)  # the indent of the element being read
        own = False  # whether one has an indent other than the first's
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
                        element = dedent(text[pos:skip], prefix)
                        yield Refused(f"{self.relpath}[{index}]", element.encode("utf-8"), index)
                        index += 1
                        end = skip
                    else:
                        element = dedent(text[pos:end], prefix)
                        yield self._record(value, element, index, f"{self.relpath}[{index}]", line)
                        index += 1
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
                    prefix = own_prefix(seps[-1], first)
                    own = own or prefix != first
                    pos = nxt
                # ``end`` is at the closing bracket; the tail starts there.
                end_of_elements = end
                while text[end_of_elements - 1] in ws:
                    end_of_elements -= 1
                end = end_of_elements
            after = text[end:].lstrip(ws)
            if not after.startswith("]") or after[1:].strip(ws):
                # The line of the first thing that should not be there.
                stray = len(text) - len(after)
                if after.startswith("]"):  # something after the closing bracket
                    stray = len(text) - len(after[1:].lstrip(ws))
                raise jsoncodec.JSONError(
                    "invalid JSON: unexpected data after the array", text.count("\n", 0, stray) + 1
                )
        except jsoncodec.JSONError as exc:
            reason = exc.reason
            if exc.line == 1 and exc.column is not None and "\ufeff" in head:  # a BOM is no column
                reason = exc.reason_at(1, exc.column - text.count("\ufeff", 0, exc.column))
            self._fail(reason, exc.line)
            if not index:  # nothing read: the whole file is one refused text
                yield self._refused_whole()
                return
            # The elements before the error are records (or refused texts); the text after
            # the last of them, from the one that broke off on, is the array's tail, as
            # the file has it: export writes it back, to be mended there.
            self.slots = index
            sep = _array_sep(head, seps)
            self.layout = FileLayout("array", head=head, sep=sep, tail=text[end:], gaps=_odd_seps(seps, sep, own))
            return
        self.slots = index
        sep = _array_sep(head, seps)
        self.layout = FileLayout(
            "array", head=head, sep=sep, tail=text[end:], indent=indent_of(text, start), gaps=_odd_seps(seps, sep, own)
        )

    def _lines(self) -> Iterator[Slot]:
        sep = ""  # the first line's ending, once there is one
        head = ""
        # Set before reading: a read that fails midway keeps the lines read so far.
        self.layout = FileLayout("lines", sep="\n", tail="\n")
        self._ends_with_newline = True
        position = 0
        decode, invalid, prefix = jsoncodec.decode, jsoncodec.JSONError, self.relpath + ":"
        # The text since the last slot's line (its ending, then blank lines with theirs),
        # up to TAIL_MAX_BYTES (None beyond: only a hostile file has such a run).
        between: list[str] | None = []
        size = 0
        gaps = _Gaps()
        last = 0  # the line of the last slot
        for lineno, line in enumerate(self._raw_lines(), start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):  # a BOM starting the file: kept
                head, line = "\ufeff", line[3:]
            ending = "\n" if self._ends_with_newline else ""
            if line[-1:] == b"\r":
                ending, line = "\r" + ending, line[:-1]
            if not sep and ending[-1:] == "\n":
                sep = ending
            if not line or line.isspace():
                if between is not None:
                    between += (line.decode("ascii"), ending)
                    size += len(line) + len(ending)
                    if size > TAIL_MAX_BYTES:
                        between = None
                continue
            # Unless kept as a gap, the exporter writes back before the slot ``sep`` for
            # each line since the last one (for each line before it, if the first).
            if between is not None and not (len(between) == 1 and between[0] == sep and lineno == last + 1):
                gap = "".join(between)
                if gap != sep * (lineno - last if last else lineno - 1):
                    gaps.add(position, gap)
            between, size, last = [ending], len(ending), lineno
            try:
                value = decode(line)
            except invalid as exc:
                # The file names the line; the reason gives the column in it, and says why
                # when that is past the line's end: a record written over several lines.
                reason = exc.reason_at(None, exc.column)
                if not ending:
                    # The file's last line, with no newline yet: most likely one the
                    # application is still appending (a record over several lines would
                    # have one), which the next import reads again, finished.
                    reason += "; it is the file's last line and has no newline: still being written? import again once it is finished"
                elif exc.column is not None and exc.column > len(line.decode("utf-8", "replace")):
                    reason += "; the line ends before its record does (a JSON-lines record is one line)"
                self._fail(reason, lineno)
                yield Refused(prefix + str(lineno), line, position)
                position += 1
                continue
            # The line's bytes are its text (decoding proved them UTF-8); SQLite stores
            # them as TEXT without a round trip through a Python string.
            yield self._record(value, line, position, prefix + str(lineno), lineno)
            position += 1
        self.slots = position
        sep = sep or "\n"
        if between is None:  # a run too long to keep: the file's last newline
            tail = sep if self._ends_with_newline else ""
        else:
            tail = "".join(between)
        self.layout = FileLayout("lines", head=head, sep=sep, tail=tail, gaps=gaps.text())

    def _raw_lines(self) -> Iterator[bytes]:
        """The file's lines without their newlines; ``_ends_with_newline`` says whether
        the last one had one. One at a time, from the bytes read too: split all at once,
        a file of a few MB of short lines became a list of millions."""
        self._ends_with_newline = False  # an empty file has no newline
        if self.data is not None:
            yield from self._lines_of(io.BytesIO(self.data))
            return
        with open(self.path, "rb") as fh:
            self.opened = True
            first = os.fstat(fh.fileno())
            yield from self._lines_of(fh)
            self.streamed = (first, os.fstat(fh.fileno()))

    def _lines_of(self, fh: Iterable[bytes]) -> Iterator[bytes]:
        for raw in fh:
            self._ends_with_newline = raw[-1:] == b"\n"
            yield raw[:-1] if self._ends_with_newline else raw


#: Whitespace and byte order marks before a record, as UTF-8: what FileParse takes for a
#: one-record file's head.
_LEADING_BYTES = re.compile(rb"(?:\xef\xbb\xbf|[ \t\r\n])*")
#: The bytes at a file's end looked at for its trailing whitespace (see FileParse._plain_object).
TAIL_LOOK = 4096

#: The most bytes of blank lines after a JSON-lines file's last record kept to give back.
TAIL_MAX_BYTES = 64 * 1024


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


def read_records(parse: FileParse, read: FileRead) -> Iterator[Slot]:
    """The file's records and refusals; read errors and changes during the read become problems."""
    try:
        yield from parse.records()
    except OSError as exc:  # the file vanished or became unreadable mid-read
        parse.fatal = True
        if not parse.opened and vanished(parse.path, exc):
            # Gone before the streaming pass opened it (an open file can be read to its
            # end, removed or not): nothing of it was read, and nothing is lost.
            parse.vanished = True
            return
        parse.problems.append(InputError(parse.shown, f"cannot read: {exc.strerror or exc}"))
        return
    if parse.data is not None:
        changed = read.torn
    else:
        # A streamed file is read a second time, as it is parsed: the file that pass read
        # (from its own descriptor: removed since, it was still what it read) must be the
        # one hashed, unchanged from the first byte to the last.
        changed = parse.streamed is None or any(_moved(read.info, info) for info in parse.streamed)
    if changed:
        # What was read is stored (a complete record, or a reported error); the
        # empty digest makes the next import read the file again.
        parse.problems.append(InputError(parse.shown, "changed while being imported; import again to pick up the change"))


# --------------------------------------------------------------------------- parsing tasks

#: Files up to this size are read and parsed whole, as a Task (in worker processes
#: when an import is large); larger ones are streamed by the importer itself.
TASK_MAX_BYTES = 1 << 20
#: ... and holding fewer records (JSON lines, elements of an array) than this, and at
#: most TASK_MAX_PROBLEMS bad ones: a task holds a few hundred bytes for each record and
#: ~1 kB for each problem, over the file's size, and a chunk of tasks is held whole.
#: A file of more (one 1 MB file of half a million broken short lines held 500 MB) is
#: streamed by the importer, in batches, as a large one is.
TASK_MAX_SLOTS = 10_000
TASK_MAX_PROBLEMS = 100


class Task(NamedTuple):
    """One small file to read, hash and parse, here or in a worker process."""

    path: str
    relpath: str
    domain: DomainSpec
    known_digest: str | None  # the digest stored for this path and domain, if any
    file_id: int | None = None  # a new file's id, when the worker writes it itself


class Outcome(NamedTuple):
    """What :func:`parse_task` found: ``kind`` is ``parsed``, ``unchanged`` (the digest
    is the stored one), ``unreadable`` (one problem), ``vanished`` (gone since the walk:
    see :func:`vanished`) or ``large`` (not read: the importer streams it); or ``written``: a worker wrote the new file's ``written`` records and
    its row itself, and only the problems are left to report. The records come as
    columns; ``refused`` holds the refused records' (position, key, text)."""

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
    refused: tuple[tuple[int, str, bytes], ...] = ()

    @property
    def had_problems(self) -> bool:
        """Whether any problem was found (as :attr:`FileParse.had_problems`)."""
        return bool(self.problems)


def read_or_problem(path: str, relpath: str, max_size: int | None = None) -> FileRead | InputError | None:
    """:func:`read_file`, or the problem that stops the file being read, naming it by
    ``relpath``; ``None`` if the file is gone (see :func:`vanished`)."""
    try:
        return read_file(path, max_size)
    except OSError as exc:
        if vanished(path, exc):
            return None
        return InputError(display_path(relpath), f"cannot read: {exc.strerror or exc}")
    except InputError as exc:
        if vanished(path, exc):
            return None
        return InputError(display_path(relpath), exc.reason)


def vanished(path: str, exc: BaseException) -> bool:
    """Whether ``path``, a file (or a directory) the walk found, could not be read
    because it is no longer there: removed or renamed away by the application since
    (DeepSeek TUI writes a file to a temporary name and renames it over the old one), one
    of its directories removed or replaced by a file, or the file replaced by a directory
    or the directory by a file (which the next import reads). Nothing of such a file can be lost, so it is counted, not reported. A
    link to nothing is still a problem: it was there, and broken, when walked."""
    if isinstance(exc, InputError):  # not a regular file: a directory now, where the walk found a file
        return os.path.isdir(path) and not os.path.islink(path)
    if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return False
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    # There: a directory the walk listed, a file now (its files are gone); else a link
    # to nothing, a problem.
    return isinstance(exc, NotADirectoryError) and stat.S_ISREG(info.st_mode)


def parse_task(task: Task) -> Outcome:
    # In a worker after Ctrl-C: stop. A writing worker's pending rows are then never
    # committed, since every later chunk stops at its first file too.
    workers.stop_if_asked()
    read = read_or_problem(task.path, task.relpath, min(TASK_MAX_BYTES, STREAM_THRESHOLD))
    if read is None:
        return Outcome("vanished")
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
    found: list[ParsedRecord] = []
    refused: list[tuple[int, str, bytes]] = []
    for slot in read_records(parse, read):
        if len(found) + len(refused) >= TASK_MAX_SLOTS or len(parse.problems) > TASK_MAX_PROBLEMS:
            return Outcome("large")  # see TASK_MAX_SLOTS
        if isinstance(slot, Refused):
            refused.append((slot.position, slot.key, slot.text))
        else:
            found.append(slot)
    keys, versions, texts, positions = tuple(zip(*found)) if found else ((), (), (), ())
    nbytes = sum(map(len, texts)) + sum(len(r[2]) for r in refused)
    return Outcome(
        "parsed", read.digest, keys, versions, texts, positions, nbytes, parse.layout, parse.problems, parse.fatal,
        parse.slots, refused=tuple(refused),
    )  # fmt: skip


def _plain_version(text: bytes, domain: DomainSpec) -> int | None:
    """The version of a record that is an object at a version the domain knows, read
    from its text; ``None`` for any other (:class:`FileParse` says what is wrong)."""
    try:
        return _known_version(jsoncodec.decode(text), domain)
    except jsoncodec.JSONError:
        return None


def _plain_lines(lines: list[bytes], domain: DomainSpec) -> tuple[Iterable[int], tuple[int, ...], tuple[bytes, ...]] | None:
    """The line numbers, versions and texts of JSON lines whose records are all good
    (blank lines skipped); ``None`` if any is not, or a line of whitespace comes before
    one."""
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
    spaces = False
    for lineno, line in enumerate(lines, start=1):
        if not line or line.isspace():
            spaces = spaces or bool(line)
            continue
        if spaces:  # a line of whitespace between records: a gap FileParse keeps
            return None
        version = _plain_version(line, domain)
        if version is None:  # FileParse says what is wrong
            return None
        linenos.append(lineno)
        found.append(version)
        texts.append(line)
    return linenos, tuple(found), tuple(texts)


def _plain_tail(lines: list[bytes], ends_with_newline: bool) -> str:
    """A JSON-lines file's tail as FileParse finds it (``lines`` split on ``\\n``, in a
    file without ``\\r``): the last record's newline, then the blank lines after it."""
    k = len(lines)
    while k and (not lines[k - 1] or lines[k - 1].isspace()):
        k -= 1
    end = "\n" if ends_with_newline else ""
    if k == len(lines):
        return end
    tail = ("\n" if k else "") + "\n".join(line.decode("ascii") for line in lines[k:]) + end
    return end if len(tail) > TAIL_MAX_BYTES else tail


def _parse_plain(task: Task, read: FileRead) -> Outcome | None:
    """The common case, parsed lean: a file whose records are all good, with nothing
    unusual around them (an object file starting with ``{``; JSON lines without a BOM or
    ``\r``). ``None`` for anything else (a refused record, a syntax error, an array, a
    file torn while read): :class:`FileParse` decides those, and its result for any
    file this accepts is the same (a property test compares the two). ``large`` for
    more than TASK_MAX_SLOTS lines: the importer streams those."""
    data = read.data
    if data is None or read.torn:
        return None
    domain = task.domain
    if task.relpath.endswith(LINE_SUFFIXES):
        if data.startswith(b"\xef\xbb\xbf") or b"\r" in data:
            return None
        if data.count(b"\n") >= TASK_MAX_SLOTS:  # (counted before they are split)
            return Outcome("large")  # many short lines: see TASK_MAX_SLOTS
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
            FileLayout("lines", sep="\n", tail=_plain_tail(lines, ends_with_newline)),
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
    layout = FileLayout("object", tail=data[len(text) :].decode("ascii"), indent=indent_of(text))
    return Outcome("parsed", read.digest, (task.relpath,), (version,), (text,), (0,), len(text), layout, [], False, 1)


# Tasks and outcomes cross to and from worker processes as plain tuples: 48,000 outcomes
# unpickled in 0.07 s, against 0.4 s as named tuples holding a dataclass (each of those
# costs a Python call to rebuild), on the writer, which is the import's bottleneck.
WireTask = tuple[str, str, tuple[str, int, str], str | None, int | None]
WireOutcome = tuple[Any, ...]


def to_wire(tasks: list[Task | None]) -> list[WireTask | None]:
    return [
        None
        if t is None
        else (t.path, t.relpath, (t.domain.name, t.domain.version, t.domain.version_field), t.known_digest, t.file_id)
        for t in tasks
    ]


def parse_wire(tasks: list[WireTask | None]) -> list[WireOutcome | int | None]:
    """:func:`parse_tasks` as a worker process runs it, tuples in and out. A worker
    that writes (see :class:`_WorkerWriter`) stores the new files it parsed itself."""
    chunk = [None if t is None else Task(t[0], t[1], DomainSpec(*t[2]), t[3], t[4]) for t in tasks]
    parsed: list[Outcome | int | None] = list(parse_tasks(chunk)) if _writer is None else _writer.parse_and_write(chunk)
    return [(*o[:7], None if o.layout is None else tuple(o.layout), *o[8:]) if isinstance(o, Outcome) else o for o in parsed]


def from_wire(outcomes: list[WireOutcome | int | None]) -> list[Outcome | int | None]:
    return [Outcome._make((*o[:7], None if o[7] is None else FileLayout(*o[7]), *o[8:])) if isinstance(o, tuple) else o for o in outcomes]


def insert_statements(mark: str, cast_payload: bool) -> tuple[str, str, str, str]:
    """The INSERTs of a new file's row, its records, failures and refused texts
    (``cast_payload``: a payload given as UTF-8 bytes is stored as the TEXT it is, in
    SQLite)."""

    def sql(table: str, columns: str, values: list[str]) -> str:
        return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(values)})"

    payload = "CAST(? AS TEXT)" if cast_payload else mark
    return (
        sql("files", "id, path, domain, container, head, sep, tail, indent, digest, run_id, gaps", [mark] * 11),
        sql("records", "domain, key, version, payload, file_id, position, run_id", [mark] * 3 + [payload] + [mark] * 3),
        sql("failures", "run_id, domain, source, line, from_version, to_version, reason", [mark] * 7),
        sql("refused", "file_id, position, key, text, run_id", [mark] * 5),
    )


def new_file_rows(
    relpath: str, domain: str, file_id: int, run_id: int, outcome: Outcome
) -> tuple[tuple[Any, ...] | None, list[Row], list[RefusedRow]]:
    """A parsed new file's row (``None`` when nothing of it could be read), its
    records' rows and its refused texts' rows. A file with problems gets no digest, so
    the next import reads it again."""
    # Texts read as bytes go in as bytearrays: Python's sqlite3 passes every bytes
    # parameter through its adapter registry first (a tuple built, a dictionary lookup,
    # two attribute lookups: ~3,000 instructions), and binds a bytearray, like str and
    # int, as it is. Copying it here costs less, and it is done outside the write lock.
    texts = [bytearray(t) if type(t) is bytes else t for t in outcome.texts]
    rows = list(zip(repeat(domain), outcome.keys, outcome.versions, texts, repeat(file_id), outcome.positions, repeat(run_id)))
    refused = [(file_id, position, key, text, run_id) for position, key, text in outcome.refused]
    if outcome.fatal and not rows and not refused:
        return None, rows, refused
    layout = outcome.layout
    assert layout is not None  # set by every parse that got this far
    digest = "" if outcome.problems else outcome.digest
    file_row = (
        file_id, relpath, domain, layout.container, layout.head, layout.sep, layout.tail, layout.indent, digest, run_id,
        layout.gaps,
    )  # fmt: skip
    return file_row, rows, refused


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
        self.sql_file, self.sql_record, _, self.sql_refused = insert_statements("?", cast_payload=True)
        self.file_rows: list[tuple[Any, ...]] = []
        self.record_rows: list[Row] = []
        self.refused_rows: list[RefusedRow] = []

    def parse_and_write(self, tasks: list[Task | None]) -> list[Outcome | int | None]:
        """Parse a chunk, writing the new files as it goes: in one transaction every
        BATCH_RECORDS records or BATCH_BYTES of them (so a worker holds at most that
        much), a file's row always with its records. A file written whole, with nothing
        to report, comes back as its number of records (the common case, cheapest to
        hand back)."""
        pending = 0
        out: list[Outcome | int | None] = []
        for task, outcome in _parsed(tasks):
            if task is None or task.file_id is None or outcome is None or outcome.kind != "parsed":
                out.append(outcome)
                continue
            file_row, rows, refused = new_file_rows(task.relpath, task.domain.name, task.file_id, self.run_id, outcome)
            if file_row is not None:
                self.file_rows.append(file_row)
            self.record_rows += rows
            self.refused_rows += refused
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
                if self.refused_rows:
                    self.conn.executemany(self.sql_refused, self.refused_rows)
                if workers.orphaned():
                    # The import was killed (its workers end within PARENT_CHECK_S):
                    # commit nothing more, or a rerun that started by then could meet
                    # files appearing under it.
                    os._exit(1)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        self.file_rows, self.record_rows, self.refused_rows = [], [], []


_writer: _WorkerWriter | None = None


def start_writer(database: str, run_id: int, turns: workers.Turns) -> None:
    """A worker's initializer: it writes the new files it parses (see _WorkerWriter)."""
    global _writer
    _writer = _WorkerWriter(database, run_id, turns)


def parse_tasks(tasks: list[Task | None]) -> list[Outcome | None]:
    """:func:`parse_task` over a chunk of files (see :func:`_parsed`)."""
    return [outcome for _, outcome in _parsed(tasks)]


#: The most problems the outcomes of one chunk of tasks hold: past them, its other files
#: come back ``large``, and the importer reads them itself, reporting their problems as
#: they come. (A home of 3,000 files of 90 broken lines each: 406 MB for the command's
#: processes, chunks of thousands of files held whole, each problem ~1 kB.)
CHUNK_MAX_PROBLEMS = 1000


def _parsed(tasks: list[Task | None]) -> Iterator[tuple[Task | None, Outcome | None]]:
    """Each task of a chunk with what :func:`parse_task` found (``None``: no task), while
    the chunk's problems are within CHUNK_MAX_PROBLEMS; ``large`` for the rest."""
    problems = 0
    for task in tasks:
        if task is None:
            yield task, None
        elif problems >= CHUNK_MAX_PROBLEMS:
            yield task, Outcome("large")
        else:
            outcome = parse_task(task)
            problems += len(outcome.problems)
            yield task, outcome


def _moved(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether ``after`` shows another file, or the same one written to."""
    return (before.st_ino, before.st_dev, before.st_size, before.st_mtime_ns) != (
        after.st_ino, after.st_dev, after.st_size, after.st_mtime_ns
    )
