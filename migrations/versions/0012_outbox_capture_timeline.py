"""The relay's capture row records the timeline its slot was made on: `outbox_capture.slot_timeline`.

PostgreSQL 15 does not carry a logical slot to a standby, but a former leader that rejoins as a replica
keeps the slot it had (Patroni leaves the relay's slots alone); promoted again later, it would offer
that slot, made on an older timeline, its position on WAL since diverged from or its catalog rows not
kept. The row is replicated, so a relay on a leader whose timeline differs from the one recorded drops
the slot it finds and makes it again, then republishes from the replicated fence (0008), as on a leader
without a slot (docs/architecture.md, "The relay across a PostgreSQL failover"). NULL until recorded.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_capture", sa.Column("slot_timeline", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_capture", "slot_timeline")
