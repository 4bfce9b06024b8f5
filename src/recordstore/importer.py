"""Writing what :mod:`recordstore.parsing` found into the store, in batched
transactions, within one import run; handing files out to worker processes.

A file whose bytes did not change since the last import is not parsed again; a changed
one is compared record by record, and every row it replaces is backed up.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, func, insert, literal, select, update

from . import jsoncodec, parsing, workers
from .connections import INT_MAX
from .engine import background_checkpoints, placeholder, sqlite_file
from .errors import PROBLEMS_KEPT, InputError, NewerVersionError
from .parsing import (
    Candidate,
    DomainSpec,
    FileParse,
    FileRead,
    Outcome,
    ParsedRecord,
    Refused,
    RefusedRow,
    Row,
    Slot,
    Task,
    WireOutcome,
)
from .runs import check_interrupt
from .schema import drop_record_indexes, restore_record_indexes
from .tables import backups, files, import_digests, records, runs

__all__ = ["DomainCounts", "ImportResult", "Importer"]


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
        """The counts by name, as ``store import --json`` prints them for each domain."""
        return dict(self.__dict__)


@dataclass
class ImportResult:
    """The outcome of :meth:`Store.import_paths`."""

    run_id: int
    domains: dict[str, DomainCounts] = field(default_factory=dict)
    files: int = 0
    skipped: int = 0
    #: Files (and directories) found by the walk but gone before they could be read:
    #: removed or renamed away meanwhile by the application writing them. Nothing of
    #: them was there to import, so they are counted, not reported as problems.
    vanished: int = 0
    #: The first PROBLEMS_KEPT problems, in order (``problem_count``: how many in all).
    problems: list[InputError] = field(default_factory=list)
    #: How many files and records were refused or failed: ``problems`` and those past them.
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing was refused or failed (``store import`` exits 1 otherwise)."""
        return not (self.problem_count or self.problems)

    @property
    def problems_not_kept(self) -> int:
        """How many problems are counted but not in ``problems`` (the run's are all in
        the store: ``Store.failures(run_id)``)."""
        return max(0, self.problem_count - len(self.problems))

    def add_problem(self, problem: InputError) -> None:
        """Count ``problem``, keeping it while fewer than PROBLEMS_KEPT are kept."""
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(problem)

    def counts(self, domain: str) -> DomainCounts:
        """The counts of ``domain`` (made, all zero, the first time it is asked for)."""
        found = self.domains.get(domain)  # called once a file: build a new one only when needed
        if found is None:
            found = self.domains[domain] = DomainCounts()
        return found

    def as_dict(self) -> dict[str, Any]:
        """As ``store import --json`` prints it: the run, files read, skipped and gone
        before they were read, the counts by domain, the first PROBLEMS_KEPT problems as a
        line each and how many there were in all."""
        return {
            "run": self.run_id,
            "files": self.files,
            "skipped": self.skipped,
            "vanished": self.vanished,
            "domains": {d: c.as_dict() for d, c in sorted(self.domains.items())},
            "problems": [str(p) for p in self.problems],
            "problem_count": self.problem_count,
        }


@dataclass
class _Chunk:
    """Files handed to the workers together; ``outcomes`` once parsed here instead."""

    candidates: list[Candidate]
    tasks: list[Task | None]
    future: Future[list[WireOutcome | int | None]]
    outcomes: list[Outcome | int | None] | None = None


def _steal(queued: collections.deque[_Chunk]) -> _Chunk | None:
    """The newest queued chunk whose task no worker has started (now cancelled)."""
    for chunk in reversed(queued):
        if chunk.outcomes is None and chunk.future.cancel():
            return chunk
    return None


