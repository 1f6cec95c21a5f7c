"""The relay reads the outbox from the WAL: a publication of `events` inserts and `outbox_capture`.

- Publication `outbox_relay` (the name is `app.core.outbox.CAPTURE_PUBLICATION`): inserts into
  `events` only (`publish = 'insert'`: the polling relay's `published_at` updates, deletes and
  truncates are not decoded), named by the root table (`publish_via_partition_root`), so a change
  decoded from `events_p20261201` or `events_default` reads as one into `events`. A publication costs
  nothing on a server without wal_level = logical; the polling relay ignores it.
- `outbox_capture`: one row per slot, the instant before which every committed event was delivered
  (written by the relay in wal mode, read for the outbox lag).
The slot itself is not made here: slots are cluster-wide, need the REPLICATION privilege and retain
WAL while unread, so the relay creates its slot when it first runs in wal mode.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE PUBLICATION outbox_relay FOR TABLE events "
               "WITH (publish = 'insert', publish_via_partition_root = true)")
    op.create_table(
        "outbox_capture",
        sa.Column("slot_name", sa.Text(), primary_key=True),
        sa.Column("caught_up_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_capture")
    op.execute("DROP PUBLICATION IF EXISTS outbox_relay")
