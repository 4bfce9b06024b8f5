"""Memory stays bounded however many records fail or conflict: a migration's result
holds its first failures and counts them all (the run's are all in the store), and a
refused restore's error names its first conflicting records and counts them all. Shown
by tracemalloc, never by time: the machine is shared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import stamping_registry, traced_peak

from recordstore import Registry, RestoreConflictError, Store, exporter, importer, migrator

#: Failing records: enough that holding one object each (~1.8 kB) is far over the bound.
MANY = 20_000


def _registry() -> Registry:
    registry = Registry()
    note = registry.domain("note", version=2, files=["notes/*.jsonl"])

    @note.step(1)
    def needs_status(record: dict[str, Any]) -> None:
        if record["i"] % 2 == 0 or record["i"] >= 10:  # every record but five fails
            raise KeyError("status")
        record["done"] = True

    return registry


def _notes(home: Path, n: int) -> Path:
    (home / "notes").mkdir(parents=True, exist_ok=True)
    (home / "notes" / "n.jsonl").write_text("".join(json.dumps({"schema_version": 1, "i": i}) + "\n" for i in range(n)))
    return home


#: The keys of the failing records, in order: line i + 1 holds record i.
FAILING = [f"notes/n.jsonl:{i + 1}" for i in range(MANY) if i % 2 == 0 or i >= 10]


@pytest.mark.parametrize("mode", ["batched", "workers", "dry_run", "atomic"])
def test_a_migration_failing_for_many_records_holds_its_first_failures_and_counts_all(tmp_path: Path, mode: str) -> None:
    """A step failing for every record held a MigrationError each in the result (100,000
    records: ~180 MB; --atomic ~250 MB), in the dry run too. The result keeps the first
    FAILURES_KEPT, in order, and counts every one; a run records every one in the store."""
    with Store(tmp_path / "s.db", registry=_registry()) as store:
        assert store.import_paths(_notes(tmp_path / "home", MANY), jobs=0).ok
        options = {"dry_run": mode == "dry_run", "atomic": mode == "atomic"}
        jobs = 1 if mode == "workers" else 0  # a worker process steps the batches, this one writes them
        result, peak = traced_peak(lambda: store.migrate(jobs=jobs, **options))
        assert result.failure_count == len(FAILING) and not result.ok
        assert [f.key for f in result.failures] == FAILING[:migrator.FAILURES_KEPT]
        assert result.failures_not_kept == len(FAILING) - migrator.FAILURES_KEPT
        assert result.migrated == (0 if mode == "atomic" else 5) and result.rolled_back == (mode == "atomic")
        summary = result.as_dict()
        assert summary["failure_count"] == len(FAILING) and len(summary["failures"]) == migrator.FAILURES_KEPT
        if mode == "dry_run":
            assert result.run_id is None
        else:
            assert result.run_id is not None
            [run] = store.history(result.run_id, failure_limit=0)
            assert run.failure_count == len(FAILING) and run.counts["failures"] == len(FAILING)
            assert run.outcome == ("rolled-back" if mode == "atomic" else "partial")
            assert [f["key"] for f in store.failures(result.run_id)] == FAILING
    # A batch of 2,000 failures and what SQLAlchemy caches: ~4.5 MB; a failure held
    # each was ~0.9 kB traced (~1.8 kB of RSS): 18 MB here, 39 MB with --atomic.
    assert peak < 10_000_000, f"{peak / 1e6:.1f} MB held for {len(FAILING)} failures"


def test_cli_migrate_prints_the_first_failures_the_total_and_where_to_see_them_all(tmp_path: Path) -> None:
    """``store migrate`` printed a line per failure (100,000 lines) and held them all; it
    prints the first ones, then how many more and the command that lists every one."""
    from conftest import Cli

    registry = tmp_path / "failing.py"
    registry.write_text(
        "from recordstore import Registry\n"
        "registry = Registry()\n"
        "note = registry.domain('note', version=2, files=['notes/*.jsonl'])\n"
        "@note.step(1)\n"
        "def needs_status(record):\n"
        "    raise KeyError('status')\n"
    )
    n = migrator.FAILURES_KEPT + 50
    cli = Cli(tmp_path / "s.db")
    assert cli("import", _notes(tmp_path / "home", n), registry=str(registry)).exit_code == 0  # type: ignore[attr-defined]
    dry: Any = cli("migrate", "--dry-run", registry=str(registry))
    assert dry.exit_code == 1
    lines = dry.stderr.splitlines()
    assert len([line for line in lines if line.startswith("store: failed: ")]) == migrator.FAILURES_KEPT
    assert "store: ... and 50 more failed; a dry run records none" in lines[-1]
    assert f"would migrate 0 record(s), {n} failed" in dry.stdout
    done: Any = cli("migrate", registry=str(registry))
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == "store: ... and 50 more failed; store history 2 lists every one"
    assert f"migrated 0 record(s), {n} failed; run 2" in done.stdout
    shown: Any = cli("history", "2")
    assert shown.stdout.count("KeyError: 'status'") == n
    as_json: Any = cli("migrate", "--dry-run", "--json", registry=str(registry))
    summary = json.loads(as_json.stdout)
    assert summary["failure_count"] == n and len(summary["failures"]) == migrator.FAILURES_KEPT


def _refusal(store: Store, run: int) -> RestoreConflictError:
    try:
        store.restore(run=run)
    except RestoreConflictError as conflict:
        return conflict
    raise AssertionError(f"the restore of run {run} was not refused")


@pytest.mark.parametrize("later", ["changed", "removed"])
def test_a_refused_restore_names_its_first_conflicts_and_counts_them_all(tmp_path: Path, later: str) -> None:
    """A restore refused over records a later run changed (or removed) held the domain
    and key of each in its error (a run of 1,000,000 records: a tuple of two strings a
    record, ~200 MB). The error keeps the first CONFLICT_KEYS_KEPT and counts them all."""
    home = _notes(tmp_path / "home", MANY)
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        run = store.import_paths(home, jobs=0).run_id
        migrated = store.migrate(jobs=0)
        assert migrated.migrated == MANY
        what = "were changed again by a later run"
        if later == "removed":
            # The application rewrote every line at a version the registry does not know:
            # the import removes each record (its text kept), and restoring the migration
            # would put them back over the newer lines.
            (home / "notes" / "n.jsonl").write_text("".join(json.dumps({"schema_version": 3, "i": i}) + "\n" for i in range(MANY)))
            assert store.import_paths(home, jobs=0).problem_count == MANY
            run, what = migrated.run_id, "were removed by a later run (their file no longer holds them)"
        assert run is not None
        conflict, peak = traced_peak(lambda: _refusal(store, run))
        assert conflict.count == MANY
        assert conflict.keys == [("note", f"notes/n.jsonl:{i + 1}") for i in range(migrator.CONFLICT_KEYS_KEPT)]
        shown = "note notes/n.jsonl:1, note notes/n.jsonl:2, note notes/n.jsonl:3"
        assert f"{MANY} record(s) {what} ({shown} and {MANY - 3} more)" in str(conflict)
    # Pages of 500 records and what SQLAlchemy caches: ~1.3 MB; a key held each, 4.5 MB.
    assert peak < 3_000_000, f"{peak / 1e6:.1f} MB held for {MANY} conflicts"


def test_the_readme_says_how_many_failures_and_conflicts_are_held() -> None:
    from conftest import ROOT

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"holds the first {migrator.FAILURES_KEPT} failures of its run" in readme
    assert f"names the first {migrator.CONFLICT_KEYS_KEPT} records it conflicts over" in readme
    assert f"holds the first {importer.PROBLEMS_KEPT} `problems` and counts them all" in readme
    assert f"`ExportResult` holds the first {importer.PROBLEMS_KEPT} files it could not write" in readme


def _bad_lines(home: Path, files: int, per_file: int) -> Path:
    """``files`` JSON-lines files of ``per_file`` lines each, every other line broken (a
    trailing comma), the others good."""
    (home / "notes").mkdir(parents=True, exist_ok=True)
    for f in range(files):
        lines = [f'{{"schema_version":1,"i":{i}{"," if i % 2 else ""}}}' for i in range(per_file)]
        (home / "notes" / f"n{f:03}.jsonl").write_text("\n".join(lines) + "\n")
    return home


@pytest.mark.parametrize("shape", ["one_large_file", "many_small_files", "many_small_files_in_workers"])
def test_an_import_of_many_bad_lines_holds_its_first_problems_and_counts_all(tmp_path: Path, shape: str) -> None:
    """An import held an InputError for every bad line, in its result and, while a file
    was read, in the file's parse (100,000 bad lines: 80 MB traced, 164 MB peak RSS). It
    keeps the first PROBLEMS_KEPT, counts every one, and records every one in the store;
    the good lines all go in."""
    files, per_file = (1, 2 * MANY) if shape == "one_large_file" else (100, 2 * MANY // 100)
    home = _bad_lines(tmp_path / "home", files, per_file)
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        jobs = 2 if shape.endswith("_in_workers") else 0
        result, peak = traced_peak(lambda: store.import_paths(home, jobs=jobs))
        assert not result.ok and result.problem_count == MANY
        assert len(result.problems) == importer.PROBLEMS_KEPT
        assert [(p.path, p.line) for p in result.problems[:2]] == [("notes/n000.jsonl", 2), ("notes/n000.jsonl", 4)]
        assert result.counts("note").failed == MANY and result.counts("note").imported == MANY
        assert result.as_dict()["problem_count"] == MANY and len(result.as_dict()["problems"]) == importer.PROBLEMS_KEPT
        assert store.query("note").count() == MANY
        recorded = list(store.failures(result.run_id))
        assert len(recorded) == MANY and all(f["reason"].startswith("invalid JSON") for f in recorded[:3]), recorded[:3]
        assert store.history(result.run_id, failure_limit=0)[0].counts["problems"] == MANY
    assert peak < 10 * 1024 * 1024, peak  # (the old code: 14 MB for the small files, 19 MB for the large one)


def test_cli_import_prints_the_first_problems_the_total_and_where_to_see_them_all(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recordstore.cli import app

    home = _bad_lines(tmp_path / "home", 1, 1000)  # 500 bad lines
    got = CliRunner().invoke(app, ["--db", str(tmp_path / "s.db"), "import", "--domain", "runtime", str(home / "notes" / "n000.jsonl")])
    assert got.exit_code == 1, got.output
    lines = got.stderr.splitlines()
    assert len(lines) == importer.PROBLEMS_KEPT + 1, lines[-3:]
    assert lines[0].startswith("store: n000.jsonl:2: invalid JSON"), lines[0]
    assert lines[-1] == "store: ... and 300 more problem(s); store history 1 lists every one"


def test_a_small_file_of_many_short_bad_lines_is_streamed_not_held(tmp_path: Path) -> None:
    """A file small enough to be parsed whole (under 1 MB) can hold hundreds of thousands
    of short lines: all broken, the parse held an error and a refused line for each (one
    1 MB file of `x` lines: 522 MB peak RSS). Such a file is streamed as a large one is;
    every line is still refused, counted, recorded and kept."""
    n = 60_000
    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "notes" / "x.jsonl").write_text("x\n" * n)
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        result, peak = traced_peak(lambda: store.import_paths(tmp_path / "home", jobs=0))
        assert result.problem_count == n == result.counts("note").failed
        assert str(result.problems[-1]) == "notes/x.jsonl:200: invalid JSON: Expecting value at column 1"
        assert store.status().domains["note"].refused == n
        assert store.history(result.run_id, failure_limit=0)[0].failure_count == n
        store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / "notes" / "x.jsonl").read_bytes() == b"x\n" * n
    assert peak < 10 * 1024 * 1024, peak  # (the old code: 56 MB)


@pytest.mark.parametrize("jobs", [0, 2])
def test_a_small_file_of_very_many_short_records_is_streamed_not_held(tmp_path: Path, jobs: int) -> None:
    """A file under 1 MB was parsed whole as one task: 300,000 lines of `{}` (a valid
    record each) held 1.2 GB of traced memory, a tuple of objects for each record. Such a
    file is streamed in batches; every record goes in, in its place, and comes back out."""
    n = 300_000
    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "notes" / "x.jsonl").write_bytes(b"{}\n" * n)
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        result, peak = traced_peak(lambda: store.import_paths(tmp_path / "home", jobs=jobs))
        assert result.ok and result.counts("note").imported == n
        last = store.get("note", f"notes/x.jsonl:{n}")
        assert last is not None and last.data == {} and last.version == 1
        store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / "notes" / "x.jsonl").read_bytes() == b"{}\n" * n
    assert peak < 16 * 1024 * 1024, peak


def test_workers_hand_back_a_bounded_share_of_problems_for_a_home_of_broken_files(tmp_path: Path) -> None:
    """Workers handed back the problems of a whole chunk of files at once (thousands of
    files): a home of 3,000 files of 90 broken lines each took 406 MB. Past
    CHUNK_MAX_PROBLEMS, a chunk's other files come back for the importer to read
    itself; every problem is still counted and recorded, every good line imported."""
    events = tmp_path / "home" / "notes"
    events.mkdir(parents=True)
    files, bad = 1200, 60
    for f in range(files):
        lines = [f'{{"schema_version":1,"f":{f},"i":{i}{"," if i < bad else ""}}}' for i in range(bad + 1)]
        (events / f"n{f:04}.jsonl").write_text("\n".join(lines) + "\n")
    with Store(tmp_path / "s.db", registry=stamping_registry()) as store:
        result, peak = traced_peak(lambda: store.import_paths(tmp_path / "home", jobs=2))
        assert result.problem_count == files * bad and result.counts("note").imported == files
        assert [(p.path, p.line) for p in result.problems[:2]] == [("notes/n0000.jsonl", 1), ("notes/n0000.jsonl", 2)]
        assert store.history(result.run_id, failure_limit=0)[0].failure_count == files * bad
        assert sorted(r.data["f"] for r in store.query("note")) == list(range(files))
    assert peak < 16 * 1024 * 1024, peak


def _exported_then_changed(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """A store of ``n`` one-line files, exported to OUT, every file of OUT then changed,
    and the last one's name taken by a directory: exported again without --force, all
    ``n`` are refused, for two reasons."""
    home = tmp_path / "home" / "notes"
    home.mkdir(parents=True)
    for i in range(n):
        (home / f"n{i:05}.jsonl").write_text(json.dumps({"schema_version": 2, "i": i}) + "\n")
    db, out = tmp_path / "s.db", tmp_path / "out"
    with Store(db, registry=stamping_registry()) as store:
        store.import_paths(home.parent)
        assert store.export_to(out).files == n
    for i in range(n - 1):
        (out / "notes" / f"n{i:05}.jsonl").write_text("changed since\n")
    (out / "notes" / f"n{n - 1:05}.jsonl").unlink()
    (out / "notes" / f"n{n - 1:05}.jsonl").mkdir()
    return db, out


def test_an_export_refusing_many_files_holds_its_first_problems_and_counts_each_reason(tmp_path: Path) -> None:
    """An export over the home without --force refuses every file that differs, and held
    an error for each (38,347 of them: 104 MB peak RSS against 73 MB for the export
    itself). It keeps the first PROBLEMS_KEPT, and counts them all and each reason."""
    n = importer.PROBLEMS_KEPT + 300
    db, out = _exported_then_changed(tmp_path, n)
    with Store(db, registry=stamping_registry()) as store:
        result = store.export_to(out)
    assert not result.ok and result.files == 0
    assert result.problem_count == n and len(result.problems) == importer.PROBLEMS_KEPT
    assert result.problems[0].path == "notes/n00000.jsonl", result.problems[0]
    directory = f"refused: {out / 'notes' / f'n{n - 1:05}.jsonl'} exists and is a directory"
    assert result.reasons == {exporter.EXISTS: n - 1, directory: 1}
    shown = result.as_dict()
    assert (shown["problem_count"], len(shown["problems"]), shown["reasons"]) == (n, importer.PROBLEMS_KEPT, result.reasons)


def test_cli_export_counts_every_reason_even_past_the_problems_it_holds(tmp_path: Path) -> None:
    """The CLI prints ten files of one same reason, then counts the rest of that reason
    among all of them, not among the ones the result holds; a reason met only past
    those still gets its line."""
    from typer.testing import CliRunner

    from recordstore.cli import ALIKE_SHOWN, app

    n = importer.PROBLEMS_KEPT + 300
    db, out = _exported_then_changed(tmp_path, n)
    registry = tmp_path / "registry.py"
    registry.write_text("from conftest import stamping_registry\nregistry = stamping_registry()\n")
    got = CliRunner().invoke(app, ["--db", str(db), "--registry", str(registry), "export", str(out)])
    assert got.exit_code == 1, got.output
    lines = got.stderr.splitlines()
    assert len(lines) == ALIKE_SHOWN + 2, lines
    assert lines[0] == f"store: notes/n00000.jsonl: {exporter.EXISTS}"
    assert lines[ALIKE_SHOWN] == f"store: ... and {n - 1 - ALIKE_SHOWN} more file(s): {exporter.EXISTS}"
    assert lines[-1] == f"store: ... and 1 more file(s): refused: {out / 'notes' / f'n{n - 1:05}.jsonl'} exists and is a directory"
