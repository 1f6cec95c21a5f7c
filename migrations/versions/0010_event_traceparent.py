"""The span context of the request (or score message) that caused an event: `events.traceparent`.

W3C trace context (`00-<trace id>-<span id>-<flags>`, app/core/tracing.py), written by the outbox writers
(app/core/outbox.py) and sent on by the relay as the Kafka header `traceparent`. A column, not a field of
the payload: the relay in wal mode forwards the payload's text without parsing it. NULL when the event
was caused by nothing traced. Adding a nullable column without a default rewrites no partition; the
publication (migration 0006) has no column list, so the relay decodes the new column as it comes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "traceparent")
