"""The operator CLI: `flask --app app ops ...` (see `--help` of each command).

Every command reads the environment's configuration through the app, prints a one-line summary
last, and exits 0 on success, 1 on a failure or a finding (verify: a board differs), 2 on a usage
error. Progress bars are drawn only when stdout is a terminal.

PostgreSQL is the truth (DESIGN.md, invariant 4): verify compares Redis with it, rebuild copies it
into Redis with the atomic swap of app/leaderboards/rebuild.py, and replay and redrive resend
events that the worker dedupes by event id, so neither can count an event twice.
"""
from __future__ import annotations

import re
import sys
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

import click
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import text

from app.config import Config
from app.events import PoisonEvent, decode_envelope, envelope_from_row
from app.extensions import services
from app.kafka import make_consumer, make_producer
from app.leaderboards.keys import SessionKeys
from app.leaderboards.rebuild import UnknownSession, rebuild_board, session_epoch_ms
from app.leaderboards.scores import instant_ms, reached_ms, split
from app.services.outbox import outbox_lag, outbox_status

ops = AppGroup("ops", help="Inspect and repair the leaderboards, the outbox and the dead letters.")
dlq = AppGroup("dlq", help="Dead-lettered events: list them, send them back to the main topic.")
ops.add_command(dlq)

DLQ_REASON = "dlq_reason"
KAFKA_TIMEOUT_S = 10.0
# Reading a topic stops at the high watermarks taken at the start; this bounds a stalled read.
READ_STALL_S = 30.0
_BOARD_KEY = re.compile(r"^(?:lb|meta):\{([0-9a-f-]{36})\}$")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_AGO_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _config() -> Config:
    return current_app.config["LIVEQUIZ"]


@contextmanager
def _progress(items: Iterable[Any], length: int, label: str) -> Iterator[Iterable[Any]]:
    """A progress bar on a terminal; the plain iterable when stdout is a pipe or a file."""
    if sys.stdout.isatty() and length > 0:
        with click.progressbar(items, length=length, label=label) as bar:
            yield bar
    else:
        yield items


def _one_selection(session_ids: tuple[uuid.UUID, ...], all_sessions: bool) -> None:
    if bool(session_ids) == all_sessions:
        raise click.UsageError("give --session ID (repeatable) or --all, not both")


def _cached_sessions(redis) -> set[str]:
    """Sessions with a board or board metadata in Redis (SCAN, so it never blocks Redis)."""
    found: set[str] = set()
    for pattern in ("meta:{*}", "lb:{*}"):
        for key in redis.scan_iter(match=pattern, count=1000):
            match = _BOARD_KEY.match(key.decode() if isinstance(key, bytes) else key)
            if match:  # skips the temporary keys of a rebuild in progress
                found.add(match.group(1))
    return found


# -- verify ----------------------------------------------------------------------------------------

Standing = tuple[int, int]  # score, reached_ms: the two halves of the composite (scores.py)


@dataclass(frozen=True)
class Difference:
    session_id: str
    participant_id: str | None
    redis: Standing | None
    postgres: Standing | None
    # "board", or "held": an answer to the open question, hidden until it closes
    kind: str = "board"

    @property
    def redis_score(self) -> int | None:
        return None if self.redis is None else self.redis[0]

    @property
    def postgres_score(self) -> int | None:
        return None if self.postgres is None else self.postgres[0]

    def line(self) -> str:
        def shown(score: int | None) -> str:
            return "missing" if score is None else str(score)

        held = " held answer:" if self.kind == "held" else ""
        text_ = (f"differs  session={self.session_id} participant={self.participant_id or '-'}{held} "
                 f"redis={shown(self.redis_score)} postgres={shown(self.postgres_score)}")
        if self.redis and self.postgres and self.redis_score == self.postgres_score:
            # Equal scores, different reach times: ties are ranked differently.
            text_ += f" tie-break: reached_ms redis={self.redis[1]} postgres={self.postgres[1]}"
        return text_


