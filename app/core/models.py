"""The declarative base of every model (its naming convention keeps constraint names stable across
autogenerate), and the outbox's tables. Each package keeps its own tables (app/accounts/models.py,
app/quiz/models.py, app/leaderboards/models.py); the migrations are the source of the DDL."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, MetaData, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def created_now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


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
    # The W3C trace context of the request or message that caused the event (app/core/tracing.py);
    # the relay sends it as the Kafka header `traceparent`. NULL: nothing traced.
    traceparent: Mapped[str | None] = mapped_column(String(55))


class OutboxCapture(Base):
    """How far the relay in wal mode has captured the outbox from its replication slot (migration 0006):
    every event committed before `caught_up_at` was delivered to Kafka. Written by the relay when it has
    read its slot to the end, read by `outbox_lag` (app/core/outbox.py); `caught_up_xmin` is the fence
    a promoted standby's relay republishes from (docs/architecture.md)."""

    __tablename__ = "outbox_capture"

    slot_name: Mapped[str] = mapped_column(Text, primary_key=True)
    caught_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The oldest transaction (xid8) running at that instant: every one below it had ended (migration 0011).
    caught_up_xmin: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # That fence, copied by a relay that found no slot (a failover) until it has republished from it.
    republish_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The first transaction id not given out once the new slot existed: the slot decodes those from it on.
    republish_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The timeline the slot was made on: a slot found on a leader of another is remade (migration 0012).
    slot_timeline: Mapped[int | None] = mapped_column(Integer, nullable=True)
