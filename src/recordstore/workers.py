"""Worker processes, shared by import (parsing files) and migrate (running steps).

Both hand a worker a chunk of work with everything it needs and take back plain data.
Only import's workers write to the store, and only into one that holds no files yet:
the new files they parse, in transactions of their own, taking :class:`Turns`. A worker
that dies (killed, out of memory) fails the command with one line, and every batch
committed before it is kept.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .errors import RecordStoreError

__all__ = ["MAX_JOBS", "Turns", "clear_turns", "cpus", "default_jobs", "orphaned", "pool", "result", "stop_if_asked", "submit", "turns"]

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: The most worker processes a command starts, whatever it is asked for.
MAX_JOBS = 64


def default_jobs(limit: int) -> int:
    """One worker per CPU but the one the writing process keeps, at most ``limit``."""
    return max(0, min(cpus() - 1, limit))


def _context(fork_only: bool) -> Any:
    """fork where it is safe, since it starts workers at once with everything the parent
    has loaded; forking while other threads run could copy a lock one of them holds, so
    then a clean start method, or ``None`` when the work needs fork."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if fork_only:
        return None
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextlib.contextmanager
def pool(
    jobs: int,
    command: str,
    *,
    fork_only: bool = False,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[ProcessPoolExecutor | None]:
    """``jobs`` worker processes (at most MAX_JOBS), or ``None`` (work in this process)
    when ``jobs`` is 0 or the work needs fork (``fork_only``: it uses objects that cannot
    be pickled, such as a registry built in code) and fork cannot be used here.

    An executor, not multiprocessing.Pool: a worker that dies fails the command instead
    of leaving it waiting for ever."""
    jobs = min(jobs, MAX_JOBS)
    context = _context(fork_only) if jobs > 0 else None
    if context is None:
        yield None
        return
    executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(initializer, initargs))
    try:
        # Fork now, while this process may have no other thread (the executor starts
        # one, and the caller may start a progress bar's). Ctrl-C waits until the
        # workers are started: raised within a fork's own handlers, it would be lost.
        with _sigint_blocked(), _frozen_heap():
            first = submit(executor, command, int)
        _tolerate_cancelled(executor)
        result(first, command)
        yield executor
    except KeyboardInterrupt:
        # Ctrl-C: each worker stops at its next file or span (stop_if_asked); one that
        # does not within STOP_GRACE_S is stuck (a step that never returns) and is killed
        # (what it holds is uncommitted: SQLite drops it), or the command would wait on
        # it for ever.
        procs = list((getattr(executor, "_processes", None) or {}).values())  # (shutdown forgets them)
        executor.shutdown(wait=False, cancel_futures=True)
        _reap(procs)
        raise
    finally:
        # Also when the command failed: the work not handed to a worker yet is dropped,
        # and what the workers hold (a chunk or a span each) is waited for. A worker
        # stopped by force while it sends a result back would leave the executor waiting
        # for the rest of it for ever.
        if getattr(executor, "_broken", False):
            # A worker died. The executor stops the others itself, unless its thread
            # failed first (see _tolerate_cancelled): a worker left running would block
            # sending a result that nobody reads, and the command, which waits for its
            # workers as it exits, would wait for ever. Their work is lost either way.
            for proc in list((getattr(executor, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    proc.kill()
        executor.shutdown(wait=True, cancel_futures=True)


def _tolerate_cancelled(executor: ProcessPoolExecutor) -> None:
    """When a worker dies, the executor's thread fails every future still pending; in
    Python 3.11 it raises for one cancelled meanwhile, which the import does to the
    chunks it takes back to parse itself (a cancelled future waits among the pending
    ones until a worker is free), and the thread ends there: a traceback, and the other
    workers left running. So it forgets the cancelled futures first, as Python 3.12
    does by itself."""
    manager: Any = getattr(executor, "_executor_manager_thread", None)
    terminate_broken = getattr(manager, "terminate_broken", None)
    if terminate_broken is None:
        return

    def forgetting_cancelled(cause: Any) -> None:
        pending = manager.pending_work_items
        for work_id in [w for w, item in pending.items() if item.future.cancelled()]:
            del pending[work_id]
        terminate_broken(cause)

    manager.terminate_broken = forgetting_cancelled


#: After Ctrl-C, how long a worker has to reach its next file or span before it is killed.
STOP_GRACE_S = 2.0


def _reap(procs: list[Any]) -> None:
    """Wait up to STOP_GRACE_S for the worker processes ``procs`` to end, then kill the rest."""
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """This process's objects left out of the garbage collector while workers are forked.
    A worker's collections then never walk the objects it inherited (SQLAlchemy's, the
    registry's: hundreds of thousands), and so never write to the pages they share with
    this process, which the kernel would copy for each worker (an import of 246,423
    records: 38,800 page faults against 44,600). Here, they are given back to the
    collector after, unless this process had frozen objects of its own before (the
    command line does: it keeps them so)."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back (on POSIX) while the block runs, then delivered."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


#: How often a worker checks that the process that started it is still there.
PARENT_CHECK_S = 0.2
#: In a worker: the process that started it.
_parent: int | None = None


#: In a worker: Ctrl-C was pressed.
_stop_noted = False


def _note_stop(signum: int, frame: Any) -> None:
    global _stop_noted
    _stop_noted = True


def notes_ctrl_c() -> bool:
    """Whether this process is a worker that notes Ctrl-C (for :func:`stop_if_asked`)
    rather than have it raise KeyboardInterrupt wherever it lands."""
    return signal.getsignal(signal.SIGINT) is _note_stop


def stop_if_asked() -> None:
    """In a worker, between two files or spans: raise KeyboardInterrupt once Ctrl-C was
    pressed (the command is stopping; what the worker holds uncommitted is dropped)."""
    if _stop_noted:
        raise KeyboardInterrupt


def orphaned() -> bool:
    """In a worker: whether the process that started it is gone (the worker then ends
    within PARENT_CHECK_S)."""
    return _parent is not None and os.getppid() != _parent


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    """In a new worker: exit as soon as its parent is gone. A parent killed outright
    (SIGKILL, out of memory) cannot stop its workers, and they would wait for work for
    ever, holding the terminal's or a pipe's descriptors open. (A worker started by a
    fork server has that server for parent, which ends with the command.)"""
    global _parent
    _parent = os.getppid()
    # Ctrl-C reaches the whole process group: a worker notes it, and stops at its next
    # file or span (see stop_if_asked), rather than dying of it wherever it lands,
    # with a traceback.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # (started ignoring it: it still does)
        signal.signal(signal.SIGINT, _note_stop)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # held while forked

    def watch() -> None:
        while not orphaned():
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="recordstore-parent-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def submit(
    executor: ProcessPoolExecutor, command: str, fn: Callable[..., T], *args: Any, kept: str | None = None
) -> Future[T]:
    """``executor.submit``; a pool a dead worker broke becomes one line (see :func:`result`)."""
    try:
        return executor.submit(fn, *args)
    except BrokenProcessPool as exc:
        raise _died(command, kept) from exc


def result(future: Future[T], command: str, kept: str | None = None) -> T:
    """The future's result; a dead worker becomes one line naming what to do. ``kept``
    says what is kept of the command's work, and how to go on, when that is not every
    batch committed so far (a dry run, an atomic migration, commit none)."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise _died(command, kept) from exc


def _died(command: str, kept: str | None = None) -> RecordStoreError:
    kept = kept or f"every batch committed so far is kept: run the {command} again to go on"
    return RecordStoreError(
        f"a worker process of the {command} died (killed, or out of memory?); {kept}, or with no workers (--jobs 0, or jobs=0)"
    )


class Turns:
    """Turns at one thing (writing to the store) among the processes of one command:
    ``with turns:`` waits for this process's turn. An ``flock`` on a file of its own,
    which wakes the next waiter at once (SQLite's own lock is polled, with sleeps of up
    to 100 ms), and which the kernel gives back when its holder dies, so a killed
    worker cannot keep the others waiting (a multiprocessing lock would stay taken).
    Crosses to a worker as its path; each process opens the file itself. Without
    ``flock`` (Windows) or a file (``path`` empty), a no-op: SQLite's lock alone then
    serializes the writers, polled."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def __getstate__(self) -> str:
        return self.path

    def __setstate__(self, path: str) -> None:
        self.__init__(path)  # type: ignore[misc]

    def __enter__(self) -> None:
        if fcntl is None or not self.path:
            return
        if self._fd is None or self._pid != os.getpid():  # a forked copy holds its parent's
            self._fd, self._pid = os.open(self.path, os.O_RDWR), os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close this process's descriptor of the file (if it opened one)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def turns(beside: str) -> Iterator[Turns]:
    """:class:`Turns` for the processes of one command writing to the store file
    ``beside``, on a file next to it (``beside`` + ``-turns``, as SQLite keeps its
    ``-wal`` and ``-shm``), removed at the end. A command killed outright leaves that one
    empty file, which the next one takes over; a temporary file of its own would stay
    in the temporary directory for good, one a kill. None if the file cannot be made (a
    read-only directory): the turns are then SQLite's own."""
    try:
        path = _turns_file(beside)
    except OSError:
        yield Turns("")
        return
    shared = Turns(path)
    try:
        yield shared
    finally:
        shared.close()  # this process's descriptor: a library caller may import again and again
        clear_turns(beside)


def clear_turns(beside: str) -> None:
    """Remove the turns file a command killed outright left beside store file ``beside``
    (only a command holding the store's run lock may: none other is using it)."""
    with contextlib.suppress(OSError):
        os.unlink(beside + "-turns")


def _turns_file(beside: str) -> str:
    path = beside + "-turns"
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600))
    return path
