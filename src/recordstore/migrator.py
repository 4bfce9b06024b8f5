"""Migrations: plan, dry run, apply in batched transactions, restore.

Each batch commits its changed rows, the exact original rows copied to ``backups``,
its failures and the run's counts together, or not at all; so a crash at any instant
leaves every record either old with no new backup, or new with its backup.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import pickle
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, cast

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast as sql_cast,  # (typing's cast is this module's cast)
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    union,
    union_all,
    update,
)

from . import jsoncodec, workers
from .engine import (
    BUSY_TIMEOUT_S,
    background_checkpoints,
    is_sqlite,
    placeholder,
    sqlite_file,
    translate_errors,
    unchecked_foreign_keys,
)
from .errors import (
    InputError,
    MigrationError,
    NewerVersionError,
    RegistryError,
    RestoreConflictError,
    checked,
    describe,
    one_line,
)
from .importer import LAYOUT, as_text, backup_file_layout, backup_rows, backup_selected, backup_span
from .parsing import indent_of
from .query import key_slots
from .registry import Domain, Registry, Step
from .runs import RunHandle, check_interrupt, ctrl_c_may_have_raised
from .tables import backups, file_backups, files, records, refused, runs

__all__ = ["MigrationResult", "RestoreResult", "migrate_records", "migrate_value", "restore_records"]

BATCH_ROWS = 2000
#: Aim for about this many bytes of stored text per batch, so that large records make
#: smaller batches and memory stays bounded whatever the records' sizes.
BATCH_BYTES = 2 * 1024 * 1024
#: Below this many pending records a migration runs its steps in its own process
#: (starting a worker and sending it the rows costs more).
PARALLEL_MIN_RECORDS = 20_000
#: Batches read ahead of the one being written, per worker process.
AHEAD_PER_JOB = 2


def default_jobs() -> int:
    """Worker processes running the steps of a large migration: one per CPU but the one
    reading and writing the store, at most 4."""
    return workers.default_jobs(4)


@dataclass
class RecordDiff:
    """A record before and after a (dry) migration, as pretty JSON texts."""

    domain: str
    key: str
    from_version: int
    to_version: int
    before: str
    after: str


#: The failures a :class:`MigrationResult` holds: the first ones. ``failure_count``
#: counts them all, and a run records every one in the store (``store history RUN``,
#: ``Store.failures(run)``). Holding them all took ~1.8 kB a failure: a step failing
#: for 100,000 records held ~180 MB, for 1,000,000 ~1.8 GB.
FAILURES_KEPT = 200


@dataclass
class MigrationResult:
    """What a migration did (or, for a dry run, would do)."""

    run_id: int | None
    dry_run: bool
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The first FAILURES_KEPT failures, in order (``failure_count``: how many in all).
    failures: list[MigrationError] = field(default_factory=list)
    newer: dict[str, int] = field(default_factory=dict)
    diffs: list[RecordDiff] = field(default_factory=list)
    stopped_early: bool = False
    rolled_back: bool = False
    #: How many records failed, ``failures`` and those past them.
    failure_count: int = 0

    @property
    def migrated(self) -> int:
        """How many records were (or, in a dry run, would be) brought up to date."""
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def ok(self) -> bool:
        """Whether no record failed (``store migrate`` exits 1 otherwise)."""
        return not (self.failure_count or self.failures)

    @property
    def failures_not_kept(self) -> int:
        """How many failures are counted but not in ``failures`` (a run's are all in the
        store: ``Store.failures(run_id)``)."""
        return max(0, self.failure_count - len(self.failures))

    def _failed(self, found: list[MigrationError]) -> None:
        """Count ``found``, a batch's failures, keeping them while fewer than FAILURES_KEPT are kept."""
        self.failure_count += len(found)
        room = FAILURES_KEPT - len(self.failures)
        if room > 0:
            self.failures.extend(found[:room])

    def as_dict(self) -> dict[str, Any]:
        """As ``store migrate --json`` prints it: ``failures`` the first FAILURES_KEPT,
        ``failure_count`` how many in all."""
        return {
            "run": self.run_id,
            "dry_run": self.dry_run,
            "migrated": self.migrated,
            "counts": self.counts,
            "newer": self.newer,
            "failures": [failure_dict(f) for f in self.failures],
            "failure_count": self.failure_count,
            "stopped_early": self.stopped_early,
            "rolled_back": self.rolled_back,
            "diffs": [dict(d.__dict__) for d in self.diffs],
        }


def failure_dict(f: MigrationError) -> dict[str, Any]:
    return {
        "domain": f.domain,
        "key": f.key,
        "from_version": f.from_version,
        "to_version": f.to_version,
        "step": f.step,
        "reason": f.reason,
    }


#: A step's exception may carry the record itself; reports keep this much of it.
REASON_CHARS = 200


def _bounded(reason: str) -> str:
    """One printable line of at most REASON_CHARS characters: never a whole record's
    payload, nor a terminal's control sequence a step's message carried."""
    line = one_line(reason)
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"


def migrate_value(domain: Domain, key: str, value: Any, version: int) -> dict[str, Any]:
    """Run ``domain``'s steps over one decoded record from ``version`` to current.

    Stamps the version field after each step. Raises :class:`MigrationError` naming the
    step that failed, or the steps run when what they made is not JSON (a set, NaN), as
    ``store migrate`` fails that record; ``value`` must be the caller's own copy. As an
    import would, it refuses a version newer than the domain's current one
    (:class:`NewerVersionError`: no step can bring it back), one that is no version and a
    ``value`` that is no JSON object (:class:`InputError`); a domain whose chain is broken is a :class:`RegistryError`.
    """
    checked("domain", domain, Domain, what="a Domain (as registry[name] gives it)", error=RegistryError)
    domain.validate()
    checked("key", key, str, what="a string (the record's key, which errors name)")
    if type(version) is not int or version < 1:
        raise InputError(key, f"{domain.version_field} must be a positive integer, not {version!r}")
    if not isinstance(value, dict):
        # As an import refuses it. At the current version no step would run to notice,
        # and the list (say) came back as "the migrated dict".
        raise InputError(key, f"a record must be a JSON object (a dict), not {type(value).__name__}")
    if version > domain.version:
        raise NewerVersionError(
            key,
            domain=domain.name,
            version=version,
            current_version=domain.version,
            version_field=domain.version_field,
        )
    chain = domain.chain(version)
    new = _run_steps(domain, key, value, chain)
    if chain:  # what the steps made must be what a migration could write
        try:
            _encoded(new, None)
        except jsoncodec.JSONError as exc:
            raise _unwritable(domain, key, version, chain, exc) from exc
    return new


def _pressed(exc: BaseException) -> bool:
    """Whether ``exc``, out of a step's code, is Ctrl-C's KeyboardInterrupt, which stops
    the run (a step's own fails its record, as any other exception)."""
    return isinstance(exc, KeyboardInterrupt) and ctrl_c_may_have_raised() and not workers.notes_ctrl_c()


def _encoded(value: Any, original: str | bytes | None) -> bytes:
    """``value``, the record the steps made, encoded in the style of ``original`` (or
    compact), if the store can write it and read it back; else :class:`JSONError`.
    Encoding it runs code of the step's values too (the ``==`` of a str subclass, a dict
    subclass's ``items``): what that raises fails the record, not the run."""
    try:
        text = jsoncodec.encode_utf8(value, None) if original is None else encode_like(value, original)
    except jsoncodec.JSONError:
        raise
    except BaseException as exc:
        if _pressed(exc):
            raise
        raise jsoncodec.JSONError(f"not representable as JSON: {_bounded(describe(exc))}") from None
    if jsoncodec.too_deep_to_read(text):
        raise jsoncodec.JSONError(
            f"nested too deeply to encode (more than {jsoncodec.MAX_NESTING} levels, which could not be read back)"
        )
    return text


