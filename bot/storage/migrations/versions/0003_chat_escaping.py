"""invoice numbers looked up whatever the case of their letters

Revision ID: chat_escaping
Revises: 0002
Create Date: 2026-12-01

An index on the invoice number's key (ASCII letters upper-cased, `bot.storage.sql.invoice_key`), which payment
matching and staff look-ups compare on.
"""

from alembic import op
import sqlalchemy as sa

from bot.storage.sql import invoice_key


revision = 'chat_escaping'  # the branch chat-escaping (Alembic allows no '-' in a revision id)
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_invoices_number_key', 'invoices', [invoice_key(sa.column('number'))])


def downgrade() -> None:
    op.drop_index('ix_invoices_number_key', table_name='invoices')
