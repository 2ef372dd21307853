"""Business Central webhook subscriptions, renewed by paybot

Revision ID: bc_subscriptions
Revises: oauth_sweeps
Create Date: 2026-12-01

One row per subscription `paybot subscribe business-central` created: its id, resource, notification URL, the
`@odata.etag` a renewal must send back, and when it expires (BC: 3 days). The renewal job reads and updates them.
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'bc_subscriptions'
down_revision = 'oauth_sweeps'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bc_subscriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('subscription_id', sa.String(length=200), nullable=False),
    sa.Column('resource', sa.String(length=500), nullable=False),
    sa.Column('notification_url', sa.String(length=1000), nullable=False),
    sa.Column('etag', sa.String(length=200), nullable=False),
    sa.Column('expires_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscription_id')
    )
    with op.batch_alter_table('bc_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bc_subscriptions_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bc_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bc_subscriptions_expires_at'))
    op.drop_table('bc_subscriptions')