def _postgres_standings(engine, session_id: str) -> dict[str, Standing] | None:
    """(score, reached_ms) of a session's participants, or None when PostgreSQL has no such session."""
    with engine.connect() as connection:
        created_at = connection.execute(text("SELECT created_at FROM quiz_sessions WHERE id = :s"),
                                        {"s": session_id}).scalar()
        if created_at is None:
            return None
        epoch = session_epoch_ms(created_at)
        return {str(pid): (int(score), reached_ms(epoch, instant_ms(reached_at)))
                for pid, score, reached_at in connection.execute(text(
                    "SELECT id, score, score_reached_at FROM quiz_session_participants "
                    "WHERE quiz_session_id = :s"),
                    {"s": session_id})}


def _postgres_held(engine, session_id: str) -> dict[str, Standing]:
    """(points, answered at ms) of the answers to the open question, which its close will add."""
    with engine.connect() as connection:
        return {str(pid): (int(points), instant_ms(at)) for pid, points, at in connection.execute(text(
            "SELECT quiz_session_participant_id, points, created_at FROM participant_answers "
            "WHERE quiz_session_id = :s AND NOT counted"), {"s": session_id})}


def _redis_held(raw: dict) -> dict[str, Standing]:
    held = {}
    for member, value in raw.items():
        points, _, at_ms = (value.decode() if isinstance(value, bytes) else value).partition(":")
        held[member.decode() if isinstance(member, bytes) else member] = (int(points), int(at_ms))
    return held


def compare_board(engine, redis, session_id: str) -> list[Difference] | None:
    """Differences between the Redis board and PostgreSQL (score and reach time of every player);
    None when Redis holds no board at all.

    A session without board keys is not cached, which is not a difference: the worker and the
    read path rebuild it from PostgreSQL before using it. Redis is read first: an event applied
    there was committed first, so a race can only show PostgreSQL ahead, never Redis.
    """
    keys = SessionKeys.of(session_id)
    pipe = redis.pipeline(transaction=True)
    pipe.exists(keys.meta)
    pipe.zrange(keys.board, 0, -1, withscores=True)
    pipe.hgetall(keys.pending)
    has_meta, board, pending = pipe.execute()
    cached = {(m.decode() if isinstance(m, bytes) else m): split(v) for m, v in board}
    held = _redis_held(pending)
    postgres = _postgres_standings(engine, session_id)
    if not has_meta and not cached:
        if postgres is None:
            raise UnknownSession(session_id)
        return None
    if postgres is None:
        if not cached:
            return [Difference(session_id, None, None, None)]
        return [Difference(session_id, pid, standing, None) for pid, standing in sorted(cached.items())]
    postgres_held = _postgres_held(engine, session_id)
    return [Difference(session_id, pid, cached.get(pid), postgres.get(pid))
            for pid in sorted(set(cached) | set(postgres)) if cached.get(pid) != postgres.get(pid)] + [
        Difference(session_id, pid, held.get(pid), postgres_held.get(pid), kind="held")
        for pid in sorted(set(held) | set(postgres_held)) if held.get(pid) != postgres_held.get(pid)]


@ops.command("verify")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to check (repeatable).")
@click.option("--all", "all_sessions", is_flag=True, help="Every board in Redis (the default).")
@click.option("--settle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds before boards that differ are checked again; only differences seen twice count "
                   "(events in flight are applied meanwhile).")
