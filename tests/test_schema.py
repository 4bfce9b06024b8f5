"""The store's own tables: Alembic's single head, upgrade from empty, no drift, newer stores refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from recordstore import Store, StoreError, StoreVersionError
from recordstore.schema import HEAD_REVISION, alembic_config, script_location
from recordstore.tables import metadata
from conftest import EXAMPLE_HOME


def test_there_is_a_single_head_and_it_is_what_the_code_expects() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION]
    # A linear history: every revision has at most one parent.
    for rev in script.walk_revisions():
        assert not isinstance(rev.down_revision, tuple)


def test_the_alembic_scripts_ship_inside_the_installed_package() -> None:
    location = script_location()
    assert (location / "env.py").is_file()
    assert list((location / "versions").glob("*.py"))


def test_opening_a_new_store_upgrades_it_from_empty_to_head(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(metadata.tables) <= tables


def test_the_revisions_match_the_table_definitions(db_path: Path) -> None:
    """The store the revisions build, upgraded from empty, is what the table definitions
    say. (A store made by Store() is created from those definitions themselves, so
    checking one against them could never fail.)"""
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    with engine.begin() as conn:
        command.check(alembic_config(conn))  # raises if autogenerate sees any difference
    engine.dispose()


def test_a_new_store_is_created_exactly_as_alembic_upgrades_an_empty_one(tmp_path: Path) -> None:
    """New stores skip Alembic (created from the table definitions, then stamped): the
    result must be the same schema, statement for statement, as the revisions build."""
    fast, upgraded = tmp_path / "fast.db", tmp_path / "upgraded.db"
    Store(fast).close()
    engine = create_engine(f"sqlite:///{upgraded}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    engine.dispose()

    def schema(path: Path) -> dict[str, Any]:
        """Every table's columns, indexes (with their columns, uniqueness and origin) and
        foreign keys, as SQLite itself reports them (the DDL texts differ in order)."""
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
            out: dict[str, Any] = {}
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
                indexes = {
                    (name, unique, origin, tuple(c[2] for c in conn.execute(f"PRAGMA index_xinfo('{name}')")))
                    for _seq, name, unique, origin, _partial in conn.execute(f"PRAGMA index_list('{table}')")
                }
                out[table] = (
                    conn.execute(f"PRAGMA table_xinfo('{table}')").fetchall(),
                    sorted(indexes, key=repr),
                    # Without each key's id: its number follows the order keys were declared in.
                    sorted((r[1:] for r in conn.execute(f"PRAGMA foreign_key_list('{table}')")), key=repr),
                )
        return out

    fast_schema = schema(fast)
    assert set(fast_schema) >= set(metadata.tables) | {"alembic_version"}
    assert fast_schema == schema(upgraded)


def test_a_store_from_a_newer_recordstore_is_refused_and_left_alone(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(StoreVersionError, match="newer recordstore"):
        Store(db_path)
    assert db_path.read_bytes() == before


def test_a_database_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a recordstore store: invoices"):
        Store(other)
    assert set(inspect(create_engine(f"sqlite:///{other}")).get_table_names()) == {"invoices"}


def test_a_file_that_is_not_sqlite_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a database, just text" * 100)
    with pytest.raises(StoreError, match="not a recordstore database"):
        Store(bogus)


def test_the_store_file_is_private_to_its_owner(db_path: Path) -> None:
    Store(db_path).close()
    assert db_path.stat().st_mode & 0o077 == 0


def test_a_store_at_the_first_revision_is_upgraded_with_its_records_and_indexes(tmp_path: Path) -> None:
    """0002 rebuilds the records table, 0003 trades the key's index for a unique one on
    the record's slot: every row, the uniqueness and the JSON-path indexes a user added
    survive them."""
    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001_initial")
    engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO runs (id, kind, started_at, outcome) VALUES (1, 'import', 'now', 'ok')")
        conn.execute(
            "INSERT INTO files (id, path, domain, container, digest, run_id) VALUES (1, 'tasks/a.json', 'task', 'object', '', 1)"
        )
        conn.execute(
            "INSERT INTO records (id, domain, key, version, payload, file_id, position, run_id) "
            "VALUES (7, 'task', 'tasks/a.json', 2, '{\"status\": \"done\"}', 1, 0, 1)"
        )
        conn.execute("CREATE INDEX ix_json_test ON records (domain, json_extract(payload, '$.status'))")
    with Store(db) as store:
        assert store.get("task", "tasks/a.json").data == {"status": "done"}  # type: ignore[union-attr]
        assert store.query("task").where("status", "==", "done").count() == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'records' AND type = 'index'")}
        assert names == {"ix_records_domain_version", "ix_records_file_position", "ix_json_test"}
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(
                "INSERT INTO records (domain, key, version, payload, file_id, position) "
                "VALUES ('task', 'tasks/a.json', 2, '{}', 1, 0)"
            )


@pytest.mark.parametrize("down_to", ["0001_initial", "0002_records_key_index"])
def test_the_index_revisions_downgrade_and_upgrade_again_keeping_everything(tmp_path: Path, down_to: str) -> None:
    """Before 0003 a key is unique (a table constraint, then an index); from 0003 on, a
    record's slot in its file is. Every record and the user's JSON-path index survive
    going down and up again."""
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.import_paths([EXAMPLE_HOME])
        store.add_index("task", "status")
        before = {r.key: r.text for r in store.query()}

    def refused(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> bool:
        try:
            conn.execute(sql, params)
            return False
        except sqlite3.IntegrityError:
            return True
        finally:
            conn.rollback()

    def uniqueness_and_json_index(conn: sqlite3.Connection) -> tuple[bool, bool, bool]:
        key, file_id, position = conn.execute("SELECT key, file_id, position FROM records LIMIT 1").fetchone()
        insert = "INSERT INTO records (domain, key, version, payload, file_id, position) VALUES ('task', ?, 1, '{}', ?, ?)"
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'ix_json_%'")]
        return (
            refused(conn, insert, (key, file_id, 99)),  # the same key in another slot
            refused(conn, insert, ("another key", file_id, position)),  # another key in the same slot
            len(names) == 1,
        )

    with sqlite3.connect(db) as conn:
        assert uniqueness_and_json_index(conn) == (False, True, True)
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), down_to)
    engine.dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(down_to,)]
        assert uniqueness_and_json_index(conn) == (True, False, True)
    with Store(db) as store:  # opening upgrades it to head again
        assert {r.key: r.text for r in store.query()} == before
    with sqlite3.connect(db) as conn:
        assert uniqueness_and_json_index(conn) == (False, True, True)


def test_the_refused_texts_revision_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    """0004 adds the refused texts; below it they are gone (a store before 0004 had none),
    and an import after the upgrade keeps them again: the file with a refused record is
    read again (it has no digest), and export writes it back whole."""
    home = tmp_path / "home"
    events = home / "tasks" / "runtime" / "events"
    events.mkdir(parents=True)
    data = b'{"schema_version":2,"seq":1}\n{"schema_version":9,"seq":2}\n'
    (events / "thr_x.jsonl").write_bytes(data)
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.import_paths([home])
        assert store.status().domains["runtime"].refused == 1
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003_records_slot_unique")
        assert not inspect(conn).has_table("refused")
    engine.dispose()
    with Store(db) as store:  # opening upgrades it to head again
        assert store.status().domains["runtime"].refused == 0
        assert store.query("runtime").count() == 1
        again = store.import_paths([home]).domains["runtime"]
        assert (again.unchanged, again.rejected) == (1, 1)
        store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / "tasks" / "runtime" / "events" / "thr_x.jsonl").read_bytes() == data


def _old_store(db: Path, revision: str) -> None:
    """An empty store at an older revision, as that recordstore made it."""
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    engine.dispose()


def test_a_store_whose_bulk_import_stopped_before_0003_is_upgraded(tmp_path: Path) -> None:
    """From 0002 on, a bulk import into an empty store dropped the records' indexes and
    built them at its end; one stopped first (killed, Ctrl-C) left them to the next
    writer. 0003 dropped ix_records_key unconditionally: every command on such a store
    said 'database error: no such index: ix_records_key' (exit 3), a read too."""
    db = tmp_path / "old.db"
    _old_store(db, "0002_records_key_index")
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO runs (id, kind, started_at, outcome) VALUES (1, 'import', 'now', 'running')")
        conn.execute(
            "INSERT INTO files (id, path, domain, container, sep, digest, run_id) "
            "VALUES (1, 'tasks/runtime/events/thr_1.jsonl', 'runtime', 'lines', '\n', 'x', 1)"
        )
        conn.executemany(
            "INSERT INTO records (domain, key, version, payload, file_id, position, run_id) VALUES (?, ?, 2, ?, 1, ?, 1)",
            [("runtime", f"tasks/runtime/events/thr_1.jsonl:{i + 1}", f'{{"schema_version":2,"seq":{i}}}', i) for i in range(3)],
        )
        for name in ("ix_records_key", "ix_records_file_position", "ix_records_domain_version"):
            conn.execute(f"DROP INDEX {name}")
    with Store(db) as store:
        assert [r.data["seq"] for r in store.query("runtime")] == [0, 1, 2]
        store.migrate()  # a writer builds what the stopped import left undone
        assert store.check().ok
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'records' AND type = 'index'")}
    assert names == {"ix_records_domain_version", "ix_records_file_position"}


def test_a_record_an_older_recordstore_stored_that_this_one_cannot_read_is_reported_and_the_listing_goes_on(
    db_path: Path, cli: Any
) -> None:
    """The first recordstore (revision 0001) took numbers no double holds (1e-400, and
    at first 1e400): today's reader refuses them. 'store query' ended at such a record
    with 'internal error: JSONError: number 1e-400 is too small for a double' (exit 70),
    printing none of the records after it; the library raised that JSONError, outside
    the error tree."""
    _old_store(db_path, "0001_initial")
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO runs (id, kind, started_at, outcome) VALUES (1, 'import', 'now', 'ok')")
        rows = [("a", '{"schema_version":2,"n":1}'), ("b", '{"schema_version":2,"x":1e-400}'), ("c", '{"schema_version":2,"n":3}')]
        for i, (name, payload) in enumerate(rows, 1):
            conn.execute(
                "INSERT INTO files (id, path, domain, container, digest, run_id) VALUES (?, ?, 'task', 'object', 'x', 1)",
                (i, f"tasks/tasks/{name}.json"),
            )
            conn.execute(
                "INSERT INTO records (domain, key, version, payload, file_id, position, run_id) VALUES ('task', ?, 2, ?, ?, 0, 1)",
                (f"tasks/tasks/{name}.json", payload, i),
            )
    for args in (["query", "task"], ["query", "task", "--json"]):
        res = cli(*args)
        assert res.exit_code == 1, res.stderr
        assert [line.split("\t")[0] if "\t" in line else line[:30] for line in res.stdout.splitlines()] == [
            "tasks/tasks/a.json",
            '{"key":"tasks/tasks/a.json","v',
            "tasks/tasks/c.json",
            '{"key":"tasks/tasks/c.json","v',
        ][args.count("--json") :: 2]
        assert res.stderr.count("\n") == 1
        assert "tasks/tasks/b.json" in res.stderr and "1e-400 is too small for a double" in res.stderr
    with Store(db_path) as store:
        record = store.get("task", "tasks/tasks/b.json")
        assert record is not None
        with pytest.raises(StoreError, match="task tasks/tasks/b.json: .*1e-400 is too small for a double"):
            record.data
        assert record.text == '{"schema_version":2,"x":1e-400}'
    out = db_path.parent / "out"
    assert cli("export", out).exit_code == 0
    assert (out / "tasks" / "tasks" / "b.json").read_text() == '{"schema_version":2,"x":1e-400}'
