"""`ops trace EVENT_ID`: one event's journey, hop by hop, from what the system keeps.

- its `events` row: created_at (the click: the request's transaction inserting it), its commit time when
  PostgreSQL keeps them (track_commit_timestamp), published_at (poll mode marks it), its traceparent;
- its Kafka message, on the partition its key goes to (`partition_of`), read from the first message of
  its creation time on, at most --scan messages: the message's timestamp (when the relay produced it),
  partition and offset;
- Redis: the session's applied set (a quiz session's event), and the room note the worker appended when
  it applied it (its stream entry's time), while the room stream still holds it.
What the system no longer keeps (a pruned row, a message past the topic's retention, a trimmed stream) is
printed as not found; nothing is guessed.
"""
from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

import click
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from sqlalchemy import text

from app.core.kafka import ANSWER_WAIT_S, partition_of
from app.core.poison import store_unavailable
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.events import LEADERBOARD
from app.ops.common import config, database, ops, redis_store
from app.quiz.board.keys import SessionKeys

SCAN_DEFAULT = 20_000
_ROW = text("""
    SELECT id, aggregate_type, aggregate_id, event_type, created_at, published_at, traceparent,
           CASE WHEN current_setting('track_commit_timestamp')::bool
                THEN pg_xact_commit_timestamp(xmin) END AS committed_at
    FROM events WHERE id = :id""")


def _ms(at: datetime) -> float:
    return at.timestamp() * 1000


def _line(hop: str, at_ms: float | None, since_ms: float | None, where: str) -> str:
    if at_ms is None:
        return f"  {hop:<10} {'not found':<29} {'':>12}  {where}"
    when = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    after = f"+{at_ms - since_ms:.1f} ms" if since_ms is not None else ""
    return f"  {hop:<10} {when:<29} {after:>12}  {where}"


def find_message(event_id: str, key: bytes, after_ms: float, scan: int) -> tuple[int, int, int] | None:
    """(timestamp ms, partition, offset) of the event's message on the main topic, reading at most `scan`
    messages of its key's partition from its creation time on; None when not found."""
    settings = config()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"ops-trace-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    topic = settings.kafka_topic
    try:
        partitions = len(consumer.list_topics(topic, timeout=ANSWER_WAIT_S).topics[topic].partitions)
        partition = partition_of(key, partitions)
        start = consumer.offsets_for_times([TopicPartition(topic, partition, int(after_ms) - 1000)],
                                           timeout=ANSWER_WAIT_S)[0]
        if start.offset < 0:  # nothing on the partition since then
            return None
        consumer.assign([start])
        wanted = event_id.encode()
        for _ in range(scan):
            message = consumer.poll(ANSWER_WAIT_S)
            if message is None:  # the partition's end comes as an event: no answer at all is no "not found"
                raise click.ClickException(f"cannot read {topic}: Kafka did not answer within "
                                           f"{ANSWER_WAIT_S:.0f} s")
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return None
                if store_unavailable(KafkaException(message.error())):
                    continue  # a broker away for a while: the client reconnects by itself
                raise click.ClickException(f"cannot read {topic}: {message.error()}")
            if dict(message.headers() or []).get("event_id") == wanted:
                return message.timestamp()[1], message.partition(), message.offset()
        return None
    except KafkaException as exc:
        raise click.ClickException(f"cannot read {topic}: {exc}") from None
    finally:
        consumer.close()


def room_note(aggregate_type: str, aggregate_id: str, event_id: str) -> float | None:
    """The time (ms) of the worker's room note of the event, when it applied it (if the stream keeps it)."""
    keys = LeaderboardKeys(aggregate_id) if aggregate_type == LEADERBOARD else SessionKeys.of(aggregate_id)
    wanted = event_id.encode()
    for entry_id, fields in redis_store().xrange(keys.room):
        if fields.get(b"event_id") == wanted:
            return float(entry_id.split(b"-", 1)[0])
    return None


@ops.command("trace")
@click.argument("event_id", type=click.UUID)
@click.option("--scan", type=click.IntRange(min=1, max=1_000_000), default=SCAN_DEFAULT, show_default=True,
              help="Most Kafka messages of the event's partition read to find it.")
def trace_command(event_id: uuid.UUID, scan: int) -> None:
    """One event's hops with their times: clicked (its row), committed, produced (its Kafka message),
    applied (its room note in Redis). Exits 1 when the event is not in the outbox."""
    with database().connect() as conn:
        row = conn.execute(_ROW, {"id": event_id}).one_or_none()
    if row is None:
        click.echo(f"event {event_id}: not in the outbox (never written, or pruned past its retention)")
        sys.exit(1)
    click.echo(f"event {row.id}: {row.event_type} of {row.aggregate_type} {row.aggregate_id}")
    click.echo(f"  trace      {row.traceparent or 'none (nothing traced)'}")
    clicked = _ms(row.created_at)
    click.echo(_line("clicked", clicked, None, "created_at (the insert, in the request's transaction)"))
    if row.committed_at is not None:
        click.echo(_line("committed", _ms(row.committed_at), clicked, "pg_xact_commit_timestamp"))
    else:
        click.echo("  committed  unknown (track_commit_timestamp is off)")
    if row.published_at is not None:
        click.echo(_line("marked", _ms(row.published_at), clicked, "events.published_at (poll mode)"))
    found = find_message(str(row.id), str(row.aggregate_id).encode(), clicked, scan)
    if found is None:
        click.echo(_line("produced", None, None, f"{config().kafka_topic}: not in the first {scan} messages "
                                                  "of its partition since it was created"))
    else:
        click.echo(_line("produced", found[0], clicked, f"{config().kafka_topic}[{found[1]}]@{found[2]} "
                                                        "(message timestamp)"))
    applied = room_note(row.aggregate_type, str(row.aggregate_id), str(row.id))
    marker = ""
    if row.aggregate_type != LEADERBOARD:
        member = redis_store().sismember(SessionKeys.of(row.aggregate_id).applied, str(row.id))
        marker = "; in the session's applied set" if member else "; not in the session's applied set"
    click.echo(_line("applied", applied, clicked, f"room note (stream entry time){marker}"))
    hops = [found[0] if found else None, applied]
    known = [at for at in hops if at is not None]
    click.echo(f"trace: {len(known) + 1} of 3 hops found, {max(known) - clicked:.1f} ms from click to the "
               f"last" if known else "trace: only the row was found")