def _unwritable(
    domain: Domain, key: str, from_version: int, chain: Sequence[Step], exc: jsoncodec.JSONError
) -> MigrationError:
    """The failure of a record whose steps made what cannot be written as JSON: it names them.
    One line: the reason may name a type of the step's own (``Object of type ...``)."""
    return MigrationError(
        _bounded(exc.reason), domain=domain.name, key=key, from_version=from_version, to_version=domain.version,
        step=", ".join(step.name for step in chain),
    )


class _NotAnObject(TypeError):
    """A step returned something other than a dict: its message is the whole reason."""


def _run_steps(domain: Domain, key: str, value: Any, chain: Sequence[Step]) -> dict[str, Any]:
    """:func:`migrate_value` with the chain of steps already looked up (a batch's rows
    all start at the same version)."""
    for step in chain:
        try:
            if not isinstance(value, dict):
                raise TypeError(f"record is {type(value).__name__}, not a JSON object")
            out = step.func(value)
            if out is None:
                out = value
            if not isinstance(out, dict):
                if inspect.iscoroutine(out):
                    # (A function returning an async one's.) Left to the garbage collector,
                    # it would warn "never awaited" on stderr, over lines naming this module.
                    out.close()
                raise _NotAnObject(f"step returned {type(out).__name__}, not a JSON object (dict)")
            # A dict's own methods: a subclass's (a frozen dict's __setitem__) are not the record's.
            if dict.__contains__(out, domain.version_field):
                dict.__setitem__(out, domain.version_field, step.to_version)
            else:  # a record that had no version field gets one, first, as writers put it
                out = {domain.version_field: step.to_version, **out}
        except BaseException as exc:  # sys.exit(), asyncio's CancelledError, a library's own: its record fails
            if _pressed(exc):
                raise  # Ctrl-C: the run stops, as interrupted
            reason = _bounded(str(exc) if isinstance(exc, _NotAnObject) else describe(exc))
            raise MigrationError(
                reason,
                domain=domain.name,
                key=key,
                from_version=step.from_version,
                to_version=step.to_version,
                step=step.name,
            ) from exc
        value = out
    return cast(dict[str, Any], value)


@dataclass(frozen=True)
class _Batch:
    """What one batch writes."""

    domain: str
    version: int  # every row read was at this version
    updates: list[tuple[bytes, int, int | None, int]]  # payload, version, run, id
    failures: list[MigrationError]
    whole: bool  # every row read is updated: its ids are one span of the index


def migrate_records(
    engine: Engine,
    registry: Registry,
    domains: Iterable[str] | None,
    *,
    run: RunHandle | None,
    fail_fast: bool = False,
    atomic: bool = False,
    diff: int = 0,
    progress: Any = None,
    jobs: int | None = None,
) -> MigrationResult:
    """Migrate (``run`` given) or dry-run (``run`` is ``None``) the pending records.
    ``jobs``: worker processes running the steps (``None``: :func:`default_jobs` when
    PARALLEL_MIN_RECORDS or more are pending; 0: none). Workers are forked, inheriting
    the registry, and read the records they migrate from the store's file; where fork
    cannot be used, or the store is not a SQLite file, the steps run in this process.
    Steps must not count on state they share with the caller: they may run in another
    process."""
    chosen = [registry[d] for d in domains] if domains is not None else list(registry)  # []: none
    result = MigrationResult(run_id=run.run_id if run else None, dry_run=run is None)
    with translate_errors(), engine.connect() as conn:
        pending_total = 0
        with conn.begin():
            for dom in chosen:
                pending_total += _count(conn, dom, below=True)
                newer = _count(conn, dom, below=False)
                if newer:
                    result.newer[dom.name] = newer
        if jobs is None:
            jobs = default_jobs() if pending_total >= PARALLEL_MIN_RECORDS else 0
        if run is not None:
            # A batch reads its rows, then writes: it must hold SQLite's write lock from
            # its BEGIN, or a write committed in between (``store index add`` takes no run
            # lock) makes SQLite refuse the batch's first write ("database is locked").
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        # The workers start before the progress bar, whose thread would rule out fork.
        # They read the rows they migrate from the store's file themselves.
        database = sqlite_file(engine)
        jobs = min(jobs, pending_total) if database is not None else 0
        pool = workers.pool(jobs, "migrate", fork_only=True, initializer=_init_worker, initargs=(registry, database))
        with pool as executor, background_checkpoints(engine), unchecked_foreign_keys(conn):
            if progress is not None:
                progress.start(pending_total, "migrate")
            ahead = AHEAD_PER_JOB * jobs if executor is not None else 0
            _Pass(conn, result, run, fail_fast, atomic, diff, progress, executor, ahead).all(chosen)
    return result


def _count(conn: Connection, dom: Domain, *, below: bool) -> int:
    cond = records.c.version < dom.version if below else records.c.version > dom.version
    return int(conn.execute(select(func.count()).select_from(records).where(records.c.domain == dom.name, cond)).scalar() or 0)


@dataclass(frozen=True)
class _Span:
    """One batch to read: a domain's records at one version, with ids above ``after``
    and (unless ``None``: to the last) up to ``upto``, BATCH_ROWS of them at most."""

    domain: str
    version: int
    after: int
    upto: int | None


@dataclass
class _Stepped:
    """What reading a span and running the steps over its rows gave."""

    updates: list[tuple[bytes, int]] = field(default_factory=list)  # new payload (UTF-8), id
    failures: list[MigrationError] = field(default_factory=list)
    diffs: list[RecordDiff] = field(default_factory=list)
    read: int = 0  # rows read
    size: int = 0  # their payloads' bytes
    last_id: int = 0  # the last id read
    cut: bool = False  # the read stopped before the span's end: the rest is another batch


#: In encoded JSON: a string (skipped whole), or a separator outside any string.
_STRING_OR_SEPARATOR = re.compile(rb'"(?:[^"\\]|\\.)*"|[:,]')
#: The indent of a line of JSON encoded with 2 spaces.
_LINE_INDENT = re.compile(rb"^(?:  )+", re.MULTILINE)


#: The same, in text.
_STRING_OR_SEPARATOR_TEXT = re.compile(r'"(?:[^"\\]|\\.)*"|[:,]')


def _spaced_style(text: str | bytes) -> bool:
    """Whether one-line JSON ``text`` (or its UTF-8 bytes) has a space after its first
    ``:`` or ``,`` outside a string (a string may hold ``": `` in any style)."""
    if isinstance(text, bytes):
        for found in _STRING_OR_SEPARATOR.finditer(text):
            if found.group() in (b":", b","):
                return text[found.end() : found.end() + 1] == b" "
        return False
    for match in _STRING_OR_SEPARATOR_TEXT.finditer(text):
        if match.group() in (":", ","):
            return text[match.end() : match.end() + 1] == " "
    return False


def _spaced(match: re.Match[bytes]) -> bytes:
    found = match.group()
    return found + b" " if found in (b":", b",") else found


