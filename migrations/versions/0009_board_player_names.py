"""A board's players found by the name they show: an index on the lower-cased display name of each
board period's entries, so a search by name reads only its matches.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_leaderboard_entries_name ON leaderboard_entries "
               "(leaderboard_id, period, lower(display_name))")


def downgrade() -> None:
    op.execute("DROP INDEX ix_leaderboard_entries_name")
