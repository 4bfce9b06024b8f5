"""The library's edges as a program meets them: empty selections and paths, run numbers
of the wrong type, store paths that look like URLs, stores in memory, and a store used
after it was closed."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recordstore import ExportError, InputError, RecordStoreError, Registry, Store, StoreError


@pytest.fixture
def registry() -> Registry:
    """Two domains, ``a`` and ``b``, at version 2."""
    reg = Registry()
    for name in ("a", "b"):
        reg.domain(name, version=2, files=[f"{name}/*.json"]).add_step(1, lambda record: None)
    return reg


@pytest.fixture
def two_domains(tmp_path: Path) -> Path:
    """A home with one version-1 record in each domain."""
    home = tmp_path / "two"
    for name in ("a", "b"):
        (home / name).mkdir(parents=True)
        (home / name / "1.json").write_text(json.dumps({"schema_version": 1, "name": name}))
    return home


@pytest.fixture
def filled(db_path: Path, registry: Registry, two_domains: Path) -> Iterator[Store]:
    with Store(db_path, registry=registry) as store:
        assert store.import_paths(two_domains).ok
        yield store


def test_an_empty_path_is_refused_not_read_as_the_working_directory(
    filled: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.environ.get("EXPORT_DIR", "")`` unset: the export is refused, where it wrote
    the records into the working directory; an import of ``""`` is refused, where it
    walked the working directory. Neither begins a run."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    runs = len(filled.history())
    with pytest.raises(ExportError, match="path is empty"):
        filled.export_to("")
    for given in ("", [str(tmp_path / "two"), ""], Path("  ")):
        with pytest.raises(InputError, match="path to import is empty"):
            filled.import_paths(given)
    assert list(cwd.iterdir()) == []
    assert len(filled.history()) == runs


@pytest.mark.parametrize("given", [True, False, "2", 1.5, 2.0])
def test_a_run_number_of_another_type_is_refused_before_any_run_begins(filled: Store, given: Any) -> None:
    """``True`` was run 1 (a restore of the import), ``"2"`` a raw TypeError, and a
    prune of ``True`` a raw SQLAlchemy error after a failed prune run was recorded;
    ``1.5`` pruned as run 1.5. Each is now one error of the library's, and the history
    is as it was."""
    filled.migrate()
    before = [(r.id, r.kind, r.outcome) for r in filled.history()]
    for call in (filled.history, lambda run: filled.restore(run=run), filled.prune_backups):
        with pytest.raises(RecordStoreError, match=r"must be a run number \(an integer\), not "):
            call(given)
    assert [(r.id, r.kind, r.outcome) for r in filled.history()] == before
    assert filled.query("a").version(2).count() == 1  # nothing restored


#: Calls with an argument of the wrong type or out of range, and the parameter each names.
WRONG_ARGUMENTS: list[tuple[str, Any]] = [
    ("paths", lambda s, home: s.import_paths(None)),
    ("paths", lambda s, home: s.import_paths(b"two")),
    ("paths", lambda s, home: s.import_paths([home, 5])),
    ("domain", lambda s, home: s.import_paths(home, domain=["a"])),
    ("jobs", lambda s, home: s.import_paths([home], jobs="2")),
    ("jobs", lambda s, home: s.import_paths([home], jobs=-1)),
    ("jobs", lambda s, home: s.import_paths([home], jobs=True)),
    ("progress", lambda s, home: s.import_paths(home, progress=5)),
    ("diff", lambda s, home: s.plan(diff="2")),
    ("diff", lambda s, home: s.plan(diff=-1)),
    ("jobs", lambda s, home: s.plan(jobs=-1)),
    ("domains", lambda s, home: s.plan(5)),
    ("domains", lambda s, home: s.migrate([["a"]])),
    ("jobs", lambda s, home: s.migrate(jobs=1.0)),
    ("dry_run", lambda s, home: s.migrate(dry_run="yes")),
    ("atomic", lambda s, home: s.migrate(atomic=1)),
    ("failure_limit", lambda s, home: s.history(1, failure_limit="x")),
    ("failure_limit", lambda s, home: s.history(1, failure_limit=-1)),
    ("failure_limit", lambda s, home: s.history(failure_limit=True)),
    ("domain", lambda s, home: s.query(["a"])),
    ("key", lambda s, home: s.get("a", 5)),
    ("out", lambda s, home: s.export_to(5)),
    ("out", lambda s, home: s.export_to(b"out")),
    ("overwrite", lambda s, home: s.export_to(home.parent / "out", overwrite="no")),
    ("domains", lambda s, home: s.export_to(home.parent / "out", domains=[("a",)])),
    ("key", lambda s, home: s.restore(domain="a", key=5)),
    ("domain", lambda s, home: s.restore(domain=["a"])),
    ("force", lambda s, home: s.restore(run=1, force="no")),
    ("force", lambda s, home: s.unlock(force="yes")),
    ("before", lambda s, home: s.prune_backups(-1)),
    ("domain", lambda s, home: s.add_index(["a"], "name")),
    ("domain", lambda s, home: s.drop_index(["a"], "name")),
    ("key", lambda s, home: s.query("a").key(None)),
    ("descending", lambda s, home: s.query("a").order_by("name", descending="yes")),
]


@pytest.mark.parametrize(("name", "call"), WRONG_ARGUMENTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WRONG_ARGUMENTS)])
def test_an_argument_of_the_wrong_type_or_range_is_refused_naming_the_parameter(
    filled: Store, two_domains: Path, name: str, call: Any
) -> None:
    """``import_paths(None)``, ``jobs="2"``, ``plan(diff="2")``, ``failure_limit="x"`` and
    ``get("a", 5)`` raised a raw TypeError, ValueError or AttributeError, outside the
    error tree; ``jobs=-1`` and ``diff=-1`` ran as 0, ``failure_limit=-1`` meant no limit,
    ``overwrite="no"`` overwrote. Each is now one RecordStoreError naming the parameter
    and what it takes, before any run begins."""
    before = [(r.id, r.kind, r.outcome) for r in filled.history()]
    with pytest.raises(RecordStoreError, match=rf"^{name} must be "):
        call(filled, two_domains)
    assert [(r.id, r.kind, r.outcome) for r in filled.history()] == before
    assert not (two_domains.parent / "out").exists()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("target", {"target": b"x.db"}), ("target", {"target": 5}), ("wait", {"wait": "2"}), ("wait", {"wait": -1}),
     ("wait", {"wait": True}), ("create", {"create": "no"})],
)
def test_a_store_opened_with_an_argument_of_the_wrong_type_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kwargs: dict[str, Any]
) -> None:
    """``Store(b"x.db")`` raised a raw TypeError; ``wait="2"`` failed only at the first
    write, and ``create="no"`` created the store."""
    monkeypatch.chdir(tmp_path)
    kwargs.setdefault("target", "x.db")
    with pytest.raises(RecordStoreError, match=rf"^{name} must be "):
        Store(**kwargs)
    assert list(tmp_path.iterdir()) == []


def test_in_takes_a_frozenset_as_it_takes_a_set(filled: Store) -> None:
    """``where(path, "in", frozenset(...))`` was refused, "needs a list of values", where a
    set was taken."""
    query = filled.query()
    for values in (["a"], ("a",), {"a"}, frozenset({"a"})):
        assert [r.domain for r in query.where("name", "in", values)] == ["a"]
        assert [r.domain for r in query.where("name", "not in", values)] == ["b"]
    with pytest.raises(RecordStoreError, match="needs a list, tuple or set of values"):
        query.where("name", "in", "a")


def test_an_empty_selection_of_domains_selects_none(filled: Store, tmp_path: Path) -> None:
    """A program's filter that picked no domain got a plan, an export and a migration
    of every domain (the migration writing them all); now each does nothing, and its
    result says so, as ``import_paths([])`` does. ``None`` still means every domain."""
    chosen = [name for name in ("a", "b") if name == "c"]
    assert store_versions(filled) == {"a": 1, "b": 1}
    assert filled.plan(chosen).counts == {}
    exported = filled.export_to(tmp_path / "none", domains=chosen)
    assert (exported.files, exported.records, exported.domains) == (0, 0, {})
    assert not any(p.is_file() for p in (tmp_path / "none").rglob("*"))
    migrated = filled.migrate(chosen)
    assert (migrated.counts, migrated.migrated, migrated.ok) == ({}, 0, True)
    assert store_versions(filled) == {"a": 1, "b": 1}
    assert filled.history()[-1].options["domains"] == []
    assert set(filled.plan(None).counts) == {"a", "b"}
    assert filled.migrate().migrated == 2 and store_versions(filled) == {"a": 2, "b": 2}
    assert filled.history()[-1].options["domains"] is None  # every domain, told apart from none
    assert filled.export_to(tmp_path / "all").domains == {"a": 1, "b": 1}


def test_domains_given_by_a_generator_are_those_domains(filled: Store, tmp_path: Path) -> None:
    """Domains given as a generator (``d for d in names if ...``) were read once to check
    them, then found empty: the plan, the export and the migration did nothing, and the
    history said ``domains: []``."""
    assert filled.plan(d for d in ("a", "b") if d == "a").counts == {"a": {"1->2": 1}}
    assert filled.export_to(tmp_path / "a", domains=(d for d in ["b"])).domains == {"b": 1}
    assert filled.migrate(d for d in ["a"]).counts == {"a": {"1->2": 1}}
    assert filled.history()[-1].options["domains"] == ["a"]
    assert store_versions(filled) == {"a": 2, "b": 1}

def test_the_cli_without_domain_still_means_every_domain(cli: Any, home: Path, tmp_path: Path) -> None:
    assert cli("import", str(home)).exit_code == 0
    planned = json.loads(cli("migrate", "--dry-run", "--json").stdout)
    assert len(planned["counts"]) > 1 and planned["migrated"] > 0
    assert json.loads(cli("migrate", "--json").stdout)["migrated"] == planned["migrated"]
    exported = json.loads(cli("export", str(tmp_path / "out"), "--json").stdout)
    assert len(exported["domains"]) > 1 and exported["files"] > 0


@pytest.mark.parametrize("name", ["report?v2.db", "100%25done.db", "caf%C3%A9.db", "a#b;c=d.db"])
@pytest.mark.parametrize("as_path", [True, False], ids=["Path", "str"])
def test_a_store_path_is_the_file_it_names_never_a_url(
    tmp_path: Path, registry: Registry, two_domains: Path, name: str, as_path: bool
) -> None:
    """``report?v2.db`` opened ``report``, ``caf%C3%A9.db`` opened ``café.db`` (and a
    second path the same store): a path's ``?``, ``%``, ``#`` are letters of its name."""
    where = tmp_path / "stores"
    target = where / name
    with Store(target if as_path else str(target), registry=registry) as store:
        assert store.import_paths(two_domains).ok
        assert store.engine.url.database == str(target)
    assert sorted(p.name for p in where.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [name]
    with Store(str(target), registry=registry, create=False) as again:
        assert again.query().count() == 2


def test_the_cli_opens_and_names_the_store_file_it_was_given(tmp_path: Path, home: Path) -> None:
    from typer.testing import CliRunner

    from recordstore.cli import app

    db = tmp_path / "report?v2.db"
    runner = CliRunner()
    assert runner.invoke(app, ["--db", str(db), "import", str(home)]).exit_code == 0
    assert db.is_file() and not (tmp_path / "report").exists()
    assert json.loads(runner.invoke(app, ["--db", str(db), "status", "--json"]).stdout)["domains"]["task"]["versions"]
    other = tmp_path / "notes%3F.db"
    other.write_text("not a database")
    refused = runner.invoke(app, ["--db", str(other), "status"])
    assert (refused.exit_code, refused.stderr) == (3, f"store: error: {other}: the file is not a recordstore database (not SQLite)\n")


@pytest.mark.parametrize("target", [":memory:", Path(":memory:"), "sqlite://"], ids=["name", "Path", "URL"])
def test_a_store_in_memory_is_in_memory_and_serves_every_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    registry: Registry, two_domains: Path, target: str | Path,
) -> None:
    """``Store(":memory:")`` made a file ``:memory:`` in the working directory, whose
    records the next program found; ``sqlite://`` gave each thread an empty database of
    its own ("no such table: records") and its close() printed a traceback."""
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the second store starts empty
        with Store(target, registry=registry) as store:
            assert store.query().count() == 0
            assert store.import_paths(two_domains, jobs=2).ok
            seen: list[object] = []
            thread = threading.Thread(target=lambda: seen.append(store.query().count()))
            thread.start()
            thread.join()
            assert seen == [2]
            assert store.migrate(jobs=2).migrated == 2  # the steps ran here: no file for workers
            assert store_versions(store) == {"a": 2, "b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]
    assert capfd.readouterr().err == ""


def test_threads_take_turns_with_a_store_in_memory(registry: Registry, tmp_path: Path) -> None:
    """One connection for all: a thread waits for another's operation to end, so no
    one's BEGIN fails and no one's rollback undoes another's batch."""
    home = tmp_path / "many"
    (home / "a").mkdir(parents=True)
    for i in range(40):
        (home / "a" / f"{i}.json").write_text(json.dumps({"schema_version": 1, "i": i}))
    problems: list[str] = []
    with Store("sqlite://", registry=registry, wait=60) as store:

        def work(i: int) -> None:
            try:
                store.import_paths(home / "a" / f"{i}.json", domain="a")
                assert store.query("a").count() >= 1
                assert store.migrate("a").ok
            except Exception as exc:  # reported below, with the thread's number
                problems.append(f"{i}: {exc!r}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert problems == []
        assert store.query("a").version(2).count() == 40 and store.check().ok
        assert [r.outcome for r in store.history()] == ["ok"] * 80


def test_a_call_made_while_this_thread_iterates_a_store_in_memory_is_refused(
    registry: Registry, two_domains: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It cannot wait for a turn its own thread holds; sharing the connection would
    end the iteration's transaction, and a writer's ROLLBACK would undo the batch."""
    monkeypatch.chdir(tmp_path)
    with Store(":memory:", registry=registry) as store:
        store.import_paths(two_domains)
        records = iter(store.query())
        first = next(records)
        with pytest.raises(StoreError, match="one operation at a time"):
            store.migrate()
        assert [r.domain for r in records] == ["b"]  # the iteration goes on
        assert store.get("a", first.key) == first and store.migrate().migrated == 2


def test_a_sqlite_uri_is_not_made_a_file_of_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Store("file:x.db?mode=ro")`` created ``./file:x.db`` (warning that ``mode`` was
    ignored); a SQLite URI opens what it names, and a read-only one does not create it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="cannot open the store file"):
        Store("file:x.db?mode=ro")
    assert list(tmp_path.iterdir()) == []
    with Store("file:x.db") as store:
        assert store.query().count() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["x.db"]
    with Store("file:x.db?mode=ro") as store, pytest.raises(StoreError, match="read-only"):
        store.migrate()


def test_a_sqlite_uri_with_an_absolute_path_opens_its_file(tmp_path: Path) -> None:
    """``file:///abs/x.db``, SQLite's URI of an absolute path, was read as a SQLAlchemy
    URL: "SQLAlchemy has no dialect 'file'"."""
    with Store(f"file://{tmp_path}/x.db") as store:
        assert store.query().count() == 0
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["x.db"]
    with Store(f"file://localhost{tmp_path}/x.db?mode=ro") as store, pytest.raises(StoreError, match="read-only"):
        store.migrate()

def test_a_sqlite_uri_to_a_missing_file_is_refused_without_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``create=False`` refuses a store that does not exist, as it does for a path and a
    ``sqlite:///`` URL; ``Store("file:typo.db", create=False)`` (and so ``store --db
    file:typo.db status``) created an empty store instead."""
    monkeypatch.chdir(tmp_path)
    for given in ("file:typo.db", "file:typo.db?cache=shared", f"file:{tmp_path}/typo.db", f"file://{tmp_path}/typo.db"):
        with pytest.raises(StoreError, match="no store at .*typo.db"):
            Store(given, create=False)
    assert list(tmp_path.iterdir()) == []
    Store("file:x%20y.db").close()  # a URI's escapes name the file
    with Store("file:x%20y.db", create=False) as store:
        assert store.query().count() == 0
    with Store("file::memory:", create=False) as store:
        assert store.query().count() == 0


def open_files(db: Path) -> list[str]:
    """The names of the store's files this process has open (db, -wal, -shm)."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(db)):
                names.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
    return sorted(names)


@pytest.fixture
def lines(tmp_path: Path) -> tuple[Registry, Path]:
    """A registry and a home of one JSON-lines file of 500 records: more than a query
    fetches at once."""
    reg = Registry()
    reg.domain("log", version=2, files=["log/*.jsonl"]).add_step(1, lambda record: None)
    home = tmp_path / "lines"
    (home / "log").mkdir(parents=True)
    (home / "log" / "x.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(500)))
    return reg, home


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_a_query_made_before_close_refuses_to_run_after_it(db_path: Path, lines: tuple[Registry, Path]) -> None:
    """A query made, or being iterated, before ``close()`` ran afterwards, reopening the
    store and leaving its three files open for good; now it says the store is closed,
    and close() has closed them all."""
    registry, home = lines
    with Store(db_path, registry=registry) as store:
        assert store.import_paths(home).ok
        query = store.query("log").order_by("n")
        records = iter(query)
        assert next(records).data == {"n": 0}
        assert open_files(db_path)
    assert open_files(db_path) == []
    for use in (lambda: next(records), query.count, query.all, query.first, lambda: list(query.where("n", "<", 3))):
        with pytest.raises(StoreError, match="the store is closed"):
            use()
    assert open_files(db_path) == []


def test_a_run_in_progress_when_the_store_is_closed_ends_and_records_its_end(
    db_path: Path, lines: tuple[Registry, Path]
) -> None:
    """close() from another thread (or a step) lets the run it would cut short finish:
    cut, it could not record its end, and its lock would stay held by this process."""
    registry, home = lines
    started, release = threading.Event(), threading.Event()

    def step(record: dict[str, Any]) -> None:
        started.set()
        release.wait(30)

    slow = Registry()
    slow.domain("log", version=2, files=["log/*.jsonl"]).add_step(1, step)
    store = Store(db_path, registry=slow)
    assert store.import_paths(home).ok
    query = store.query("log")
    outcome: list[Any] = []
    migrating = threading.Thread(target=lambda: outcome.append(store.migrate(jobs=0)))
    migrating.start()
    assert started.wait(30)
    store.close()
    with pytest.raises(StoreError, match="the store is closed"):
        store.status()
    release.set()
    migrating.join(60)
    assert outcome and outcome[0].migrated == 500
    with pytest.raises(StoreError, match="the store is closed"):
        query.count()
    with Store(db_path, registry=registry) as again:
        assert [(r.kind, r.outcome) for r in again.history()] == [("import", "ok"), ("migrate", "ok")]
        assert again.restore(run=2).total == 500  # the lock is free
        assert again.query("log").version(1).count() == 500


def store_versions(store: Store) -> dict[str, int]:
    """Each domain's one record's version."""
    return {r.domain: r.version for r in store.query()}


def test_a_key_no_file_can_have_is_found_nowhere_not_a_unicode_error(filled: Store) -> None:
    """A key made from a file name that is not UTF-8 (``os.listdir`` gives its bytes as
    lone surrogates; the store keeps no such file) raised UnicodeEncodeError, outside
    the error tree, from ``get``, ``key`` and ``restore``."""
    key = os.fsdecode(b"a/caf\xe9.json")
    assert filled.get("a", key) is None
    assert filled.query().key(key).count() == 0
    with pytest.raises(RecordStoreError, match="nothing to restore: no backups of record"):
        filled.restore(domain="a", key=key)
    assert filled.get("a", "a/1.json") is not None


def test_a_registry_changed_after_the_store_opened_is_checked_before_a_migration(
    db_path: Path, registry: Registry, two_domains: Path
) -> None:
    """The registry object is the store's own: a domain declared on it after the store
    opened, its chain short of its version, made ``migrate()`` raise a bare KeyError
    (outside the error tree) once it met a record it had no step for."""
    with Store(db_path, registry=registry) as store:
        registry.domain("c", version=3, files=["c/*.json"]).add_step(1, lambda record: None)
        (two_domains / "c").mkdir()
        (two_domains / "c" / "1.json").write_text(json.dumps({"schema_version": 1}))
        assert store.import_paths(two_domains).ok
        for run in (store.plan, store.migrate):
            with pytest.raises(RecordStoreError, match=r"domain 'c': no step 2 -> 3"):
                run()
        assert store.status().domains["c"].versions == {1: 1}


def test_check_reads_no_failure_rows(filled: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``check()`` read every failure every run had recorded, to look only at the runs'
    counts: 400,000 recorded failures took it 12 s and 325 MB."""
    filled.registry["a"].steps[1] = filled.registry["a"].steps[1].__class__("a", 1, lambda record: 1 / 0)
    assert len(filled.migrate().failures) == 1
    read = _failure_rows_read(monkeypatch)
    assert filled.check().ok
    assert read and sum(read) == 0
    assert filled.history()[-1].failure_count == 1


def _failure_rows_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, how many failure rows each history lookup of the store reads."""
    import recordstore.store as store_module

    read: list[int] = []
    real = store_module.read_history

    def counting(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        read.append(sum(len(info.failures) for info in found))
        return found

    monkeypatch.setattr(store_module, "read_history", counting)
    return read


def test_a_restore_by_run_reads_no_failure_rows(filled: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``restore(run=N)`` looked the run up with every failure it recorded, to check
    only that it exists: 200,000 of them took 5 s and 160 MB before restoring anything."""
    filled.registry["a"].steps[1] = filled.registry["a"].steps[1].__class__("a", 1, lambda record: 1 / 0)
    done = filled.migrate()
    assert len(done.failures) == 1 and done.run_id is not None
    read = _failure_rows_read(monkeypatch)
    assert filled.restore(run=done.run_id).restored == {"b": 1}
    assert read and sum(read) == 0
    with pytest.raises(RecordStoreError, match="no run 99 in this store"):
        filled.restore(run=99)


def _restore_work(tmp_path: Path, n: int) -> int:
    """SQLite's virtual machine steps (in thousands) that restoring a migration of ``n``
    records takes: a measure of the work that does not depend on the machine's speed."""
    from sqlalchemy import event

    reg = Registry()
    reg.domain("log", version=2, files=["log/*.jsonl"]).add_step(1, lambda record: None)
    home = tmp_path / f"home{n}"
    (home / "log").mkdir(parents=True)
    (home / "log" / "x.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(n)))
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    with Store(tmp_path / f"s{n}.db", registry=reg) as store:
        assert store.import_paths(home, jobs=0).ok
        done = store.migrate(jobs=0)
        assert done.migrated == n and done.run_id is not None
        event.listen(store.engine, "checkout", lambda dbapi_conn, *_: dbapi_conn.set_progress_handler(count, 1000))
        store.engine.dispose()  # connections made from here on count
        assert store.restore(run=done.run_id).restored == {"log": n}
    return steps[0]


def test_restoring_a_run_takes_work_in_proportion_to_its_records(tmp_path: Path) -> None:
    """Restoring a migration looked, for each record the run wrote, through every backup
    the run made: 10,000 records took 5.6 s, 20,000 took 21 s, and the 200,000 a real
    home holds about 35 minutes (the migration itself: 6 s)."""
    small, large = _restore_work(tmp_path, 1000), _restore_work(tmp_path, 4000)
    assert large < 8 * small, (small, large)  # 4 times the records: about 4 times the work, not 16


def _plant_remote_lock(db: Path) -> None:
    """The lock row (and its running run) of a writer on another host, gone with it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        run = conn.execute(
            "INSERT INTO runs (kind, started_at, outcome, pid, host) "
            "VALUES ('import', '2026-01-01T00:00:00Z', 'running', 4242, 'gone-container')"
        ).lastrowid
        conn.execute(
            "INSERT INTO lock (id, operation, run_id, pid, host, acquired_at) "
            "VALUES (1, 'import', ?, 4242, 'gone-container', '2026-01-01T00:00:00Z')",
            (run,),
        )


#: How a message names a CLI flag together with the library's parameter.
BOTH_FORMS = (
    "use --force, or overwrite=True, to overwrite",
    "pass --force, or force=True,",
    "(--wait, or Store(wait=seconds))",
    "'store unlock --force', or unlock(force=True),",
    "(--jobs 0, or jobs=0)",
)


def test_library_errors_name_the_parameter_a_library_user_passes(
    filled: Store, two_domains: Path, db_path: Path, tmp_path: Path
) -> None:
    """A library user was told "use --force to overwrite" (the parameter is
    ``overwrite=True``), "retry later or pass --wait", "pass --force to restore them
    anyway", "'store unlock --force' releases the store", "run the import again ... or
    with --jobs 0", "restore needs a run (--run) or a domain (--domain)": advice for a
    command line they do not use. Each names both forms once, or neither."""
    from recordstore import BusyError, RestoreConflictError
    from recordstore.workers import _died

    said: dict[str, str] = {}
    filled.export_to(tmp_path / "out")
    for exported in (tmp_path / "out").rglob("*.json"):  # (one holding what export writes is kept)
        exported.write_text("edited")
    said["export"] = str(filled.export_to(tmp_path / "out").problems[0])
    filled.migrate()
    (two_domains / "a" / "1.json").write_text(json.dumps({"schema_version": 2, "name": "changed"}))
    assert filled.import_paths(two_domains).ok  # run 3 changes what run 2 migrated
    with pytest.raises(RestoreConflictError) as conflict:
        filled.restore(run=2)
    said["conflict"] = str(conflict.value)
    filled.add_index("a", "name")
    index_run = filled.history()[-1].id
    for name, call in {
        "nothing": lambda: filled.restore(),
        "key alone": lambda: filled.restore(key="a/1.json"),
        "both": lambda: filled.restore(run=2, domain="a"),
        "index run": lambda: filled.restore(run=index_run),
        "prune": lambda: filled.prune_backups(99),
    }.items():
        with pytest.raises(RecordStoreError) as info:
            call()
        said[name] = str(info.value)
    said["worker"] = str(_died("import"))
    _plant_remote_lock(db_path)
    for name, call in {"busy": filled.migrate, "unlock": filled.unlock}.items():
        with pytest.raises(BusyError) as busy:
            call()
        said[name] = str(busy.value)

    assert "use --force, or overwrite=True, to overwrite" in said["export"]
    assert "pass --force, or force=True, to restore them anyway" in said["conflict"]
    assert "retry later, or wait for it (--wait, or Store(wait=seconds))" in said["busy"]
    assert "'store unlock --force', or unlock(force=True), releases the store" in said["busy"]
    assert "'store unlock --force', or unlock(force=True), releases the store" in said["unlock"]
    assert "(--jobs 0, or jobs=0)" in said["worker"]
    assert "`store index drop`, or drop_index(), removes an index" in said["index run"]
    for name, message in said.items():
        for both in BOTH_FORMS:
            message = message.replace(both, "")
        assert "--" not in message, (name, said[name])
    assert filled.unlock(force=True) is not None