#: Files per chunk handed to a worker that parses.
CHUNK_FILES = 64
#: To one that also writes, more: each commit writes again the index pages it touched
#: and makes the other writers read theirs anew, so fewer, larger transactions cost less
#: (246,423 records, chunks of 2048 files, up to BATCH_RECORDS a commit, against 256
#: files: 2.02 s median and 3.4 s of CPU against 2.32 s and 3.9 s on a busy stretch,
#: eight interleaved runs each; 2.10 s against 2.11 s, twenty each, on a quiet one). The
#: first chunks are smaller (doubling from CHUNK_FILES_WRITING_FIRST), so that every
#: worker has work at once, even in an import of a few thousand files.
CHUNK_FILES_WRITING_FIRST = 256
CHUNK_FILES_WRITING = 2048
#: Files whose stored state is looked up together, when parsing in this process.
LOOKUP_FILES = 256
#: How much record text workers may have parsed ahead of the writer; with at most
#: TASK_MAX_BYTES per file, this bounds the memory in flight.
AHEAD_BYTES = 8 * 1024 * 1024
#: And how many files, whatever the chunks' sizes (each is held here until written).
MAX_FILES_AHEAD = 16 * 1024
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


def _chunk_sizes(writing: bool) -> Iterator[int]:
    """The number of files in each chunk handed to the workers, one after the other."""
    if writing:
        size = CHUNK_FILES_WRITING_FIRST
        while size < CHUNK_FILES_WRITING:
            yield size
            size *= 2
    yield from itertools.repeat(CHUNK_FILES_WRITING if writing else CHUNK_FILES)


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
        # A new record must not take the id of one a backup refers to (SQLite gives a new
        # row the highest id plus one, so the id of a removed record that was the highest
        # would come back): the highest such id, until a record above it is stored.
        # (Other databases draw ids from a sequence, which never gives one back: None.)
        self._id_floor: int | None = None
        if conn.dialect.name == "sqlite":
            self._id_floor = int(conn.execute(select(func.max(backups.c.record_id))).scalar() or 0)
        # What the store held, before this run, for the files about to be dispatched
        # (None: nothing); looked up a window of files at a time, so memory does not
        # grow with the number of files stored.
        self._window: dict[str, tuple[int, str, str, int] | None] = {}
        self._had_files = self.next_file_id > 1
        self._deferred_indexes = False  # see _defer_indexes
        self.file_rows: list[tuple[Any, ...]] = []
        self.record_rows: list[Row] = []
        self.failure_rows: list[tuple[Any, ...]] = []
        self.refused_rows: list[RefusedRow] = []
        self.pending_bytes = 0
        self.direct_rows = 0  # slots of changed files compared and written since the last commit
        self._mark = placeholder(conn)
        self._imports: set[int] | None = None  # see _import_runs
        self._specs: dict[str, DomainSpec] = {}
        # Paths handed out as tasks and not written yet, with what the store held for
        # them then (still true when written: a path is never in flight twice).
        self._in_flight: dict[str, tuple[int, str, str, int] | None] = {}
        self._written = _PathFilter()  # the paths of the new files written in this run
        self.bytes_as_text = conn.dialect.name == "sqlite"
        self.sql_file, self.sql_record, self.sql_failure, self.sql_refused = parsing.insert_statements(
            placeholder(conn), self.bytes_as_text
        )
        # Problems name their files by the paths found, not from their roots (see record_problem).
        self.named_by_path = False
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
        self.pending_bytes = self.direct_rows = 0
        self._tx.commit()
        check_interrupt()  # a safe point, within a large file too
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
                # transaction, and the pool being shut down, on that worker. (Not one
                # committed already: Ctrl-C is taken just after a commit.)
                if self._tx.is_active:
                    self._tx.rollback()
                raise

    def _execute_pending(self) -> None:
        if self.file_rows:
            self.conn.exec_driver_sql(self.sql_file, self.file_rows)
        if self.record_rows:
            rows = self.record_rows
            if self._id_floor:
                rows = self._above_floor(rows, self._id_floor)
            if not self.bytes_as_text:
                rows = [(d, k, v, as_text(t), f, p, r) for d, k, v, t, f, p, r in rows]
            if rows:
                self.conn.exec_driver_sql(self.sql_record, rows)
        if self.failure_rows:
            self.conn.exec_driver_sql(self.sql_failure, self.failure_rows)
        if self.refused_rows:
            self.conn.exec_driver_sql(self.sql_refused, self.refused_rows)
        self.file_rows, self.record_rows, self.failure_rows, self.refused_rows = [], [], [], []

    def _above_floor(self, rows: list[Row], floor: int) -> list[Row]:
        """``rows`` to insert, less the first if it had to be stored under an id above
        ``floor`` (the ones after it then follow it)."""
        top = self.conn.execute(select(func.max(records.c.id))).scalar()
        if top is None or top < floor:
            domain, key, version, text, file_id, position, run_id = rows[0]
            self.conn.execute(
                records.insert().values(
                    id=floor + 1, domain=domain, key=key, version=version, payload=as_text(text),
                    file_id=file_id, position=position, run_id=run_id,
                )
            )  # fmt: skip
            rows = rows[1:]
        self._id_floor = 0
        return rows

    def _batch_full(self) -> bool:
        rows = len(self.record_rows) + len(self.file_rows) + len(self.failure_rows) + len(self.refused_rows) + self.direct_rows
        return rows >= parsing.BATCH_RECORDS or self.pending_bytes >= parsing.BATCH_BYTES

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
            check_interrupt()
            if cand.domain is None:
                result.skipped += 1
            elif isinstance(outcome, int):  # a new file a worker wrote whole: nothing to report
                result.files += 1
                result.counts(cand.domain.name).imported += outcome
                del self._in_flight[cand.relpath]
                self._written.add(cand.relpath)
            elif self.import_one(cand, outcome):
                result.files += 1
            else:
                result.vanished += 1
            if advance is not None:
                advance(1)

    def import_one(self, cand: Candidate, outcome: Outcome | None) -> bool:
        """Write one file: what its task found, or (``None``, ``large``) read it here.
        ``False`` if it was gone (see :func:`parsing.vanished`): nothing to write."""
        known = self._in_flight.pop(cand.relpath, None) if outcome is not None else None
        if outcome is not None and outcome.kind == "vanished":
            return False
        if outcome is None or outcome.kind == "large":
            with self._exclusive():
                if not self.import_file(cand):
                    return False
        elif known is not None:  # compared with what the store holds
            with self._exclusive():
                self.write(cand, outcome, known)
        else:  # rows to add to the batch, at most
            self.write(cand, outcome, known)
        if self._batch_full():
            self.flush()
        return True

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
        store_file = sqlite_file(self.conn.engine)
        if store_file is not None:
            workers.clear_turns(store_file)  # a killed import's (this one holds the run lock)
        database = None if self._had_files else store_file
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
                        yield cand, None if task is None else parsing.parse_task(task)
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
                self._turns = stack.enter_context(workers.turns(database))
                start = (parsing.start_writer, (database, self.run_id, self._turns))
            pool = stack.enter_context(workers.pool(jobs, "import", initializer=start[0], initargs=start[1]))
            stack.enter_context(background_checkpoints(self.conn.engine))
            assert pool is not None  # import tasks can be pickled: any start method will do
            queued: collections.deque[_Chunk] = collections.deque()
            seen_bytes = seen_chunks = files_ahead = 0
            sizes = _chunk_sizes(database is not None)

            def room() -> bool:
                """Whether one more chunk may be parsed ahead of the writer (which pauses
                for every batch): as far as AHEAD_BYTES of record text, judged by the
                chunks seen so far, and MAX_FILES_AHEAD files; but always two chunks a
                worker, so that none waits for work while the oldest chunk is awaited."""
                if len(queued) <= 2 * jobs:
                    return True
                if files_ahead >= MAX_FILES_AHEAD:
                    return False
                return seen_chunks > 0 and len(queued) * seen_bytes <= AHEAD_BYTES * seen_chunks

            while True:
                chunk = list(itertools.islice(candidates, next(sizes)))
                if chunk:
                    self._look_ahead([c.relpath for c in chunk if c.domain is not None])
                    tasks = [self._task(c) for c in chunk]
                    queued.append(_Chunk(chunk, tasks, workers.submit(pool, "import", parsing.parse_wire, parsing.to_wire(tasks))))
                    files_ahead += len(chunk)
                while queued and (not chunk or not room()):
                    oldest = queued.popleft()
                    files_ahead -= len(oldest.candidates)
                    # Rather than wait for the workers, parse here the newest chunk
                    # none of them has started: the writer's idle time becomes parsing.
                    # Not when the workers write: this process, which hands out the
                    # files, would become the bottleneck (measured in the sixth
                    # session: with it, 4.5-5.1 s; without, 3.1-3.7 s).
                    while database is None and not oldest.future.done() and (stolen := _steal(queued)) is not None:
                        stolen.outcomes = list(parsing.parse_tasks(stolen.tasks))
                    outcomes = oldest.outcomes
                    if outcomes is None:
                        outcomes = parsing.from_wire(workers.result(oldest.future, "import"))
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
            self.record_problem(outcome.problems[0], name, cand)
            return
        if outcome.kind == "unchanged":
            assert known is not None
            counts.unchanged += known[3]
            return
        if outcome.kind == "written":
            counts.imported += outcome.written
            self._report(outcome, name, counts, cand)
            if outcome.written or not outcome.fatal:
                self._written.add(cand.relpath)
            return
        if known is None:
            file_row, rows, refused_rows = parsing.new_file_rows(cand.relpath, name, self._new_file_id(), self.run_id, outcome)
            self.record_rows += rows
            self.refused_rows += refused_rows
            self.pending_bytes += outcome.nbytes
            counts.imported += len(rows)
            self._report(outcome, name, counts, cand)
            if file_row is not None:
                self.file_rows.append(file_row)
                self._written.add(cand.relpath)
        else:
            found: Iterable[Slot] = itertools.chain(
                itertools.starmap(ParsedRecord, zip(outcome.keys, outcome.versions, outcome.texts, outcome.positions)),
                (Refused(key, text, position) for position, key, text in outcome.refused),
            )
            self._import_changed(cand, found, outcome, outcome.digest, counts, known[0])

    def _new_file_id(self) -> int:
        self.next_file_id += 1
        return self.next_file_id - 1

    def import_file(self, cand: Candidate) -> bool:
        """Read and import one file here, streaming its records; ``False`` if it was
        gone before any of it was read."""
        assert cand.domain is not None
        domain = cand.domain
        counts = self.result.counts(domain.name)
        if not jsoncodec.is_utf8(cand.relpath):
            read: FileRead | InputError | None = InputError(
                parsing.display_path(cand.relpath), "file name is not valid UTF-8; rename the file to import it"
            )
        else:
            read = parsing.read_or_problem(cand.path, cand.relpath)
        if read is None:
            return False
        if isinstance(read, InputError):
            counts.failed += 1
            self.record_problem(read, domain.name, cand)
            return True
        digest = read.digest
        known = self._known(cand.relpath)
        if known is not None and known[1] == digest and known[2] == domain.name:
            counts.unchanged += known[3]
            return True
        parse = FileParse(cand.path, cand.relpath, domain, read.data)
        # The bytes are the parse's from here: it lets them go for the record's own
        # (a huge session's file is then not held twice while it is written).
        read = read._replace(data=None)
        found = parsing.read_records(parse, read)
        if known is None:
            self._import_new(cand, found, parse, digest, counts, self._new_file_id())
        else:
            self._import_changed(cand, found, parse, digest, counts, known[0])
        return not parse.vanished

    def _report(self, parse: Outcome | FileParse, domain: str, counts: DomainCounts, cand: Candidate) -> None:
        """Report the problems ``parse`` found (a file read here: those found since the
        last call, taken from it)."""
        for problem in parse.problems:
            if isinstance(problem, NewerVersionError):
                counts.rejected += 1
            else:
                counts.failed += 1
            self.record_problem(problem, domain, cand)
        if isinstance(parse, FileParse):
            parse.reported += len(parse.problems)
            parse.problems.clear()

    def _import_new(
        self,
        cand: Candidate,
        found: Iterable[Slot],
        parse: FileParse,
        digest: str,
        counts: DomainCounts,
        file_id: int,
    ) -> None:
        """A new file read here: ``found``, an iterator, written in batches, for a file of
        any size. ``parse`` is read after."""
        assert cand.domain is not None
        name, run = cand.domain.name, self.run_id
        row_written = False  # the file's row went in early, to carry a huge file's first batches
        n = kept = 0
        for slot in found:
            if isinstance(slot, Refused):
                self.refused_rows.append((file_id, slot.position, slot.key, slot.text, run))
                kept += 1
            else:
                self.record_rows.append((name, slot.key, slot.version, slot.text, file_id, slot.position, run))
                n += 1
            self.pending_bytes += len(slot.text)
            if parse.problems:  # as they come: a file of a million bad lines holds none
                self._report(parse, name, counts, cand)
            if self._batch_full():
                if not row_written:
                    self.file_rows.append((file_id, cand.relpath, name, "lines", "", "", "", None, "", run, None))
                    row_written = True
                self.flush()
        counts.imported += n
        self._report(parse, name, counts, cand)
        if parse.fatal and not n and not kept:
            return
        layout = parse.layout
        assert layout is not None  # set by every parse that got this far
        final_digest = "" if parse.had_problems else digest  # refused records: look again next time
        values = (name, layout.container, layout.head, layout.sep, layout.tail, layout.indent, final_digest, run, layout.gaps)
        if row_written:  # a new file has no old layout to keep: even a broken one gets what was read
            columns = ("domain", "container", "head", "sep", "tail", "indent", "digest", "run_id", "gaps")
            self.conn.execute(update(files).where(files.c.id == file_id).values(dict(zip(columns, values))))
        else:
            self.file_rows.append((file_id, cand.relpath, *values))
        self._written.add(cand.relpath)

    def _import_changed(
        self,
        cand: Candidate,
        found: Iterable[Slot],
        parse: Outcome | FileParse,
        digest: str,
        counts: DomainCounts,
        file_id: int,
    ) -> None:
        """A file the store holds, read again and changed: compared slot by slot, in
        batches, in the running transaction (a file's row is updated with its last
        records, as a new file's is written). Its statements are SQL text, as the new
        files' INSERTs are: built by SQLAlchemy, they cost ~2 ms of CPU a file."""
        assert cand.domain is not None
        name = cand.domain.name
        self._execute_pending()  # new files' rows first: this path writes directly
        batch: list[Slot] = []
        size = 0
        streamed = isinstance(parse, FileParse)  # (a task's problems come all at once, bounded)
        for rec in found:
            batch.append(rec)
            size += len(rec.text)
            if streamed and parse.problems:  # as they come, as for a new file
                self._report(parse, name, counts, cand)
            if len(batch) >= parsing.BATCH_RECORDS or size >= parsing.BATCH_BYTES:
                self._write_changed(batch, file_id, name, counts)
                batch, size = [], 0
                self.flush()
        self._write_changed(batch, file_id, name, counts)
        self._report(parse, name, counts, cand)
        m = self._mark
        if parse.fatal:  # keep the old layout and the records not reached
            sql_text(self.conn, f"UPDATE files SET digest = '' WHERE id = {m}", (file_id,))
            self._written.add(cand.relpath)  # a later copy of the path reads the store again
            return
        # Records past the new end of the file: back them up, then remove them.
        counts.removed += self._remove_beyond(file_id, parse.slots)
        layout = parse.layout
        assert layout is not None  # set by every parse that got this far
        final_digest = "" if parse.had_problems else digest
        new_layout = (name, layout.container, layout.head, layout.sep, layout.tail, layout.indent, layout.gaps)
        backup_file_layout(self.conn, file_id, dict(zip(LAYOUT, new_layout)), self.run_id)
        sql_text(
            self.conn,
            f"UPDATE files SET {', '.join(f'{c} = {m}' for c in LAYOUT)}, digest = {m}, run_id = {m} WHERE id = {m}",
            (*new_layout, final_digest, self.run_id, file_id),
        )
        self._written.add(cand.relpath)  # a later copy of the path reads the store again

    def record_problem(self, problem: InputError, domain: str | None, cand: Candidate | None = None) -> None:
        """Report ``problem`` of the file ``cand`` (``None``: of no file found, a path
        given or a directory, which it names as given). It names the file by its path
        from its import root, or, when the import walked several (``named_by_path``), by
        its path as found: the same relative path under two roots must not give two
        lines alike."""
        if cand is not None and self.named_by_path:
            problem = problem.naming(parsing.display_path(cand.path))
        self.result.add_problem(problem)
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

    def _write_changed(self, batch: list[Slot], file_id: int, domain: str, counts: DomainCounts) -> None:
        """Write a changed file's slots: each record compared with the row in its slot,
        each refused text in place of what its slot held (a record there is backed up
        and removed: the file no longer holds it), unless that record is the text itself."""
        if not batch:
            return
        conn, m = self.conn, self._mark
        positions = [r.position for r in batch]
        in_positions = f"file_id = {m} AND position IN ({', '.join([m] * len(positions))})"
        found = [r for r in batch if isinstance(r, ParsedRecord)]
        kept = [r for r in batch if isinstance(r, Refused)]
        # The texts as read (on SQLite, the UTF-8 bytes of a file's text, compared with
        # the stored payload's and written as they are): a huge record's text is not
        # also held as a str, nor its stored payload.
        as_bytes = self.bytes_as_text
        texts: dict[int, str | bytes] = {r.position: r.text if as_bytes else as_text(r.text) for r in found}
        # A refused text too: it may be the very record its slot holds, taken when the
        # registry knew its version and refused now by one older than the store's records.
        texts.update((r.position, r.text if as_bytes else utf8) for r in kept if (utf8 := _utf8(r.text)) is not None)
        payload_column = "CAST(payload AS BLOB)" if as_bytes else "payload"
        # What each slot holds: (id, key, domain, whether its payload is the file's text,
        # the run that wrote it), read row by row, so that the rows replaced are never
        # all held at once.
        old: dict[int, tuple[int, str, str, bool, int | None]] = {}
        for rid, position, key, payload, row_domain, run_id in sql_text(
            conn,
            f"SELECT id, position, key, {payload_column}, domain, run_id FROM records WHERE {in_positions}",
            (file_id, *positions),
        ):
            text = texts.get(position)
            same = text is not None and payload == (text.encode("utf-8") if as_bytes and isinstance(text, str) else text)
            old[position] = (rid, key, row_domain, same, run_id)
            del payload, text
        sql_text(conn, f"DELETE FROM refused WHERE {in_positions}", (file_id, *positions))
        # A record that differs from the file's text, last written by a migration or a
        # restore, may still be the text an import last wrote for it.
        imports = self._import_runs()
        imported = self._last_imported(
            [row[0] for r in batch if (row := old.get(r.position)) is not None and not row[3] and row[4] not in imports]
        )

        def unchanged(r: Slot, row: tuple[int, str, str, bool, int | None]) -> bool:
            """As stored, or as this record was last imported, since migrated or restored:
            the file did not change it, and what later runs made of it stands."""
            return (
                row[1] == r.key
                and row[2] == domain
                and (row[3] or (row[0] in imported and imported[row[0]] == text_digest(texts[r.position])))
            )

        if kept:
            # A record the file still holds as the store took it, refused now (newer than
            # the registry, which is older than the store's records, or than the one it
            # was imported with) is not touched: it is reported, and stays a record.
            held = {r.position for r in kept if r.position in texts and (row := old.get(r.position)) and unchanged(r, row)}
            kept = [r for r in kept if r.position not in held]
            gone = [old.pop(r.position)[0] for r in kept if r.position in old]
            self._remove(gone)
            counts.removed += len(gone)
            if kept:
                sql_text(conn, self.sql_refused, [(file_id, r.position, r.key, r.text, self.run_id) for r in kept])
        changed: list[tuple[Any, ...]] = []
        for r in found:
            row = old.get(r.position)
            text = texts[r.position]
            if row is None:
                self.record_rows.append((domain, r.key, r.version, text, file_id, r.position, self.run_id))
                counts.imported += 1
            elif unchanged(r, row):
                counts.unchanged += 1
            else:
                changed.append((domain, r.key, r.version, text, self.run_id, row[0]))
        self.direct_rows += len(batch)
        if changed:
            backup_rows(conn, [c[-1] for c in changed], self.run_id, "import")
            new_payload = "CAST(? AS TEXT)" if as_bytes else m  # (bytes: stored as the TEXT they are)
            sql_text(
                conn,
                f"UPDATE records SET domain = {m}, key = {m}, version = {m}, payload = {new_payload}, run_id = {m} WHERE id = {m}",
                changed,
            )
            counts.updated += len(changed)

    def _import_runs(self) -> set[int]:
        """The ids of the import runs, this one included (none begins while it runs)."""
        if self._imports is None:
            self._imports = {rid for (rid,) in sql_text(self.conn, "SELECT id FROM runs WHERE kind = 'import'")}
            self._imports.add(self.run_id)
        return self._imports

    def _last_imported(self, record_ids: list[int]) -> dict[int, str]:
        """Of records that runs other than imports changed since (a migration, a restore),
        the digest of the text an import last wrote: of the backup those runs made of it,
        or, once a prune deleted that backup, the digest the prune kept."""
        if not record_ids:
            return {}
        m = self._mark
        ids = ", ".join([m] * len(record_ids))
        imports = "SELECT id FROM runs WHERE kind = 'import'"
        # The latest such backup of each record, its payload read row by row (the
        # payloads of a whole batch are never held at once).
        found: dict[int, str] = {}
        payload_column = "CAST(payload AS BLOB)" if self.bytes_as_text else "payload"  # (digested as its UTF-8)
        for rid, payload in sql_text(
            self.conn,
            f"SELECT record_id, {payload_column} FROM backups WHERE id IN (SELECT max(backups.id) FROM backups "
            f"JOIN records ON records.id = backups.record_id WHERE backups.record_id IN ({ids}) "
            f"AND records.run_id NOT IN ({imports}) AND backups.origin_run_id IN ({imports}) "
            "GROUP BY backups.record_id)",
            tuple(record_ids),
        ):
            found[rid] = text_digest(payload)
        rest = [rid for rid in record_ids if rid not in found]
        if rest:
            for rid, digest in sql_text(
                self.conn,
                "SELECT import_digests.record_id, import_digests.digest FROM import_digests JOIN records ON "
                f"records.id = import_digests.record_id WHERE import_digests.record_id IN ({', '.join([m] * len(rest))}) "
                f"AND records.run_id NOT IN ({imports})",
                tuple(rest),
            ):
                found[rid] = digest
        return found

    def _remove_beyond(self, file_id: int, count: int) -> int:
        """Remove the file's slots from ``count`` on (its records backed up); the number
        of records removed."""
        m = self._mark
        beyond = f"file_id = {m} AND position >= {m}"
        ids = [rid for (rid,) in sql_text(self.conn, f"SELECT id FROM records WHERE {beyond}", (file_id, count))]
        self._remove(ids)
        sql_text(self.conn, f"DELETE FROM refused WHERE {beyond}", (file_id, count))
        return len(ids)

    def _remove(self, record_ids: list[int]) -> None:
        """Back up the records ``record_ids``, then remove them (their ids are not given
        to new records: see ``_id_floor``)."""
        if record_ids:
            backup_rows(self.conn, record_ids, self.run_id, "remove")
            sql_text(self.conn, f"DELETE FROM records WHERE id = {self._mark}", [(rid,) for rid in record_ids])
            if self._id_floor is not None:
                self._id_floor = max(self._id_floor, *record_ids)


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


