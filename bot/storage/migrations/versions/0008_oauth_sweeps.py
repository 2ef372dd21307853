"""OAuth2 tokens per platform and tenant, `paybot connect` states, sweep high-water marks

Revision ID: oauth_sweeps
Revises: audit_keyed
Create Date: 2026-12-01

oauth_tokens: each platform's tokens per tenant (refresh tokens rotate: the latest is saved before use).
oauth_states: the `state` of each `paybot connect` in progress, checked by /oauth/{source}/callback.
sweep_marks: where each platform's catch-up sweep asks from next, per tenant.
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'oauth_sweeps'
down_revision = 'audit_keyed'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=255), nullable=False),
    sa.Column('tenant_name', sa.String(length=255), nullable=True),
    sa.Column('refresh_token', sa.Text(), nullable=False),
    sa.Column('access_token', sa.Text(), nullable=True),
    sa.Column('access_expires_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('connected_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('refreshed_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lost_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lost_reason', sa.String(length=255), nullable=True),
    sa.Column('refreshes', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'tenant', name='uq_oauth_token_source_tenant')
    )
    op.create_table('oauth_states',
    sa.Column('state', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('created_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('state')
    )
    op.create_table('sweep_marks',
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=255), nullable=False),
    sa.Column('mark', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('swept_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'tenant')
    )


def downgrade() -> None:
    op.drop_table('sweep_marks')
    op.drop_table('oauth_states')
    op.drop_table('oauth_tokens')
