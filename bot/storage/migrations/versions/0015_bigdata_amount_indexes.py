"""Indexes for finding by amount

Revision ID: bigdata_amount_indexes
Revises: teams_conversations
Create Date: 2026-12-01

`/payments find 1250.00` looks up invoices by total or by balance and payments by amount: without these, each is a
scan of the whole table (70-500 ms at 100,000 invoices and 220,000 payments, the tables of a million-entry trail).
"""

from alembic import op
import sqlalchemy as sa


revision = 'bigdata_amount_indexes'
down_revision = 'teams_conversations'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_invoices_amount_minor', 'invoices', ['amount_minor'])
    op.create_index('ix_invoices_balance_minor', 'invoices', [sa.text('(amount_minor - paid_minor)')])
    op.create_index('ix_payments_amount_minor', 'payments', ['amount_minor'])


def downgrade() -> None:
    op.drop_index('ix_payments_amount_minor', table_name='payments')
    op.drop_index('ix_invoices_balance_minor', table_name='invoices')
    op.drop_index('ix_invoices_amount_minor', table_name='invoices')
