"""The initial store: runs, files, records, backups, failures, lock, indexes.

Revision ID: 0001_initial
Revises: 
Create Date: 2026-11-22 17:25:19.682498
"""

from alembic import op
import sqlalchemy as sa


revision = '0001_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('indexes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_indexes'))
    )
    op.create_table('lock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('operation', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('acquired_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lock'))
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.String(length=32), nullable=False),
    sa.Column('finished_at', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('options', sa.Text(), server_default='{}', nullable=False),
    sa.Column('counts', sa.Text(), server_default='{}', nullable=False),
    sa.Column('fingerprints', sa.Text(), server_default='{}', nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_table('backups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('origin_run_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_backups_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backups'))
    )
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.create_index('ix_backups_record', ['record_id', 'id'], unique=False)
        batch_op.create_index('ix_backups_run', ['run_id'], unique=False)

    op.create_table('failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=True),
    sa.Column('key', sa.Text(), nullable=True),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('from_version', sa.Integer(), nullable=True),
    sa.Column('to_version', sa.Integer(), nullable=True),
    sa.Column('step', sa.String(length=255), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_failures_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_failures'))
    )
    with op.batch_alter_table('failures', schema=None) as batch_op:
        batch_op.create_index('ix_failures_run', ['run_id'], unique=False)

    op.create_table('files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('container', sa.String(length=8), nullable=False),
    sa.Column('head', sa.Text(), server_default='', nullable=False),
    sa.Column('sep', sa.Text(), server_default='', nullable=False),
    sa.Column('tail', sa.Text(), server_default='', nullable=False),
    sa.Column('indent', sa.Integer(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_files_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('path', name=op.f('uq_files_path'))
    )
    op.create_table('records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_records_file_id_files')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_records_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_records')),
    sa.UniqueConstraint('key', name=op.f('uq_records_key'))
    )
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.create_index('ix_records_domain_version', ['domain', 'version', 'id'], unique=False)
        batch_op.create_index('ix_records_file_position', ['file_id', 'position'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_index('ix_records_file_position')
        batch_op.drop_index('ix_records_domain_version')

    op.drop_table('records')
    op.drop_table('files')
    with op.batch_alter_table('failures', schema=None) as batch_op:
        batch_op.drop_index('ix_failures_run')

    op.drop_table('failures')
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_index('ix_backups_run')
        batch_op.drop_index('ix_backups_record')

    op.drop_table('backups')
    op.drop_table('runs')
    op.drop_table('lock')
    op.drop_table('indexes')
