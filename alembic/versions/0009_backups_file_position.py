"""backups: an index on (file_id, position), the place a backed-up record held.

``store restore --domain D --key K`` looked the key's backups up by reading the whole
backups table, twice (once to tell a key with no backup, once to choose them: 0.45 s a
million backups, for one record). A key names its file and the last place its record
can hold there, as ``Store.get`` finds it; the backups of that place are now found by
this index. Writing a backup costs it about a tenth more (0.03-0.06 s per 200,000
backups), under 1 % of a migration.

Revision ID: 0009_backups_file_position
Revises: 0008_file_backups
Create Date: 2026-11-24 08:20:00
"""

from alembic import op

revision = "0009_backups_file_position"
down_revision = "0008_file_backups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_backups_file_position"), "backups", ["file_id", "position"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backups_file_position"), table_name="backups")
