"""Records an import refuses keep their text in their slot, and export writes it back.

Exporting over the home (``--force``) is how a user puts migrated records back where
their application reads them; a record the store could not take (written by a newer
application, or broken) must survive that, in its place, as its file held it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import crashkit as ck
from conftest import Cli, tree
from recordstore import Registry, RestoreConflictError, Store, parsing

EVENTS = "tasks/runtime/events"
TASKS = "tasks/tasks"


def line(seq: int, version: int = 2) -> bytes:
    return json.dumps({"schema_version": version, "seq": seq, "event": "x"}, separators=(",", ":")).encode()


def task(ident: str, version: int) -> bytes:
    return json.dumps({"schema_version": version, "id": ident, "prompt": "p", "status": "queued"}, indent=2).encode()


def slots(store: Store) -> dict[str, list[tuple[int, str]]]:
    """What the store holds of each file, slot by slot: ("record" or "refused", key)."""
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT f.path, r.position, 'record', r.key FROM records r JOIN files f ON f.id = r.file_id "
            "UNION ALL SELECT f.path, x.position, 'refused', x.key FROM refused x JOIN files f ON f.id = x.file_id "
            "ORDER BY 1, 2"
        ).all()
    found: dict[str, list[tuple[int, str]]] = {}
    for path, position, kind, key in rows:
        found.setdefault(path, []).append((position, f"{kind} {key}"))
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home whose files each hold a refused record between good ones: a line newer than
    the registry, a line cut short, a line that is not UTF-8, an array element newer
    than the registry, and a task file written by a newer application."""
    root = tmp_path / "home"
    (root / EVENTS).mkdir(parents=True)
    (root / TASKS).mkdir(parents=True)
    (root / EVENTS / "thr_a.jsonl").write_bytes(
        b"\n".join([line(1, version=1), line(2, version=9), b'{"schema_version":1,"seq":3', b"\xff\xfe{}", line(5, 1)])
        + b"\n"
    )
    (root / TASKS / "tasks.json").write_bytes(b"[\n" + b",\n".join([task("a", 1), task("b", 7), task("c", 2)]) + b"\n]\n")
    (root / TASKS / "task_newer.json").write_bytes(task("newer", 3))
    return root


