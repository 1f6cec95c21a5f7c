"""The relay's caught-up record gains its transaction fence: `outbox_capture.caught_up_xmin`, and
`republish_from`, the fence of a republish after a failover still to finish.

The oldest transaction id (xid8) still running when the relay had read its slot to the end: every
transaction below it had ended by then, so its events are in Kafka. The row is replicated like any
other, so a promoted standby knows which rows a new slot cannot prove were published (those inserted by
a transaction at or above the fence) without a bound on transactions' length (docs/architecture.md,
"The relay across a PostgreSQL failover"). NULL until the relay first records it. A relay that finds
the capture row but no slot (a promoted standby) copies the fence into `republish_from` before it makes
the slot, then `republish_until`, the first transaction id not yet given out once the slot exists (a
transaction from it on commits after the slot's consistent point: the slot decodes it), and clears both
once the rows between are republished: a crash resumes it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_capture", sa.Column("caught_up_xmin", sa.BigInteger(), nullable=True))
    op.add_column("outbox_capture", sa.Column("republish_from", sa.BigInteger(), nullable=True))
    op.add_column("outbox_capture", sa.Column("republish_until", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_capture", "republish_until")
    op.drop_column("outbox_capture", "republish_from")
    op.drop_column("outbox_capture", "caught_up_xmin")
