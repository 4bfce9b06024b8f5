"""Migrations: plan, dry run, apply in batched transactions, restore.

Each batch commits its changed rows, the exact original rows copied to ``backups``,
its failures and the run's counts together, or not at all; so a crash at any instant
leaves every record either old with no new backup, or new with its backup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Engine, func, insert, select, update

from . import jsoncodec
from .engine import placeholder, translate_errors
from .errors import MigrationError, RestoreConflictError
from .importer import _indent_of, backup_rows, backup_span
from .registry import Domain, Registry, Step
from .runs import RunHandle
from .tables import backups, files, records

__all__ = ["MigrationResult", "RestoreResult", "migrate_records", "migrate_value", "restore_records"]

BATCH_ROWS = 2000
#: Aim for about this many bytes of stored text per batch, so that large records make
#: smaller batches and memory stays bounded whatever the records' sizes.
BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class RecordDiff:
    """A record before and after a (dry) migration, as pretty JSON texts."""

    domain: str
    key: str
    from_version: int
    to_version: int
    before: str
    after: str


@dataclass
class MigrationResult:
    """What a migration did (or, for a dry run, would do)."""

    run_id: int | None
    dry_run: bool
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[MigrationError] = field(default_factory=list)
    newer: dict[str, int] = field(default_factory=dict)
    diffs: list[RecordDiff] = field(default_factory=list)
    stopped_early: bool = False
    rolled_back: bool = False

    @property
    def migrated(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "dry_run": self.dry_run,
            "migrated": self.migrated,
            "counts": self.counts,
            "newer": self.newer,
            "failures": [failure_dict(f) for f in self.failures],
            "stopped_early": self.stopped_early,
            "rolled_back": self.rolled_back,
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
    """One line of at most REASON_CHARS characters: never a whole record's payload."""
    line = " ".join(reason.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"


def migrate_value(domain: Domain, key: str, value: Any, version: int) -> dict[str, Any]:
    """Run ``domain``'s steps over one decoded record from ``version`` to current.

    Stamps the version field after each step. Raises :class:`MigrationError` naming the
    step that failed; ``value`` must be the caller's own copy.
    """
    return _run_steps(domain, key, value, domain.chain(version))


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
                raise TypeError(f"step returned {type(out).__name__}, not a JSON object (dict)")
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TypeError) and "step returned" in str(exc) else f"{type(exc).__name__}: {exc}"
            reason = _bounded(reason)
            raise MigrationError(
                reason,
                domain=domain.name,
                key=key,
                from_version=step.from_version,
                to_version=step.to_version,
                step=step.name,
            ) from exc
        if domain.version_field in out:
            out[domain.version_field] = step.to_version
        else:  # a record that had no version field gets one, first, as writers put it
            out = {domain.version_field: step.to_version, **out}
        value = out
    return cast(dict[str, Any], value)


class _Batch:
    def __init__(self, domain: str, version: int) -> None:
        self.domain, self.version = domain, version  # every row read was at this version
        self.updates: list[tuple[str, int, int | None, int]] = []  # payload, version, run, id
        self.failures: list[MigrationError] = []
        self.whole = False  # every row read is updated: its ids are one span of the index


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
) -> MigrationResult:
    """Migrate (``run`` given) or dry-run (``run`` is ``None``) the pending records."""
    chosen = [registry[d] for d in domains] if domains else list(registry)
    result = MigrationResult(run_id=run.run_id if run else None, dry_run=run is None)
    with translate_errors(), engine.connect() as conn:
        pending_total = 0
        with conn.begin():
            for dom in chosen:
                pending_total += _count(conn, dom, below=True)
                newer = _count(conn, dom, below=False)
                if newer:
                    result.newer[dom.name] = newer
        if progress is not None:
            progress.start(pending_total, "migrate")
        if run is not None:
            # A batch reads its rows, then writes: it must hold SQLite's write lock from
            # its BEGIN, or a write committed in between (``store index add`` takes no run
            # lock) makes SQLite refuse the batch's first write ("database is locked").
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        outer = conn.begin() if atomic and run is not None else None
        migration = _Pass(conn, result, run, fail_fast, atomic, diff, progress)
        try:
            for dom in chosen:
                if not migration.domain(dom):
                    result.stopped_early = True
                    break
            if outer is not None:
                if result.failures:
                    outer.rollback()
                    result.rolled_back = True
                    result.counts = {}
                    _record_failures_alone(conn, run, result)
                else:
                    outer.commit()
        except BaseException:
            if outer is not None and outer.is_active:
                outer.rollback()
            raise
    return result


