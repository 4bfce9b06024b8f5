"""records.key: unique through a named index instead of a table constraint.

A bulk import into an empty store drops the records table's own indexes and builds
them once at the end (sorting, instead of one B-tree insert per row and index); SQLite
cannot drop the index behind a table's UNIQUE constraint, but it can drop this one.

On SQLite the table is rebuilt; the JSON-path indexes users added (expression indexes,
which reflection cannot carry over) are read first and created again after.

Revision ID: 0002_records_key_index
Revises: 0001_initial
Create Date: 2026-11-22 22:30:00
"""

import warnings

from alembic import op

revision = "0002_records_key_index"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _json_path_indexes() -> list[str]:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return []
    rows = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND name LIKE 'ix_json_%'"
    )
    return [sql for (sql,) in rows if sql]


def _rebuild(change) -> None:  # type: ignore[no-untyped-def]
    kept = _json_path_indexes()
    with warnings.catch_warnings():
        # Reflection skips the expression indexes, which are created again below.
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
        with op.batch_alter_table("records", recreate="always") as batch_op:
            change(batch_op)
    for sql in kept:
        op.execute(sql)


def upgrade() -> None:
    def change(batch_op) -> None:  # type: ignore[no-untyped-def]
        batch_op.drop_constraint("uq_records_key", type_="unique")
        batch_op.create_index("ix_records_key", ["key"], unique=True)

    _rebuild(change)


def downgrade() -> None:
    def change(batch_op) -> None:  # type: ignore[no-untyped-def]
        batch_op.drop_index("ix_records_key")
        batch_op.create_unique_constraint("uq_records_key", ["key"])

    _rebuild(change)