def verify_command(session_ids: tuple[uuid.UUID, ...], all_sessions: bool, settle: float) -> None:
    """Compare Redis leaderboards with the scores in PostgreSQL.

    Prints one line per difference (session, participant, Redis score, PostgreSQL score; a
    participant missing on either side counts; equal scores reached at different times rank ties
    differently and count too), then the outbox lag and the dead-letter count.
    A session that Redis does not cache is not a difference (it is rebuilt on first use).
    Exits 0 only when every board agrees, 1 otherwise. Repair with `ops rebuild`.
    """
    if session_ids and all_sessions:
        raise click.UsageError("give --session ID (repeatable) or --all, not both")
    live = services()
    engine, redis = live.engine, live.redis
    sessions = sorted({str(s) for s in session_ids} or _cached_sessions(redis))
    found: dict[str, list[Difference]] = {}
    not_cached = 0
    unknown: list[str] = []
    with _progress(sessions, len(sessions), "verifying boards") as bar:
        for session_id in bar:
            try:
                differences = compare_board(engine, redis, session_id)
            except UnknownSession:
                unknown.append(session_id)
                continue
            if differences is None:
                not_cached += 1
            elif differences:
                found[session_id] = differences
    if found and settle > 0:
        time.sleep(settle)
        for session_id in list(found):
            again = set(compare_board(engine, redis, session_id) or [])
            found[session_id] = [d for d in found[session_id] if d in again]
            if not found[session_id]:
                del found[session_id]
    for differences in found.values():
        for difference in differences:
            click.echo(difference.line())
    for session_id in unknown:
        click.echo(f"unknown session {session_id}: neither in Redis nor in PostgreSQL", err=True)
    lag_s, unpublished = outbox_lag(engine)
    click.echo(f"outbox: {unpublished} unpublished, oldest {lag_s:.1f} s old")
    dlq_topic = _config().kafka_dlq_topic
    try:
        dead = dead_letter_counts(_config())
    except KafkaException as exc:
        dead = None
        click.echo(f"dead letters: cannot read {dlq_topic}: {exc}", err=True)
    else:
        click.echo(f"dead letters: {dead.total} in {dlq_topic}, {dead.pending} pending redrive")
    dead_text = f"dead letters {dead.total} ({dead.pending} pending)" if dead else "dead letters unknown"
    players = sum(len(d) for d in found.values())
    click.echo(f"verify: {len(sessions)} sessions checked, {len(found)} differ ({players} participants), "
               f"{not_cached} not cached, {len(unknown)} unknown; "
               f"outbox lag {lag_s:.1f} s ({unpublished} unpublished); "
               f"{dead_text}")
    if found or unknown or dead is None:
        sys.exit(1)


# -- rebuild ---------------------------------------------------------------------------------------

def _live_postgres_sessions(engine) -> set[str]:
    with engine.connect() as connection:
        return {str(s) for s in connection.execute(text(
            "SELECT id FROM quiz_sessions WHERE status <> 'ended'")).scalars()}


def drop_board(redis, session_id: str) -> None:
    """Remove the cached state of a session PostgreSQL does not know (the room stream stays)."""
    keys = SessionKeys.of(session_id)
    redis.delete(keys.board, keys.applied, keys.meta, keys.names, keys.recent, keys.pending)


@ops.command("rebuild")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to rebuild (repeatable).")
@click.option("--all", "all_sessions", is_flag=True,
              help="Every board Redis holds and every session not ended in PostgreSQL.")
def rebuild_command(session_ids: tuple[uuid.UUID, ...], all_sessions: bool) -> None:
    """Rebuild leaderboards from PostgreSQL, swapping each in atomically.

    Safe while traffic flows: events applied during a rebuild are carried over by the swap, and
    events it already counted are marked applied so their delivery is skipped. With --all, a board
    whose session PostgreSQL does not know is removed (PostgreSQL is the truth). Ended sessions
    that Redis no longer caches are left alone: reads rebuild them on demand.
    """
    _one_selection(session_ids, all_sessions)
    live = services()
    engine, redis = live.engine, live.redis
    if all_sessions:
        sessions = sorted(_cached_sessions(redis) | _live_postgres_sessions(engine))
    else:
        sessions = [str(s) for s in session_ids]
    rebuilt = players = dropped = 0
    unknown: list[str] = []
    with _progress(sessions, len(sessions), "rebuilding boards") as bar:
        for session_id in bar:
            try:
                result = rebuild_board(engine, redis, session_id)
            except UnknownSession:
                if all_sessions:
                    drop_board(redis, session_id)
                    dropped += 1
                else:
                    unknown.append(session_id)
                continue
            rebuilt += 1
            players += result.players
    for session_id in unknown:
        click.echo(f"unknown session {session_id}: not in PostgreSQL", err=True)
    click.echo(f"rebuild: {rebuilt} boards rebuilt ({players} players), {dropped} boards of unknown sessions "
               f"removed, {len(unknown)} unknown sessions")
    if unknown:
        sys.exit(1)


# -- replay ----------------------------------------------------------------------------------------

