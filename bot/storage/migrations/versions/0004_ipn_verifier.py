"""webhook events verified after the answer: claims, backoff, purged bodies

Revision ID: ipn_verifier
Revises: chat_escaping
Create Date: 2026-12-01

An event stored unverified (PayPal IPN) is claimed by one verifier at a time (`claimed_by`, with its lease in
`next_attempt_at`), retried on its own backoff (`attempts`, `next_attempt_at`) and given up on after a few tries.
The body of a rejected or never-verified event is dropped after a retention period (`purged_at`), its size kept
(`body_bytes`).
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'ipn_verifier'  # alembic refuses '-' in revision ids
down_revision = 'chat_escaping'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('body_bytes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('purged_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_webhook_events_status_source', ['status', 'source'], unique=False)
        batch_op.create_index('ix_webhook_events_status_received', ['status', 'received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_status_received')
        batch_op.drop_index('ix_webhook_events_status_source')
        batch_op.drop_column('purged_at')
        batch_op.drop_column('body_bytes')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
