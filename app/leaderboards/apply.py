"""Turning one event into the call of the Lua script that applies it to Redis.

Every event dedupes on two members of `applied:{S}`: its event id, and a natural key that names
the fact it records (`answer:<answer id>`, `joined:<participant id>`, `opened:<question id>`,
`closed:<question id>`, `ended`). The natural keys are what the rebuild can re-derive from the
domain tables alone, after the relay pruned the published `events` rows; see rebuild.py.
"""
from __future__ import annotations

from datetime import timedelta

from app.events import AnswerScored, Envelope, ParticipantJoined, QuestionClosed, QuestionOpened, SessionEnded
from app.leaderboards.keys import SessionKeys
from app.leaderboards.scores import instant_ms
from app.leaderboards.scripts import LeaderboardScripts

# Kafka's default retention is 7 days: keep an ended session's keys a day longer. Expiring them is
# safe anyway: a later delivery finds no meta and triggers a rebuild from PostgreSQL.
ENDED_SESSION_TTL = timedelta(days=8)


def natural_key(envelope: Envelope, payload=None) -> str:
    payload = payload or envelope.parsed_payload()
    if isinstance(payload, AnswerScored):
        return f"answer:{payload.answer_id}"
    if isinstance(payload, ParticipantJoined):
        return f"joined:{payload.participant_id}"
    if isinstance(payload, QuestionOpened):
        return f"opened:{payload.question_id}"
    if isinstance(payload, QuestionClosed):
        return f"closed:{payload.question_id}"
    if isinstance(payload, SessionEnded):
        return "ended"
    raise TypeError(f"no natural key for {envelope.event_type}")


def apply_event(scripts: LeaderboardScripts, client, envelope: Envelope, payload=None):
    """Run (or, with a pipeline as `client`, queue) the script of `envelope`.

    Its result is APPLIED, DUPLICATE or NEEDS_REBUILD (scripts.py). Pass `payload` when the
    caller has parsed it already.
    """
    keys = SessionKeys.of(envelope.session_id)
    payload = payload or envelope.parsed_payload()
    event_id = str(envelope.event_id)
    board_keys = [keys.board, keys.applied, keys.meta, keys.room, keys.names, keys.recent]
    if isinstance(payload, AnswerScored):
        return scripts.apply_answer_scored(board_keys, [
            event_id, str(payload.answer_id), str(payload.participant_id), payload.nickname, payload.points,
            instant_ms(payload.answered_at), payload.total, payload.streak, str(payload.question_id),
            int(payload.correct)], client=client)
    if isinstance(payload, ParticipantJoined):
        return scripts.apply_participant_joined(board_keys, [
            event_id, str(payload.participant_id), payload.nickname, instant_ms(payload.joined_at),
            payload.player_count], client=client)
    session_keys = [keys.applied, keys.meta, keys.room, keys.board, keys.names, keys.recent]
    fields: list[str | int] = []
    expire_at_s = 0
    if isinstance(payload, (QuestionOpened, QuestionClosed)):
        # The room shows the whole question (or its result): it travels as one JSON field.
        fields = ["question_id", str(payload.question_id), "position", payload.position,
                  "data", payload.model_dump_json()]
    elif isinstance(payload, SessionEnded):
        fields = ["ended_at", payload.ended_at.isoformat()]
        expire_at_s = instant_ms(payload.ended_at + ENDED_SESSION_TTL) // 1000
    else:
        raise TypeError(f"no script applies {envelope.event_type}")
    return scripts.apply_session_event(
        session_keys, [event_id, natural_key(envelope, payload), envelope.event_type, expire_at_s, *fields], client=client)
