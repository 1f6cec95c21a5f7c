"""The leaderboard service's tables: boards, their periods and entries, score submissions (for retries)
and players' actions."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.accounts.models import User
from app.core.models import Base, created_now


class Leaderboard(Base):
    __tablename__ = "leaderboards"
    __table_args__ = (
        CheckConstraint(r"id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'", name="id_slug"),
        # Ids differ by more than case: nobody makes `Default` beside `default`, or `foo` beside `Foo`.
        Index("uq_leaderboards_lower_id", text("lower(id)"), unique=True),
        CheckConstraint("sort_order IN ('asc', 'desc')", name="sort_order_known"),
        CheckConstraint("update_mode IN ('replace', 'increment', 'best')", name="update_mode_known"),
        CheckConstraint("reset_period IN ('never', 'hourly', 'daily', 'weekly', 'monthly')",
                        name="reset_period_known"),
        CheckConstraint("max_entries IS NULL OR max_entries > 0", name="max_entries_positive"),
        CheckConstraint("self_report_max IS NULL OR (self_report_max > 0 AND update_mode = 'increment')",
                        name="self_report_increments"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(User.id), index=True)  # None: the system's
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
    created_at: Mapped[datetime] = created_now()
    # A deleted board keeps its row, so its id never names another board.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LeaderboardPeriod(Base):
    __tablename__ = "leaderboard_periods"
    __table_args__ = (
        Index("uq_leaderboard_periods_open", "leaderboard_id", unique=True,
              postgresql_where=text("closed_at IS NULL")),
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
        Index("ix_leaderboard_entries_name", "leaderboard_id", "period", text("lower(display_name)")),
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                 server_default=func.now(), index=True)


class PlayerActivity(Base):
    __tablename__ = "player_activity"
    __table_args__ = (Index("ix_player_activity_player_id", "player_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    leaderboard_id: Mapped[str] = mapped_column(Text, nullable=False)
    player_id: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = created_now()
