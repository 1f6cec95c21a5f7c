"""The leaderboard service: boards, their periods and entries, score submissions, activity, API keys.

Events of boards go through the same outbox, keyed by board id (a slug), so `events.aggregate_id`
becomes text. `leaderboard_period()` decides a board's period from PostgreSQL's clock in the board's
time zone: DST days, ISO week 53 and year ends are PostgreSQL's date arithmetic, not ours. The
system-owned board `default` (desc, best, never reset) exists from the start.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PERIOD_FUNCTION = r"""
CREATE FUNCTION leaderboard_period(reset_period text, tz text, at timestamptz)
RETURNS TABLE (period text, starts_at timestamptz, ends_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT CASE reset_period
               WHEN 'never' THEN 'all'
               WHEN 'hourly' THEN to_char(s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24"Z"')
               WHEN 'daily' THEN to_char(s AT TIME ZONE tz, 'YYYY-MM-DD')
               WHEN 'weekly' THEN to_char(s AT TIME ZONE tz, 'IYYY-"W"IW')
               WHEN 'monthly' THEN to_char(s AT TIME ZONE tz, 'YYYY-MM')
           END,
           s,
           CASE reset_period
               WHEN 'never' THEN NULL
               WHEN 'hourly' THEN s + interval '1 hour'
               ELSE ((s AT TIME ZONE tz) + ('1 ' || unit)::interval) AT TIME ZONE tz
           END
    FROM (SELECT unit, CASE WHEN unit IS NULL THEN at ELSE date_trunc(unit, at, tz) END AS s
          FROM (SELECT CASE reset_period WHEN 'hourly' THEN 'hour' WHEN 'daily' THEN 'day'
                                         WHEN 'weekly' THEN 'week' WHEN 'monthly' THEN 'month'
                       END AS unit) u) t
$$
"""


def _created_at(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.execute("DROP INDEX ix_events_aggregate")
    op.alter_column("events", "aggregate_id", type_=sa.Text, postgresql_using="aggregate_id::text")
    op.create_index("ix_events_aggregate", "events", ["aggregate_id", "created_at"])

    op.create_table(
        "leaderboards",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("owner_id", UUID(as_uuid=True), sa.ForeignKey("users.id")),
        sa.Column("sort_order", sa.Text, nullable=False),
        sa.Column("update_mode", sa.Text, nullable=False),
        sa.Column("reset_period", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("max_entries", sa.Integer),
        sa.Column("self_report_max", sa.BigInteger),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        # Bumped by every change of the configuration, so a late or replayed board event never reverts it.
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
        _created_at(),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(r"id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'", name="id_slug"),
        sa.CheckConstraint("sort_order IN ('asc', 'desc')", name="sort_order_known"),
        sa.CheckConstraint("update_mode IN ('replace', 'increment', 'best')", name="update_mode_known"),
        sa.CheckConstraint("reset_period IN ('never', 'hourly', 'daily', 'weekly', 'monthly')",
                           name="reset_period_known"),
        sa.CheckConstraint("max_entries IS NULL OR max_entries > 0", name="max_entries_positive"),
        sa.CheckConstraint("self_report_max IS NULL OR (self_report_max > 0 AND update_mode = 'increment')",
                           name="self_report_increments"),
    )
    op.create_index("ix_leaderboards_owner_id", "leaderboards", ["owner_id"])
    op.create_table(
        "leaderboard_periods",
        sa.Column("leaderboard_id", sa.Text, sa.ForeignKey("leaderboards.id"), primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("entry_count", sa.Integer),
    )
    # At most one open period per board; the timer looks only at open periods that end.
    op.create_index("uq_leaderboard_periods_open", "leaderboard_periods", ["leaderboard_id"], unique=True,
                    postgresql_where=sa.text("closed_at IS NULL"))
    op.create_index("ix_leaderboard_periods_due", "leaderboard_periods", ["ends_at"],
                    postgresql_where=sa.text("closed_at IS NULL AND ends_at IS NOT NULL"))
    # Who reached a score first: taken when an entry's score changes, the same order everywhere.
    op.execute("CREATE SEQUENCE leaderboard_tie_seq")
    op.create_table(
        "leaderboard_entries",
        sa.Column("leaderboard_id", sa.Text, primary_key=True),
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("player_id", sa.Text, primary_key=True),
        sa.Column("score", sa.BigInteger),  # NULL: removed by the owner (the row keeps the version)
        sa.Column("previous_score", sa.BigInteger),
        sa.Column("tie_seq", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("metadata", JSONB),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["leaderboard_id", "period"],
                                ["leaderboard_periods.leaderboard_id", "leaderboard_periods.period"]),
        sa.CheckConstraint("score BETWEEN -9007199254740991 AND 9007199254740991", name="score_exact"),
    )
    op.create_index("ix_leaderboard_entries_player_id", "leaderboard_entries", ["player_id"])
    op.create_table(
        "score_submissions",
        sa.Column("leaderboard_id", sa.Text, primary_key=True),
        sa.Column("submission_id", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("result", JSONB, nullable=False),
        _created_at(),
    )
    op.create_index("ix_score_submissions_created_at", "score_submissions", ["created_at"])
    op.create_table(
        "player_activity",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("leaderboard_id", sa.Text, nullable=False),
        sa.Column("player_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        _created_at(),
    )
    op.create_index("ix_player_activity_player_id", "player_activity", ["player_id", "created_at"])
    op.create_table(
        "api_keys",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("owner_id", UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        _created_at(),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_api_keys_owner_id", "api_keys", ["owner_id"])
    op.execute(PERIOD_FUNCTION)
    op.execute("""
        INSERT INTO leaderboards (id, name, sort_order, update_mode, reset_period, timezone)
        VALUES ('default', 'Default leaderboard', 'desc', 'best', 'never', 'UTC')""")
    op.execute("""
        INSERT INTO leaderboard_periods (leaderboard_id, period, starts_at, ends_at)
        SELECT 'default', period, starts_at, ends_at FROM leaderboard_period('never', 'UTC', now())""")


def downgrade() -> None:
    op.execute("DROP FUNCTION leaderboard_period(text, text, timestamptz)")
    for table in ("api_keys", "player_activity", "score_submissions", "leaderboard_entries",
                  "leaderboard_periods", "leaderboards"):
        op.drop_table(table)
    op.execute("DROP SEQUENCE leaderboard_tie_seq")
    op.execute("DELETE FROM events WHERE aggregate_type <> 'quiz_session'")
    op.execute("DROP INDEX ix_events_aggregate")
    op.alter_column("events", "aggregate_id", type_=UUID(as_uuid=True), postgresql_using="aggregate_id::uuid")
    op.create_index("ix_events_aggregate", "events", ["aggregate_id", "created_at"])
