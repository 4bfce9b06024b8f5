"""``Store``: the facade over importing, migrating, exporting, restoring and querying."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, select, text

from . import jsoncodec
from .connections import INT_MAX
from .engine import close_engine, default_db_path, open_engine, translate_errors
from .errors import ExportDirectoryError, InputError, QueryError, RecordStoreError, StoreError, checked, printable, shown
from .exporter import ExportResult, export_records
from .importer import ImportResult, Importer, keep_import_digests
from .migrator import MigrationResult, RestoreResult, backup_filter, migrate_records, restore_records
from .parsing import check_given, discover, several_roots
from .query import Query, Record, index_ddl, json_paths_served, typed_path
from .registry import Registry, load_registry
from .runs import (
    RunHandle,
    RunInfo,
    held_interrupts,
    held_run,
    lock_problem,
    read_failures,
    read_history,
    release_lock,
    stored_by,
)
from .schema import ensure_schema, missing_record_indexes
from .tables import backups, file_backups, files, indexes, records, refused, runs

__all__ = ["CheckResult", "DomainStatus", "Progress", "Store", "StoreStatus"]


@runtime_checkable
class Progress(Protocol):
    """What long operations report to: a total (always a number), then steps done."""

    def start(self, total: int, label: str) -> None:
        """The work begins: ``total`` steps (files, records) of what ``label`` names."""

    def advance(self, n: int) -> None:
        """``n`` more steps are done."""


@dataclass
class DomainStatus:
    """One domain in :meth:`Store.status`: the registry's current version (``None``
    for a domain the store holds but the registry does not know), the records stored
    at each version, and the refused texts kept."""

    current_version: int | None
    versions: dict[int, int] = field(default_factory=dict)
    refused: int = 0  # refused records whose text the store keeps for export

    @property
    def pending(self) -> int:
        """Records below the current version, which a migration would bring up."""
        if self.current_version is None:
            return 0
        return sum(n for v, n in self.versions.items() if v < self.current_version)

    @property
    def newer(self) -> int:
        """Records above the current version, which no migration touches."""
        if self.current_version is None:
            return 0
        return sum(n for v, n in self.versions.items() if v > self.current_version)

    @property
    def total(self) -> int:
        """Records stored, at any version."""
        return sum(self.versions.values())


@dataclass
class StoreStatus:
    """Per domain: the registry's current version and the stored records per version."""

    domains: dict[str, DomainStatus]

    def as_dict(self) -> dict[str, Any]:
        """As ``store status --json`` prints it."""
        return {
            "domains": {
                name: {
                    "current_version": d.current_version,
                    "versions": {str(v): n for v, n in sorted(d.versions.items())},
                    "pending": d.pending,
                    "newer": d.newer,
                    "refused": d.refused,
                }
                for name, d in self.domains.items()
            }
        }


T = TypeVar("T")

#: How many records ``store check`` names for each kind of problem it finds in them; it
#: counts the rest in one line (a store whose version column was rewritten by hand gave
#: 219,369 lines, 105 MB and 10 s, which hid the one problem of another kind).
CHECK_NAMED = 200


def _named_then_counted(found: Iterable[T], name: Callable[[T], str], more: Callable[[int], str]) -> list[str]:
    """The first CHECK_NAMED of ``found``, each as ``name`` says, then ``more`` of how many
    there were after them (read, never held)."""
    named: list[str] = []
    n = 0
    for n, item in enumerate(found, start=1):
        if n <= CHECK_NAMED:
            named.append(name(item))
    if n > CHECK_NAMED:
        named.append(more(n - CHECK_NAMED))
    return named


