"""subscription outbox

Revision ID: 522fbfcac793
Revises: 0518bb5be085
Create Date: 2026-12-04 15:37:08.537676

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '522fbfcac793'
down_revision: Union[str, Sequence[str], None] = '0518bb5be085'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """The notification outbox (notifications.md): a state row per Subscription (kept across its
    versions: topic, filter, channel, event counters, retry clock, dispatcher lease) and the events,
    written in the transaction of the data that raised them."""
    op.create_table('subscription_event',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('subscription_id', sa.String(length=64), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('occurred', sa.DateTime(), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('focus_type', sa.String(length=40), nullable=False),
    sa.Column('focus_id', sa.String(length=64), nullable=False),
    sa.Column('focus_version', sa.Integer(), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'subscription_id', 'number', name=op.f('pk_subscription_event'))
    )
    op.create_index('ix_subscription_event_occurred', 'subscription_event', ['tenant', 'occurred'], unique=False)
    op.create_index('ix_subscription_event_patient', 'subscription_event', ['tenant', 'patient_id', 'occurred'], unique=False)
    op.create_table('subscription_state',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('subscription_id', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('endpoint', sa.Text(), nullable=False),
    sa.Column('content', sa.String(length=16), nullable=False),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('heartbeat_seconds', sa.Integer(), nullable=True),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('end_at', sa.DateTime(), nullable=True),
    sa.Column('handshake_due', sa.Boolean(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('failing_since', sa.DateTime(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('last_sent_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'subscription_id', name=op.f('pk_subscription_state'))
    )
    op.create_index('ix_subscription_state_topic', 'subscription_state', ['tenant', 'topic'], unique=False)


def downgrade() -> None:
    """Undelivered events are lost with the tables; the Subscription resources stay."""
    op.drop_index('ix_subscription_state_topic', table_name='subscription_state')
    op.drop_table('subscription_state')
    op.drop_index('ix_subscription_event_patient', table_name='subscription_event')
    op.drop_index('ix_subscription_event_occurred', table_name='subscription_event')
    op.drop_table('subscription_event')
