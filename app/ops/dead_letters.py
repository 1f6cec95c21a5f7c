"""`ops dlq list` and `ops dlq redrive`: the dead letters the worker wrote (cache_worker/dead_letters.py)."""
from __future__ import annotations

import sys
import uuid

import click

from app.events import PoisonEvent, decode_envelope
from app.kafka import DeliveryTracker, make_producer, produce
from app.ops.common import config, dlq
from app.ops.replay import await_deliveries
from cache_worker.dead_letters import (DeadLetter, ReadStalled, commit_redriven, read_dead_letters,
                                       redrive_consumer, topic_state)


def _read(consumer, topic: str, start: dict[int, int], end: dict[int, int]) -> list[DeadLetter]:
    try:
        return read_dead_letters(consumer, topic, start, end)
    except ReadStalled as exc:
        raise click.ClickException(str(exc)) from None


@dlq.command("list")
def dlq_list_command() -> None:
    """List the dead letters: partition:offset, event id, type, session, reason.

    Reads the dead-letter topic from the beginning without joining or moving any consumer group.
    `handled` marks entries a `dlq redrive` without --id has gone past: sent back, or left out
    because they still do not decode; `pending` ones are sent by the next `dlq redrive`.
    """
    settings = config()
    consumer = redrive_consumer(settings)
    try:
        state = topic_state(consumer, settings.kafka_dlq_topic)
        letters = [] if state is None else _read(
            consumer, settings.kafka_dlq_topic, {p: low for p, (low, _) in state.watermarks.items()},
            {p: high for p, (_, high) in state.watermarks.items()})
    finally:
        consumer.close()
    handled = 0
    for letter in letters:
        done = state is not None and letter.offset < state.committed[letter.partition]
        handled += done
        click.echo(f"{letter.partition}:{letter.offset}\tevent={letter.event_id or '-'}\t"
                   f"type={letter.event_type or '-'}\tsession={letter.aggregate_id or '-'}\t"
                   f"{'handled' if done else 'pending'}\treason={letter.reason}")
    click.echo(f"dlq: {len(letters)} dead letters in {settings.kafka_dlq_topic}, "
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
    settings = config()
    wanted = {str(event_id) for event_id in event_ids} if event_ids else None
    consumer = redrive_consumer(settings)
    try:
        state = topic_state(consumer, settings.kafka_dlq_topic)
        if state is None:
            letters = []
        else:
            # A named event may sit before the committed offset (redriven before): search all.
            start = {p: (state.watermarks[p][0] if wanted else state.committed[p]) for p in state.partitions}
            letters = _read(consumer, settings.kafka_dlq_topic, start,
                            {p: high for p, (_, high) in state.watermarks.items()})
        selected = [letter for letter in letters if wanted is None or letter.event_id in wanted]
        producer = make_producer(settings, **{"client.id": "ops-dlq-redrive"})
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
            produce(producer, settings.kafka_topic, key=letter.key, value=letter.value,
                    headers=letter.original_headers(), on_delivery=tracker)
            sent.append(letter)
        await_deliveries(producer, tracker, len(sent), "redrive")
        if state is not None:
            commit_redriven(consumer, settings.kafka_dlq_topic, state, letters, handled=sent + still_poison,
                            everything=wanted is None)
    finally:
        consumer.close()
    missing = sorted(wanted - {letter.event_id for letter in selected}) if wanted else []
    for event_id in missing:
        click.echo(f"event {event_id} is not in {settings.kafka_dlq_topic}", err=True)
    click.echo(f"redrive: {len(sent)} dead letters sent to {settings.kafka_topic}, "
               f"{len(still_poison)} still undecodable, {len(missing)} not found")
    if missing or (wanted and still_poison):
        sys.exit(1)
