"""Answering the open question: the hot path of a live room.

An answer takes a KEY SHARE lock on its session row: answers run side by side, while closing the
question (FOR UPDATE) waits for the answers in flight and is then seen by every later one. Then one
statement reads the session, its open question, the participant and any answer they already gave,
and one writes the answers and their `answer_scored` events. Scores and deadlines are decided with
PostgreSQL's clock, so every web process agrees. The answer's points are not added to the
participant yet: the close of the question adds them (sessions.py), so nobody can learn the right
answer from the standings while the question is open.

Retries are safe. The same answer sent again (same question, same choice) gets the original
receipt (answer id, answered_ms) with `replayed` set; another choice for an answered question is
refused with the recorded receipt in the error. A failure while committing leaves the outcome
unknown: the answer is retried, which either records it or finds it recorded, and when even that
cannot tell, the caller learns `outcome_unknown`, never that the answer was not recorded.

Group commit (app/core/group_commit.py): concurrent answers of a process are committed together, in one
transaction with the same statements over arrays (`AnswerBatcher`).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, text

from app.core.errors import Conflict, Forbidden, NotFound, ServiceError, Unprocessable
from app.core.events import new_event_id
from app.core.group_commit import GroupCommit, commit
from app.core.ids import new_id
from app.core.metrics import ANSWERS_ACCEPTED
from app.core.outbox import count_committed, outbox_insert
from app.core.tracing import current_traceparent
from app.quiz.domain.scoring import score_answer
from app.quiz.domain.sessions import QUESTION_OPEN
from app.quiz.events import SESSION_EVENTS, AnswerScored

# KEY SHARE on the sessions first, in one order; the read that follows is a new statement, so in
# READ COMMITTED it sees the session, question and streaks as they are once the lock is held.
_LOCK = text("SELECT id FROM quiz_sessions WHERE id = ANY(CAST(:sessions AS uuid[])) "
             "ORDER BY id FOR KEY SHARE")

_READ = text("""
    SELECT r.idx, s.status, s.current_question_id, s.question_opened_at, s.question_deadline,
           q.correct_choice, q.points, q.time_limit_s, jsonb_array_length(q.choices) AS choice_count,
           p.id AS participant_id, p.nickname, p.streak, p.score, p.removed_at, clock_timestamp() AS now,
           a.id AS answer_id, a.choice AS answer_choice, a.answered_ms AS answer_ms
    FROM unnest(CAST(:sessions AS uuid[]), CAST(:users AS uuid[]), CAST(:questions AS uuid[]))
         WITH ORDINALITY AS r(session_id, user_id, question_id, idx)
    JOIN quiz_sessions s ON s.id = r.session_id
    LEFT JOIN questions q ON q.id = s.current_question_id
    LEFT JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.user_id = r.user_id
    LEFT JOIN participant_answers a
      ON a.quiz_session_participant_id = p.id AND a.question_id = r.question_id""")

_WRITE = text(f"""
    WITH input AS (
        SELECT * FROM unnest(CAST(:answer_ids AS uuid[]), CAST(:participants AS uuid[]),
                             CAST(:sessions AS uuid[]), CAST(:questions AS uuid[]), CAST(:choices AS int[]),
                             CAST(:corrects AS bool[]), CAST(:points AS int[]), CAST(:answered_ms AS int[]),
                             CAST(:nows AS timestamptz[]), CAST(:streaks AS int[]),
                             CAST(:event_ids AS uuid[]), CAST(:payloads AS jsonb[]),
                             CAST(:traceparents AS text[]))
            WITH ORDINALITY AS t(answer_id, participant_id, session_id, question_id, choice, correct, points,
                                 answered_ms, answered_at, streak, event_id, payload, traceparent, position)
    ), answer AS (
        INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id, question_id,
                                         choice, correct, points, answered_ms, streak, counted, created_at)
        SELECT answer_id, participant_id, session_id, question_id, choice, correct, points, answered_ms,
               streak, false, answered_at
        FROM input ORDER BY position
        ON CONFLICT (quiz_session_participant_id, question_id) DO NOTHING
        RETURNING id
    ), event AS (
        {outbox_insert(SESSION_EVENTS, "i.event_id", "i.session_id", "'answer_scored'", "i.payload",
                       traceparent="i.traceparent",
                       source="input i JOIN answer ON answer.id = i.answer_id ORDER BY i.position")}
    )
    SELECT id FROM answer""")

# A recorded answer, read again to tell a retry the original receipt.
_RECORDED = text("""
    SELECT r.idx, a.id AS answer_id, a.choice AS answer_choice, a.answered_ms AS answer_ms
    FROM unnest(CAST(:sessions AS uuid[]), CAST(:users AS uuid[]), CAST(:questions AS uuid[]))
         WITH ORDINALITY AS r(session_id, user_id, question_id, idx)
    JOIN quiz_session_participants p ON p.quiz_session_id = r.session_id AND p.user_id = r.user_id
    JOIN participant_answers a ON a.quiz_session_participant_id = p.id AND a.question_id = r.question_id""")


@dataclass(frozen=True)
class AnswerRequest:
    user_id: uuid.UUID
    session_id: uuid.UUID
    question_id: uuid.UUID
    choice: int
    # The span context of the request that sent it, taken where it is made (the group commit writes it on
    # another thread): its event's traceparent.
    traceparent: str | None = field(default_factory=current_traceparent, compare=False)


@dataclass(frozen=True)
class AnswerReceipt:
    answer_id: uuid.UUID
    question_id: uuid.UUID
    choice: int
    answered_ms: int
    # True when this request found its answer already recorded (a retry): the original receipt.
    replayed: bool = False

    def view(self) -> dict[str, Any]:
        return {"answer_id": str(self.answer_id), "question_id": str(self.question_id), "choice": self.choice,
                "answered_ms": self.answered_ms}


@dataclass(frozen=True)
class _Decided:
    """An answer that passed every check, with its score and event, ready to be written."""

    request: AnswerRequest
    participant_id: uuid.UUID
    answer_id: uuid.UUID
    event_id: uuid.UUID
    correct: bool
    points: int
    streak: int
    answered_ms: int
    row: Row
    payload: str


def _recorded(request: AnswerRequest, answer_id: uuid.UUID, choice: int, answered_ms: int) -> AnswerReceipt:
    """The outcome for a request whose participant already answered its question."""
    receipt = AnswerReceipt(answer_id, request.question_id, choice, answered_ms, replayed=True)
    if choice != request.choice:
        raise Conflict("already_answered", "you have already answered this question", answer=receipt.view())
    return receipt


def _decide(request: AnswerRequest, row: Row | None) -> _Decided | AnswerReceipt:
    """The checks, in the order the API promises, then Kahoot's scoring."""
    if row is None:
        raise NotFound("not_found", "no such session")
    if row.participant_id is None:
        raise Forbidden("not_joined", "join the session before answering")
    if row.removed_at is not None:
        raise Forbidden("removed", "the host removed you from this game")
    if row.answer_id is not None:  # a retry: its outcome was decided when it was recorded
        return _recorded(request, row.answer_id, row.answer_choice, row.answer_ms)
    if row.current_question_id != request.question_id:
        raise Conflict("invalid_question", "that is not the session's current question")
    if row.status != QUESTION_OPEN or row.choice_count is None or row.now > row.question_deadline:
        raise Conflict("question_closed", "the question is closed")
    if row.now < row.question_opened_at:
        raise Conflict("not_open_yet", "the answers open in a moment (get ready!)")
    if not 0 <= request.choice < row.choice_count:
        raise Unprocessable("invalid_choice", f"choice must be between 0 and {row.choice_count - 1}")
    answered_ms = max(0, int((row.now - row.question_opened_at).total_seconds() * 1000))
    scored = score_answer(correct=request.choice == row.correct_choice, points=row.points,
                          answered_ms=answered_ms, time_limit_s=row.time_limit_s, streak_before=row.streak)
    answer_id, event_id = new_id(), new_event_id()
    payload = SESSION_EVENTS.payload_for("answer_scored", AnswerScored(
        answer_id=answer_id, participant_id=row.participant_id, user_id=request.user_id,
        nickname=row.nickname, question_id=request.question_id, choice=request.choice,
        correct=scored.correct, points=scored.points, streak=scored.streak, answered_ms=answered_ms,
        answered_at=row.now, total=row.score + scored.points))
    return _Decided(request, row.participant_id, answer_id, event_id, scored.correct, scored.points,
                    scored.streak, answered_ms, row, json.dumps(payload))


