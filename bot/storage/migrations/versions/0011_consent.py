"""consents: who opted out of (or back in to) a channel, per address

Revision ID: consent
Revises: audit_keyed
Create Date: 2026-12-01

A customer who replies STOP to an SMS (or whose carrier number Twilio reports as opted out, error 21610) is not
texted again until they reply START: the row outlives restarts and is read before every send.
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'consent'
down_revision = 'bc_subscriptions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('changed_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'address', name='uq_consents_channel_address')
    )


def downgrade() -> None:
    op.drop_table('consents')
