"""The quiz's tables: quizzes, their questions and pictures, live sessions, their players and answers."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.accounts.models import User
from app.core.models import Base, created_now, uuid_pk
from app.quiz.domain import sessions as session_rules


class Quiz(Base):
    __tablename__ = "quizzes"
    __table_args__ = (CheckConstraint("get_ready_s BETWEEN 0 AND 5", name="get_ready_range"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(User.id), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = created_now()
    updated_at: Mapped[datetime] = created_now()
    # An edit of a played quiz makes a new one: the played one is archived and points at it.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"),
                                                          index=True)
    # Seconds each question shows before its answers open; None: the service's QUESTION_GET_READY_S.
    get_ready_s: Mapped[int | None] = mapped_column(SmallInteger)


class QuestionImage(Base):
    __tablename__ = "question_images"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"), nullable=False,
                                                index=True)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_now()


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (
        UniqueConstraint("quiz_id", "position"),
        CheckConstraint("points IN (0, 1000, 2000)", name="points_allowed"),
        CheckConstraint("time_limit_s BETWEEN 5 AND 240", name="time_limit_range"),
        CheckConstraint("kind IN ('choice', 'true_false', 'poll')", name="kind_known"),
        CheckConstraint("char_length(image_alt) <= 250", name="image_alt_length"),
        CheckConstraint("(kind = 'poll' AND correct_choice IS NULL AND points = 0) OR "
                        "(kind <> 'poll' AND correct_choice >= 0 "
                        "AND correct_choice < jsonb_array_length(choices))",
                        name="correct_choice_in_choices"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    quiz_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    choices: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    correct_choice: Mapped[int | None] = mapped_column(Integer)  # none for a poll
    time_limit_s: Mapped[int] = mapped_column(Integer, nullable=False)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False, server_default="choice")
    image_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("question_images.id", ondelete="SET NULL"))
    image_alt: Mapped[str | None] = mapped_column(Text)  # what a screen reader says for the picture


class QuizSession(Base):
    __tablename__ = "quiz_sessions"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in session_rules.STATUSES)})",
                        name="status_known"),
        Index("uq_quiz_sessions_live_join_code", "join_code", unique=True,
              postgresql_where=text(session_rules.LIVE_SQL)),
        Index("ix_quiz_sessions_open_deadline", "question_deadline",
              postgresql_where=text(session_rules.OPEN_SQL)),
        Index("ix_quiz_sessions_retained_from", text("coalesce(ended_at, question_shown_at, created_at)")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    quiz_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quizzes.id"), nullable=False, index=True)
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(User.id), nullable=False)
    join_code: Mapped[str] = mapped_column(String(6), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=session_rules.LOBBY)
    current_question_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("questions.id"))
    question_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    question_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The question shows from here; its answers open at question_opened_at (a get-ready moment between).
    question_shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = created_now()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Participant(Base):
    __tablename__ = "quiz_session_participants"
    __table_args__ = (
        UniqueConstraint("quiz_session_id", "user_id"),
        Index("uq_quiz_session_participants_nickname", "quiz_session_id", text("lower(nickname)"),
              unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    quiz_session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quiz_sessions.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(User.id), nullable=False, index=True)
    nickname: Mapped[str] = mapped_column(String(32), nullable=False)
    # As of the last closed question (answers are added when their question closes).
    score: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    streak: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                server_default=func.now())
    # When the participant reached the current score: equal scores rank by it.
    score_reached_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now())
    # The player's own code to take this place back from another device (shown on their screen).
    rejoin_code: Mapped[str | None] = mapped_column(String(8))
    # Removed by the host: off the board, and that account cannot join or answer until put back.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How many times the host removed this player: names each removal and each undo (the board's dedupe).
    removals: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class ParticipantAnswer(Base):
    __tablename__ = "participant_answers"
    __table_args__ = (
        UniqueConstraint("quiz_session_participant_id", "question_id"),
        Index("ix_participant_answers_session_question", "quiz_session_id", "question_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
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
    created_at: Mapped[datetime] = created_now()
