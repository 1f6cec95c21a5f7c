"""Turning one event into the call of the Lua script that applies it to Redis (alone, or in the worker's
batch of the session's events, lua/apply_batch.lua, which runs the same rule per event).

Every event dedupes on two members of `applied:{S}`: its event id, and a natural key that names
the fact it records (`answer:<answer id>`, `joined:<participant id>`, `opened:<question id>`,
`closed:<question id>`, `removed:<participant id>[:<n>]`, `restored:<participant id>:<n>` (the
player's n-th removal and its undo), `extended:<question id>:<extra s>`, `ended`). The natural keys are
what the rebuild can re-derive from the domain tables alone, after the relay pruned the published
`events` rows; this module is their one owner (rebuild.py builds its snapshot's keys with the same
functions, and the scripts receive them).
"""
from __future__ import annotations

from datetime import timedelta

from app.core.clock import instant_ms
from app.core.events import Envelope
from app.core.lua import Call
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scripts import SessionBoardScripts
from app.quiz.events import (
    SESSION_EVENTS,
    AnswerScored,
    ParticipantJoined,
    ParticipantRemoved,
    ParticipantRestored,
    QuestionClosed,
    QuestionExtended,
    QuestionOpened,
    SessionEnded,
)

# Kafka's default retention is 7 days: keep an ended session's keys a day longer. Expiring them is
# safe anyway: a later delivery finds no meta and triggers a rebuild from PostgreSQL.
ENDED_SESSION_TTL = timedelta(days=8)
ENDED_KEY = "ended"


def answer_key(answer_id) -> str:
    return f"answer:{answer_id}"


def joined_key(participant_id) -> str:
    return f"joined:{participant_id}"


def opened_key(question_id) -> str:
    return f"opened:{question_id}"


def closed_key(question_id) -> str:
    return f"closed:{question_id}"


def removed_key(participant_id, removal: int = 1) -> str:
    # A player put back may be removed again, a new fact: its count names it (the first keeps the old key).
    return f"removed:{participant_id}" if removal == 1 else f"removed:{participant_id}:{removal}"


def restored_key(participant_id, removal: int) -> str:
    return f"restored:{participant_id}:{removal}"


def extended_key(question_id, extra_s: int) -> str:
    """An extension is named by the time the question then has beyond its limit, which only grows."""
    return f"extended:{question_id}:{extra_s}"


def session_event_call(envelope: Envelope, payload=None, keys: list[str] | None = None) -> Call:
    """The script call that applies `envelope` (its script, KEYS and ARGV), run alone by `apply_event` or
    among others by the worker's batch (app/core/lua.py). Pass `payload` when the caller has parsed it
    already, `keys` (the session's apply_keys) when it holds them."""
    keys = keys or SessionKeys.of(envelope.aggregate_id).apply_keys
    payload = payload or SESSION_EVENTS.payload_of(envelope)
    event_id = str(envelope.event_id)
    if isinstance(payload, AnswerScored):
        return Call("apply_answer_scored", keys, [
            event_id, answer_key(payload.answer_id), str(payload.participant_id), payload.nickname,
            payload.points, instant_ms(payload.answered_at), str(payload.question_id), payload.choice,
            int(payload.correct), payload.streak])
    if isinstance(payload, ParticipantJoined):
        return Call("apply_participant_joined", keys, [
            event_id, joined_key(payload.participant_id), str(payload.participant_id), payload.nickname,
            instant_ms(payload.joined_at)])
    if isinstance(payload, ParticipantRemoved):
        return Call("apply_participant_removed", keys, [
            event_id, removed_key(payload.participant_id, payload.removal), str(payload.participant_id)])
    if isinstance(payload, ParticipantRestored):
        # The reach time counts from the session's epoch, which only the board knows: the script is given
        # the instant, and applies the rebuild's rule (scores.reached_ms) by reached_since.
        return Call("apply_participant_restored", keys, [
            event_id, restored_key(payload.participant_id, payload.removal), str(payload.participant_id),
            payload.nickname, payload.score, instant_ms(payload.score_reached_at)])
    if isinstance(payload, QuestionExtended):
        return Call("apply_question_extended", keys, [
            event_id, extended_key(payload.question_id, payload.extra_s), str(payload.question_id),
            payload.deadline.isoformat(), payload.added_s])
    if isinstance(payload, QuestionOpened):
        # The room shows the whole question (or its result): it travels as one JSON field.
        return Call("apply_question_opened", keys, [
            event_id, opened_key(payload.question_id), str(payload.question_id), payload.position,
            payload.model_dump_json()])
    if isinstance(payload, QuestionClosed):
        return Call("apply_question_closed", keys, [
            event_id, closed_key(payload.question_id), str(payload.question_id), payload.position,
            payload.model_dump_json()])
    if isinstance(payload, SessionEnded):
        expire_at_s = instant_ms(payload.ended_at + ENDED_SESSION_TTL) // 1000
        return Call("apply_session_ended", keys,
                    [event_id, ENDED_KEY, expire_at_s, payload.ended_at.isoformat()])
    raise TypeError(f"no script applies {envelope.event_type}")


def apply_event(scripts: SessionBoardScripts, client, envelope: Envelope, payload=None):
    """Run (or, with a pipeline as `client`, queue) the one-event script of `envelope`.

    Its result is APPLIED, DUPLICATE or NEEDS_REBUILD (scripts.py). Pass `payload` when the
    caller has parsed it already.
    """
    call = session_event_call(envelope, payload)
    return getattr(scripts, call.script)(call.keys, call.args, client=client)


def forget_session(redis, session_id: str) -> int:
    """Remove every key of a deleted session; its room hears it (so its sockets close), and the room's
    stream goes a day later."""
    keys = SessionKeys.of(session_id)
    removed = redis.delete(*[k for k in keys.apply_keys if k != keys.room])
    redis.xadd(keys.room, {"type": "session_deleted"}, maxlen=1000, approximate=True)
    redis.expire(keys.room, 86400)
    return removed
