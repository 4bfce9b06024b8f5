"""file_backups: a file's layout before an import changed it.

Restoring an import put its records back but left the file's row as the import had
written it: a one-object file the application had turned into an array was exported as
an array of the one record restored, a JSON-lines file kept the missing last newline of
its newer text. An import (and a restore) now keeps the row it changes here, and a
restore of that run puts it back. A store before this revision has none: its files stay
in their newest layout, as before.

Revision ID: 0008_file_backups
Revises: 0007_lock_started
Create Date: 2026-11-24 03:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_file_backups"
down_revision = "0007_lock_started"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_backups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("container", sa.String(8), nullable=False),
        sa.Column("head", sa.Text(), nullable=False),
        sa.Column("sep", sa.Text(), nullable=False),
        sa.Column("tail", sa.Text(), nullable=False),
        sa.Column("indent", sa.Integer(), nullable=True),
        sa.Column("gaps", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_file_backups_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_backups")),
    )
    op.create_index(op.f("ix_file_backups_run"), "file_backups", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_file_backups_run"), table_name="file_backups")
    op.drop_table("file_backups")
