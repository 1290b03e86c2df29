"""export jobs

Revision ID: 215085694c78
Revises: 06bb70172bbb
Create Date: 2026-12-04 18:47:55.390285

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '215085694c78'
down_revision: Union[str, Sequence[str], None] = '06bb70172bbb'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Bulk Data export jobs (export.md): shared by every worker, kept across restarts."""
    op.create_table('export_job',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('types', sa.Text(), nullable=False),
    sa.Column('since', sa.DateTime(), nullable=True),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('transaction_time', sa.DateTime(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('finished', sa.DateTime(), nullable=True),
    sa.Column('expires', sa.DateTime(), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('progress', sa.String(length=255), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('errors', sa.Text(), nullable=False),
    sa.Column('last_polled', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_job'))
    )
    op.create_index('ix_export_job_status', 'export_job', ['status', 'created'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_export_job_status', table_name='export_job')
    op.drop_table('export_job')