def text_digest(text: str | bytes | bytearray) -> str:
    """The digest of a record's text (or of its UTF-8 bytes: the same)."""
    return hashlib.sha256(text if not isinstance(text, str) else text.encode("utf-8", "surrogatepass")).hexdigest()


def keep_import_digests(conn: Connection, before: int) -> None:
    """Before the backups of the runs before ``before`` are pruned: the digest of each
    one that holds the text an import last wrote for a record changed since by another
    run (see :meth:`Importer._last_imported`), which would go with it."""
    imports = select(runs.c.id).where(runs.c.kind == "import")
    latest = (
        select(func.max(backups.c.id).label("bid"))
        .where(backups.c.origin_run_id.in_(imports))
        .group_by(backups.c.record_id)
        .subquery()
    )
    found = conn.execute(
        select(backups.c.record_id, backups.c.payload)
        .join(latest, latest.c.bid == backups.c.id)
        .join(records, records.c.id == backups.c.record_id)
        .where(backups.c.run_id < before, records.c.run_id.not_in(imports))
    )
    while batch := found.fetchmany(500):
        ids = [rid for rid, _ in batch]
        conn.execute(import_digests.delete().where(import_digests.c.record_id.in_(ids)))
        conn.execute(import_digests.insert(), [{"record_id": rid, "digest": text_digest(text)} for rid, text in batch])


