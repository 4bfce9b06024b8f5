"""files.gaps: the texts between a file's records that are not its one separator.

A file kept one separator between its records, so an array separated in different
ways, or a JSON-lines file mixing line endings or holding whitespace on a blank line
between records, came back from an export with its separators made alike. A file's
odd gaps are now kept, as JSON (slot number -> text); NULL where there are none, as in
every file a store before this revision imported (such a file comes back as before
until it changes and is imported again).

Revision ID: 0006_file_gaps
Revises: 0005_import_digests
Create Date: 2026-11-24 00:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_file_gaps"
down_revision = "0005_import_digests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("gaps", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("gaps")
