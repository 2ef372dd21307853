"""customer time zone, date-only payments

Revision ID: messages
Revises: crash_window
Create Date: 2026-12-01

customers.timezone: the IANA zone a customer reads times in (NULL: the business's). payments.date_only: the
platform gave the day of the payment, not its time, so messages show no time.
"""

from alembic import op
import sqlalchemy as sa


revision = 'messages'
down_revision = 'crash_window'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('date_only', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('date_only')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('timezone')
