"""records: one record per slot of a file, instead of one per key.

``key`` stays a column; it is unique by construction (the file's unique path, and the
record's line or index in it). Its index went: it was the dearest of the records'
indexes to keep during an import (a fifth of a bulk import's time), and it made a
re-import fail when a JSON-lines file gained a blank line above its records (each
record's key moves one line down, and the first update met the next record's key).
What it guarded is now guarded by a unique index on (file_id, position), which export
and change detection already read. Key lookups go through the file's path.

A bulk import stopped before it built the records' indexes (killed, interrupted) left
a store at 0002 without them, for its next writer to build: they are dropped here only
where they exist, and the next writer builds any still missing.

Revision ID: 0003_records_slot_unique
Revises: 0002_records_key_index
Create Date: 2026-11-23 09:40:00
"""

from alembic import op

revision = "0003_records_slot_unique"
down_revision = "0002_records_key_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_records_key", table_name="records", if_exists=True)
    op.drop_index("ix_records_file_position", table_name="records", if_exists=True)
    op.create_index("ix_records_file_position", "records", ["file_id", "position"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_records_file_position", table_name="records")
    op.create_index("ix_records_file_position", "records", ["file_id", "position"])
    op.create_index("ix_records_key", "records", ["key"], unique=True)
