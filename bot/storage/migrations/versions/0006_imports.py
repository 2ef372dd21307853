"""customers.timezone

Revision ID: imports
Revises: crash_window
Create Date: 2026-12-01

The customer's IANA time zone (e.g. `America/Mexico_City`), imported from customers.csv; empty means UTC.
"""

from alembic import op
import sqlalchemy as sa


revision = 'imports'
down_revision = 'crash_window'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('timezone')
