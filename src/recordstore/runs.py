"""Runs and the writer lock.

Every writing operation (import, migrate, restore, prune) is a *run*: a row in
``runs`` created when the writer lock is taken and finished when it is released. The
lock is one row in ``lock``; a holder whose process is gone (killed, crashed) is stale
and is taken over, and its run is marked ``interrupted``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from .engine import BUSY_TIMEOUT_S, durable_transaction, translate_errors, write_transaction
from .errors import BusyError, describe
from .schema import restore_record_indexes
from .tables import failures, lock, records, runs

__all__ = ["RunInfo", "check_interrupt", "held_run", "now", "process_alive", "release_lock"]

HOST = socket.gethostname()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def process_alive(pid: int, host: str) -> bool:
    """Whether the lock holder may still be running (another host: assume so)."""
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has ended and only waits for its parent to read its exit (Linux's
    /proc says so; a killed writer whose parent has not reaped it yet still has a pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return False
    return state in ([b"Z"], [b"X"])


#: The runs this process holds. A lock row with our pid but another run was left by a
#: killed process whose pid we now have (a container's pid 1 after a restart): stale.
_HELD_HERE: set[int] = set()


def holder_alive(row: Any) -> bool:
    """Whether the lock row ``row`` belongs to a writer that may still be running: not
    when its pid is gone, nor when the process that has it now started at another time
    (or in another boot: pids begin again after a reboot), which a long-lived process
    given a killed writer's pid would otherwise make "busy" for as long as it lives."""
    if row.pid == os.getpid() and row.host == HOST:
        return row.run_id in _HELD_HERE
    if not process_alive(row.pid, row.host):
        return False
    if row.host == HOST and row.started is not None:
        token = start_token(row.pid)
        return token is None or token == row.started
    return True


@functools.cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None


def start_token(pid: int) -> str | None:
    """Which process ``pid`` is: this boot's id and the process's start time, from
    Linux's /proc (``None`` where the system does not tell them)."""
    boot = _boot_id()
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if boot is None or len(fields) < 20:
        return None
    return f"{boot}:{fields[19].decode()}"  # field 22 of stat: the start time, in clock ticks since boot


def _describe_holder(row: Any) -> str:
    said = (
        f"the store is busy: {row.operation} (run {row.run_id}) is running in process {row.pid} "
        f"on {row.host} since {row.acquired_at}; retry later, or wait for it (--wait, or Store(wait=seconds))"
    )
    if row.host != HOST:
        said += " (if that process is gone with its host, 'store unlock --force', or unlock(force=True), releases the store)"
    return said


def _holder(row: Any) -> dict[str, Any]:
    return {"operation": row.operation, "run": row.run_id, "pid": row.pid, "host": row.host, "since": row.acquired_at}


def release_lock(engine: Engine, *, force: bool = False) -> dict[str, Any] | None:
    """Release the writer lock of a writer that is gone, its run marked ``interrupted``;
    what the lock said of it (``None``: no writer held the store). A writer on this
    host is released only once its process is gone (the next writer would take its
    lock over anyway). One on another host cannot be told gone from here, and stays
    "busy" until it releases the lock: it is released only with ``force``, when the
    caller knows that it no longer runs (its machine or container is gone). A writer
    still running is refused with :class:`BusyError`, even with ``force``.

    A live holder is told from a plain read first, as :func:`_try_acquire` does: it may
    hold SQLite's write lock for a whole batch, and waiting for that lock would only
    find, once the writer is done, that nothing holds the store."""
    with translate_errors(), engine.connect() as conn, conn.begin():
        row = conn.execute(select(lock)).first()
    if row is not None:
        _refuse_live_holder(row, force)
    with write_transaction(engine) as conn:
        row = conn.execute(select(lock)).first()
        if row is None:
            return None
        _refuse_live_holder(row, force)
        _mark_interrupted(conn, row.run_id)
        conn.execute(delete(lock))
    return _holder(row)


