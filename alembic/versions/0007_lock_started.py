"""lock.started: which process holds the store, beyond its pid.

A writer killed outright leaves its lock row, which the next writer takes over once the
row's process is gone. It was judged gone by its pid alone: a process that got that pid
since (after a reboot pids begin again) kept every writer "busy" for as long as it
lived. The row now also holds the holder's boot id and start time, where the system
tells them (Linux's /proc); NULL in a row a store before this revision wrote.

Revision ID: 0007_lock_started
Revises: 0006_file_gaps
Create Date: 2026-11-24 01:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_lock_started"
down_revision = "0006_file_gaps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lock") as batch:
        batch.add_column(sa.Column("started", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lock") as batch:
        batch.drop_column("started")