def _write_params(decided: list[_Decided]) -> dict[str, Any]:
    return {
        "answer_ids": [d.answer_id for d in decided], "participants": [d.participant_id for d in decided],
        "sessions": [d.request.session_id for d in decided],
        "questions": [d.request.question_id for d in decided],
        "choices": [d.request.choice for d in decided], "corrects": [d.correct for d in decided],
        "points": [d.points for d in decided], "answered_ms": [d.answered_ms for d in decided],
        "nows": [d.row.now for d in decided], "streaks": [d.streak for d in decided],
        "event_ids": [d.event_id for d in decided], "payloads": [d.payload for d in decided],
        "traceparents": [d.request.traceparent for d in decided],
    }


def _identity(requests: list[AnswerRequest]) -> dict[str, list[uuid.UUID]]:
    return {"sessions": [r.session_id for r in requests], "users": [r.user_id for r in requests],
            "questions": [r.question_id for r in requests]}


def submit_answers(engine: Engine, requests: list[AnswerRequest]) -> list[AnswerReceipt | ServiceError]:
    """Record `requests` in one transaction; each gets its receipt or the error that refused it.

    Raises CommitFailed when the COMMIT failed (outcome unknown), SQLAlchemyError when a statement
    failed before it (nothing was recorded).
    """
    results: list[AnswerReceipt | ServiceError | None] = [None] * len(requests)
    decided: list[tuple[int, _Decided]] = []
    raced: list[int] = []
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(_LOCK, {"sessions": sorted({r.session_id for r in requests})})
            rows = {row.idx - 1: row for row in connection.execute(_READ, _identity(requests))}
            claimed: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
            for i, request in enumerate(requests):
                try:
                    answer = _decide(request, rows.get(i))
                except ServiceError as exc:
                    results[i] = exc
                    continue
                if isinstance(answer, AnswerReceipt):
                    results[i] = answer
                    continue
                if (answer.participant_id, request.question_id) in claimed:
                    raced.append(i)  # the same participant twice in one batch: the first one counts
                    continue
                claimed[(answer.participant_id, request.question_id)] = i
                decided.append((i, answer))
            # One lock order for every batch: answers are written sorted by participant.
            decided.sort(key=lambda pair: pair[1].participant_id)
            written: set[uuid.UUID] = set()
            if decided:
                written = set(connection.execute(_WRITE, _write_params([d for _, d in decided])).scalars())
            raced += [i for i, answer in decided if answer.answer_id not in written]
            # Lost a race to a concurrent request of the same participant: read what that one recorded.
            if raced:
                for row in connection.execute(_RECORDED, _identity([requests[i] for i in raced])):
                    i = raced[row.idx - 1]
                    try:
                        results[i] = _recorded(requests[i], row.answer_id, row.answer_choice, row.answer_ms)
                    except ServiceError as exc:
                        results[i] = exc
                for i in raced:  # (a row always exists: the answer that won the race was written first)
                    results[i] = results[i] or Conflict("already_answered",
                                                        "you have already answered this question")
        except BaseException:
            transaction.rollback()
            raise
        commit(transaction)
    count_committed("answer_scored", len(written))
    ANSWERS_ACCEPTED.inc(len(written))
    for i, answer in decided:
        if answer.answer_id in written:
            results[i] = AnswerReceipt(answer.answer_id, answer.request.question_id, answer.request.choice,
                                       answer.answered_ms)
    return results  # type: ignore[return-value]


def find_recorded(engine: Engine, request: AnswerRequest) -> AnswerReceipt | None:
    """The recorded answer of `request`'s participant to its question (a receipt or a Conflict), if any."""
    with engine.connect() as connection:
        row = connection.execute(_RECORDED, _identity([request])).one_or_none()
    return None if row is None else _recorded(request, row.answer_id, row.answer_choice, row.answer_ms)


class AnswerBatcher(GroupCommit[AnswerRequest, AnswerReceipt]):
    """Group commit of answers (app/core/group_commit.py); a retry finds an answer by its natural key."""

    what = "answer"

    def commit_many(self, requests: list[AnswerRequest]) -> list[AnswerReceipt | ServiceError]:
        return submit_answers(self.engine, requests)

    def recorded(self, request: AnswerRequest) -> AnswerReceipt | None:
        return find_recorded(self.engine, request)
