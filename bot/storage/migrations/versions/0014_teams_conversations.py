"""Teams conversation references and user names

Revision ID: teams_conversations
Revises: audit_keyed
Create Date: 2026-12-01

`teams_conversations`: one Bot Framework conversation reference per conversation the Teams bot was installed
in (or heard from), so paybot posts proactively after a restart; `removed_at` marks an uninstalled bot.
`teams_users`: display names by AAD object id, so cards say who acted by name.
"""

from alembic import op
import sqlalchemy as sa
import bot.storage.types


revision = 'teams_conversations'
down_revision = 'consent'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('teams_conversations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=False),
    sa.Column('service_url', sa.String(length=500), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('conversation_type', sa.String(length=20), nullable=True),
    sa.Column('reference', sa.JSON(), nullable=False),
    sa.Column('updated_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('removed_at', bot.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('conversation_id')
    )
    op.create_table('teams_users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('aad_object_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('updated_at', bot.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('aad_object_id')
    )


def downgrade() -> None:
    op.drop_table('teams_users')
    op.drop_table('teams_conversations')
