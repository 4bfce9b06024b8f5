"""refused: the text of every record an import refused, kept in its slot.

Export used to leave a refused record out: a JSON line newer than the registry came
back as an empty line, an array element was dropped, so exporting over the home lost
what the store could not take. Stores made before this revision hold no refused texts;
the next import of a file with a refused record keeps it.

Revision ID: 0004_refused_texts
Revises: 0003_records_slot_unique
Create Date: 2026-11-23 16:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_refused_texts"
down_revision = "0003_records_slot_unique"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refused",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("text", sa.LargeBinary(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name=op.f("fk_refused_file_id_files")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_refused_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refused")),
    )
    op.create_index(op.f("ix_refused_file_position"), "refused", ["file_id", "position"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_refused_file_position"), table_name="refused")
    op.drop_table("refused")