@pytest.mark.parametrize("jobs", [0, 2], ids=["in-process", "workers"])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_refused_records_come_back_in_their_places_after_a_migration(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int, streamed: bool
) -> None:
    if streamed:  # JSON-lines files read as a stream, by the importing process
        monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 0)
    source = tree(home)
    imported = store.import_paths([home], jobs=jobs)
    assert imported.domains["runtime"].imported == 2 and imported.domains["task"].imported == 2
    assert len(imported.problems) == 5
    assert slots(store)[f"{EVENTS}/thr_a.jsonl"] == [
        (0, f"record {EVENTS}/thr_a.jsonl:1"),
        (1, f"refused {EVENTS}/thr_a.jsonl:2"),
        (2, f"refused {EVENTS}/thr_a.jsonl:3"),
        (3, f"refused {EVENTS}/thr_a.jsonl:4"),
        (4, f"record {EVENTS}/thr_a.jsonl:5"),
    ]
    assert {name: d.refused for name, d in store.status().domains.items() if d.refused} == {"runtime": 3, "task": 2}
    # Unmigrated, every file comes back byte for byte.
    exported = store.export_to(tmp_path / "before")
    assert exported.ok and (exported.records, exported.refused) == (4, 5)
    assert tree(tmp_path / "before") == source

    assert store.migrate().migrated == 3
    store.export_to(home, overwrite=True)
    after = tree(home)
    events = after[f"{EVENTS}/thr_a.jsonl"].split(b"\n")
    assert [json.loads(events[i])["schema_version"] for i in (0, 4)] == [2, 2]  # migrated
    assert events[1:4] == [line(2, version=9), b'{"schema_version":1,"seq":3', b"\xff\xfe{}"]  # as they were
    elements = json.loads(after[f"{TASKS}/tasks.json"])
    assert [(e["id"], e["schema_version"]) for e in elements] == [("a", 2), ("b", 7), ("c", 2)]
    assert after[f"{TASKS}/task_newer.json"] == task("newer", 3)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_slot_a_changed_file_now_refuses_gives_up_its_record_with_a_backup(
    store: Store, db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """The file is what the application wrote last: a record it rewrote at a newer
    version is exported as the file has it, not as the store had it before; the store's
    record is backed up and can be restored."""
    if streamed:
        monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 0)
    home = tmp_path / "home"
    (home / EVENTS).mkdir(parents=True)
    log = home / EVENTS / "thr_b.jsonl"
    log.write_bytes(b"\n".join([line(1), line(2), line(3)]) + b"\n")
    store.import_paths([home])

    log.write_bytes(b"\n".join([line(1), line(2, version=9), line(3)]) + b"\n")
    again = store.import_paths([home])
    counts = again.domains["runtime"]
    assert (counts.unchanged, counts.removed, counts.rejected, counts.updated) == (2, 1, 1, 0)
    assert store.get("runtime", f"{EVENTS}/thr_b.jsonl:2") is None
    with store.engine.connect() as conn:
        backed_up = conn.exec_driver_sql("SELECT key, payload, reason FROM backups").all()
    assert [tuple(b) for b in backed_up] == [(f"{EVENTS}/thr_b.jsonl:2", line(2).decode(), "remove")]
    store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / EVENTS / "thr_b.jsonl").read_bytes() == log.read_bytes()

    # Restoring that import would drop the text the file holds there (export would then
    # write the record over the application's newer line): a conflict, unless forced.
    with pytest.raises(RestoreConflictError, match=r"refused text .*pass --force, or force=True, to restore them anyway") as conflict:
        store.restore(run=again.run_id)
    assert conflict.value.keys == [("runtime", f"{EVENTS}/thr_b.jsonl:2")]
    assert refused_of(db_path) == {(f"{EVENTS}/thr_b.jsonl", 1, f"{EVENTS}/thr_b.jsonl:2", line(2, version=9))}
    store.restore(run=again.run_id, force=True)
    assert slots(store)[f"{EVENTS}/thr_b.jsonl"] == [(i, f"record {EVENTS}/thr_b.jsonl:{i + 1}") for i in range(3)]
    store.export_to(tmp_path / "restored")
    assert (tmp_path / "restored" / EVENTS / "thr_b.jsonl").read_bytes() == b"\n".join([line(1), line(2), line(3)]) + b"\n"

    # Once the application writes the line at a version the store knows, it is a
    # record again, and nothing refused is left of it.
    log.write_bytes(b"\n".join([line(1), line(2, version=1), line(3), line(4, version=8)]) + b"\n")
    mended = store.import_paths([home]).domains["runtime"]
    assert (mended.updated, mended.rejected) == (1, 1)
    assert slots(store)[f"{EVENTS}/thr_b.jsonl"][1:] == [
        (1, f"record {EVENTS}/thr_b.jsonl:2"),
        (2, f"record {EVENTS}/thr_b.jsonl:3"),
        (3, f"refused {EVENTS}/thr_b.jsonl:4"),
    ]
    # And a file cut back drops the refused texts past its new end with its records.
    log.write_bytes(line(1) + b"\n")
    store.import_paths([home])
    assert slots(store)[f"{EVENTS}/thr_b.jsonl"] == [(0, f"record {EVENTS}/thr_b.jsonl:1")]
    assert store.integrity_problems() == []