def as_text(text: str | bytes | bytearray) -> str:
    return text if isinstance(text, str) else text.decode("utf-8")


def _utf8(text: bytes) -> str | None:
    """``text`` decoded, or ``None`` if it is not UTF-8 (a refused text may not be)."""
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _sql_int(value: int | None) -> int | None:
    """``value`` if SQLite can store it as an INTEGER, else ``None`` (the reason names it)."""
    return value if value is None or -INT_MAX - 1 <= value <= INT_MAX else None


def sql_text(conn: Connection, statement: str, params: Any = ()) -> Any:
    """Execute SQL text (with ``params``, a tuple; or a list of tuples: once each) and
    return its cursor. On SQLite, straight on its connection, in the transaction
    SQLAlchemy began: ``exec_driver_sql`` costs ~20 µs a statement more, and a changed
    file takes about eight."""
    raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
    if raw is None:
        return conn.exec_driver_sql(statement, params).cursor
    return raw.executemany(statement, params) if isinstance(params, list) else raw.execute(statement, params)


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
    sql_text(conn, _BACKUP.format(mark=mark) + f"id = {mark}", [(run_id, reason, rid) for rid in record_ids])


def backup_selected(conn: Connection, record_ids: Select[Any], run_id: int, reason: str) -> None:
    """Copy the current rows of the records whose ids ``record_ids`` selects into
    ``backups``, exactly as they are, in one statement: none of them read into memory."""
    conn.execute(
        insert(backups).from_select(
            ["run_id", "record_id", "domain", "key", "version", "payload", "file_id", "position", "origin_run_id", "reason"],
            select(
                literal(run_id), records.c.id, records.c.domain, records.c.key, records.c.version, records.c.payload,
                records.c.file_id, records.c.position, records.c.run_id, literal(reason),
            ).where(records.c.id.in_(record_ids)),
        )
    )


