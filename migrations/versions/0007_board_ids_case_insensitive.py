"""Board ids are unique whatever their case: a unique index on `lower(id)`.

A board's id stays as its owner wrote it (it names the board's Redis keys, Kafka key and events),
and lookups match it exactly; what the index forbids is a second board whose id differs only in
case (`DEFAULT` beside the system's `default`, `foo` beside `Foo`), deleted boards included, since a
deleted board's id stays reserved. Ids that already differ only in case stop the migration, named
in its error, for an operator to settle by hand (one id of each group kept) before running it again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    clashes = op.get_bind().execute(sa.text(
        "SELECT string_agg(id, ', ' ORDER BY id) FROM leaderboards GROUP BY lower(id) HAVING count(*) > 1"
    )).scalars().all()
    if clashes:
        raise RuntimeError("board ids that differ only in case: " + "; ".join(clashes)
                           + " (keep one id of each group, then run the migration again)")
    op.create_index("uq_leaderboards_lower_id", "leaderboards", [sa.text("lower(id)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_leaderboards_lower_id", "leaderboards")