def test_a_huge_file_of_refused_lines_is_kept_in_batches(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused texts are written batch by batch, as records are: a streamed file of
    nothing but refused lines goes in whole and comes back whole."""
    monkeypatch.setattr(parsing, "STREAM_THRESHOLD", 0)
    monkeypatch.setattr(parsing, "BATCH_RECORDS", 1000)
    home = tmp_path / "home"
    (home / EVENTS).mkdir(parents=True)
    data = b"".join(b'{"schema_version":9,"seq":%d}\n' % i if i % 2 else b"{broken %d\n" % i for i in range(20_000))
    (home / EVENTS / "thr_c.jsonl").write_bytes(data)
    result = store.import_paths([home])
    assert result.domains["runtime"].rejected == 10_000 and result.domains["runtime"].failed == 10_000
    exported = store.export_to(tmp_path / "out")
    assert (exported.records, exported.refused) == (0, 20_000)
    assert (tmp_path / "out" / EVENTS / "thr_c.jsonl").read_bytes() == data


def test_the_cli_says_what_it_keeps_and_writes_back(cli: Cli, home: Path, tmp_path: Path) -> None:
    imported: Any = cli("import", home)
    assert imported.exit_code == 1  # something was refused
    status: Any = cli("status", "--json")
    assert {n: d["refused"] for n, d in json.loads(status.stdout)["domains"].items() if d["refused"]} == {
        "runtime": 3,
        "task": 2,
    }
    shown: Any = cli("status")
    assert "refused" in shown.stdout and "kept as their files held them" in shown.stdout
    exported: Any = cli("export", tmp_path / "out")
    assert exported.exit_code == 0
    assert "wrote 4 record(s) in 3 file(s)" in exported.stdout
    assert "(and 5 refused record(s), as their files held them)" in exported.stdout
    assert tree(tmp_path / "out") == tree(home)


def refused_of(db: Path) -> set[tuple[str, int, str, bytes]]:
    """Every refused text the store keeps: (file path, slot, key, text)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT f.path, x.position, x.key, x.text FROM refused x JOIN files f ON f.id = x.file_id").fetchall()
    return set(rows)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("nth", [1, 7, 20])
def test_an_import_killed_mid_way_keeps_what_it_committed_and_the_rerun_keeps_the_rest(
    tmp_path: Path, nth: int, streamed: bool
) -> None:
    """Refused texts go in with their file's records, in the same transactions: after a
    SIGKILL between batches, those of a file read whole are all there or none (a
    streamed file commits batch by batch), and the rerun ends with exactly what an
    import never stopped would keep."""
    home = ck.make_home(tmp_path / "home", notes=80, logs=8, lines=40, lists=4, items=12)
    for log in sorted((home / "logs").glob("*.jsonl")):
        lines = log.read_bytes().splitlines()
        lines[6], lines[13] = b'{"schema_version":9,"ts":1}', b'{"broken'
        log.write_bytes(b"\n".join(lines) + b"\n")
    registry = ck.write_registry(tmp_path / "registry.py")
    reference = tmp_path / "reference.db"
    assert ck.run_store(reference, registry, "import", home).returncode == 1  # refused records reported
    assert len(refused_of(reference)) == 16

    db = tmp_path / "store.db"
    settings = {"CRASHKIT_SLEEP": "0", "CRASHKIT_IMPORT_BATCH": "10", **({"CRASHKIT_TASK_MAX_BYTES": "0"} if streamed else {})}
    killed = ck.run_store(
        db, registry, "import", "--jobs", "0", home, env=ck.child_env(CRASHKIT_CRASH=f"import-commit:{nth}", **settings)
    )
    assert killed.returncode == -9, killed.stderr
    kept, expected = refused_of(db), refused_of(reference)
    assert kept <= expected
    if not streamed:  # a file read whole goes in in one transaction (a streamed one, batch by batch)
        for path in {row[0] for row in kept}:
            assert {r for r in kept if r[0] == path} == {r for r in expected if r[0] == path}

    rerun = ck.run_store(db, registry, "import", home, env=ck.child_env(**settings))
    assert rerun.returncode == 1, rerun.stderr
    assert refused_of(db) == expected
    assert ck.records_of(db) == ck.records_of(reference)
    out = tmp_path / "out"
    assert ck.run_store(db, registry, "export", out).returncode == 0
    assert tree(out) == tree(home)


def test_check_reports_a_slot_that_holds_both_a_record_and_a_refused_text(store: Store, home: Path) -> None:
    """No writer leaves a slot with both; `store check` would say so if one did."""
    store.import_paths([home])
    assert store.check().ok
    with store.engine.begin() as conn:
        file_id, position = conn.exec_driver_sql("SELECT file_id, position FROM records LIMIT 1").one()
        conn.exec_driver_sql(
            "INSERT INTO refused (file_id, position, key, text) VALUES (?, ?, 'k', X'7b7d')", (file_id, position)
        )
    problems = store.check().problems
    assert len(problems) == 1 and problems[0].endswith(f": slot {position} holds both a record and a refused text")


def test_once_the_registry_knows_the_newer_version_an_import_makes_the_text_a_record(tmp_path: Path) -> None:
    def registry(version: int) -> Registry:
        reg = Registry()
        notes = reg.domain("note", version=version, files=["*.jsonl"])
        for n in range(1, version):
            notes.add_step(n, lambda record: None)
        return reg

    home = tmp_path / "home"
    home.mkdir()
    (home / "n.jsonl").write_bytes(b'{"schema_version":1,"n":1}\n{"schema_version":3,"n":2}\n')
    db = tmp_path / "s.db"
    with Store(db, registry=registry(2)) as store:
        assert store.import_paths([home]).domains["note"].rejected == 1
        assert store.status().domains["note"].refused == 1
    with Store(db, registry=registry(3)) as store:
        counts = store.import_paths([home]).domains["note"]
        assert (counts.imported, counts.unchanged, counts.rejected) == (1, 1, 0)
        assert store.status().domains["note"].refused == 0
        assert store.get("note", "n.jsonl:2").data == {"schema_version": 3, "n": 2}  # type: ignore[union-attr]
        assert store.check().ok


def record_ids(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT key, id FROM records").fetchall())


def removed_ids(db: Path) -> set[int]:
    """The ids of the records imports removed (backed up, then deleted)."""
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT record_id FROM backups WHERE reason = 'remove'")}


def test_a_new_record_never_takes_the_id_of_a_removed_one(store: Store, db_path: Path, tmp_path: Path) -> None:
    """A record's id is how its backups find it: a record removed (backed up) while it had
    the highest id must not lend that id to the next new one, in the same import or a
    later one; or a restore would overwrite the newcomer."""
    home = tmp_path / "home"
    (home / EVENTS).mkdir(parents=True)
    a, b = home / EVENTS / "a.jsonl", home / EVENTS / "b.jsonl"
    a.write_bytes(b"\n".join([line(1), line(2)]) + b"\n")
    store.import_paths([home])
    # In one import: a.jsonl:2, the highest id, removed; a.jsonl:3 new.
    a.write_bytes(b"\n".join([line(1), line(2, version=9), line(3)]) + b"\n")
    store.import_paths([home])
    # In two: a.jsonl:3, now the highest id, removed; then b.jsonl:1 new.
    a.write_bytes(b"\n".join([line(1), line(2, version=9), line(3, version=9)]) + b"\n")
    store.import_paths([home])
    b.write_bytes(line(4) + b"\n")
    store.import_paths([home])
    ids = record_ids(db_path)
    assert len(set(ids.values())) == len(ids) == 2
    assert len(removed_ids(db_path)) == 2 and not set(ids.values()) & removed_ids(db_path)
    assert store.check().ok


def test_a_restore_into_a_place_another_record_now_holds_is_a_conflict(store: Store, db_path: Path, tmp_path: Path) -> None:
    """The line was refused, then mended: its new record holds the place the old one
    would go back to. Restoring the old one is a conflict; forced, the new one is backed
    up in its turn, and restoring that restore brings it back."""
    home = tmp_path / "home"
    (home / EVENTS).mkdir(parents=True)
    log = home / EVENTS / "a.jsonl"
    log.write_bytes(b"\n".join([line(1), line(2)]) + b"\n")
    store.import_paths([home])
    log.write_bytes(b"\n".join([line(1), line(2, version=9)]) + b"\n")
    removed = store.import_paths([home]).run_id
    log.write_bytes(b"\n".join([line(1), line(20)]) + b"\n")
    store.import_paths([home])
    key = f"{EVENTS}/a.jsonl:2"
    with pytest.raises(RestoreConflictError, match="now holds another record") as conflict:
        store.restore(run=removed)
    assert conflict.value.keys == [("runtime", key)]
    with pytest.raises(RestoreConflictError, match="now holds another record"):
        store.restore(domain="runtime", key=key)
    forced = store.restore(run=removed, force=True)
    assert store.get("runtime", key).data["seq"] == 2  # type: ignore[union-attr]
    assert store.check().ok
    store.restore(run=forced.run_id, force=True)
    assert store.get("runtime", key).data["seq"] == 20  # type: ignore[union-attr]
    assert store.check().ok


@pytest.mark.parametrize("how", ["refused", "cut"])
def test_restoring_a_key_whose_place_held_two_removed_records_puts_back_the_latest(
    store: Store, tmp_path: Path, how: str
) -> None:
    """Line 2 held a record, lost it (refused, or the file cut short), held a new one and
    lost that too: `restore --domain --key` puts back the latest of them, once."""
    home = tmp_path / "home"
    (home / EVENTS).mkdir(parents=True)
    log = home / EVENTS / "a.jsonl"
    gone = (lambda seq: [line(1), line(seq, version=9)]) if how == "refused" else (lambda seq: [line(1)])
    for lines in ([line(1), line(2)], gone(2), [line(1), line(20)], gone(20)):
        log.write_bytes(b"\n".join(lines) + b"\n")
        store.import_paths([home])
    key = f"{EVENTS}/a.jsonl:2"
    restored = store.restore(domain="runtime", key=key, force=how == "refused")
    assert restored.total == 1
    assert store.get("runtime", key).data["seq"] == 20  # type: ignore[union-attr]
    assert store.check().ok


def test_a_restore_never_overwrites_a_record_that_took_a_backed_up_id(store: Store, tmp_path: Path) -> None:
    """A store written before ids were kept from being reused may hold a record under the
    id of one removed: a restore refuses to put the removed one back over it, even
    forced."""
    home = tmp_path / "home"
    (home / EVENTS).mkdir(parents=True)
    (home / EVENTS / "a.jsonl").write_bytes(b"\n".join([line(1), line(2)]) + b"\n")
    (home / EVENTS / "b.jsonl").write_bytes(line(7) + b"\n")
    store.import_paths([home])
    (home / EVENTS / "a.jsonl").write_bytes(line(1) + b"\n")
    cut = store.import_paths([home]).run_id
    with store.engine.begin() as conn:  # what the old importer could do: b's record takes a.jsonl:2's id
        removed = conn.exec_driver_sql("SELECT record_id FROM backups WHERE reason = 'remove'").scalar_one()
        conn.exec_driver_sql("UPDATE records SET id = ? WHERE key = ?", (removed, f"{EVENTS}/b.jsonl:1"))
    for force in (False, True):
        with pytest.raises(RestoreConflictError, match="id taken by another record"):
            store.restore(run=cut, force=force)
    assert store.get("runtime", f"{EVENTS}/b.jsonl:1").data["seq"] == 7  # type: ignore[union-attr]
