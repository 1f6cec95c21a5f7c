"""Typed SQLAlchemy models of the schema (the migrations are the source of the DDL)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.domain import sessions as session_rules

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _uuid_pk()
    username: Mapped[str | None] = mapped_column(String(32), unique=True)
    nickname: Mapped[str] = mapped_column(String(32), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_guest: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = _created_at()
    # A logout revokes every access token issued before this instant.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Quiz(Base):
    __tablename__ = "quizzes"

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
    # An edit of a played quiz makes a new one: the played one is archived and points at it.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), index=True)


class QuestionImage(Base):
    __tablename__ = "question_images"

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created_at()


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (
        UniqueConstraint("quiz_id", "position"),
        CheckConstraint("points IN (0, 1000, 2000)", name="points_allowed"),
        CheckConstraint("time_limit_s BETWEEN 5 AND 240", name="time_limit_range"),
        CheckConstraint("kind IN ('choice', 'true_false', 'poll')", name="kind_known"),
        CheckConstraint("(kind = 'poll' AND correct_choice IS NULL AND points = 0) OR "
                        "(kind <> 'poll' AND correct_choice >= 0 AND correct_choice < jsonb_array_length(choices))",
                        name="correct_choice_in_choices"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    quiz_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    choices: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    correct_choice: Mapped[int | None] = mapped_column(Integer)  # none for a poll
    time_limit_s: Mapped[int] = mapped_column(Integer, nullable=False)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False, server_default="choice")
    image_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("question_images.id", ondelete="SET NULL"))


class QuizSession(Base):
    __tablename__ = "quiz_sessions"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in session_rules.STATUSES)})", name="status_known"),
        Index("uq_quiz_sessions_live_join_code", "join_code", unique=True,
              postgresql_where=text(session_rules.LIVE_SQL)),
        Index("ix_quiz_sessions_open_deadline", "question_deadline",
              postgresql_where=text(session_rules.OPEN_SQL)),
        Index("ix_quiz_sessions_retained_from", text("coalesce(ended_at, question_shown_at, created_at)")),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    quiz_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quizzes.id"), nullable=False, index=True)
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    join_code: Mapped[str] = mapped_column(String(6), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=session_rules.LOBBY)
    current_question_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("questions.id"))
    question_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    question_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The question shows from here; its answers open at question_opened_at (a get-ready moment between).
    question_shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = _created_at()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Participant(Base):
    __tablename__ = "quiz_session_participants"
    __table_args__ = (
        UniqueConstraint("quiz_session_id", "user_id"),
        Index("uq_quiz_session_participants_nickname", "quiz_session_id", text("lower(nickname)"), unique=True),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    quiz_session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quiz_sessions.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    nickname: Mapped[str] = mapped_column(String(32), nullable=False)
    # As of the last closed question (answers are added when their question closes).
    score: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    streak: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    # When the participant reached the current score: equal scores rank by it.
    score_reached_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now())
    # The player's own code to take this place back from another device (shown on their screen).
    rejoin_code: Mapped[str | None] = mapped_column(String(8))
    # Removed by the host: off the board, and that account cannot join the session again.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ParticipantAnswer(Base):
    __tablename__ = "participant_answers"
    __table_args__ = (
        UniqueConstraint("quiz_session_participant_id", "question_id"),
        Index("ix_participant_answers_session_question", "quiz_session_id", "question_id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    quiz_session_participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quiz_session_participants.id", ondelete="CASCADE"), nullable=False)
    quiz_session_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    question_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("questions.id"), nullable=False)
    choice: Mapped[int] = mapped_column(Integer, nullable=False)
    correct: Mapped[bool] = mapped_column(Boolean, nullable=False)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    answered_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    # The streak this answer leads to, and whether the close of its question has added it to the
    # participant's score yet: an open question's points stay hidden until it closes.
    streak: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    counted: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = _created_at()


class Event(Base):
    """The transactional outbox: one row per state change, published to Kafka by the relay.

    Partitioned by day on `created_at` (migration 0005; partitions `events_pYYYYMMDD` plus
    `events_default`, kept by outbox_relay/partitions.py), so the primary key holds `created_at` too:
    ids are random UUIDs made by `new_event_id`, unique in practice, and the relay marks by both."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unpublished", "created_at", "seq", postgresql_where=text("published_at IS NULL")),
        Index("ix_events_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
        Index("ix_events_aggregate", "aggregate_id", "created_at"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # Breaks ties between events of one instant; never used alone as a claim horizon.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False)
    aggregate_type: Mapped[str] = mapped_column(String(32), nullable=False)
    # A quiz session's id, or a board's id (a slug): the Kafka key of the event.
    aggregate_id: Mapped[str] = mapped_column(Text, nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # clock_timestamp, not now(): the insert runs after the row locks that order a session's events.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=text("clock_timestamp()"))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxCapture(Base):
    """How far the relay in wal mode has captured the outbox from its replication slot (migration 0006):
    every event committed before `caught_up_at` was delivered to Kafka. Written by the relay when it has
    read its slot to the end, read by `outbox_lag` (app/core/outbox.py)."""

    __tablename__ = "outbox_capture"

    slot_name: Mapped[str] = mapped_column(Text, primary_key=True)
    caught_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# --- the leaderboard service ----------------------------------------------------------------------

class Leaderboard(Base):
    __tablename__ = "leaderboards"
    __table_args__ = (
        CheckConstraint(r"id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'", name="id_slug"),
        # Ids differ by more than case: nobody makes `Default` beside `default`, or `foo` beside `Foo`.
        Index("uq_leaderboards_lower_id", text("lower(id)"), unique=True),
        CheckConstraint("sort_order IN ('asc', 'desc')", name="sort_order_known"),
        CheckConstraint("update_mode IN ('replace', 'increment', 'best')", name="update_mode_known"),
        CheckConstraint("reset_period IN ('never', 'hourly', 'daily', 'weekly', 'monthly')", name="reset_period_known"),
        CheckConstraint("max_entries IS NULL OR max_entries > 0", name="max_entries_positive"),
        CheckConstraint("self_report_max IS NULL OR (self_report_max > 0 AND update_mode = 'increment')",
                        name="self_report_increments"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)  # None: the system's
    sort_order: Mapped[str] = mapped_column(Text, nullable=False)
    update_mode: Mapped[str] = mapped_column(Text, nullable=False)
    reset_period: Mapped[str] = mapped_column(Text, nullable=False)
    timezone: Mapped[str] = mapped_column(Text, nullable=False)
    max_entries: Mapped[int | None] = mapped_column(Integer)
    self_report_max: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, nullable=False,
                                                      server_default=text("'{}'::jsonb"))
    # Bumped by every change of the configuration, so a late or replayed board event never reverts it.
    revision: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = _created_at()
    # A deleted board keeps its row, so its id never names another board.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LeaderboardPeriod(Base):
    __tablename__ = "leaderboard_periods"
    __table_args__ = (
        Index("uq_leaderboard_periods_open", "leaderboard_id", unique=True, postgresql_where=text("closed_at IS NULL")),
        Index("ix_leaderboard_periods_due", "ends_at",
              postgresql_where=text("closed_at IS NULL AND ends_at IS NOT NULL")),
    )

    leaderboard_id: Mapped[str] = mapped_column(ForeignKey("leaderboards.id"), primary_key=True)
    period: Mapped[str] = mapped_column(Text, primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    entry_count: Mapped[int | None] = mapped_column(Integer)


class LeaderboardEntry(Base):
    __tablename__ = "leaderboard_entries"
    __table_args__ = (
        ForeignKeyConstraint(["leaderboard_id", "period"],
                             ["leaderboard_periods.leaderboard_id", "leaderboard_periods.period"]),
        CheckConstraint("score BETWEEN -9007199254740991 AND 9007199254740991", name="score_exact"),
    )

    leaderboard_id: Mapped[str] = mapped_column(Text, primary_key=True)
    period: Mapped[str] = mapped_column(Text, primary_key=True)
    player_id: Mapped[str] = mapped_column(Text, primary_key=True, index=True)
    score: Mapped[int | None] = mapped_column(BigInteger)  # None: removed (the row keeps its version)
    previous_score: Mapped[int | None] = mapped_column(BigInteger)
    tie_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    display_name: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    reached_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ScoreSubmission(Base):
    __tablename__ = "score_submissions"

    leaderboard_id: Mapped[str] = mapped_column(Text, primary_key=True)
    submission_id: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text, nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now(),
                                                 index=True)


class PlayerActivity(Base):
    __tablename__ = "player_activity"
    __table_args__ = (Index("ix_player_activity_player_id", "player_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    leaderboard_id: Mapped[str] = mapped_column(Text, nullable=False)
    player_id: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _created_at()


class ApiKey(Base):
    """A game server's key to its owner's boards; only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    secret_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