@dataclass
class CheckResult:
    """Problems ``store check`` found; empty means all is well. Problems found in records
    are named for the first CHECK_NAMED records of each kind, then counted."""

    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no problem was found (``store check`` exits 1 otherwise)."""
        return not self.problems


def _undone_runs(history: list[RunInfo]) -> set[int]:
    """The runs a restore of the run (``--run``) undid, and that are still undone (a
    restore undone in its turn brings its run's rows back): no record comes from them."""
    undone: set[int] = set()
    for info in reversed(history):  # a restore undoes a run before it
        target = info.counts.get("from_run") if info.kind == "restore" and info.outcome == "ok" else None
        if isinstance(target, int) and info.id not in undone:
            undone.add(target)
    return undone


def _backed_up(info: RunInfo) -> bool:
    """Whether run ``info`` wrote backups, as its counts tell: an import that only added
    records (or a migration that migrated none) wrote none. Counts that cannot tell (an
    import stopped midway) are taken to say it did."""
    c = info.counts
    if info.kind == "import" and isinstance(c.get("domains"), dict):
        return any(d.get("updated") or d.get("removed") for d in c["domains"].values())
    if info.kind == "migrate" and isinstance(c.get("migrated"), dict):
        return any(n for steps in c["migrated"].values() for n in steps.values())
    return True


#: The runs that change no record, which a restore cannot undo: what to say instead.
_UNDOABLE_ELSEWISE = {
    "prune": "a prune: the backups it deleted are gone for good, and it changed no record to restore",
    "index": "an index run: it changed no record; `store index drop`, or drop_index(), removes an index",
}


class Store:
    """A record store, opened by path or SQLAlchemy URL; use it as a context manager.

    ``registry`` is a :class:`Registry`, a spec for :func:`load_registry` (a ``.py``
    path or module name), or ``None`` for the built-in DeepSeek TUI registry. ``wait``
    is how many seconds a writing operation waits for another writer (default: none,
    :class:`BusyError` at once). ``create``: a store is made where there is none (with
    ``False``, :class:`StoreError` instead, as every command but ``store import`` does,
    so that a mistyped path is not a new, empty store). Without ``target``, the default
    store: ``$XDG_DATA_HOME/recordstore/store.db`` (``~/.local/share/...`` without it).

    ``":memory:"`` (or the URL ``sqlite://``) is a store in memory, gone once closed.
    Its one connection serves one operation at a time: another thread waits for its
    turn (BusyError after 30 s), and a call made while this thread still iterates a
    query is refused. Worker processes need a file: an import's only read and parse,
    and a migration's steps run in this process. A str ``"file:..."`` is a SQLite URI.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | None = None,
        *,
        registry: Registry | str | os.PathLike[str] | None = None,
        wait: float | None = None,
        create: bool = True,
    ):
        checked("target", target, (str, os.PathLike), what="a path or a URL (str or os.PathLike)", optional=True)
        checked("wait", wait, (int, float), what="a number of seconds", least=0, optional=True)
        checked("create", create, bool)
        self.registry = registry.validate() if isinstance(registry, Registry) else load_registry(registry)
        self.target = target if target is not None else default_db_path()
        self.wait = wait
        engine = open_engine(self.target, create=create)
        try:
            ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._closed = False
        self._runs = 0  # in progress, in any thread (see _held_run)
        self._finished_run: int | None = None  # see finished_run
        self._guard = threading.Lock()

    @property
    def finished_run(self) -> int | None:
        """The id of the last run (import, migrate, restore...) this Store saw to its
        recorded end without an error (``ok`` or ``partial``); ``None``: none yet. (A
        Ctrl-C that comes after it, while the store closes, stopped nothing of it: the
        CLI says so.)"""
        return self._finished_run

    @property
    def engine(self) -> Engine:
        """The store's SQLAlchemy engine; :class:`StoreError` once the store is closed."""
        if self._closed:
            raise StoreError(f"{self.target}: the store is closed")
        return self._engine

    def close(self) -> None:
        """Close the store's connections; using it afterwards raises :class:`StoreError`
        (closing it again does nothing), and so does a query made before, or being
        iterated, at its next record. A run in progress (in another thread, or a step
        that closes the store) ends first: the connections close when it does."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            now = not self._runs
        if now:
            close_engine(self._engine, f"{self.target}: the store is closed")

    @contextlib.contextmanager
    def _held_run(self, operation: str, **kwargs: Any) -> Iterator[RunHandle]:
        """A run (:func:`held_run`) on the store's engine, which a close() meanwhile
        leaves open until the run ends: cut short, the run could not record its end,
        and its lock would stay held for as long as this process lives."""
        with self._guard:
            engine = self.engine
            self._runs += 1
        try:
            with held_run(engine, operation, wait=self.wait, **kwargs) as run:
                yield run
            self._finished_run = run.run_id
        finally:
            with self._guard:
                self._runs -= 1
                last = self._closed and not self._runs
            if last:
                close_engine(engine, f"{self.target}: the store is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- import / export

    def import_paths(
        self,
        paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        domain: str | None = None,
        progress: Progress | None = None,
        jobs: int | None = None,
    ) -> ImportResult:
        """Import files and directories; bad files and records are reported in the
        result's ``problems`` while everything else goes in. ``jobs``: worker processes
        that read and parse small files, and write them into a store that has no files yet
        (default: :func:`~recordstore.importer.default_jobs`
        for an import of many files; 0: none). The store ends up the same either way.
        ``domain``: the files given go into it whatever their names, and of a directory
        given, its JSON files but the hidden ones (a name on the way starting with ``.``).
        None of ``paths`` there (a home the application moved) is an :class:`InputError`,
        raised before any run begins."""
        paths = _paths(paths)
        _domain(domain)
        forced = self.registry[domain] if domain is not None else None
        _progress(progress)
        checked("jobs", jobs, int, least=0, optional=True)
        check_given(paths)  # nothing there: no run
        walk_problems: list[InputError] = []  # missing paths, unreadable directories
        walk_gone: list[str] = []  # directories removed while the walk went on
        found = discover(paths, self.registry, forced, walk_problems, walk_gone)
        # Counting the files first is what a progress bar needs; without one, stream.
        candidates: Iterable[Any] = list(found) if progress is not None else found
        if progress is not None:
            progress.start(len(candidates), "import")  # type: ignore[arg-type]
        options = {"paths": [str(p) for p in paths], "domain": domain}
        with self._held_run("import", options=options) as run:
            result = ImportResult(run.run_id)
            with translate_errors(), run.engine.connect() as conn:
                importer = Importer(conn.execution_options(sqlite_begin="IMMEDIATE"), run.run_id, result)
                importer.named_by_path = several_roots(paths)
                try:
                    importer.import_all(candidates, jobs, None if progress is None else progress.advance)
                    result.vanished += len(walk_gone)
                    for problem in walk_problems:
                        # A path given that is not there, or a directory that cannot be
                        # read: a problem of the path, in no domain's counts.
                        importer.record_problem(problem, None)
                    run.counts = {k: v for k, v in result.as_dict().items() if k not in ("problems", "problem_count")}
                    run.counts["problems"] = result.problem_count
                    run.save_counts(conn)
                except BaseException:
                    importer.rollback()
                    # Stopped: what the run had counted includes a batch that was not
                    # committed; the history tells what it stored, by domain.
                    with contextlib.suppress(Exception):
                        run.counts = {"stored": stored_by(conn, run.run_id)}
                    raise
                importer.close()
            run.outcome = "ok" if result.ok else "partial"
        return result

    def export_to(
        self,
        out: str | os.PathLike[str],
        *,
        domains: Iterable[str] | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> ExportResult:
        """Write every record (of ``domains``: ``None`` for all, an empty list for none)
        back to ``out/<source path>``, and every refused record's text in its place, as
        its file held it. A file there that holds what the store imported from it and
        more (lines the application appended since the import) is not replaced,
        ``overwrite`` or not: it is one of the result's ``problems``."""
        checked("out", out, (str, os.PathLike), what="a path (str or os.PathLike)")
        if not os.fspath(out).strip():
            raise ExportDirectoryError(repr(os.fspath(out)), "the export directory's path is empty (an unset setting?)")
        if "\x00" in os.fspath(out):  # (os would raise ValueError, as no file may have such a name)
            raise ExportDirectoryError(printable(os.fspath(out)), "the export directory's path cannot hold a NUL character")
        domains = _names(domains)
        for name in domains or ():
            self._named_domain(name)
        checked("overwrite", overwrite, bool)
        _progress(progress)
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            return export_records(conn, Path(os.path.expanduser(out)), domains, overwrite=overwrite, progress=progress)

    # ----------------------------------------------------------------- reading

    def status(self) -> StoreStatus:
        """Per domain of the registry (and any other the store holds): its current
        version, the records at each version, and the refused texts kept."""
        out = {d.name: DomainStatus(d.version) for d in self.registry}
        with translate_errors(), self.engine.connect() as conn:
            for domain, version, count in conn.execute(
                select(records.c.domain, records.c.version, func.count()).group_by(records.c.domain, records.c.version)
            ):
                out.setdefault(domain, DomainStatus(None)).versions[version] = count
            for domain, count in conn.execute(
                select(files.c.domain, func.count()).select_from(refused.join(files)).group_by(files.c.domain)
            ):
                out.setdefault(domain, DomainStatus(None)).refused = count
        return StoreStatus(out)

    def query(self, domain: str | None = None) -> Query:
        """A query over ``domain``'s records (all domains when ``None``)."""
        _domain(domain)
        if domain is not None:
            self._named_domain(domain)
        return Query(self.engine, domain)

    def _named_domain(self, name: str) -> None:
        """Refuse a domain that neither the registry nor the store knows. One the
        registry no longer declares still names the records the store keeps of it,
        which a query, an export or a restore may want (status lists them)."""
        if name in self.registry.domains:
            return
        with translate_errors(), self.engine.connect() as conn:
            held = conn.execute(select(records.c.id).where(records.c.domain == name).limit(1)).first()
            held = held or conn.execute(select(files.c.id).where(files.c.domain == name).limit(1)).first()
        if held is None:
            self.registry[name]  # unknown: said so, with the names it knows

    def get(self, domain: str, key: str) -> Record | None:
        """The record of ``domain`` with ``key`` (its file's path, then ``:LINE`` or
        ``[INDEX]``), or ``None`` when there is none."""
        return self.query(domain).find(key)

    def history(self, run: int | None = None, *, failure_limit: int | None = None) -> list[RunInfo]:
        """Every run, oldest first, or a list of the one ``run`` (an unknown one is a
        :class:`RecordStoreError`); each with at most ``failure_limit`` of its failures
        (``None``: all of them; ``failure_count`` always counts them all)."""
        # Not a bool, which SQL reads as run 1; checked before any run begins (a restore's).
        checked("run", run, int, what="a run number (an integer)", optional=True)
        checked("failure_limit", failure_limit, int, least=0, most=INT_MAX, optional=True)
        if run is not None and not 0 <= run <= INT_MAX:  # no SQLite integer: no such run
            # (One past Python's digit limit cannot be written out: said to be no run number.)
            said = shown(run)
            raise RecordStoreError(f"no run {said} in this store" if said.lstrip("-").isdigit() else f"{said} is no run number")
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            found = read_history(conn, run, failure_limit=failure_limit)
        if run is not None and not found:
            raise RecordStoreError(f"no run {run} in this store")
        return found

    def failures(self, run: int, *, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """The failures of ``run`` (each as in :meth:`history`), in order, read ``batch``
        at a time: a run with 100,000 failures is gone through without holding them all
        (``history(run)`` holds them all). An unknown run is a :class:`RecordStoreError`,
        raised by this call, not at the first failure asked for."""
        checked("batch", batch, int, least=1, most=INT_MAX)
        self.history(run, failure_limit=0)  # an unknown run, refused before the first page
        # The pages from a generator of their own: were this method one, the checks above
        # would wait for the first next(), past the caller's try around the call.
        return self._failure_pages(run, batch)

    def _failure_pages(self, run: int, batch: int) -> Iterator[dict[str, Any]]:
        after = -1
        while True:
            with translate_errors(), self.engine.connect() as conn, conn.begin():
                page = read_failures(conn, run, after, batch)
            for _, failure in page:
                yield failure
            if len(page) < batch:
                return
            after = page[-1][0]

    def unlock(self, *, force: bool = False) -> dict[str, Any] | None:
        """Release the store from a writer that is gone, its run marked ``interrupted``:
        what the lock said of that writer (operation, run, pid, host, since), or ``None``
        when none held it. A writer on another host, which cannot be told gone from
        here, only with ``force``; a running one never (:class:`BusyError`). See
        :func:`~recordstore.runs.release_lock`."""
        return release_lock(self.engine, force=checked("force", force, bool))

    # ----------------------------------------------------------------- migrating

    def migrate(
        self,
        domains: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        fail_fast: bool = False,
        atomic: bool = False,
        diff: int = 0,
        progress: Progress | None = None,
        jobs: int | None = None,
    ) -> MigrationResult:
        """Bring every record (of ``domains``: ``None`` for all, an empty list for none,
        which migrates nothing) below its domain's current version up to it. ``jobs``:
        worker processes running the steps (default:
        :func:`~recordstore.migrator.default_jobs` once many records are pending; 0: none)."""
        domains = _names(domains)
        for name in domains or ():
            self.registry[name]
        for flag, value in (("dry_run", dry_run), ("fail_fast", fail_fast), ("atomic", atomic)):
            checked(flag, value, bool)
        checked("diff", diff, int, least=0)
        _progress(progress)
        checked("jobs", jobs, int, least=0, optional=True)
        self.registry.validate()  # changed since the store opened? A broken chain is a RegistryError here.
        if dry_run:
            # Ctrl-C held to the next record, as in a real run: a KeyboardInterrupt a step
            # raises itself then fails its record alone in both (see ctrl_c_may_have_raised).
            with held_interrupts():
                return migrate_records(
                    self.engine, self.registry, domains, run=None, fail_fast=fail_fast, atomic=atomic, diff=diff,
                    progress=progress, jobs=jobs,
                )
        options = {"domains": None if domains is None else list(domains), "fail_fast": fail_fast, "atomic": atomic}
        with self._held_run("migrate", options=options, fingerprints=self.registry.fingerprints()) as run:
            result = migrate_records(
                run.engine,
                self.registry,
                domains,
                run=run,
                fail_fast=fail_fast,
                atomic=atomic,
                diff=diff,
                progress=progress,
                jobs=jobs,
            )
            if result.rolled_back:
                run.outcome = "rolled-back"
            elif not result.ok:
                run.outcome = "partial"
        return result

    def plan(self, domains: Iterable[str] | None = None, *, diff: int = 0, jobs: int | None = None) -> MigrationResult:
        """A dry run: every step runs over every pending record; nothing is written."""
        return self.migrate(domains, dry_run=True, diff=diff, jobs=jobs)

    def restore(
        self,
        *,
        run: int | None = None,
        domain: str | None = None,
        key: str | None = None,
        force: bool = False,
    ) -> RestoreResult:
        """Put back the rows a run changed (``run``), or the latest backups of a domain's
        records (``domain``, optionally one ``key``): one or the other, not both. Itself a
        recorded run."""
        _domain(domain)
        checked("key", key, str, optional=True)
        checked("force", force, bool)
        if run is None and domain is None:
            if key is not None:
                raise RecordStoreError("a restore of a key needs its domain too")
            raise RecordStoreError("a restore needs a run or a domain")
        if run is not None and (domain is not None or key is not None):
            raise RecordStoreError(
                f"a restore of run {run} puts back every row run {run} changed, in any domain; a domain and a key "
                "choose the latest backups instead: give one or the other"
            )
        backed_up = True
        if run is not None:
            info = self.history(run, failure_limit=0)[0]
            if info.kind in _UNDOABLE_ELSEWISE:
                raise RecordStoreError(f"run {run} is {_UNDOABLE_ELSEWISE[info.kind]}")
            backed_up = _backed_up(info)
        if domain is not None:
            self._named_domain(domain)
        self._refuse_a_restore_of_nothing(run, domain, key, backed_up)
        options = {"run": run, "domain": domain, "key": key, "force": force}
        with self._held_run("restore", options=options) as handle:
            return restore_records(handle.engine, run=handle, from_run=run, domain=domain, key=key, force=force)

    def _refuse_a_restore_of_nothing(self, run: int | None, domain: str | None, key: str | None, backed_up: bool) -> None:
        """A restore that can find no backup because a prune deleted them (of a run that
        wrote some: ``backed_up``), or of a key that has none (a typo?), is refused, saying
        so; any other that finds nothing is a run that restores nothing."""
        if run is None and key is None:
            return
        with translate_errors(), self.engine.connect() as conn:
            if conn.execute(select(backups.c.id).where(*backup_filter(run, domain, key)).limit(1)).first() is not None:
                return
            if run is None:
                raise RecordStoreError(f"nothing to restore: no backups of record {key!r} of domain {domain!r}")
            if not backed_up:
                return  # none to prune: an import that only added records is undone without
            prunes = conn.execute(
                select(runs.c.id, runs.c.counts).where(runs.c.kind == "prune", runs.c.outcome == "ok").order_by(runs.c.id)
            )
            # Only a prune that deleted something can have deleted this run's backups.
            pruned = [
                (pid, int(c.get("before") or 0))
                for pid, c in ((pid, json.loads(counts)) for pid, counts in prunes)
                if int(c.get("before") or 0) > run and (c.get("pruned") or c.get("layouts"))
            ]
        if pruned:
            pid, before = pruned[-1]
            raise RecordStoreError(
                f"nothing to restore: run {run} has no backups (prune run {pid} deleted those of the runs "
                f"before run {before})"
            )

    def prune_backups(self, before: int) -> int:
        """Delete the backups written by runs before run ``before``; returns how many."""
        checked("before", before, int, what="a run number (an integer)", least=0, most=INT_MAX)
        with translate_errors(), self.engine.connect() as conn:
            last = int(conn.execute(select(func.max(runs.c.id))).scalar() or 0)
        if before > last + 1:  # a typo for an older run would delete every backup
            raise RecordStoreError(
                f"there is no run {before}: the last is run {last} (a prune before run {last + 1} deletes every backup)"
            )
        with self._held_run("prune", options={"before": before}) as run:
            with translate_errors(), run.engine.connect() as conn, conn.begin():
                keep_import_digests(conn, before)
                removed = conn.execute(delete(backups).where(backups.c.run_id < before)).rowcount
                layouts = conn.execute(delete(file_backups).where(file_backups.c.run_id < before)).rowcount
                run.counts = {"pruned": removed, "layouts": layouts, "before": before}
                run.save_counts(conn)
        return int(removed)

    # ----------------------------------------------------------------- checking

    def check(self) -> CheckResult:
        """Steps whose code changed after they migrated records; records newer than the
        registry knows; indexes a stopped import left unbuilt; SQLite's integrity check."""
        result = CheckResult()
        current = self.registry.fingerprints()
        history = self.history(failure_limit=0)  # the runs' counts, not their failures
        undone = _undone_runs(history)
        for info in history:
            if info.kind != "migrate" or info.outcome == "rolled-back" or info.id in undone:
                continue
            for domain, steps in (info.counts.get("migrated") or {}).items():
                used: set[int] = set()
                for span, n in steps.items():
                    lo, hi = (int(x) for x in span.split("->"))
                    if n:
                        used.update(range(lo, hi))
                for n in sorted(used):
                    old = info.fingerprints.get(domain, {}).get(str(n))
                    new = current.get(domain, {}).get(str(n))
                    if old is not None and old != new:
                        step = self.registry.domains[domain].steps.get(n) if domain in self.registry.domains else None
                        name = f" ({step.name})" if step else ""
                        what = "changed" if new is not None else "is no longer in the registry"
                        result.problems.append(
                            f"domain {domain!r}: step {n} -> {n + 1}{name} {what} since run {info.id} used it; "
                            "the records it migrated came from the old code"
                        )
        for name, dom in self.status().domains.items():
            if dom.current_version is None:
                result.problems.append(f"domain {name!r} has {dom.total} stored record(s) but is not in the registry")
            elif dom.newer:
                result.problems.append(
                    f"domain {name!r} has {dom.newer} record(s) newer than current version {dom.current_version}"
                )
        with translate_errors(), self.engine.connect() as conn:
            missing = missing_record_indexes(conn)
            held = lock_problem(conn)
        if held is not None:
            result.problems.append(held)
        if missing:
            result.problems.append(
                f"the records' indexes {', '.join(missing)} are not built: an import into an empty store "
                "builds them at its end, and if it was stopped, the next import, migrate or restore does"
            )
        result.problems.extend(self._json_index_problems())
        result.problems.extend(self.integrity_problems())
        return result

    def _json_index_problems(self) -> list[str]:
        """JSON-path indexes the store lists (``store index list``) whose SQLite index is
        gone (dropped by hand, or by a tool that copied the tables without it): filters
        on them then scan every record, answering the same, only slowly, which nothing
        else would tell."""
        if self.engine.dialect.name != "sqlite":
            return []
        problems = []
        with translate_errors(), self.engine.connect() as conn:
            present = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
            for domain, path in conn.execute(select(indexes.c.domain, indexes.c.path).order_by(indexes.c.domain, indexes.c.path)):
                shown = typed_path(path)  # which index_ddl reads again ($[0] it does not)
                if index_ddl(shown)[0] not in present:
                    problems.append(
                        f"domain {domain!r}: the index on {shown} is listed but not in the store, so filters on it "
                        f"scan every record; `store index add {domain} {shown}` builds it again"
                    )
        return problems

    def integrity_problems(self) -> list[str]:
        """A slot of a file holding both a record and a refused text; SQLite's integrity
        and foreign key checks."""
        with translate_errors(), self.engine.connect() as conn:
            both = select(files.c.path, refused.c.position).select_from(
                refused.join(files, files.c.id == refused.c.file_id).join(
                    records, and_(records.c.file_id == refused.c.file_id, records.c.position == refused.c.position)
                )
            )
            problems = _named_then_counted(
                conn.execute(both),
                lambda r: f"{r.path}: slot {r.position} holds both a record and a refused text",
                lambda n: f"... and {n} more slot(s) holding both a record and a refused text",
            )
            if self.engine.dialect.name != "sqlite":
                return problems
            problems += self._payload_problems(conn)
            rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
            rows += _named_then_counted(
                conn.exec_driver_sql("PRAGMA foreign_key_check"),
                lambda r: self._foreign_key_problem(conn, *r),
                lambda n: f"... and {n} more foreign key violation(s)",
            )
        return problems + [f"SQLite integrity check: {r}" for r in rows if r != "ok"]

    @staticmethod
    def _foreign_key_problem(conn: Connection, table: str, rowid: int | None, parent: str, fkid: int) -> str:
        """One row of ``PRAGMA foreign_key_check``, saying which row refers to what that
        is not there, and for a record which it is (a million of them are not told apart
        by "foreign key violation in records")."""
        column = next(
            (r[3] for r in conn.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")') if r[0] == fkid), "?"
        )
        what = f"row {rowid}"
        if table == "records" and rowid is not None:
            found = conn.execute(select(records.c.domain, records.c.key).where(records.c.id == rowid)).first()
            if found is not None:
                what = f"record {printable(found.key)} of domain {found.domain!r} (row {rowid})"
        value = conn.exec_driver_sql(f'SELECT "{column}" FROM "{table}" WHERE rowid = ?', (rowid,)).scalar()
        return f"foreign key violation in {table}: {what} has {column} {value}, which is in no row of {parent}"

    def _payload_problems(self, conn: Connection) -> list[str]:
        """Records whose stored payload is not JSON, or whose version column is not the
        version field their payload holds (an edit made by hand, or by another tool):
        queries, migrations and exports would each go wrong on them in their own way."""
        valid = func.json_valid(records.c.payload)
        # SQLite's parser picks them out; the store's own decoder judges them, as a query
        # or a migration would (SQLite's may refuse what it takes: a newer SQLite nests
        # 1,000 levels at most, where a record may nest 1,024).
        def not_json() -> Iterator[Any]:
            candidates = select(records.c.domain, records.c.key, records.c.payload).where(valid == 0)
            for row in conn.execute(candidates.order_by(records.c.domain, records.c.id)):
                try:
                    jsoncodec.decode(row.payload)
                except jsoncodec.JSONError:
                    yield row

        problems = _named_then_counted(
            not_json(),
            lambda r: f"domain {r.domain!r} record {printable(r.key)}: its stored payload is not JSON",
            lambda n: f"... and {n} more record(s) whose stored payload is not JSON",
        )

        def mismatched() -> Iterator[tuple[str, str, Any, int, Any]]:
            for dom in self.registry:
                field_path = '$."' + dom.version_field + '"'
                # json_extract raises on text that is not JSON: those are reported above.
                stored = case((valid == 1, func.json_extract(records.c.payload, field_path)), else_=None)
                kind = case((valid == 1, func.json_type(records.c.payload, field_path)), else_=None)
                disagreeing = select(records.c.key, records.c.version, stored).where(
                    records.c.domain == dom.name, kind == "integer", stored != records.c.version
                ).order_by(records.c.id)
                for key, version, value in conn.execute(disagreeing):
                    yield dom.name, dom.version_field, key, version, value

        problems += _named_then_counted(
            mismatched(),
            lambda r: f"domain {r[0]!r} record {printable(r[2])}: stored as version {r[3]}, but its {r[1]} is {r[4]}",
            lambda n: f"... and {n} more record(s) stored as a version their version field disagrees with",
        )
        return problems

    # ----------------------------------------------------------------- indexes

    def add_index(self, domain: str, path: str) -> str:
        """Index a JSON path so equality and range filters on it stop scanning."""
        _domain(domain)
        self.registry[domain]
        json_paths_served(self.engine)
        name, sql_path, ddl = index_ddl(path)
        with self._index_run("add", domain, path) as conn:
            conn.execute(text(ddl))
            conn.execute(delete(indexes).where(indexes.c.domain == domain, indexes.c.path == sql_path))
            conn.execute(insert(indexes).values(name=f"{domain}:{sql_path}", domain=domain, path=sql_path))
        return name

    @contextlib.contextmanager
    def _index_run(self, action: str, domain: str, path: str) -> Iterator[Connection]:
        """A transaction that changes the JSON-path indexes, in a run of its own: it
        writes to the store (building an index reads every record), so it takes the
        writer lock like any other writer, and waits or fails the same way."""
        options = {"action": action, "domain": domain, "path": path}
        with self._held_run("index", options=options) as run:
            with translate_errors(), run.engine.connect() as conn:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    yield conn

    def indexes(self) -> list[tuple[str, str]]:
        """The JSON-path indexes, as (domain, SQLite path such as ``$.status``)."""
        with translate_errors(), self.engine.connect() as conn:
            return [(r.domain, r.path) for r in conn.execute(select(indexes).order_by(indexes.c.domain, indexes.c.path))]

    def drop_index(self, domain: str, path: str) -> None:
        """Drop the index on ``path`` in ``domain``. One that is not there is refused
        before any run begins, so a mistyped path leaves no failed run in the history
        (unless waiting for another writer, which may be adding it)."""
        _domain(domain)
        name, sql_path, _ = index_ddl(path)
        missing = QueryError(f"no index on {path} in domain {domain!r}")
        if self.wait is None and (domain, sql_path) not in self.indexes():
            raise missing
        with self._index_run("drop", domain, path) as conn:
            gone = conn.execute(delete(indexes).where(indexes.c.domain == domain, indexes.c.path == sql_path)).rowcount
            if not gone:  # dropped by another writer since it was looked for
                raise missing
            still = conn.execute(select(func.count()).select_from(indexes).where(indexes.c.path == sql_path)).scalar()
            if not still:
                conn.execute(text(f"DROP INDEX IF EXISTS {name}"))


def _paths(given: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
    """The paths given: one path (not its characters) or many, ``~`` expanded as
    :class:`Store` expands its own. An empty one is refused, as :class:`Store` refuses
    its own: it would be the working directory (read or written)."""
    items: list[Any] = [given]
    if isinstance(given, Iterable) and not isinstance(given, (str, os.PathLike, bytes)):
        items = list(given)
    for p in items:
        checked("paths", p, (str, os.PathLike), what="a path (str or os.PathLike) or an iterable of them")
        if not os.fspath(p).strip():
            raise InputError(repr(os.fspath(p)), "the path to import is empty (an unset setting?)")
    return [os.path.expanduser(p) for p in items]


def _domain(given: str | None) -> None:
    """A domain's name given, or None; another type (a list: an unhashable key) is
    refused before the registry is asked."""
    checked("domain", given, str, what="a domain's name (a string)", optional=True)


def _names(given: Iterable[str] | str | None) -> list[str] | None:
    """Domain names given: one name (not its letters) or many, read once (a generator
    would be empty by the time the domains were used), each once (a migration given a
    name twice ran the steps of its failing records twice, and reported them twice)."""
    if given is None:
        return None
    names: list[Any] = list(given) if isinstance(given, Iterable) and not isinstance(given, (str, bytes)) else [given]
    for name in names:
        checked("domains", name, str, what="a domain's name (a string) or an iterable of them")
    return list(dict.fromkeys(names))


def _progress(given: Progress | None) -> None:
    """A progress given is one: it has ``start`` and ``advance``."""
    checked("progress", given, Progress, what="a Progress (with start and advance methods)", optional=True)