def lock_problem(conn: Connection) -> str | None:
    """What ``store check`` says of the writer lock: nothing when no writer holds it, or
    a writer still running here does; a writer gone (killed, its machine restarted)
    left its run "running" and the store held, which the next writer takes over; one on
    another host (a store copied, or on a shared volume) keeps every writer here out
    until released with --force, if it no longer runs."""
    row = conn.execute(select(lock)).first()
    if row is None or (row.host == HOST and holder_alive(row)):
        return None
    if row.host == HOST:
        return (
            f"{row.operation} (run {row.run_id}) stopped before it finished: process {row.pid} is gone, and left the "
            f"store held since {row.acquired_at}; the next writer takes it over, and 'store unlock' releases it now "
            f"(run {row.run_id} marked interrupted)"
        )
    return (
        f"the store is held by {row.operation} (run {row.run_id}), process {row.pid} on host {row.host} since "
        f"{row.acquired_at}, which cannot be told gone from {HOST}: writers here are refused until it ends; if it no "
        "longer runs (the store was copied, or its machine is gone), 'store unlock --force' releases the store"
    )


def _refuse_live_holder(row: Any, force: bool) -> None:
    """BusyError when the lock row ``row`` is that of a writer that may still run (on
    another host, unless ``force``)."""
    if holder_alive(row) and (row.host == HOST or not force):
        if row.host == HOST:
            said = (
                f"the store is held by a running writer: {row.operation} (run {row.run_id}) in process "
                f"{row.pid} since {row.acquired_at}; let it finish, or stop it"
            )
        else:
            said = (
                f"the store is held by {row.operation} (run {row.run_id}), process {row.pid} on host "
                f"{row.host} since {row.acquired_at}, which cannot be told gone from {HOST}; if it no "
                f"longer runs (its machine or container is gone), 'store unlock --force', or unlock(force=True), releases the store"
            )
        raise BusyError(said, holder=_holder(row))