class SinceParam(click.ParamType):
    """An ISO 8601 instant (UTC when no offset is given) or a duration ago: 90s, 30m, 2h, 1d."""

    name = "TIME"

    def convert(self, value: Any, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        ago = _AGO.match(value.strip())
        if ago:
            return datetime.now(timezone.utc) - timedelta(**{_AGO_UNITS[ago.group(2)]: float(ago.group(1))})
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is neither an ISO 8601 time nor a duration like 30m, 2h, 1d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _replay_filter(session_ids: tuple[uuid.UUID, ...], since: datetime | None) -> tuple[str, dict[str, Any]]:
    where = ["published_at IS NOT NULL"]
    params: dict[str, Any] = {}
    if session_ids:
        where.append("aggregate_id = ANY(:sessions)")
        params["sessions"] = list(session_ids)
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = since
    return " AND ".join(where), params


class DeliveryTracker:
    """Counts delivery reports of one producer run."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failures: list[str] = []

    def __call__(self, err: KafkaError | None, _msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failures.append(err.str())


def _produce(producer, topic: str, key, value, headers, tracker: DeliveryTracker) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=tracker)
            break
        except BufferError:
            producer.poll(0.05)  # local queue full: serve delivery reports to make room
    producer.poll(0)


def _await_deliveries(producer, tracker: DeliveryTracker, sent: int, what: str) -> None:
    remaining = producer.flush(60.0)
    if remaining or tracker.failures or tracker.delivered != sent:
        first = tracker.failures[0] if tracker.failures else "no delivery report"
        raise click.ClickException(f"{what}: {sent - tracker.delivered} of {sent} not delivered ({first})")


@ops.command("replay")
@click.option("--session", "session_ids", type=click.UUID, multiple=True,
              help="A session to replay (repeatable).")
@click.option("--all", "all_sessions", is_flag=True, help="Every session's stored events.")
@click.option("--since", type=SinceParam(), default=None,
              help="Only events created at or after TIME: ISO 8601 (UTC if no offset) or ago, e.g. 2h.")
def replay_command(session_ids: tuple[uuid.UUID, ...], all_sessions: bool, since: datetime | None) -> None:
    """Publish stored events to the main topic again, with the same event ids.

    For a consumer that lost its state or a new consumer. Each event is sent exactly as the relay
    sends it (key = session id, so one partition per session; same envelope and headers), in
    (created_at, seq) order, so a session's effect is not reordered; the worker skips events it
    applied already, so a correct board never changes.

    Only events the relay has published are replayed (unpublished ones are the relay's to send,
    in order). The relay deletes published events after RELAY_RETENTION_HOURS, so replay covers
    what is retained; a board needs no events to be repaired: use `ops rebuild`.
    """
    _one_selection(session_ids, all_sessions)
    config, engine = _config(), services().engine
    where, params = _replay_filter(session_ids, since)
    with engine.connect() as connection:
        total = int(connection.execute(text(f"SELECT count(*) FROM events WHERE {where}"),
                                       params).scalar_one())
    producer = make_producer(config, **{"client.id": "ops-replay"})
    tracker = DeliveryTracker()
    sent = 0
    sessions: set[str] = set()
    query = text(f"""SELECT id, aggregate_id, event_type, version, payload, created_at FROM events
                     WHERE {where} ORDER BY created_at, seq""")
    with engine.connect() as connection:
        rows = connection.execution_options(stream_results=True, yield_per=1000).execute(query, params)
        with _progress(rows, total, "replaying events") as bar:
            for row in bar:
                envelope = envelope_from_row(row)
                _produce(producer, config.kafka_topic, envelope.key(), envelope.to_json(), envelope.headers(),
                         tracker)
                sent += 1
                sessions.add(str(envelope.session_id))
    _await_deliveries(producer, tracker, sent, "replay")
    click.echo(f"replay: {sent} events of {len(sessions)} sessions sent to {config.kafka_topic}"
               + (f" (created since {since.isoformat()})" if since else ""))


# -- outbox ----------------------------------------------------------------------------------------

@ops.command("outbox")
@click.option("--max-lag", type=click.FloatRange(min=0), default=None,
              help="Exit 1 when the oldest unpublished event is older than this many seconds.")
def outbox_command(max_lag: float | None) -> None:
    """Counts of unpublished and published events and the age of the oldest unpublished one.

    Published events are kept RELAY_RETENTION_HOURS, then deleted by the relay.
    """
    status = outbox_status(services().engine)
    click.echo(f"outbox: {status.unpublished} unpublished, {status.published} published (retained), "
               f"oldest unpublished {status.oldest_unpublished_age_s:.1f} s old")
    if max_lag is not None and status.oldest_unpublished_age_s > max_lag:
        sys.exit(1)


# -- dead letters ----------------------------------------------------------------------------------

def redrive_group(config: Config) -> str:
    """The consumer group whose committed offsets mark the dead letters `dlq redrive` has handled."""
    return f"{config.kafka_consumer_group}.dlq-redrive"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        for header_name, raw in self.headers:
            if header_name == name and raw is not None:
                return raw.decode("utf-8", "backslashreplace")
        return None

    @property
    def reason(self) -> str:
        return self.header(DLQ_REASON) or "-"

    @property
    def event_id(self) -> str | None:
        return self.header("event_id")

    @property
    def event_type(self) -> str | None:
        return self.header("event_type")

    @property
    def session_id(self) -> str | None:
        return self.key.decode("utf-8", "backslashreplace") if self.key is not None else None

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(name, raw) for name, raw in self.headers if name != DLQ_REASON]


@dataclass(frozen=True)
class DeadLetterCounts:
    total: int
    pending: int


@dataclass
class _TopicState:
    partitions: list[int]
    watermarks: dict[int, tuple[int, int]]
    committed: dict[int, int]  # next offset to redrive, per partition (the low watermark if none)


def _topic_state(consumer, topic: str) -> _TopicState | None:
    metadata = consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return None
    partitions = sorted(metadata.partitions)
    watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=KAFKA_TIMEOUT_S,
                                                    cached=False) for p in partitions}
    committed = {}
    positions = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=KAFKA_TIMEOUT_S)
    for position in positions:
        low, high = watermarks[position.partition]
        committed[position.partition] = min(max(position.offset, low), high) if position.offset >= 0 else low
    return _TopicState(partitions, watermarks, committed)


def _redrive_consumer(config: Config):
    # Offsets are committed by hand, and only by `dlq redrive`; `assign` never joins the group.
    return make_consumer(config, group_id=redrive_group(config), **{"enable.auto.commit": False})


def dead_letter_counts(config: Config) -> DeadLetterCounts:
    """Messages in the dead-letter topic (high - low watermarks) and those `dlq redrive` has not handled."""
    consumer = _redrive_consumer(config)
    try:
        state = _topic_state(consumer, config.kafka_dlq_topic)
    finally:
        consumer.close()
    if state is None:
        return DeadLetterCounts(0, 0)
    total = sum(high - low for low, high in state.watermarks.values())
    pending = sum(state.watermarks[p][1] - state.committed[p] for p in state.partitions)
    return DeadLetterCounts(total, pending)


def _read_dead_letters(consumer, topic: str, start: dict[int, int], end: dict[int, int]) -> list[DeadLetter]:
    """Messages of `topic` from `start` up to (not including) `end`, per partition, in offset order."""
    todo = {p for p in start if start[p] < end[p]}
    if not todo:
        return []
    consumer.assign([TopicPartition(topic, p, start[p] if start[p] >= 0 else OFFSET_BEGINNING) for p in todo])
    letters: list[DeadLetter] = []
    stalled_since = time.monotonic()
    while todo:
        messages = consumer.consume(num_messages=500, timeout=1.0)
        for message in messages:
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(message.error())
                continue
            partition = message.partition()
            if partition in todo and message.offset() < end[partition]:
                letters.append(DeadLetter(partition, message.offset(), message.key(), message.value(),
                                          list(message.headers() or [])))
            if message.offset() >= end[partition] - 1:
                todo.discard(partition)
        for position in consumer.position([TopicPartition(topic, p) for p in list(todo)]):
            if position.offset >= end[position.partition]:  # the tail was deleted or is a gap
                todo.discard(position.partition)
        if messages:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > READ_STALL_S:
            raise click.ClickException(f"reading {topic} stalled with partitions {sorted(todo)} unread")
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


@dlq.command("list")
def dlq_list_command() -> None:
    """List the dead letters: partition:offset, event id, type, session, reason.

    Reads the dead-letter topic from the beginning without joining or moving any consumer group.
    `handled` marks entries a `dlq redrive` without --id has gone past: sent back, or left out
    because they still do not decode; `pending` ones are sent by the next `dlq redrive`.
    """
    config = _config()
    consumer = _redrive_consumer(config)
    try:
        state = _topic_state(consumer, config.kafka_dlq_topic)
        letters = [] if state is None else _read_dead_letters(
            consumer, config.kafka_dlq_topic, {p: low for p, (low, _) in state.watermarks.items()},
            {p: high for p, (_, high) in state.watermarks.items()})
    finally:
        consumer.close()
    handled = 0
    for letter in letters:
        done = state is not None and letter.offset < state.committed[letter.partition]
        handled += done
        click.echo(f"{letter.partition}:{letter.offset}\tevent={letter.event_id or '-'}\t"
                   f"type={letter.event_type or '-'}\tsession={letter.session_id or '-'}\t"
                   f"{'handled' if done else 'pending'}\treason={letter.reason}")
    click.echo(f"dlq: {len(letters)} dead letters in {config.kafka_dlq_topic}, "
               f"{len(letters) - handled} pending")


@dlq.command("redrive")
@click.option("--id", "event_ids", multiple=True, metavar="EVENT_ID", type=click.UUID,
              help="Send back only this event (repeatable); searched in the whole topic.")
def dlq_redrive_command(event_ids: tuple[uuid.UUID, ...]) -> None:
    """Send dead letters back to the main topic, with their original key, value and headers.

    Without --id, sends every pending entry and records that (the committed offsets of the
    consumer group `<KAFKA_CONSUMER_GROUP>.dlq-redrive`), so running it twice sends nothing
    twice. With --id, sends the named events even if they were redriven before. Either way the
    worker dedupes by event id, so an event is applied at most once. Entries that still do not
    decode (a poison message) are not sent: they would only be dead-lettered again.
    Exits 1 when a named event is not found or a delivery fails.
    """
    config = _config()
    wanted = {str(event_id) for event_id in event_ids} if event_ids else None
    consumer = _redrive_consumer(config)
    try:
        state = _topic_state(consumer, config.kafka_dlq_topic)
        if state is None:
            letters = []
        else:
            # A named event may sit before the committed offset (redriven before): search all.
            start = {p: (state.watermarks[p][0] if wanted else state.committed[p]) for p in state.partitions}
            letters = _read_dead_letters(consumer, config.kafka_dlq_topic, start,
                                         {p: high for p, (_, high) in state.watermarks.items()})
        selected = [letter for letter in letters if wanted is None or letter.event_id in wanted]
        producer = make_producer(config, **{"client.id": "ops-dlq-redrive"})
        tracker = DeliveryTracker()
        sent: list[DeadLetter] = []
        still_poison: list[DeadLetter] = []
        for letter in selected:
            try:
                decode_envelope(letter.value)
            except PoisonEvent as exc:
                still_poison.append(letter)
                click.echo(f"not sent {letter.partition}:{letter.offset}: still undecodable ({exc})",
                           err=True)
                continue
            _produce(producer, config.kafka_topic, letter.key, letter.value, letter.original_headers(),
                     tracker)
            sent.append(letter)
        _await_deliveries(producer, tracker, len(sent), "redrive")
        if state is not None:
            _commit_redriven(consumer, config.kafka_dlq_topic, state, letters, handled=sent + still_poison,
                             everything=wanted is None)
    finally:
        consumer.close()
    missing = sorted(wanted - {letter.event_id for letter in selected}) if wanted else []
    for event_id in missing:
        click.echo(f"event {event_id} is not in {config.kafka_dlq_topic}", err=True)
    click.echo(f"redrive: {len(sent)} dead letters sent to {config.kafka_topic}, "
               f"{len(still_poison)} still undecodable, {len(missing)} not found")
    if missing or (wanted and still_poison):
        sys.exit(1)


def _commit_redriven(consumer, topic: str, state: _TopicState, letters: list[DeadLetter],
                     handled: list[DeadLetter], everything: bool) -> None:
    """Move each partition's committed offset past the entries handled, as far as they are contiguous."""
    done = {(letter.partition, letter.offset) for letter in handled}
    by_partition: dict[int, list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        by_partition[letter.partition].append(letter)
    offsets = []
    for partition in state.partitions:
        next_offset = state.committed[partition]
        if everything:
            next_offset = state.watermarks[partition][1]
        else:
            for letter in by_partition[partition]:
                if letter.offset < next_offset:
                    continue
                if (partition, letter.offset) not in done:
                    break
                next_offset = letter.offset + 1
        if next_offset != state.committed[partition]:
            offsets.append(TopicPartition(topic, partition, next_offset))
    if offsets:
        consumer.commit(offsets=offsets, asynchronous=False)
