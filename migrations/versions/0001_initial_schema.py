"""Initial schema: users, quizzes, live sessions, answers and the events outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created_at(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("username", sa.String(32), unique=True),
        sa.Column("nickname", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("is_guest", sa.Boolean, nullable=False, server_default=sa.false()),
        _created_at(),
    )
    op.create_table(
        "quizzes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("owner_id", UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        _created_at(),
    )
    op.create_table(
        "questions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("quiz_id", UUID(as_uuid=True), sa.ForeignKey("quizzes.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("choices", JSONB, nullable=False),
        sa.Column("correct_choice", sa.Integer, nullable=False),
        sa.Column("time_limit_s", sa.Integer, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.UniqueConstraint("quiz_id", "position"),
        sa.CheckConstraint("points IN (0, 1000, 2000)", name="points_allowed"),
        sa.CheckConstraint("time_limit_s BETWEEN 5 AND 240", name="time_limit_range"),
        sa.CheckConstraint("correct_choice >= 0 AND correct_choice < jsonb_array_length(choices)",
                           name="correct_choice_in_choices"),
    )
    op.create_table(
        "quiz_sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("quiz_id", UUID(as_uuid=True), sa.ForeignKey("quizzes.id"), nullable=False, index=True),
        sa.Column("host_id", UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("join_code", sa.String(6), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_question_id", UUID(as_uuid=True), sa.ForeignKey("questions.id")),
        sa.Column("question_opened_at", sa.DateTime(timezone=True)),
        sa.Column("question_deadline", sa.DateTime(timezone=True)),
        _created_at(),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('lobby', 'question_open', 'question_closed', 'ended')",
                           name="status_known"),
    )
    op.create_index("uq_quiz_sessions_live_join_code", "quiz_sessions", ["join_code"], unique=True,
                    postgresql_where=sa.text("status <> 'ended'"))
    # The deadline sweeper looks only at sessions with an open question.
    op.create_index("ix_quiz_sessions_open_deadline", "quiz_sessions", ["question_deadline"],
                    postgresql_where=sa.text("status = 'question_open'"))
    op.create_table(
        "quiz_session_participants",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("quiz_session_id", UUID(as_uuid=True),
                  sa.ForeignKey("quiz_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("nickname", sa.String(32), nullable=False),
        sa.Column("score", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("streak", sa.Integer, nullable=False, server_default="0"),
        _created_at("joined_at"),
        _created_at("score_reached_at"),
        sa.UniqueConstraint("quiz_session_id", "user_id"),
    )
    op.create_table(
        "participant_answers",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("quiz_session_participant_id", UUID(as_uuid=True),
                  sa.ForeignKey("quiz_session_participants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("quiz_session_id", UUID(as_uuid=True), nullable=False),
        sa.Column("question_id", UUID(as_uuid=True), sa.ForeignKey("questions.id"), nullable=False),
        sa.Column("choice", sa.Integer, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("answered_ms", sa.Integer, nullable=False),
        _created_at(),
        sa.UniqueConstraint("quiz_session_participant_id", "question_id"),
    )
    op.create_index("ix_participant_answers_session_question", "participant_answers",
                    ["quiz_session_id", "question_id"])
    op.create_table(
        "events",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("aggregate_type", sa.String(32), nullable=False),
        sa.Column("aggregate_id", UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("clock_timestamp()")),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_events_unpublished", "events", ["created_at", "seq"],
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_index("ix_events_published_at", "events", ["published_at"],
                    postgresql_where=sa.text("published_at IS NOT NULL"))
    op.create_index("ix_events_aggregate", "events", ["aggregate_id", "created_at"])
    # Published rows are updated once and deleted later: keep vacuum close behind.
    op.execute("ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.01, "
               "autovacuum_vacuum_insert_scale_factor = 0.01, fillfactor = 90)")
    # Wake the relay on commit; one notification per statement, merged per transaction by PostgreSQL.
    op.execute("""
        CREATE FUNCTION events_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox_events', '');
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER events_notify_relay AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_notify_relay()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS events_notify_relay ON events")
    op.execute("DROP FUNCTION IF EXISTS events_notify_relay()")
    op.drop_table("events")
    op.drop_table("participant_answers")
    op.drop_table("quiz_session_participants")
    op.drop_table("quiz_sessions")
    op.drop_table("questions")
    op.drop_table("quizzes")
    op.drop_table("users")
