"""notifications.attempt_started_at: an attempt that may have reached the provider

Revision ID: crash_window
Revises: ipn_verifier
Create Date: 2026-12-01

Set by the lease renewal committed right before a send, cleared when the outcome is recorded. A row taken over
with it still set was being sent when its worker died: the provider is asked before sending it again.
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'crash_window'  # alembic forbids '-' in identifiers: the branch name with '_'
down_revision = 'ipn_verifier'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt_started_at', bot.storage.types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('attempt_started_at')
