"""import_digests: what an import last wrote for a record, once its backup is pruned.

A re-import tells a line the file did not change from one it changed by the text an
import last wrote for the record, which a record migrated or restored since keeps only
in its backups. Pruning those backups lost it: appending to a migrated JSON-lines file
then turned every migrated line back into its old text. A prune now keeps the digest of
each such text here. A store before this revision has pruned nothing of the kind.

Revision ID: 0005_import_digests
Revises: 0004_refused_texts
Create Date: 2026-11-23 23:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_import_digests"
down_revision = "0004_refused_texts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_digests",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_import_digests")),
    )


def downgrade() -> None:
    op.drop_table("import_digests")
