"""refusal summaries, the audit chain's key id

Revision ID: audit_keyed
Revises: messages
Create Date: 2026-12-01

Refused webhooks leave the audit chain: they are counted into `refusals` (one row per source, reason class and
remote per window; pruned). `audit_head.key_id` names the key new entries are chained with (NULL: unkeyed).
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'audit_keyed'  # alembic allows no '-' in an id: the branch name with '_'
down_revision = 'messages'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('refusals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('remote', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('example', sa.String(length=120), nullable=False),
    sa.Column('window_start', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_end', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('refusals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refusals_window_end'), ['window_end'], unique=False)
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.drop_column('key_id')
    with op.batch_alter_table('refusals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refusals_window_end'))
    op.drop_table('refusals')