def _try_acquire(engine: Engine, operation: str, options: dict[str, Any], fingerprints: dict[str, Any]) -> int | Any:
    """The new run's id, or the live holder's lock row.

    A live holder is answered from a plain read: it may hold SQLite's write lock for a
    whole batch (an import does). Taking the lock row needs that write lock only for a
    moment, so it is tried with a short wait, and the lock row read again in between:
    a writer that won the race is then named, not met as an anonymous "busy"."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        with translate_errors(), engine.connect() as conn, conn.begin():
            holder = conn.execute(select(lock)).first()
        if holder is not None and holder_alive(holder):
            return holder
        try:
            return _take_lock(engine, operation, options, fingerprints)
        except BusyError:
            if time.monotonic() >= deadline:
                raise


def _take_lock(engine: Engine, operation: str, options: dict[str, Any], fingerprints: dict[str, Any]) -> int | Any:
    with write_transaction(engine, busy_timeout=0.25) as conn:
        holder = conn.execute(select(lock)).first()
        if holder is not None:
            if not holder_alive(holder):
                _mark_interrupted(conn, holder.run_id)
                conn.execute(delete(lock))
            else:
                return holder
        # What an earlier writer may have left undone: a stopped bulk import its indexes.
        restore_record_indexes(conn)
        run_id = conn.execute(
            insert(runs)
            .returning(runs.c.id)
            .values(
                kind=operation,
                started_at=now(),
                outcome="running",
                pid=os.getpid(),
                host=HOST,
                options=json.dumps(options, sort_keys=True),
                fingerprints=json.dumps(fingerprints, sort_keys=True),
            )
        ).scalar_one()
        conn.execute(
            insert(lock).values(
                id=1, operation=operation, run_id=run_id, pid=os.getpid(), host=HOST, acquired_at=now(),
                started=start_token(os.getpid()),
            )  # fmt: skip
        )
        _HELD_HERE.add(int(run_id))  # before the commit: another thread must never see it unheld
        return int(run_id)


def _mark_interrupted(conn: Connection, run_id: int | None) -> None:
    if run_id is not None:
        row = conn.execute(select(runs.c.kind, runs.c.counts).where(runs.c.id == run_id, runs.c.outcome == "running")).first()
        if row is None:
            return
        values: dict[str, Any] = {"outcome": "interrupted", "message": "the process holding the store stopped before finishing"}
        if (stopped := stopped_counts(conn, run_id, row.kind, row.counts)) is not None:
            values["counts"] = json.dumps(stopped, sort_keys=True)
        conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


def stored_by(conn: Connection, run_id: int) -> dict[str, int]:
    """The records a run wrote (new or updated) that are in the store, by domain."""
    query = select(records.c.domain, func.count()).where(records.c.run_id == run_id).group_by(records.c.domain)
    return {domain: n for domain, n in conn.execute(query)}


def stopped_counts(conn: Connection, run_id: int, kind: str, counts: str | None) -> dict[str, Any] | None:
    """What the history says of an import killed outright, which saved no counts (it
    counts as it goes, and saves them at its end or when Ctrl-C stops it): the records
    it stored, by domain, as an import stopped by Ctrl-C says. None for any other run,
    which saves its counts with each batch it commits."""
    if kind != "import" or json.loads(counts or "{}"):
        return None
    return {"stored": stored_by(conn, run_id)}


#: When Ctrl-C was pressed during a run, held until the run reaches a safe point.
_pressed_at: float | None = None
#: The run is stopping for it: further presses are ignored, so that nothing interrupts
#: the rollback and the run's own record.
_stopping = False
#: A press this long after the first, which no safe point has taken since, stops the
#: run at once: it is stuck (a step that never returns, say).
STUCK_S = 3.0


def check_interrupt() -> None:
    """At a safe point of a run's work (between batches, between files), in the main
    thread: raise the KeyboardInterrupt held since Ctrl-C was pressed, if it was (see
    held_interrupts)."""
    global _pressed_at, _stopping
    if _pressed_at is not None and threading.current_thread() is threading.main_thread():
        _pressed_at, _stopping = None, True
        raise KeyboardInterrupt


def ctrl_c_may_have_raised() -> bool:
    """Whether a KeyboardInterrupt that came out of code a run calls (a step) may be
    Ctrl-C's, rather than that code's own ``raise KeyboardInterrupt``. It cannot be in a
    thread but the main one (Python runs a signal's handler there only), nor where Ctrl-C
    is ignored, nor while a run holds it (:func:`_hold` raises only the press that stops
    a stuck run, and marks the run stopping first). Under Python's own handler, or a
    program's, it may be."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGINT)
    if handler is _hold:
        return _stopping
    return callable(handler)


def _hold(signum: int, frame: Any) -> None:
    global _pressed_at, _stopping
    if _stopping:
        return
    if _pressed_at is None:
        _pressed_at = time.monotonic()
    elif time.monotonic() - _pressed_at >= STUCK_S:
        _pressed_at, _stopping = None, True
        raise KeyboardInterrupt


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """While a run works: Ctrl-C stops it at its next safe point (:func:`check_interrupt`)
    rather than wherever it lands. Raised anywhere, it can land inside the database
    library or a worker pool's bookkeeping, and leave a transaction open that the run's
    own record then waits on for ever, a connection closed under it, or the pool
    waiting for work it never handed out. Once the run is stopping, further presses
    are ignored; a press STUCK_S after one no safe point took stops it at once. A press
    the run ends before taking is dropped: the run finished.

    Only in the main thread, and only where Ctrl-C raises KeyboardInterrupt (Python's
    default): a process started ignoring it (``command &`` in a script), or a program
    handling it itself, is left as it is."""
    global _pressed_at, _stopping
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _pressed_at, _stopping = None, False
    signal.signal(signal.SIGINT, _hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _pressed_at, _stopping = None, False


@contextlib.contextmanager
def held_run(
    engine: Engine,
    operation: str,
    *,
    wait: float | None = None,
    options: dict[str, Any] | None = None,
    fingerprints: dict[str, Any] | None = None,
) -> Iterator[RunHandle]:
    """Take the writer lock and open a run; ``wait`` seconds to wait for another writer
    (``None``: fail at once with :class:`BusyError`, naming the holder)."""
    deadline = None if wait is None else time.monotonic() + wait
    with held_interrupts():
        while True:
            got = _try_acquire(engine, operation, options or {}, fingerprints or {})
            if isinstance(got, int):
                break
            if deadline is None or time.monotonic() >= deadline:
                raise BusyError(_describe_holder(got), holder=_holder(got))
            check_interrupt()
            time.sleep(0.1)
        handle = RunHandle(engine, got)
        try:
            yield handle
        except (KeyboardInterrupt, SystemExit) as exc:  # stopped, as a killed process is
            handle.finish("interrupted", message=f"stopped before finishing ({type(exc).__name__})")
            raise
        except BaseException as exc:
            handle.finish("failed", message=describe(exc))
            raise
        else:
            handle.finish(handle.outcome)


@dataclass
class RunHandle:
    """The open run of the current writer."""

    engine: Engine
    run_id: int
    outcome: str = "ok"
    counts: dict[str, Any] = field(default_factory=dict)
    message: str | None = None

    def save_counts(self, conn: Connection) -> None:
        conn.execute(update(runs).where(runs.c.id == self.run_id).values(counts=json.dumps(self.counts, sort_keys=True)))

    def add_failures(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Record failures of this run (each a row of ``failures`` but its run), in one
        statement: one each took most of a migration whose step failed every record."""
        if rows:
            conn.execute(insert(failures), [{**row, "run_id": self.run_id} for row in rows])

    def finish(self, outcome: str, message: str | None = None) -> None:
        """Record the run's end and release the lock. Should that fail too (the disk still
        full), this process holds the run no longer all the same: its lock row is then
        stale, taken over by the next writer, this process's included (it stayed "busy"
        for as long as the process lived)."""
        try:
            self._finish(outcome, message)
        finally:
            _HELD_HERE.discard(self.run_id)

    def _finish(self, outcome: str, message: str | None) -> None:
        # Durable: when a command reports success, everything its run wrote is on disk.
        with translate_errors(), durable_transaction(self.engine) as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == self.run_id)
                .values(
                    finished_at=now(),
                    outcome=outcome,
                    counts=json.dumps(self.counts, sort_keys=True),
                    message=message or self.message,
                )
            )
            conn.execute(delete(lock).where(lock.c.run_id == self.run_id, lock.c.pid == os.getpid()))


@dataclass
class RunInfo:
    """One run as :meth:`Store.history` reports it."""

    id: int
    kind: str
    started_at: str
    finished_at: str | None
    outcome: str
    pid: int | None
    counts: dict[str, Any]
    options: dict[str, Any]
    fingerprints: dict[str, Any]
    message: str | None
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        """As ``store history --json`` prints it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "pid": self.pid,
            "counts": self.counts,
            "options": self.options,
            "message": self.message,
            "failure_count": self.failure_count,
            "failures": self.failures,
        }


