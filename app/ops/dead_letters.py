"""`ops dlq list` and `ops dlq redrive`: the dead letters of the cache worker (`--queue events`, the
default) and of the score ingest (`--queue scores`), app/core/dead_letters.py."""
from __future__ import annotations

import sys
import uuid

import click
from confluent_kafka import KafkaException

from app.core.dead_letters import (
    EVENTS,
    SCORES,
    DeadLetter,
    DeadLetterQueue,
    ReadStalled,
    TopicState,
    commit_redriven,
    dead_letter_queues,
    read_dead_letters,
    redrive_consumer,
    topic_state,
)
from app.core.events import EventCatalog, PoisonEvent
from app.core.kafka import DeliveryTracker, make_producer, produce
from app.leaderboards.events import LEADERBOARD_EVENTS
from app.leaderboards.messages import decode_score
from app.ops.common import config, dlq
from app.ops.replay import await_deliveries
from app.quiz.events import SESSION_EVENTS

# What the worker decodes: a dead letter of the events queue that still fails it is not sent back.
_EVENT_TYPES = EventCatalog(SESSION_EVENTS, LEADERBOARD_EVENTS)


def _state(consumer, topic: str) -> TopicState | None:
    try:
        return topic_state(consumer, topic)
    except KafkaException as exc:
        raise click.ClickException(f"cannot read {topic}: {exc}") from None


def _read(consumer, topic: str, start: dict[int, int], end: dict[int, int]) -> list[DeadLetter]:
    try:
        return read_dead_letters(consumer, topic, start, end)
    except ReadStalled as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaException as exc:
        raise click.ClickException(f"cannot read {topic}: {exc}") from None


def queue_option(command):
    return click.option("--queue", "queue_name", type=click.Choice([EVENTS, SCORES]), default=EVENTS,
                        show_default=True,
                        help="events: the cache worker's; scores: the score ingest's.")(command)


def _still_poison(queue: DeadLetterQueue, letter: DeadLetter) -> str | None:
    """Why a dead letter would only be dead-lettered again (it does not decode), or None."""
    try:
        if queue.name == SCORES:
            decode_score(letter.value)
        else:
            _EVENT_TYPES.decode(letter.value)
    except (PoisonEvent, ValueError) as exc:
        return str(exc)
    return None


@dlq.command("list")
@queue_option
def dlq_list_command(queue_name: str) -> None:
    """List the dead letters: partition:offset, event id, type, key (session or board), reason.

    Reads the dead-letter topic from the beginning without joining or moving any consumer group.
    `handled` marks entries a `dlq redrive` without --id has gone past: sent back, or left out
    because they still do not decode; `pending` ones are sent by the next `dlq redrive`.
    """
    settings = config()
    queue = dead_letter_queues(settings)[queue_name]
    consumer = redrive_consumer(settings, queue)
    try:
        state = _state(consumer, queue.dlq_topic)
        letters = [] if state is None else _read(
            consumer, queue.dlq_topic, {p: low for p, (low, _) in state.watermarks.items()},
            {p: high for p, (_, high) in state.watermarks.items()})
    finally:
        consumer.close()
    handled = 0
    for letter in letters:
        done = state is not None and letter.offset < state.committed[letter.partition]
        handled += done
        click.echo(f"{letter.partition}:{letter.offset}\tevent={letter.event_id or '-'}\t"
                   f"type={letter.event_type or '-'}\tkey={letter.aggregate_id or '-'}\t"
                   f"{'handled' if done else 'pending'}\treason={letter.reason}")
    click.echo(f"dlq: {len(letters)} dead letters in {queue.dlq_topic}, "
               f"{len(letters) - handled} pending")


@dlq.command("redrive")
@queue_option
@click.option("--id", "event_ids", multiple=True, metavar="EVENT_ID", type=click.UUID,
              help="Send back only this event (repeatable; events only); searched in the whole topic.")
def dlq_redrive_command(queue_name: str, event_ids: tuple[uuid.UUID, ...]) -> None:
    """Send dead letters back to the topic they came from, with their original key, value and headers.

    Without --id, sends every pending entry and records that (the committed offsets of the
    consumer group `<KAFKA_CONSUMER_GROUP>.dlq-redrive`, or `<SCORE_CONSUMER_GROUP>.dlq-redrive`),
    so running it twice sends nothing twice. With --id, sends the named events even if they were
    redriven before. Either way the worker dedupes by event id, so an event is applied at most
    once; a score refused once (an unknown board, say) counts once when it is accepted. Entries
    that still do not decode (a poison message) are not sent: they would only be dead-lettered
    again. Exits 1 when a named event is not found or a delivery fails.
    """
    settings = config()
    queue = dead_letter_queues(settings)[queue_name]
    if event_ids and queue.name != EVENTS:
        raise click.UsageError("--id names events: use it with --queue events")
    wanted = {str(event_id) for event_id in event_ids} if event_ids else None
    consumer = redrive_consumer(settings, queue)
    try:
        state = _state(consumer, queue.dlq_topic)
        if state is None:
            letters = []
        else:
            # A named event may sit before the committed offset (redriven before): search all.
            start = {p: (state.watermarks[p][0] if wanted else state.committed[p]) for p in state.partitions}
            letters = _read(consumer, queue.dlq_topic, start,
                            {p: high for p, (_, high) in state.watermarks.items()})
        selected = [letter for letter in letters if wanted is None or letter.event_id in wanted]
        producer = make_producer(settings, **{"client.id": "ops-dlq-redrive"})
        tracker = DeliveryTracker()
        sent: list[DeadLetter] = []
        still_poison: list[DeadLetter] = []
        for letter in selected:
            why = _still_poison(queue, letter)
            if why is not None:
                still_poison.append(letter)
                click.echo(f"not sent {letter.partition}:{letter.offset}: still undecodable ({why})",
                           err=True)
                continue
            produce(producer, queue.topic, key=letter.key, value=letter.value,
                    headers=letter.original_headers(), on_delivery=tracker)
            sent.append(letter)
        await_deliveries(producer, tracker, len(sent), "redrive")
        if state is not None:
            commit_redriven(consumer, queue.dlq_topic, state, letters, handled=sent + still_poison,
                            everything=wanted is None)
    finally:
        consumer.close()
    missing = sorted(wanted - {letter.event_id for letter in selected}) if wanted else []
    for event_id in missing:
        click.echo(f"event {event_id} is not in {queue.dlq_topic}", err=True)
    click.echo(f"redrive: {len(sent)} dead letters sent to {queue.topic}, "
               f"{len(still_poison)} still undecodable, {len(missing)} not found")
    if missing or (wanted and still_poison):
        sys.exit(1)