def _count(conn: Connection, dom: Domain, *, below: bool) -> int:
    cond = records.c.version < dom.version if below else records.c.version > dom.version
    return int(conn.execute(select(func.count()).select_from(records).where(records.c.domain == dom.name, cond)).scalar() or 0)


@dataclass
class _Pass:
    """One migration (or dry run) over the chosen domains, batch by batch."""

    conn: Connection
    result: MigrationResult
    run: RunHandle | None
    fail_fast: bool
    atomic: bool
    diff: int
    progress: Any

    def domain(self, dom: Domain) -> bool:
        """Migrate one domain; False when the run must stop (fail-fast).

        Pending records are read one starting version at a time (``version = v``), so
        each batch walks the (domain, version, id) index in id order instead of sorting
        every pending row again."""
        limit = 100  # grows or shrinks with the size of the records seen
        for version in range(1, dom.version):
            last_id = 0
            while True:
                rows, limit, last_id, stop = self.batch(dom, version, last_id, limit)
                if stop:
                    return False
                if not rows:
                    break
        return True

    def batch(self, dom: Domain, version: int, last_id: int, limit: int) -> tuple[int, int, int, bool]:
        """One batch: (rows read, next limit, last id, stop)."""
        conn, result, run, diff = self.conn, self.result, self.run, self.diff
        tx = None if (self.atomic and run is not None) or conn.in_transaction() else conn.begin()
        rows = conn.exec_driver_sql(_pending_sql(conn), (dom.name, version, last_id, limit)).fetchall()
        if not rows:
            if tx is not None:
                tx.commit()
            return 0, limit, last_id, False
        average = max(1, sum(len(r[3]) for r in rows) // len(rows))
        limit = max(10, min(BATCH_ROWS, BATCH_BYTES // average))
        batch = _Batch(dom.name, version)
        updates, run_id, to_version = batch.updates, run.run_id if run else None, dom.version
        decode, encode = jsoncodec.decode, jsoncodec.encode
        chain = dom.chain(version)  # every row of the batch is at this version
        stop = False
        for rid, key, from_version, payload, path in rows:
            last_id = rid
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
                    text = encode(new, _indent_of(payload))
                except MigrationError as exc:
                    failure = exc
                except jsoncodec.JSONError as exc:
                    failure = MigrationError(
                        exc.reason, domain=dom.name, key=key, from_version=from_version, to_version=to_version
                    )
                else:
                    updates.append((text, to_version, run_id, rid))
                    if len(result.diffs) < diff:
                        result.diffs.append(
                            RecordDiff(
                                dom.name, key, from_version, to_version,
                                encode(decode(payload), 2),
                                encode(new, 2),
                            )
                        )
                    continue
            failure.source = path  # type: ignore[attr-defined]
            batch.failures.append(failure)
            result.failures.append(failure)
            if self.fail_fast:
                stop = True
                break
        batch.whole = len(updates) == len(rows)
        if updates:  # one starting version per batch: one step count
            per = result.counts.setdefault(dom.name, {})
            step = f"{version}->{to_version}"
            per[step] = per.get(step, 0) + len(updates)
        if run is not None:
            _write_batch(conn, run, batch, result)
        if self.progress is not None:
            self.progress.advance(len(updates) + len(batch.failures))
        if tx is not None:
            tx.commit()
        return len(rows), limit, last_id, stop


def _pending_sql(conn: Connection) -> str:
    """A domain's records at one version after an id, in id order (the (domain, version,
    id) index), with their files' paths: (id, key, version, payload, path)."""
    mark = placeholder(conn)
    return (
        "SELECT records.id, records.key, records.version, records.payload, files.path "
        "FROM records JOIN files ON files.id = records.file_id "
        f"WHERE records.domain = {mark} AND records.version = {mark} AND records.id > {mark} "
        f"ORDER BY records.id LIMIT {mark}"
    )


def _write_batch(conn: Connection, run: RunHandle, batch: _Batch, result: MigrationResult) -> None:
    if batch.updates:
        ids = [u[3] for u in batch.updates]
        if batch.whole:  # the rows read, and only they, are in this span (the batch holds the write lock)
            backup_span(conn, batch.domain, batch.version, ids[0], ids[-1], run.run_id, "migrate")
        else:
            backup_rows(conn, ids, run.run_id, "migrate")
        mark = placeholder(conn)
        conn.exec_driver_sql(
            f"UPDATE records SET payload = {mark}, version = {mark}, run_id = {mark} WHERE id = {mark}",
            batch.updates,
        )
    for f in batch.failures:
        _insert_failure(conn, run, f)
    run.counts = {"migrated": result.counts, "failures": len(result.failures)}
    run.save_counts(conn)


def _insert_failure(conn: Connection, run: RunHandle, f: MigrationError) -> None:
    run.add_failure(
        conn,
        domain=f.domain,
        key=f.key,
        source=getattr(f, "source", None),
        from_version=f.from_version,
        to_version=f.to_version,
        step=f.step,
        reason=f.reason,
    )


def _record_failures_alone(conn: Connection, run: RunHandle | None, result: MigrationResult) -> None:
    if run is None:
        return
    with conn.begin():
        for f in result.failures:
            _insert_failure(conn, run, f)
        run.counts = {"migrated": {}, "failures": len(result.failures), "rolled_back": True}
        run.save_counts(conn)


# --------------------------------------------------------------------------- restore


@dataclass
class RestoreResult:
    """What a restore put back."""

    run_id: int
    restored: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.restored.values())

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "restored": self.restored, "total": self.total}


def _chosen_backups(conn: Connection, run_id: int | None, domain: str | None, key: str | None) -> list[Any]:
    """One backup per record: the oldest of ``run_id`` (the row before that run), or the
    latest one of each record of ``domain``/``key``."""
    if run_id is not None:
        pick = (
            select(func.min(backups.c.id).label("bid"))
            .where(backups.c.run_id == run_id)
            .group_by(backups.c.record_id)
        )
    else:
        pick = select(func.max(backups.c.id).label("bid")).group_by(backups.c.record_id)
        if domain is not None:
            pick = pick.where(backups.c.domain == domain)
        if key is not None:
            pick = pick.where(backups.c.key == key)
    sub = pick.subquery()
    return list(conn.execute(select(backups).join(sub, sub.c.bid == backups.c.id).order_by(backups.c.id)))


def _already_restored(row: Any, backup: Any) -> bool:
    return all(
        getattr(row, c) == getattr(backup, c) for c in ("domain", "key", "version", "payload", "file_id", "position")
    )


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
        chosen = _chosen_backups(conn, from_run, domain, key)
        current = {}
        ids = [b.record_id for b in chosen]
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                select(
                    records.c.id, records.c.run_id, records.c.key, records.c.domain, records.c.version,
                    records.c.payload, records.c.file_id, records.c.position,
                ).where(records.c.id.in_(ids[start : start + 500]))
            ):
                current[row.id] = row
        if from_run is not None and not force:
            # A record already back to its backup (a restore of this run that was killed
            # after its commit, before its run was marked finished) is no conflict.
            conflicts = [
                (current[b.record_id].domain, current[b.record_id].key)
                for b in chosen
                if b.record_id in current
                and current[b.record_id].run_id != from_run
                and not _already_restored(current[b.record_id], b)
            ]
            if conflicts:
                shown = ", ".join(f"{d} {k}" for d, k in conflicts[:3])
                more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
                raise RestoreConflictError(
                    f"refusing to restore run {from_run}: {len(conflicts)} record(s) were changed again by a "
                    f"later run ({shown}{more}); pass --force to restore them anyway",
                    keys=conflicts,
                )
        present = [b.record_id for b in chosen if b.record_id in current]
        backup_rows(conn, present, run.run_id, "restore")
        touched_files: set[int] = set()
        for b in chosen:
            values = {
                "domain": b.domain,
                "key": b.key,
                "version": b.version,
                "payload": b.payload,
                "file_id": b.file_id,
                "position": b.position,
                "run_id": run.run_id,
            }
            if b.record_id in current:
                conn.execute(update(records).where(records.c.id == b.record_id).values(**values))
            else:
                conn.execute(insert(records).values(id=b.record_id, **values))
            touched_files.add(b.file_id)
            result.restored[b.domain] = result.restored.get(b.domain, 0) + 1
        if touched_files:
            # The next import must compare these files again rather than trust their digest.
            fids = sorted(touched_files)
            for start in range(0, len(fids), 500):
                conn.execute(update(files).where(files.c.id.in_(fids[start : start + 500])).values(digest=""))
        run.counts = {"restored": result.restored, "from_run": from_run}
        run.save_counts(conn)
    return result
