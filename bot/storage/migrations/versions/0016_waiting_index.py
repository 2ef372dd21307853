"""An index of the events waiting to be recorded

Revision ID: waiting_index
Revises: bigdata_amount_indexes
Create Date: 2026-12-02

Workers look for stored events whose payments are not yet recorded (`status` received or accepted) at every commit
of new ones. Through `ix_webhook_events_status_received` PostgreSQL read them with a bitmap scan, which visits every
index entry the status ever had: each event recorded since the last vacuum leaves a dead entry, so a look cost more
as the backlog since the last vacuum grew (20,000 recorded events: 3-5 ms and 2,500 pages a look). This partial
index holds the events' ids in order; read by a plain index scan (the planner's choice on fresh statistics), the
dead entries it meets are marked so and skipped by the next look (0.2 ms). On statistics older than the load, the
planner may still combine bitmaps (1.3 ms a look in `benchmarks/throughput.py`, from 1.8 ms). SQLite removes an
index entry when its row changes, and reads the page from the status index as before: no index there.
"""

from alembic import op
import sqlalchemy as sa


revision = 'waiting_index'
down_revision = 'bigdata_amount_indexes'
branch_labels = None
depends_on = None

WAITING = sa.text("status IN ('received', 'accepted')")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index('ix_webhook_events_waiting', 'webhook_events', ['id'], postgresql_where=WAITING)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index('ix_webhook_events_waiting', table_name='webhook_events')