def encode_like(value: Any, original: str | bytes) -> bytes:
    """``value`` as UTF-8 JSON in the style of ``original``, the text it replaces: the
    same indent (spaces, tabs, or none), the same line ends (CRLF, or CR), the same indent
    of its closing bracket, and on one line, compact or with a space after every ':' and
    ','. JSON strings hold no raw newline or tab, so every newline, and every space or tab
    starting a line, is layout."""
    # Read where it is (the stored payload's bytes, as a rule): a huge record's text is
    # not copied into a str to find its first line's end and indent.
    newline = original.find(b"\n") if isinstance(original, bytes) else original.find("\n")
    if newline < 0 and (b"\r" in original if isinstance(original, bytes) else "\r" in original):
        # Lines ended by CR alone (as classic Mac OS wrote them; JSON takes a CR as
        # whitespace): pretty all the same, not put on one line.
        lf = original.replace(b"\r", b"\n") if isinstance(original, bytes) else original.replace("\r", "\n")
        return encode_like(value, lf).replace(b"\n", b"\r")
    if newline < 0:  # one line (most records: JSON lines): one scan of it, at most
        out = jsoncodec.encode_utf8(value, None)
        return _STRING_OR_SEPARATOR.sub(_spaced, out) if _spaced_style(original) else out
    # A text whose closing bracket, alone on its line, is indented as every line but its
    # first is (an array's element that starts on the bracket's line, kept with the
    # indent of its lines): so is the text that replaces it, its closing bracket not
    # moved to the line's start. (A long last line holds more than a bracket: not copied.)
    start = (original.rfind(b"\n") if isinstance(original, bytes) else original.rfind("\n")) + 1
    closing = original[start:] if len(original) - start <= 256 else ""
    closing = closing.decode("latin-1") if isinstance(closing, bytes) else closing
    indent = closing[: len(closing) - len(closing.lstrip(" \t"))]
    if indent and closing.strip(" \t\r") in ("}", "]"):
        text = original.decode("utf-8", "surrogatepass") if isinstance(original, bytes) else original
        lines = text.split("\n")
        if all(line.startswith(indent) or not line.strip(" \t\r") for line in lines[1:]):
            inner = "\n".join([lines[0]] + [line[len(indent) :] if line.strip(" \t\r") else line for line in lines[1:]])
            return encode_like(value, inner).replace(b"\n", b"\n" + indent.encode("ascii"))
    # The characters around that first line break, which are ASCII (layout) when they matter.
    after, before = (
        (original[newline + 1 : newline + 2], original[newline - 1 : newline]) if isinstance(original, str)
        else (original[newline + 1 : newline + 2].decode("latin-1"), original[newline - 1 : newline].decode("latin-1"))
    )  # fmt: skip
    if after == "\t":
        out = _LINE_INDENT.sub(lambda m: b"\t" * (len(m.group()) // 2), jsoncodec.encode_utf8(value, 2))
    else:
        # No indent (json.dumps(indent=0) writes so) is pretty too: 0, not one line.
        width = indent_of(original)
        out = jsoncodec.encode_utf8(value, 0 if width is None else width)
    return out.replace(b"\n", b"\r\n") if before == "\r" else out


def _step_rows(dom: Domain, version: int, rows: Sequence[Any], fail_fast: bool, diffs: int) -> _Stepped:
    """Decode, migrate and encode a batch's rows (id, key, version, payload, path of
    its file), all at ``version``; with ``fail_fast``, stop at the first failure.
    Touches no store: it runs in a worker process too."""
    decode, encode = jsoncodec.decode, jsoncodec.encode
    to_version = dom.version
    chain = dom.chain(version)
    out = _Stepped()
    for rid, key, from_version, payload, path in rows:
        # Ctrl-C: stop here, not at the batch's end (2,000 records of a slow step can
        # take minutes); the batch is dropped uncommitted, in this process or a worker.
        check_interrupt()
        workers.stop_if_asked()
        try:
            value = decode(payload)
        except jsoncodec.JSONError as exc:
            failure = MigrationError(
                f"stored payload is not valid JSON: {exc.reason}",
                domain=dom.name, key=key, from_version=from_version, to_version=to_version,
            )
        else:
            try:
                new = _run_steps(dom, key, value, chain)
                text = _encoded(new, payload)
            except MigrationError as exc:
                failure = exc
            except jsoncodec.JSONError as exc:  # what the steps made cannot be written: name them
                failure = _unwritable(dom, key, from_version, chain, exc)
            else:
                del value, new  # written: a huge record is not held decoded while its diff is made
                out.updates.append((text, rid))
                if len(out.diffs) < diffs:
                    # What is written, as plain JSON values: encoding the step's own values
                    # again (pretty, by other code) could run code of theirs again.
                    out.diffs.append(
                        RecordDiff(dom.name, key, from_version, to_version, encode(decode(payload), 2), encode(decode(text), 2))
                    )
                continue
        failure.source = path  # type: ignore[attr-defined]
        out.failures.append(_without_frames(failure))
        if fail_fast:
            break
    return out


def _without_frames(failure: MigrationError) -> MigrationError:
    """``failure`` with no traceback, nor any for its cause (the step's exception) and
    what that was raised within: their frames hold the record and what the step made of
    it, and a result keeps its first failures until it ends. The cause's type and message stay."""
    todo: list[BaseException | None] = [failure]
    seen: set[int] = set()
    while todo:
        exc = todo.pop()
        if exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            exc.__traceback__ = None
            todo += (exc.__cause__, exc.__context__)
    return failure


def _step_span(dom: Domain, dbapi_conn: Any, mark: str, span: _Span, fail_fast: bool, diffs: int) -> _Stepped:
    """Read ``span`` through ``dbapi_conn`` and run the steps over its rows."""
    rows, size, cut = _read_span(dbapi_conn, mark, span)
    out = _step_rows(dom, span.version, rows, fail_fast, diffs)
    out.read, out.size, out.last_id, out.cut = len(rows), size, rows[-1][0] if rows else span.after, cut
    return out


#: In a worker process: the registry it was forked with, the store's file, and (once
#: it has read) its own connection to it.
_worker_registry: Registry | None = None
_worker_database = ""
_worker_conn: sqlite3.Connection | None = None


def _init_worker(registry: Registry, database: str) -> None:
    global _worker_registry, _worker_database
    _worker_registry, _worker_database = registry, database


def _step_span_in_worker(span: _Span, fail_fast: bool, diffs: int) -> _Stepped:
    """:func:`_step_span` in a worker process, which reads the span itself: the rows
    never cross between processes, only what the steps made of them."""
    global _worker_conn
    assert _worker_registry is not None
    workers.stop_if_asked()  # Ctrl-C: the spans handed out are not stepped
    if _worker_conn is None:
        _worker_conn = sqlite3.connect(_worker_database, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        _worker_conn.execute("PRAGMA query_only=ON")
    return _step_span(_worker_registry[span.domain], _worker_conn, "?", span, fail_fast, diffs)


@dataclass
class _Pass:
    """One migration (or dry run) over the chosen domains, batch by batch.

    A batch is a span of ids of one domain's records at one version, found in the
    (domain, version, id) index; with a pool, worker processes read the spans and run
    the steps while this process writes, up to AHEAD_PER_JOB spans per worker ahead of
    the one being written. Each is written in its own transaction, in order, as without
    workers; the spans ahead follow, in id order, the one being written, so writing
    changes none of their rows (and no other writer runs: the run holds the store's
    lock)."""

    conn: Connection
    result: MigrationResult
    run: RunHandle | None
    fail_fast: bool
    atomic: bool
    diff: int
    progress: Any
    pool: ProcessPoolExecutor | None = None
    ahead: int = 0  # batches read ahead of the one being written (with a pool)
    #: An atomic run's failures, pickled a batch at a time: its transaction is rolled
    #: back if any record fails, and they are recorded after it, read back from here.
    spill: IO[bytes] | None = None

    def all(self, chosen: list[Domain]) -> None:
        conn, result, run = self.conn, self.result, self.run
        outer = conn.begin() if self.atomic and run is not None else None
        try:
            for dom in chosen:
                if not self.domain(dom):
                    result.stopped_early = True
                    break
            if outer is not None:
                if result.failure_count:
                    outer.rollback()
                    result.rolled_back = True
                    result.counts = {}
                    _record_failures_alone(conn, run, result, self.spill)
                else:
                    outer.commit()
            elif self.atomic and result.failure_count:  # a dry run says what the real one would do
                result.rolled_back, result.counts = True, {}
        except BaseException:
            if outer is not None and outer.is_active:
                outer.rollback()
                # Nothing was migrated: the run must not say otherwise (its counts are
                # what `store check` reads to tell which steps' code made records).
                result.rolled_back, result.counts = True, {}
                if run is not None:
                    run.counts = {"migrated": {}, "failures": 0, "rolled_back": True}
            raise
        finally:
            if self.spill is not None:
                self.spill.close()

    def domain(self, dom: Domain) -> bool:
        """Migrate one domain; False when the run must stop (fail-fast).

        Pending records are read one starting version at a time (``version = v``), so
        each batch walks the (domain, version, id) index in id order instead of sorting
        every pending row again."""
        return all(self._version(dom, version) for version in range(1, dom.version))

    def _version(self, dom: Domain, version: int) -> bool:
        conn = self.conn
        ahead: collections.deque[tuple[_Span, Future[_Stepped] | None]] = collections.deque()
        after: int | None = 0  # where the next span starts (None: every span is handed out)
        try:
            while True:
                check_interrupt()
                tx = None if (self.atomic and self.run is not None) or conn.in_transaction() else conn.begin()
                with tx if tx is not None else contextlib.nullcontext():
                    # Spans are handed out up to ``ahead`` beyond the one being written;
                    # each is read where its steps run.
                    while after is not None and len(ahead) <= self.ahead:
                        upto = _span_end(conn, dom.name, version, after)
                        span = _Span(dom.name, version, after, upto)
                        ahead.append((span, self._submit(dom, span)))
                        after = upto
                    if not ahead:
                        return True
                    span, future = ahead.popleft()
                    done = self._stepped(dom, span, future)
                    if done.cut:  # the rest of the span is the next batch
                        rest = dataclasses.replace(span, after=done.last_id)
                        ahead.appendleft((rest, self._submit(dom, rest)))
                    if done.read and not self._write(dom, version, done):
                        return False
        finally:
            for _, stepped in ahead:  # stopped early: what was handed out is not written
                if stepped is not None:
                    stepped.cancel()

    @property
    def _kept(self) -> str | None:
        """What a dead worker leaves of this pass, when not every batch committed so far."""
        if self.run is None:
            return "nothing was written (a dry run writes nothing): run the dry run again"
        if self.atomic:
            return "nothing was changed (an atomic migration is rolled back whole): run the migrate again"
        return None

    def _submit(self, dom: Domain, span: _Span) -> Future[_Stepped] | None:
        """Hand ``span`` to a worker; without workers, ``None``: its steps run when its
        batch is written (:meth:`_stepped`), never before the batch ahead of it is
        committed (nor, with ``fail_fast``, once that batch holds a failure)."""
        if self.pool is None:
            return None
        wanted = max(0, self.diff - len(self.result.diffs))
        return workers.submit(self.pool, "migrate", _step_span_in_worker, span, self.fail_fast, wanted, kept=self._kept)

    def _stepped(self, dom: Domain, span: _Span, future: Future[_Stepped] | None) -> _Stepped:
        """What a worker made of ``span``, or (``future`` is ``None``) its steps run here."""
        if future is not None:
            return workers.result(future, "migrate", self._kept)
        wanted = max(0, self.diff - len(self.result.diffs))
        conn = self.conn
        dbapi_conn = conn.connection.dbapi_connection  # the transaction's own connection
        return _step_span(dom, dbapi_conn, placeholder(conn), span, self.fail_fast, wanted)

    def _write(self, dom: Domain, version: int, stepped: _Stepped) -> bool:
        """Write one batch's outcome (a dry run writes nothing); False when the run must stop."""
        result, run = self.result, self.run
        run_id, to_version = run.run_id if run else None, dom.version
        updates = [(text, to_version, run_id, rid) for text, rid in stepped.updates]
        batch = _Batch(dom.name, version, updates, stepped.failures, whole=len(updates) == stepped.read)
        if batch.updates:  # one starting version per batch: one step count
            per = result.counts.setdefault(dom.name, {})
            step = f"{version}->{to_version}"
            per[step] = per.get(step, 0) + len(batch.updates)
        result._failed(batch.failures)
        result.diffs.extend(stepped.diffs[: max(0, self.diff - len(result.diffs))])
        if run is not None:
            if self.atomic and batch.failures:
                # Recorded after the rollback that any failure brings (written in the run's
                # transaction, they would be rolled back with it): kept on disk meanwhile.
                if self.spill is None:
                    self.spill = tempfile.TemporaryFile()
                pickle.dump(_failure_rows(batch.failures), self.spill)
            _write_batch(self.conn, run, batch, result, failures=not self.atomic)
        if self.progress is not None:
            self.progress.advance(len(batch.updates) + len(batch.failures))
        return not (self.fail_fast and batch.failures)


def _span_end(conn: Connection, domain: str, version: int, after: int) -> int | None:
    """The last id of the span of BATCH_ROWS records that starts after ``after``
    (``None``: fewer are left), from the (domain, version, id) index alone."""
    mark = placeholder(conn)
    end = conn.exec_driver_sql(
        f"SELECT id FROM records WHERE domain = {mark} AND version = {mark} AND id > {mark} "
        f"ORDER BY id LIMIT 1 OFFSET {mark}",
        (domain, version, after, BATCH_ROWS - 1),
    ).scalar()
    return None if end is None else int(end)


def _read_span(dbapi_conn: Any, mark: str, span: _Span) -> tuple[list[Any], int, bool]:
    """The records of ``span`` in id order, with their files' paths: (id, key, version,
    payload, path) tuples; the size of their payloads; and whether the read stopped
    before the span's end, which it does once the payloads reach BATCH_BYTES, whatever
    the records' sizes. On SQLite the payload comes as its UTF-8 bytes: what orjson
    reads, and a quarter of the memory of a str holding one character beyond the BMP."""
    sqlite = isinstance(dbapi_conn, sqlite3.Connection)
    payload = "CAST(records.payload AS BLOB)" if sqlite else "records.payload"
    params: tuple[Any, ...] = (span.domain, span.version, span.after)
    bound = ""
    if span.upto is not None:
        bound, params = f" AND records.id <= {mark}", (*params, span.upto)
    cursor = dbapi_conn.cursor()  # plain tuples
    try:
        cursor.execute(
            f"SELECT records.id, records.key, records.version, {payload}, files.path "
            "FROM records JOIN files ON files.id = records.file_id "
            f"WHERE records.domain = {mark} AND records.version = {mark} AND records.id > {mark}{bound} "
            f"ORDER BY records.id LIMIT {BATCH_ROWS}",
            params,
        )
        rows, size = [], 0
        while (row := cursor.fetchone()) is not None:
            rows.append(row)
            size += len(row[3])
            if size >= BATCH_BYTES:
                return rows, size, True
        return rows, size, span.upto is None and len(rows) == BATCH_ROWS
    finally:
        cursor.close()


def _write_batch(conn: Connection, run: RunHandle, batch: _Batch, result: MigrationResult, *, failures: bool) -> None:
    if batch.updates:
        ids = [u[3] for u in batch.updates]
        if batch.whole:  # the rows read, and only they, are in this span (the batch holds the write lock)
            backup_span(conn, batch.domain, batch.version, ids[0], ids[-1], run.run_id, "migrate")
        else:
            backup_rows(conn, ids, run.run_id, "migrate")
        if is_sqlite(conn):  # the new payload's UTF-8 bytes, stored as the TEXT they are
            conn.exec_driver_sql(
                "UPDATE records SET payload = CAST(? AS TEXT), version = ?, run_id = ? WHERE id = ?", batch.updates
            )
        else:
            mark = placeholder(conn)
            conn.exec_driver_sql(
                f"UPDATE records SET payload = {mark}, version = {mark}, run_id = {mark} WHERE id = {mark}",
                [(as_text(p), v, r, i) for p, v, r, i in batch.updates],
            )
    if failures:
        run.add_failures(conn, _failure_rows(batch.failures))
    run.counts = {"migrated": result.counts, "failures": result.failure_count}
    run.save_counts(conn)


def _failure_rows(found: list[MigrationError]) -> list[dict[str, Any]]:
    """``found`` as rows of the ``failures`` table (but their run)."""
    return [
        {
            "domain": f.domain,
            "key": f.key,
            "source": getattr(f, "source", None),
            "from_version": f.from_version,
            "to_version": f.to_version,
            "step": f.step,
            "reason": f.reason,
        }
        for f in found
    ]


def _record_failures_alone(conn: Connection, run: RunHandle | None, result: MigrationResult, spill: IO[bytes] | None) -> None:
    """Record an atomic run's failures, after its rollback: every one, a batch at a time
    from ``spill``, not only those the result keeps."""
    if run is None:
        return
    with conn.begin():
        if spill is not None:
            spill.seek(0)
            while True:
                try:
                    rows = pickle.load(spill)  # our own file, written by this run
                except EOFError:
                    break
                run.add_failures(conn, rows)
        run.counts = {"migrated": {}, "failures": result.failure_count, "rolled_back": True}
        run.save_counts(conn)


# --------------------------------------------------------------------------- restore


@dataclass
class RestoreResult:
    """What a restore put back."""

    run_id: int
    restored: dict[str, int] = field(default_factory=dict)
    #: Records removed: the run being undone had added them (an import's new records, or
    #: records a restore had put back where there was none).
    removed: dict[str, int] = field(default_factory=dict)
    #: Records a forced restore took out of the places it put records back into (each
    #: backed up: undoing the restore brings them back).
    displaced: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """How many records were put back, in every domain."""
        return sum(self.restored.values())

    def as_dict(self) -> dict[str, Any]:
        """As ``store restore --json`` prints it."""
        return {
            "run": self.run_id,
            "restored": self.restored,
            "removed": self.removed,
            "displaced": self.displaced,
            "total": self.total,
        }


#: Records a restore writes with one statement, between two chances for Ctrl-C.
RESTORE_BATCH = 500

#: The reason of the backup a restore writes of a record it put back where there was
#: none: restoring that run (undoing it) removes the record again.
INSERTED = "inserted"


#: A backup's columns but its payload (see _as_left_by).
_BUT_PAYLOAD = [c for c in backups.c if c.name != "payload"]

#: Whether a record's payload is its backup's, compared by SQLite (with records and
#: backups joined): neither is read into memory.
_SAME_PAYLOAD = (records.c.payload == backups.c.payload).label("same_payload")

#: A restore's plan, in temporary tables of its own connection (dropped before it
#: commits; a rollback drops them too): the backups it chose, with what its checks found,
#: kept by SQLite and never in memory. Held in lists, they took 1.2 kB a record (a
#: restore of a migration of 1,000,000 records: 1.2 GB), and each check went over them.
_plan_tables = MetaData()

#: One row per chosen backup, ``seq`` in backup order.
_plan = Table(
    "restore_plan",
    _plan_tables,
    Column("seq", Integer, primary_key=True),
    Column("bid", Integer, nullable=False),
    Column("record_id", Integer, nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("inserted", Integer, nullable=False),  # the backup's reason is INSERTED
    Column("present", Integer, nullable=False),  # its record is there,
    Column("moved", Integer, nullable=False),  # at another place than the backup's,
    Column("holds", Integer, nullable=False),  # or holding the backup's row already
    Column("now_run", Integer),  # the run that wrote the record as it is
    # A record that is gone: the record (its id) or refused text that holds its place now.
    Column("held_rid", Integer),
    Column("held_text", Integer, nullable=False, server_default="0"),
    Index("ix_restore_plan_slot", "file_id", "position"),
    prefixes=["TEMPORARY"],
)

#: The records the restore removes: those the run being undone added (``added``), or
#: that the restore being undone put back; ``seq`` in the order they are counted.
_leaving = Table(
    "restore_leaving",
    _plan_tables,
    Column("seq", Integer, primary_key=True),
    Column("record_id", Integer, nullable=False),
    Column("domain", String(255), nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("now_run", Integer),
    Index("ix_restore_leaving_record", "record_id", unique=True),
    prefixes=["TEMPORARY"],
)

#: Rows a restore's checks read at a time.
PLAN_PAGE = 500


def _flag(cond: Any) -> Any:
    """``cond`` as 1 or 0 (NULL: 0), for an integer column whatever the database."""
    return case((cond, 1), else_=0)


def _chosen_backups(conn: Connection, run_id: int | None, domain: str | None, key: str | None) -> None:
    """Plan one backup per record: the oldest of ``run_id`` (the row before that run), or
    the latest one of each record of ``domain``/``key`` that a restore did not write (so
    restoring a record twice puts back the same row; a restore is undone by its run);
    with what its record holds now, payloads compared by SQLite. One statement: neither
    the backups nor the records are read into memory (their payloads are read a batch at
    a time as they are written)."""
    pick = func.min(backups.c.id) if run_id is not None else func.max(backups.c.id)
    sub = select(pick.label("bid")).where(*backup_filter(run_id, domain, key)).group_by(backups.c.record_id).subquery()
    present = records.c.id.is_not(None)
    same_place = and_(records.c.file_id == backups.c.file_id, records.c.position == backups.c.position)
    same_row = [getattr(records.c, c) == getattr(backups.c, c) for c in ("domain", "key", "version", "payload")]
    conn.execute(
        insert(_plan).from_select(
            ["bid", "record_id", "file_id", "position", "inserted", "present", "moved", "holds", "now_run"],
            select(
                backups.c.id, backups.c.record_id, backups.c.file_id, backups.c.position, _flag(backups.c.reason == INSERTED),
                _flag(present), _flag(and_(present, not_(same_place))), _flag(and_(present, same_place, *same_row)),
                records.c.run_id,
            )
            .select_from(backups.join(sub, sub.c.bid == backups.c.id).outerjoin(records, records.c.id == backups.c.record_id))
            .order_by(backups.c.id),
        )
    )


def backup_filter(run_id: int | None, domain: str | None, key: str | None) -> list[Any]:
    """Which backups a restore chooses from (see :func:`_chosen_backups`)."""
    if run_id is not None:
        return [backups.c.run_id == run_id]
    found: list[Any] = [backups.c.reason.not_in(("restore", INSERTED))]
    if domain is not None:
        found.append(backups.c.domain == domain)
    if key is not None and not jsoncodec.is_utf8(key):
        # A file name that is not UTF-8 cannot be bound, and the store keeps none.
        found.append(false())
    elif key is not None:
        # Looked up at the places its record can hold in the files it can be in, as
        # Store.get finds a record (the backups' (file_id, position) index): the key's own
        # column has no index, and reading every backup took 0.45 s a million.
        places = [
            and_(
                backups.c.file_id.in_(select(files.c.id).where(files.c.path == path)),
                *([] if last is None else [backups.c.position <= last]),
            )
            for path, last in sorted(key_slots(key).items())
        ]
        found += [backups.c.key == key, or_(*places)]
    return found


#: The records a refused restore names in its error's ``keys``: the first ones (its
#: ``count`` counts them all). Holding them all, a restore of a run of 1,000,000 records
#: a later run changed held a tuple of strings a record.
CONFLICT_KEYS_KEPT = 200


@dataclass
class _Conflicting:
    """The records a restore conflicts over: the domain and key of the first
    CONFLICT_KEYS_KEPT, and how many in all; true when there is any."""

    keys: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0

    def add(self, found: list[tuple[str, str]]) -> None:
        self.count += len(found)
        self.keys += found[: CONFLICT_KEYS_KEPT - len(self.keys)]

    def __bool__(self) -> bool:
        return self.count > 0


def _conflict(from_run: int | None, found: _Conflicting, what: str, hint: str) -> RestoreConflictError:
    shown = ", ".join(f"{d} {k}" for d, k in found.keys[:3])
    more = f" and {found.count - 3} more" if found.count > 3 else ""
    run = "" if from_run is None else f" run {from_run}"
    return RestoreConflictError(
        f"refusing to restore{run}: {found.count} record(s) {what} ({shown}{more}); {hint}", keys=found.keys, count=found.count
    )


def _planned(conn: Connection, *where: Any) -> _Conflicting:
    """The domain and key of the planned backups ``where`` picks, in backup order (the
    records a conflict names): the first CONFLICT_KEYS_KEPT, and how many in all."""
    picked = _plan.join(backups, backups.c.id == _plan.c.bid)
    first = conn.execute(
        select(backups.c.domain, backups.c.key).select_from(picked).where(*where).order_by(_plan.c.seq).limit(CONFLICT_KEYS_KEPT)
    )
    found = _Conflicting([(d, k) for d, k in first])
    found.count = len(found.keys)
    if found.count == CONFLICT_KEYS_KEPT:  # perhaps more: counted by SQLite, not read
        found.count = int(conn.execute(select(func.count()).select_from(picked).where(*where)).scalar() or 0)
    return found


def _pages(conn: Connection, query: Select[Any], mark: Any) -> Iterator[list[Any]]:
    """The rows of ``query`` (which selects ``mark`` labelled ``mark``), PLAN_PAGE at a
    time in ``mark``'s order, each page read from where the last one ended."""
    last = None
    while True:
        page = query if last is None else query.where(mark > last)
        rows = list(conn.execute(page.order_by(mark).limit(PLAN_PAGE)))
        if not rows:
            return
        yield rows
        last = rows[-1].mark


def _changed_again(conn: Connection, from_run: int) -> Iterator[list[Any]]:
    """The records run ``from_run`` wrote (or added) that a later run wrote since: those
    of the planned backups but the records already back to theirs (a restore of this run
    that was killed after its commit, before its run was marked finished), then those the
    restore being undone put back, then those the run added; a page at a time."""
    now = (records.c.id, records.c.domain, records.c.key, records.c.version, records.c.file_id, records.c.position)
    for inserted in (0, 1):
        yield from _pages(
            conn,
            select(*now, _plan.c.seq.label("mark"))
            .select_from(_plan.join(records, records.c.id == _plan.c.record_id))
            .where(
                _plan.c.present == 1, _plan.c.inserted == inserted, _plan.c.now_run.is_distinct_from(from_run),
                *([] if inserted else [_plan.c.holds == 0]),
            ),
            _plan.c.seq,
        )
    yield from _pages(
        conn,
        select(*now, _leaving.c.seq.label("mark"))
        .select_from(_leaving.join(records, records.c.id == _leaving.c.record_id))
        .where(_leaving.c.added == 1, _leaving.c.now_run.is_distinct_from(from_run)),
        _leaving.c.seq,
    )


def _added_by(conn: Connection, run_id: int) -> None:
    """Plan the removal of the records run ``run_id`` added (an import's new records,
    which have no backup of that run) that are still there: written last by that run, or
    by a later one whose backup shows the row that run wrote (unless pruned since)."""
    first_origin = (
        select(backups.c.origin_run_id).where(backups.c.record_id == records.c.id).order_by(backups.c.id).limit(1)
    ).scalar_subquery()
    # The records the run backed up, found once: as a subquery per record, SQLite read
    # every backup of the run for each (its run_id index), which made a restore of a
    # migration quadratic (10,000 records: 5.6 s; 200,000: about 35 minutes).
    backed_up = records.c.id.in_(select(backups.c.record_id).where(backups.c.run_id == run_id))
    conn.execute(
        insert(_leaving).from_select(
            ["record_id", "domain", "file_id", "added", "now_run"],
            select(records.c.id, records.c.domain, records.c.file_id, literal(1), records.c.run_id)
            .where(or_(records.c.run_id == run_id, first_origin == run_id), ~backed_up)
            .order_by(records.c.id),
        )
    )


def _as_left_by(conn: Connection, run_id: int, rows: list[Any]) -> list[Any]:
    """Of ``rows`` (records a later run wrote), those that hold again exactly what run
    ``run_id`` left (a restore of that later run put it back): the row a later run
    backed up as that run's, the first it did."""
    left: dict[int, Any] = {}
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 500):
        found = conn.execute(
            select(*_BUT_PAYLOAD, _SAME_PAYLOAD)
            .join(records, records.c.id == backups.c.record_id)
            .where(backups.c.record_id.in_(ids[start : start + 500]), backups.c.origin_run_id == run_id, backups.c.run_id > run_id)
            .order_by(backups.c.id)
        )
        for backup in found:
            left.setdefault(backup.record_id, backup)
    return [row for row in rows if row.id in left and _already_restored(row, left[row.id], left[row.id].same_payload)]


def _already_restored(row: Any, backup: Any, same_payload: Any) -> bool:
    """Whether the record ``row`` holds ``backup``'s row (its payload too: ``same_payload``,
    as SQLite compared them)."""
    return bool(same_payload) and all(
        getattr(row, c) == getattr(backup, c) for c in ("domain", "key", "version", "file_id", "position")
    )


def _misplaced(conn: Connection, file_ids: list[Select[Any]]) -> _Conflicting:
    """The slots (records, refused texts) of the files among ``file_ids`` that their file
    has no place for: past a one-record file's record, or in an array after a slot
    holding neither a record nor a refused text. A JSON-lines file keeps an empty line in
    such a place, so its records keep their lines; an array keeps no empty element, so
    export would write each record after it at another index than its key's (``[2]`` as
    the first element), and a one-record file holds one JSON value: export would write
    two, one after the other, which is no JSON (an application reading the file over
    which it was exported could not read it)."""
    laid_out = {
        i: container
        for i, container in conn.execute(
            select(files.c.id, files.c.container).where(files.c.id.in_(union(*file_ids)), files.c.container.in_(("array", "object")))
        )
    }
    # A file's slots are numbered from 0, one a position: fewer than its last one's
    # number, and there is a gap. Counted by the (file_id, position) indexes.
    slots: dict[int, list[int]] = {}  # file id -> [count, last position]
    ids = list(laid_out)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for table in (records, refused):
            for file_id, n, last in conn.execute(
                select(table.c.file_id, func.count(), func.max(table.c.position))
                .where(table.c.file_id.in_(chunk))
                .group_by(table.c.file_id)
            ):
                seen = slots.setdefault(file_id, [0, -1])
                seen[0] += n
                seen[1] = max(seen[1], last)
    found = _Conflicting()
    for file_id in sorted(slots):  # a refusal where any is found, file by file
        n, last = slots[file_id]
        if laid_out[file_id] == "object":
            if last == 0:
                continue
            upto = 0  # its one record's place
        elif n > last:
            continue
        else:
            held = {p for t in (records, refused) for (p,) in conn.execute(select(t.c.position).where(t.c.file_id == file_id))}
            upto = next(p for p in range(len(held) + 1) if p not in held)
        past = union_all(
            select(records.c.domain.label("domain"), records.c.key.label("key"), records.c.position.label("position")).where(
                records.c.file_id == file_id, records.c.position > upto
            ),
            select(files.c.domain, refused.c.key, refused.c.position)
            .join(files, files.c.id == refused.c.file_id)
            .where(refused.c.file_id == file_id, refused.c.position > upto),
        ).subquery()
        found.add([(d, k) for d, k in conn.execute(select(past.c.domain, past.c.key).order_by(past.c.position))])
    return found


def _keys_astray(conn: Connection, relaid: list[Select[Any]]) -> _Conflicting:
    """The records this restore wrote (and those of the files whose layout it put back:
    ``relaid``) whose key is not one their file's layout gives: a one-record file's key
    in a file that is an array now, an element's in a one-record file, either in a
    JSON-lines file. Export would write such a record under another key than its own
    (the next import taking it for another record), the array's first element for a
    one-record file's key."""
    element = files.c.path + "[" + sql_cast(records.c.position, String) + "]"
    astray = or_(
        and_(files.c.container == "object", or_(records.c.key != files.c.path, records.c.position != 0)),
        and_(files.c.container == "array", records.c.key != element),
        and_(files.c.container == "lines", func.substr(records.c.key, 1, func.length(files.c.path) + 1) != files.c.path + ":"),
    )
    # Found from the plan (by the records' and files' ids), and from the (file_id,
    # position) index for the files relaid: no pass over every record.
    page = union(
        select(records.c.id, records.c.domain, records.c.key)
        .select_from(_plan.join(records, records.c.id == _plan.c.record_id).join(files, files.c.id == records.c.file_id))
        .where(astray),
        select(records.c.id, records.c.domain, records.c.key)
        .join(files, files.c.id == records.c.file_id)
        .where(records.c.file_id.in_(union(*relaid)), astray),
    ).subquery()
    found = _Conflicting()
    found.add([(d, k) for _, d, k in conn.execute(select(page).order_by(page.c.id).limit(CONFLICT_KEYS_KEPT))])
    if found.count == CONFLICT_KEYS_KEPT:  # perhaps more: counted by SQLite, not read
        found.count = int(conn.execute(select(func.count()).select_from(page)).scalar() or 0)
    return found


def _counted(conn: Connection, domain: Any, query: Select[Any], first: Any) -> dict[str, int]:
    """Records by domain, the domains in the order their first record comes (``first``)."""
    return {name: int(n) for name, n in conn.execute(query.add_columns(domain, func.count()).group_by(domain).order_by(func.min(first)))}


def restore_records(
    engine: Engine,
    *,
    run: RunHandle,
    from_run: int | None = None,
    domain: str | None = None,
    key: str | None = None,
    force: bool = False,
) -> RestoreResult:
    result = RestoreResult(run_id=run.run_id)
    # IMMEDIATE: it reads the backups, then writes (see migrate_records)
    with translate_errors(), engine.connect() as conn, conn.execution_options(sqlite_begin="IMMEDIATE").begin():
        _plan.create(conn)
        _leaving.create(conn)
        _chosen_backups(conn, from_run, domain, key)
        # A record never leaves its place in its file: one found elsewhere under a backed
        # up id is another record, which took the id of the one removed (a store written
        # before ids were kept from being reused). Restoring over it would lose it.
        moved = _planned(conn, _plan.c.moved == 1)
        if moved:
            raise _conflict(
                from_run,
                moved,
                "have their id taken by another record, in a store written before ids were kept",
                "their backups can be read in the backups table",
            )
        # Records the restore being undone put back: removed again (if still there).
        conn.execute(
            insert(_leaving).from_select(
                ["record_id", "domain", "file_id", "added", "now_run"],
                select(_plan.c.record_id, backups.c.domain, backups.c.file_id, literal(0), _plan.c.now_run)
                .select_from(_plan.join(backups, backups.c.id == _plan.c.bid))
                .where(_plan.c.inserted == 1, _plan.c.present == 1)
                .order_by(_plan.c.seq),
            )
        )
        # Records the run added (an import's new ones): removed, as the run had not been.
        # Only an import adds records it backs up nothing of: a migration backs up every
        # record it writes, and finding none would read every record (records.run_id has
        # no index: restoring a migration of one record in a store of 1,000,000 took 1.0 s).
        if from_run is not None and conn.execute(select(runs.c.kind).where(runs.c.id == from_run)).scalar() != "migrate":
            _added_by(conn, from_run)
        if from_run is not None and not force:
            # A record already back to its backup (a restore of this run that was killed
            # after its commit, before its run was marked finished) is no conflict.
            # Undoing runs newest first: a record a later run changed, which the restore
            # of that run put back as this run left it, is no conflict.
            conflicts = _Conflicting()
            for rows in _changed_again(conn, from_run):
                changed_back = {row.id for row in _as_left_by(conn, from_run, rows)}
                conflicts.add([(row.domain, row.key) for row in rows if row.id not in changed_back])
            if conflicts:
                raise _conflict(from_run, conflicts, "were changed again by a later run", "pass --force, or force=True, to restore them anyway")
        if from_run is None and key is not None and not force:
            # The record's place now holds the record of another line or element (a later
            # import found the one before it removed, or blank: each after it moved up a
            # place, and took that place's record): putting the key's backup there would
            # replace that other record, and export would write the file without it.
            other_key = exists().where(records.c.id == _plan.c.record_id, records.c.key != key)
            if moved_on := _planned(conn, _plan.c.present == 1, other_key):
                raise _conflict(
                    from_run,
                    moved_on,
                    "would go back into a place in their file that now holds another record or a refused text",
                    "pass --force, or force=True, to restore them anyway (a record there is backed up)",
                )
        # A record that holds its backup's row already has nothing to restore: the same
        # restore, killed after its commit before its run was marked finished, put it
        # back. Written again, it would be backed up a second time, as it already is.
        conn.execute(delete(_plan).where(or_(_plan.c.inserted == 1, _plan.c.holds == 1)))
        # A record that is gone goes back into its place in its file (its slot), which a
        # later import may have given to another record or to a refused text since.
        gone = _plan.c.present == 0
        if from_run is not None and not force:
            later = backups.alias("later")
            removed = _planned(
                conn, gone, exists().where(later.c.record_id == _plan.c.record_id, later.c.run_id > from_run)
            )
            if removed:
                raise _conflict(
                    from_run,
                    removed,
                    "were removed by a later run (their file no longer holds them)",
                    "pass --force, or force=True, to put them back anyway",
                )
        same = _plan.alias("same")
        in_same_place = [same.c.file_id == _plan.c.file_id, same.c.position == _plan.c.position]
        if from_run is None:
            # Records that held one place one after the other: the latest backup of it.
            conn.execute(delete(_plan).where(gone, exists().where(same.c.present == 0, same.c.seq > _plan.c.seq, *in_same_place)))
        # Records this restore removes (an import's additions; records the restore being
        # undone put back) leave their places free for the records going back.
        holder: Any = select(records.c.id).where(
            records.c.file_id == _plan.c.file_id,
            records.c.position == _plan.c.position,
            records.c.id.not_in(select(_leaving.c.record_id)),
        ).scalar_subquery()
        if from_run is None and key is not None:
            # ... or its key, its line: the record of a line below it, moved up into it by
            # a later import (the line before it removed, or blank). Put back beside it,
            # the file would be exported with that line twice.
            holder = func.coalesce(
                holder,
                select(records.c.id)
                .where(
                    records.c.file_id == _plan.c.file_id,
                    records.c.key == key,
                    records.c.id != _plan.c.record_id,
                    records.c.id.not_in(select(_leaving.c.record_id)),
                )
                .limit(1)
                .scalar_subquery(),
            )
        text = exists().where(refused.c.file_id == _plan.c.file_id, refused.c.position == _plan.c.position)
        conn.execute(update(_plan).where(gone).values(held_rid=holder, held_text=_flag(text)))
        taken = [gone, or_(_plan.c.held_rid.is_not(None), _plan.c.held_text == 1)]
        if not force and (held := _planned(conn, *taken)):
            raise _conflict(
                from_run,
                held,
                "would go back into a place in their file that now holds another record or a refused text",
                "pass --force, or force=True, to restore them anyway (a record there is backed up; a refused text is dropped, "
                "and the next import reads it from the file again)",
            )
        # The record holding a place is to be restored itself (in its place: none moved),
        # or two records go back into one place.
        shared = select(_plan.c.seq).where(gone, _plan.c.held_rid.is_not(None), exists().where(same.c.present == 1, *in_same_place))
        doubled = select(_plan.c.file_id).where(gone).group_by(_plan.c.file_id, _plan.c.position).having(func.count() > 1)
        if conn.execute(shared.limit(1)).first() is not None or conn.execute(doubled.limit(1)).first() is not None:
            raise _conflict(
                from_run,
                _planned(conn, *taken) or _planned(conn, gone),
                "belong in the same place of their file as another record to restore",
                "restore them one at a time, by domain and key",
            )
        occupants = select(_plan.c.held_rid).where(_plan.c.held_rid.is_not(None))
        leaving = select(_leaving.c.record_id)
        for chosen in (select(_plan.c.record_id).where(_plan.c.present == 1), occupants, leaving):
            backup_selected(conn, chosen, run.run_id, "restore")
        result.displaced = _counted(conn, records.c.domain, select().where(records.c.id.in_(occupants)), records.c.id)
        conn.execute(records.delete().where(records.c.id.in_(occupants)))
        conn.execute(records.delete().where(records.c.id.in_(leaving)))
        result.removed = _counted(conn, _leaving.c.domain, select(), _leaving.c.seq)
        put = (
            "UPDATE records SET domain = {m}, key = {m}, version = {m}, payload = {m}, file_id = {m}, position = {m}, "
            "run_id = {m} WHERE id = {m}"
        ).format(m=placeholder(conn))
        back = (backups.c.domain, backups.c.key, backups.c.version, backups.c.payload, backups.c.file_id, backups.c.position)
        planned = _plan.join(backups, backups.c.id == _plan.c.bid)
        done = 0
        while True:
            # One transaction, all or nothing: Ctrl-C between batches rolls it all back.
            upto = conn.execute(
                select(func.max(_plan.c.seq)).where(
                    _plan.c.seq.in_(select(_plan.c.seq).where(_plan.c.seq > done).order_by(_plan.c.seq).limit(RESTORE_BATCH))
                )
            ).scalar()
            if upto is None:
                break
            check_interrupt()
            batch = [_plan.c.seq > done, _plan.c.seq <= upto]
            # The payloads of this batch only, for the records that are there.
            there = conn.execute(select(*back, literal(run.run_id), _plan.c.record_id).select_from(planned).where(*batch, _plan.c.present == 1))
            updates = [tuple(row) for row in there]
            if updates:
                conn.exec_driver_sql(put, updates)
            del updates
            texts = conn.execute(select(_plan.c.file_id, _plan.c.position).where(*batch, gone, _plan.c.held_text == 1)).all()
            if texts:
                conn.execute(
                    refused.delete().where(refused.c.file_id == bindparam("f"), refused.c.position == bindparam("p")),
                    [{"f": f, "p": p} for f, p in texts],
                )
            conn.execute(
                insert(records).from_select(
                    ["domain", "key", "version", "payload", "file_id", "position", "run_id", "id"],
                    select(*back, literal(run.run_id), _plan.c.record_id).select_from(planned).where(*batch, gone).order_by(_plan.c.seq),
                )
            )
            # so this restore can be undone
            backup_selected(conn, select(_plan.c.record_id).where(*batch, gone), run.run_id, INSERTED)
            done = upto
        result.restored = _counted(conn, backups.c.domain, select().select_from(planned), _plan.c.seq)
        touched = [select(_plan.c.file_id), select(_leaving.c.file_id)]
        # The files whose slots this restore empties or fills: only there can it leave a gap.
        reslotted = [select(_plan.c.file_id).where(gone), select(_leaving.c.file_id)]
        relaid = [select(literal(-1))]  # (a file id none has)
        if from_run is not None:
            # The files the run gave another layout (an import: an object become an array,
            # a last newline gone) go back to the one they had, as their records do.
            first = select(func.min(file_backups.c.id)).where(file_backups.c.run_id == from_run).group_by(file_backups.c.file_id)
            for layout in conn.execute(select(file_backups).where(file_backups.c.id.in_(first)).order_by(file_backups.c.id)).all():
                old = {c: getattr(layout, c) for c in LAYOUT}
                backup_file_layout(conn, layout.file_id, old, run.run_id)  # so this restore can be undone
                conn.execute(update(files).where(files.c.id == layout.file_id).values(**old))
            touched.append(select(file_backups.c.file_id).where(file_backups.c.id.in_(first)))
            reslotted.append(touched[-1])
            relaid.append(touched[-1])
        if misplaced := _misplaced(conn, reslotted):
            # Written, then refused: the transaction is rolled back whole.
            raise _conflict(
                from_run,
                misplaced,
                "would be where their file has no place for them (in an array after a place left empty, or past "
                "the record of a one-record file), and export would write them at another index than their key's, "
                "or not as JSON",
                "restore first the later runs that added them (newest first), or put back the records before them "
                "(by domain and key)",
            )
        if astray := _keys_astray(conn, relaid):
            raise _conflict(
                from_run,
                astray,
                "would go back under a key their file's layout does not give them (a one-record file's in what is an "
                "array now, or an element's), and export would write them under another",
                "restore by run the import that gave their file its layout, which puts that layout back too",
            )
        # The next import must compare these files again rather than trust their digest.
        conn.execute(update(files).where(files.c.id.in_(union(*touched))).values(digest=""))
        run.counts = {"restored": result.restored, "removed": result.removed, "from_run": from_run}
        if result.displaced:
            run.counts["displaced"] = result.displaced
        run.save_counts(conn)
        _leaving.drop(conn)
        _plan.drop(conn)
    return result