#: The columns of a file's row that say how export writes it (see ``file_backups``).
LAYOUT = ("domain", "container", "head", "sep", "tail", "indent", "gaps")


def backup_file_layout(conn: Connection, file_id: int, new: dict[str, Any], run_id: int) -> None:
    """Before file ``file_id``'s row takes the layout ``new``: keep the one it has in
    ``file_backups``, if it differs, so a restore of run ``run_id`` puts it back."""
    mark = placeholder(conn)
    old = sql_text(conn, f"SELECT {', '.join(LAYOUT)} FROM files WHERE id = {mark}", (file_id,)).fetchone()
    if old is not None and any(value != new[c] for c, value in zip(LAYOUT, old)):
        sql_text(
            conn,
            f"INSERT INTO file_backups (run_id, file_id, {', '.join(LAYOUT)}) VALUES ({', '.join([mark] * (len(LAYOUT) + 2))})",
            (run_id, file_id, *old),
        )


def backup_span(conn: Connection, domain: str, version: int, first_id: int, last_id: int, run_id: int, reason: str) -> None:
    """Copy the current rows of ``domain`` at ``version`` with ids from ``first_id`` to
    ``last_id`` into ``backups``: one range scan of the (domain, version, id) index
    instead of one statement per row."""
    mark = placeholder(conn)
    conn.exec_driver_sql(
        _BACKUP.format(mark=mark) + f"domain = {mark} AND version = {mark} AND id >= {mark} AND id <= {mark}",
        (run_id, reason, domain, version, first_id, last_id),
    )
