"""The store's schema: bring a store to head (the only module that knows Alembic),
refuse newer stores, and drop and rebuild the records' indexes around a bulk import.

A new (empty) store is created at head from the table definitions and stamped, without
importing Alembic; an existing store is upgraded by Alembic's revisions.

The Alembic environment ships inside the package (``recordstore/_alembic``, built
from the top-level ``alembic/`` directory); its configuration is built in memory, so
nothing depends on the current directory or an ``alembic.ini``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.exc import SAWarning

from .engine import translate_errors
from .errors import StoreError, StoreVersionError
from .tables import metadata, records

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "HEAD_REVISION",
    "alembic_config",
    "current_revision",
    "drop_record_indexes",
    "ensure_schema",
    "missing_record_indexes",
    "restore_record_indexes",
    "script_location",
]

#: The newest revision this recordstore knows; a test proves it is Alembic's single head.
HEAD_REVISION = "0009_backups_file_position"


def script_location() -> Path:
    packaged = Path(str(resources.files("recordstore"))) / "_alembic"
    if (packaged / "env.py").is_file():
        return packaged
    source_tree = Path(__file__).resolve().parents[2] / "alembic"
    if (source_tree / "env.py").is_file():
        return source_tree
    raise StoreError("recordstore is installed without its Alembic scripts (reinstall it)")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    # Alembic's default stdout is bound when it is imported; use the current one.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(script_location()))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def ensure_schema(engine: Engine) -> None:
    """Upgrade the store to head; refuse one written by a newer recordstore."""
    with translate_errors(), engine.connect() as conn, conn.begin():
        revision = current_revision(conn)
        if revision == HEAD_REVISION:
            return
    with _upgrade_named(revision), translate_errors(), engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            revision = current_revision(conn)
            if revision == HEAD_REVISION:
                return  # another process upgraded it while we waited
            if revision is None:
                foreign = [t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")]
                if foreign:
                    raise StoreError(
                        "the database holds other tables and is not a recordstore store: "
                        + ", ".join(sorted(foreign)[:5])
                    )
                _create_at_head(conn)
            else:
                _upgrade(conn, revision)


@contextlib.contextmanager
def _upgrade_named(revision: str | None) -> Iterator[None]:
    """A store that cannot be written says why it was to be: every command, a read too,
    first brings an older store's schema up to this recordstore's."""
    try:
        yield
    except StoreError as exc:
        if revision is not None and str(exc).startswith("the store is read-only"):
            raise StoreError(
                "the store was made by an older recordstore and its tables must be upgraded before "
                "any use, which a read-only store cannot take: open it once where it can be written"
            ) from exc
        raise


def _create_at_head(conn: Connection) -> None:
    """A new store: its tables as defined at head, stamped with the head revision (what
    Alembic's upgrade from empty gives, a test proves it, without loading Alembic)."""
    metadata.create_all(conn)
    version = Table(  # as Alembic defines its version table
        "alembic_version",
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(conn)
    conn.execute(version.insert().values(version_num=HEAD_REVISION))


def _upgrade(conn: Connection, revision: str | None) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    cfg = alembic_config(conn)
    if revision is not None:
        try:
            known = ScriptDirectory.from_config(cfg).get_revision(revision) is not None
        except CommandError:
            known = False
        if not known:
            raise StoreVersionError(
                f"the store was written by a newer recordstore (schema revision {revision!r} "
                "is unknown here); upgrade recordstore to use it. The store was not modified."
            )
    command.upgrade(cfg, "head")


def drop_record_indexes(conn: Connection) -> None:
    """Drop the records table's own indexes, for a bulk import into an empty store: it
    writes faster without them and builds each once, at its end, from sorted keys."""
    for index in records.indexes:
        index.drop(conn)


def missing_record_indexes(conn: Connection) -> list[str]:
    """The names of the records table's own indexes that do not exist (yet)."""
    with warnings.catch_warnings():
        # The users' JSON-path indexes are on expressions, which SQLAlchemy cannot
        # reflect: it skips them with a warning that every writer would print.
        warnings.simplefilter("ignore", SAWarning)
        present = {ix["name"] for ix in inspect(conn).get_indexes("records")}
    return sorted(str(index.name) for index in records.indexes if index.name not in present)


def restore_record_indexes(conn: Connection) -> None:
    """Create whichever of the records table's own indexes is missing: after a bulk
    import, or when one was stopped before it could (every writer calls this first)."""
    missing = missing_record_indexes(conn)
    for index in records.indexes:
        if index.name in missing:
            index.create(conn)
