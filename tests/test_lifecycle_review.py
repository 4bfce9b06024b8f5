"""A store's life over many runs, as a user lives it: imports, re-imports of changed
files, migrations, restores and exports, with the registry changing between runs (a
version added, a registry older than the store's records)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from recordstore import RecordStoreError, Registry, RestoreConflictError, Store

LOG = "notes/log.jsonl"


def registry(version: int) -> Registry:
    """The ``note`` domain at ``version``, each step adding a field (``v2``, ``v3``...)."""
    reg = Registry()
    note = reg.domain("note", version=version, files=["notes/*.json", "notes/*.jsonl"])
    for n in range(1, version):

        def step(record: dict[str, object], n: int = n) -> None:
            record[f"v{n + 1}"] = True

        note.step(n)(step)
    return reg


def line(version: int, body: str) -> str:
    return json.dumps({"schema_version": version, "body": body}, separators=(",", ":")) + "\n"


@pytest.mark.parametrize("jobs", [0, 2])
@pytest.mark.parametrize("migrated", [False, True])
def test_an_import_by_a_registry_older_than_the_records_leaves_them_alone(tmp_path: Path, jobs: int, migrated: bool) -> None:
    """Records the store took at version 3 (imported so, or migrated since) are still in
    the file as the store took them; the application appends a line, and an import runs
    with a registry that knows version 2 only (an older checkout, the wrong
    STORE_REGISTRY). The appended line goes in; the records the file still holds, newer
    than that registry, are reported and never touched: they were removed and their
    lines kept as refused texts, so `status` and queries lost them until an import by
    the right registry made them new records."""
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    log = home / LOG
    log.write_text(line(3, "a") + line(3, "b"))
    db = tmp_path / "store.db"
    newest = 4 if migrated else 3
    with Store(db, registry=registry(newest)) as store:
        store.import_paths([home], jobs=0)
        if migrated:
            assert store.migrate(jobs=0).migrated == 2
        held = {r.key: r.text for r in store.query("note")}
    with log.open("a") as f:
        f.write(line(1, "c"))
    with Store(db, registry=registry(2)) as store:
        result = store.import_paths([home], jobs=jobs)
        counts = result.counts("note")
        # The records the file still holds are no import's to change: nothing removed.
        assert (counts.imported, counts.removed, counts.updated) == (1, 0, 0)
        # Reported as before: the file holds records newer than the registry.
        assert counts.rejected == 2
        assert [p.line for p in result.problems] == [1, 2]
        after = {r.key: r.text for r in store.query("note")}
        assert {k: after[k] for k in held} == held
        status = store.status().domains["note"]
        assert (status.total, status.newer, status.refused) == (3, 2, 0)
    with Store(db, registry=registry(newest)) as store:
        counts = store.import_paths([home], jobs=0).counts("note")
        assert (counts.imported, counts.removed, counts.updated, counts.unchanged) == (0, 0, 0, 3)
        assert {r.key: r.text for r in store.query("note")} == after
        assert store.check().ok


def test_an_import_that_only_added_records_is_undone_after_a_prune_of_other_runs(tmp_path: Path) -> None:
    """A prune deletes the backups of the runs before it; an import that only added
    records wrote none, and is undone by removing them, prune or not. It was refused as
    if the prune had deleted its backups ("nothing to restore: run 3 has no backups"),
    so the records it added could not be taken out again."""
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / LOG).write_text(line(1, "a"))
    with Store(tmp_path / "store.db", registry=registry(2)) as store:
        store.import_paths([home], jobs=0)
        store.migrate(jobs=0)
        (home / "notes" / "b.json").write_text(line(2, "b"))
        added = store.import_paths([home], jobs=0).run_id
        assert store.prune_backups(added + 1) == 1  # the migration's backup
        done = store.restore(run=added)
        assert done.removed == {"note": 1}
        assert [r.key for r in store.query("note")] == [f"{LOG}:1"]
        # A run whose backups the prune did delete is still refused, saying so.
        with pytest.raises(RecordStoreError, match=r"^nothing to restore: run 2 has no backups \(prune run 4 deleted"):
            store.restore(run=2)


def element(body: str) -> dict[str, object]:
    return {"schema_version": 1, "body": body}


def test_a_restore_never_leaves_an_array_s_records_after_an_empty_place(tmp_path: Path) -> None:
    """An array file imported with two records, then with a third the application
    appended. Restoring the first import removed the two records it added and kept the
    third, at ``[2]``: export wrote it as the array's only element, at ``[0]``, and the
    next import took it for another record. So did restoring a removed ``[2]`` by its key
    while ``[1]`` was gone too. Each is refused, saying what to restore first, and that
    order gives a store whose export is the file."""
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    arr = home / "notes" / "arr.json"
    arr.write_text(json.dumps([element("A"), element("B")]))
    with Store(tmp_path / "store.db", registry=registry(2)) as store:
        first = store.import_paths([home], jobs=0).run_id
        arr.write_text(json.dumps([element("A"), element("B"), element("C")]))
        second = store.import_paths([home], jobs=0).run_id
        for force in (False, True):  # a gap is no place another record holds: --force does not help
            with pytest.raises(RestoreConflictError, match=r"\(note notes/arr.json\[2\]\); restore first the later runs"):
                store.restore(run=first, force=force)
        assert [r.key for r in store.query("note")] == [f"notes/arr.json[{i}]" for i in range(3)]
        store.restore(run=second)
        store.restore(run=first)  # newest first: the store holds none of the file
        assert store.query("note").count() == 0

        arr.write_text(json.dumps([element("A"), element("B"), element("C")]))
        store.import_paths([home], jobs=0)
        arr.write_text(json.dumps([element("A")]))
        assert store.import_paths([home], jobs=0).counts("note").removed == 2
        with pytest.raises(RestoreConflictError, match=r"put back the records before them \(by domain and key\)"):
            store.restore(domain="note", key="notes/arr.json[2]")
        store.restore(domain="note", key="notes/arr.json[1]")
        store.restore(domain="note", key="notes/arr.json[2]")
        out = tmp_path / "out"
        store.export_to(out)
        exported = json.loads((out / "notes" / "arr.json").read_text())
        assert exported == [r.data for r in store.query("note")] == [element(b) for b in "ABC"]


def killing_registry() -> Registry:
    """``note`` at version 2, whose step kills the process it runs in on one record (as
    the kernel does a step that takes all the memory there is on it)."""
    reg = Registry()
    note = reg.domain("note", version=2, files=["notes/*.jsonl"])
    tests = os.getpid()

    @note.step(1)
    def step(record: dict[str, object]) -> None:
        if record["body"] == "huge" and os.getpid() != tests:  # (never the tests' own process)
            os.kill(os.getpid(), signal.SIGKILL)
        record["text"] = record.pop("body")

    return reg


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ({"dry_run": True}, r"nothing was written \(a dry run writes nothing\): run the dry run again, or with no workers"),
        ({"atomic": True}, r"nothing was changed \(an atomic migration is rolled back whole\): run the migrate again, or"),
    ],
)
def test_a_worker_killed_in_a_run_that_commits_nothing_does_not_say_batches_are_kept(
    tmp_path: Path, how: dict[str, bool], said: str
) -> None:
    """A worker killed in a dry run or an atomic migration was reported as "every batch
    committed so far is kept: run the migrate again to go on", though neither commits a
    batch: the user was told part of the work was done when none was."""
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / LOG).write_text("".join(line(1, b) for b in ["a", "b", "huge", "c"]))
    with Store(tmp_path / "store.db", registry=killing_registry()) as store:
        store.import_paths([home], jobs=0)
        with pytest.raises(RecordStoreError, match=f"a worker process of the migrate died \\(killed, or out of memory\\?\\); {said}"):
            store.migrate(jobs=2, **how)
        assert store.status().domains["note"].versions == {1: 4}


def _one_record_file(tmp_path: Path) -> tuple[Path, Path]:
    """A home, and its ``notes/f.json`` holding one record (``A``)."""
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    f = home / "notes" / "f.json"
    f.write_text(json.dumps(element("A")))
    return home, f


def test_restoring_the_import_that_made_a_one_record_file_an_array_keeps_its_export_json(tmp_path: Path) -> None:
    """A one-record file the application rewrote as an array, then grew by an element,
    each imported. Restoring the import that made it an array put its record and its
    layout back and kept the element the later import added, at ``[1]``: export wrote
    the record and the element one after the other, which is no JSON (over the home,
    the application's file became unreadable), and `store check` said all was well.
    Refused, saying to restore the later run first, which works."""
    home, f = _one_record_file(tmp_path)
    with Store(tmp_path / "store.db", registry=registry(2)) as store:
        store.import_paths([home], jobs=0)
        f.write_text(json.dumps([element("X")]))
        became_array = store.import_paths([home], jobs=0).run_id
        f.write_text(json.dumps([element("X"), element("Y")]))
        grew = store.import_paths([home], jobs=0).run_id
        with pytest.raises(RestoreConflictError, match=r"or not as JSON \(note notes/f.json\[1\]\); restore first the later runs"):
            store.restore(run=became_array)
        store.restore(run=grew)
        store.restore(run=became_array)
        out = tmp_path / "out"
        store.export_to(out)
        assert json.loads((out / "notes" / "f.json").read_text()) == element("A")
        assert [(r.key, r.data) for r in store.query("note")] == [("notes/f.json", element("A"))]


def test_a_one_record_file_s_record_does_not_go_back_by_its_key_into_what_is_an_array_now(tmp_path: Path) -> None:
    """A one-record file the application rewrote as an array, imported. Restoring its
    record by domain and key (or the whole domain) put the one-record file's row back in
    the array's first place: `query` showed ``notes/f.json`` while export wrote it as
    ``notes/f.json[0]``, and the next import took it for another record. Refused, saying
    to restore the import by run, which puts the file's layout back with it."""
    home, f = _one_record_file(tmp_path)
    with Store(tmp_path / "store.db", registry=registry(2)) as store:
        store.import_paths([home], jobs=0)
        f.write_text(json.dumps([element("X"), element("Y")]))
        became_array = store.import_paths([home], jobs=0).run_id
        # By its key, the place is first seen to hold another record (the array's first
        # element), which --force would back up; forced, the key is still refused.
        with pytest.raises(RestoreConflictError, match=r"now holds another record or a refused text \(note notes/f.json\)"):
            store.restore(domain="note", key="notes/f.json")
        for how in ({"key": "notes/f.json", "force": True}, {}):
            with pytest.raises(RestoreConflictError, match=r"\(note notes/f.json\); restore by run the import that gave"):
                store.restore(domain="note", **how)
        assert [r.key for r in store.query("note")] == ["notes/f.json[0]", "notes/f.json[1]"]
        store.restore(run=became_array)
        store.export_to(tmp_path / "out")
        assert json.loads((tmp_path / "out" / "notes" / "f.json").read_text()) == element("A")
        assert [r.key for r in store.query("note")] == ["notes/f.json"]
