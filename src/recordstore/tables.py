"""The store's own tables at head, in SQLAlchemy Core.

Alembic revisions in ``alembic/versions`` evolve a store to exactly this; a test runs
``alembic check`` to prove there is no drift.

* ``files``: one row per imported source file: where it was (relative to the import
  root), its container, and the text around its records so export can rebuild it
  byte for byte.
* ``records``: one row per record. ``payload`` is the record's JSON text as it stood in
  its file until a step rewrites it; ``key`` is its location (``path``, ``path:LINE``
  for JSON lines, ``path[INDEX]`` for arrays), unique by construction; ``position`` is
  its slot in the file (0, 1, ...), and (``file_id``, ``position``) is unique.
* ``refused``: the text of each record an import refused (newer than the registry, not
  JSON, not an object...), exactly as its file held it, in its slot: never migrated or
  queried, only written back by export where it stood, so no export drops what the store
  could not take. A slot holds a record or a refused text, never both.
* ``backups``: the exact previous row, written in the same transaction as every change;
  ``file_backups``: a file's previous layout, when an import or a restore changes it.
* ``runs`` / ``failures``: the history of the writers' runs (import, migrate, restore,
  prune, index).
* ``lock``: at most one row, the writer holding the store.
* ``indexes``: JSON-path indexes a user asked for.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    Column("outcome", String(16), nullable=False),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("options", Text, nullable=False, server_default="{}"),
    Column("counts", Text, nullable=False, server_default="{}"),
    Column("fingerprints", Text, nullable=False, server_default="{}"),
    Column("message", Text),
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", Text, nullable=False, unique=True),
    Column("domain", String(255), nullable=False),
    Column("container", String(8), nullable=False),
    Column("head", Text, nullable=False, server_default=""),
    Column("sep", Text, nullable=False, server_default=""),
    Column("tail", Text, nullable=False, server_default=""),
    Column("indent", Integer),
    Column("digest", String(64), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    # The texts between two records that are not ``sep`` (parsing.FileLayout), as JSON;
    # NULL: there are none.
    Column("gaps", Text),
)

records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("domain", String(255), nullable=False),
    Column("key", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    Column("file_id", Integer, ForeignKey("files.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Index("ix_records_domain_version", "domain", "version", "id"),
    Index("ix_records_file_position", "file_id", "position", unique=True),
)

refused = Table(
    "refused",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("file_id", Integer, ForeignKey("files.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("key", Text, nullable=False),
    Column("text", LargeBinary, nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Index("ix_refused_file_position", "file_id", "position", unique=True),
)

backups = Table(
    "backups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("record_id", Integer, nullable=False),
    Column("domain", String(255), nullable=False),
    Column("key", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("origin_run_id", Integer),
    Column("reason", String(16), nullable=False),
    Index("ix_backups_run", "run_id"),
    Index("ix_backups_record", "record_id", "id"),
    # A key's backups, looked up at the places its record can hold in its file.
    Index("ix_backups_file_position", "file_id", "position"),
)

failures = Table(
    "failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("domain", String(255)),
    Column("key", Text),
    Column("source", Text),
    Column("line", Integer),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("step", String(255)),
    Column("reason", Text, nullable=False),
    Index("ix_failures_run", "run_id"),
)

lock = Table(
    "lock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("run_id", Integer),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("acquired_at", String(32), nullable=False),
    # The holder process's boot and start time (runs.start_token), where the system
    # tells them: a pid another process took since is not the holder.
    Column("started", String(64)),
)

#: A file's layout (its row in ``files``: domain, container, the text around its
#: records) as it was before an import or a restore changed it, so that restoring that
#: run writes the file back in its old layout (an object again, not an array).
file_backups = Table(
    "file_backups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("domain", String(255), nullable=False),
    Column("container", String(8), nullable=False),
    Column("head", Text, nullable=False),
    Column("sep", Text, nullable=False),
    Column("tail", Text, nullable=False),
    Column("indent", Integer),
    Column("gaps", Text),
    Index("ix_file_backups_run", "run_id"),
)

#: The digest of the text an import last wrote for a record migrated or restored since,
#: kept by a prune that deletes the backup holding that text (see Importer._last_imported).
import_digests = Table(
    "import_digests",
    metadata,
    Column("record_id", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),
)

indexes = Table(
    "indexes",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("domain", String(255), nullable=False),
    Column("path", Text, nullable=False),
)