def read_history(conn: Connection, run_id: int | None = None, *, failure_limit: int | None = None) -> list[RunInfo]:
    holder = conn.execute(select(lock)).first()
    live_run = holder.run_id if holder is not None and holder_alive(holder) else None
    query = select(runs).order_by(runs.c.id)
    counted = select(failures.c.run_id, func.count()).group_by(failures.c.run_id)
    if run_id is not None:
        query = query.where(runs.c.id == run_id)
        counted = counted.where(failures.c.run_id == run_id)
    # Each run's failures counted in one statement, and read only for the runs that
    # have some: a statement or two a run made the history of 5,000 runs take ~2 s.
    failure_counts: dict[int, int] = dict(conn.execute(counted).all())
    out: list[RunInfo] = []
    for row in conn.execute(query).all():
        outcome, counts = row.outcome, json.loads(row.counts or "{}")
        if outcome == "running" and row.id != live_run:
            outcome = "interrupted"
            counts = stopped_counts(conn, row.id, row.kind, row.counts) or counts
        count = failure_counts.get(row.id, 0)
        fails: list[dict[str, Any]] = []
        if count and failure_limit != 0:
            fq = select(failures).where(failures.c.run_id == row.id).order_by(failures.c.id)
            if failure_limit is not None:
                fq = fq.limit(failure_limit)
            fails = [_failure(f) for f in conn.execute(fq)]
        out.append(
            RunInfo(
                id=row.id,
                kind=row.kind,
                started_at=row.started_at,
                finished_at=row.finished_at,
                outcome=outcome,
                pid=row.pid,
                counts=counts,
                options=json.loads(row.options or "{}"),
                fingerprints=json.loads(row.fingerprints or "{}"),
                message=row.message,
                failures=fails,
                failure_count=count,
            )
        )
    return out


def _failure(row: Any) -> dict[str, Any]:
    """A failure as the history gives it: its fields that are set, without its ids."""
    return {k: v for k, v in row._mapping.items() if k not in ("id", "run_id") and v is not None}


def read_failures(conn: Connection, run_id: int, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` failures of run ``run_id`` that come after failure id ``after``,
    each with its id (to read on from): a page, so that a run's 100,000 failures are
    shown without all being held at once."""
    fq = select(failures).where(failures.c.run_id == run_id, failures.c.id > after).order_by(failures.c.id).limit(limit)
    return [(f.id, _failure(f)) for f in conn.execute(fq)]
