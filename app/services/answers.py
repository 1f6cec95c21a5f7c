"""Answering the open question: the hot path of a live room.

An answer takes a KEY SHARE lock on its session row: answers run side by side, while closing the
question (FOR UPDATE) waits for the answers in flight and is then seen by every later one. Then one
statement reads the session, its open question and the participant, and one writes the answers,
the new scores and the `answer_scored` events. Scores and deadlines
are decided with PostgreSQL's clock, so every web process agrees.

Group commit: concurrent answers of a process are committed together, in one transaction with the
same three statements over arrays (`AnswerBatcher`). Each request still gets its own answer: a 201
only once the transaction holding it has committed. A batch that fails as a whole (a deadlock, a
broken connection) is retried one answer per transaction, so one bad answer fails alone.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, text
from sqlalchemy.exc import SQLAlchemyError

from app.domain.scoring import score_answer
from app.domain.sessions import QUESTION_OPEN
from app.events import AGGREGATE_TYPE, CURRENT_VERSION, AnswerScored, new_event_id, payload_for
from app.metrics import ANSWERS_ACCEPTED, EVENTS_WRITTEN
from app.services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError

log = logging.getLogger(__name__)

# KEY SHARE on the sessions first, in one order; the read that follows is a new statement, so in
# READ COMMITTED it sees the session, question and streaks as they are once the lock is held.
_LOCK = text("SELECT id FROM quiz_sessions WHERE id = ANY(CAST(:sessions AS uuid[])) ORDER BY id FOR KEY SHARE")

_READ = text("""
    SELECT r.idx, s.status, s.current_question_id, s.question_opened_at, s.question_deadline,
           q.correct_choice, q.points, q.time_limit_s, jsonb_array_length(q.choices) AS choice_count,
           p.id AS participant_id, p.nickname, p.streak, p.score, clock_timestamp() AS now
    FROM unnest(CAST(:sessions AS uuid[]), CAST(:users AS uuid[])) WITH ORDINALITY AS r(session_id, user_id, idx)
    JOIN quiz_sessions s ON s.id = r.session_id
    LEFT JOIN questions q ON q.id = s.current_question_id
    LEFT JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.user_id = r.user_id""")

_WRITE = text("""
    WITH input AS (
        SELECT * FROM unnest(CAST(:answer_ids AS uuid[]), CAST(:participants AS uuid[]),
                             CAST(:sessions AS uuid[]), CAST(:questions AS uuid[]), CAST(:choices AS int[]),
                             CAST(:corrects AS bool[]), CAST(:points AS int[]), CAST(:answered_ms AS int[]),
                             CAST(:nows AS timestamptz[]), CAST(:streaks AS int[]), CAST(:event_ids AS uuid[]),
                             CAST(:payloads AS jsonb[]))
            WITH ORDINALITY AS t(answer_id, participant_id, session_id, question_id, choice, correct, points,
                                 answered_ms, answered_at, streak, event_id, payload, position)
    ), answer AS (
        INSERT INTO participant_answers (id, quiz_session_participant_id, quiz_session_id, question_id,
                                         choice, correct, points, answered_ms, created_at)
        SELECT answer_id, participant_id, session_id, question_id, choice, correct, points, answered_ms, answered_at
        FROM input ORDER BY position
        ON CONFLICT (quiz_session_participant_id, question_id) DO NOTHING
        RETURNING id
    ), participant AS (
        UPDATE quiz_session_participants p
        SET score = p.score + i.points, streak = i.streak,
            score_reached_at = CASE WHEN i.points > 0 THEN i.answered_at ELSE p.score_reached_at END
        FROM input i JOIN answer a ON a.id = i.answer_id
        WHERE p.id = i.participant_id
        RETURNING p.id, p.score
    ), event AS (
        INSERT INTO events (id, aggregate_type, aggregate_id, event_type, version, payload)
        SELECT i.event_id, :aggregate_type, i.session_id, 'answer_scored', :version,
               i.payload || jsonb_build_object('total', participant.score)
        FROM input i JOIN participant ON participant.id = i.participant_id
        ORDER BY i.position
        RETURNING id
    )
    SELECT id FROM answer""")


@dataclass(frozen=True)
class AnswerRequest:
    user_id: uuid.UUID
    session_id: uuid.UUID
    question_id: uuid.UUID
    choice: int


@dataclass(frozen=True)
class AnswerReceipt:
    answer_id: uuid.UUID
    question_id: uuid.UUID
    choice: int
    answered_ms: int


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


def _decide(request: AnswerRequest, row: Row | None) -> _Decided:
    """The checks, in the order the API promises, then Kahoot's scoring."""
    if row is None:
        raise NotFound("not_found", "no such session")
    if row.participant_id is None:
        raise Forbidden("not_joined", "join the session before answering")
    if row.current_question_id != request.question_id:
        raise Invalid("invalid_question", "that is not the session's current question")
    if row.status != QUESTION_OPEN or row.choice_count is None or row.now > row.question_deadline:
        raise Conflict("question_closed", "the question is closed")
    if not 0 <= request.choice < row.choice_count:
        raise Invalid("invalid_choice", f"choice must be between 0 and {row.choice_count - 1}")
    answered_ms = max(0, int((row.now - row.question_opened_at).total_seconds() * 1000))
    scored = score_answer(correct=request.choice == row.correct_choice, points=row.points, answered_ms=answered_ms,
                          time_limit_s=row.time_limit_s, streak_before=row.streak)
    answer_id, event_id = uuid.uuid4(), new_event_id()
    payload = payload_for("answer_scored", AnswerScored(
        answer_id=answer_id, participant_id=row.participant_id, user_id=request.user_id, nickname=row.nickname,
        question_id=request.question_id, choice=request.choice, correct=scored.correct, points=scored.points,
        streak=scored.streak, answered_ms=answered_ms, answered_at=row.now, total=row.score + scored.points))
    return _Decided(request, row.participant_id, answer_id, event_id, scored.correct, scored.points,
                    scored.streak, answered_ms, row, json.dumps(payload))


def _already_answered() -> Conflict:
    return Conflict("already_answered", "you have already answered this question")


def _write_params(decided: list[_Decided]) -> dict[str, Any]:
    return {
        "answer_ids": [d.answer_id for d in decided], "participants": [d.participant_id for d in decided],
        "sessions": [d.request.session_id for d in decided], "questions": [d.request.question_id for d in decided],
        "choices": [d.request.choice for d in decided], "corrects": [d.correct for d in decided],
        "points": [d.points for d in decided], "answered_ms": [d.answered_ms for d in decided],
        "nows": [d.row.now for d in decided], "streaks": [d.streak for d in decided],
        "event_ids": [d.event_id for d in decided], "payloads": [d.payload for d in decided],
        "aggregate_type": AGGREGATE_TYPE, "version": CURRENT_VERSION["answer_scored"],
    }


def submit_answers(engine: Engine, requests: list[AnswerRequest]) -> list[AnswerReceipt | ServiceError]:
    """Record `requests` in one transaction; each gets its receipt or the error that refused it."""
    results: list[AnswerReceipt | ServiceError | None] = [None] * len(requests)
    with engine.begin() as connection:
        connection.execute(_LOCK, {"sessions": sorted({r.session_id for r in requests})})
        rows = {row.idx - 1: row for row in connection.execute(_READ, {
            "sessions": [r.session_id for r in requests], "users": [r.user_id for r in requests]})}
        decided: list[tuple[int, _Decided]] = []
        claimed: set[tuple[uuid.UUID, uuid.UUID]] = set()
        for i, request in enumerate(requests):
            try:
                answer = _decide(request, rows.get(i))
            except ServiceError as exc:
                results[i] = exc
                continue
            if (answer.participant_id, request.question_id) in claimed:
                results[i] = _already_answered()  # the same answer twice in one batch: the first one counts
                continue
            claimed.add((answer.participant_id, request.question_id))
            decided.append((i, answer))
        # One lock order for every batch: participants' rows are written sorted by id.
        decided.sort(key=lambda pair: pair[1].participant_id)
        written: set[uuid.UUID] = set()
        if decided:
            written = set(connection.execute(_WRITE, _write_params([d for _, d in decided])).scalars())
    # Counted once committed; the events are written by _WRITE, not record_event, so counted here too.
    ANSWERS_ACCEPTED.inc(len(written))
    EVENTS_WRITTEN.labels("answer_scored").inc(len(written))
    for i, answer in decided:
        results[i] = (AnswerReceipt(answer.answer_id, answer.request.question_id, answer.request.choice,
                                    answer.answered_ms)
                      if answer.answer_id in written else _already_answered())
    return results  # type: ignore[return-value]


class _Pending:
    __slots__ = ("request", "done", "result")

    def __init__(self, request: AnswerRequest):
        self.request = request
        self.done = threading.Event()
        self.result: AnswerReceipt | BaseException | None = None


class AnswerBatcher:
    """Group commit: answers arriving while a batch is being committed go together in the next one."""

    # Far above any healthy commit: a request never waits forever on a stuck database.
    WAIT_S = 30.0

    def __init__(self, engine: Engine, max_batch: int = 200):
        self.engine = engine
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._arrived = threading.Condition()
        self._committer: threading.Thread | None = None

    def submit(self, request: AnswerRequest) -> AnswerReceipt:
        pending = _Pending(request)
        with self._arrived:
            self._queue.append(pending)
            self._arrived.notify()
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_forever, name="answer-group-commit",
                                                   daemon=True)
                self._committer.start()
        if not pending.done.wait(self.WAIT_S):
            raise TimeoutError("the answer could not be recorded in time")
        if isinstance(pending.result, BaseException):
            raise pending.result
        return pending.result  # type: ignore[return-value]

    def _commit_forever(self) -> None:
        while True:
            with self._arrived:
                while not self._queue:
                    self._arrived.wait()
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave a request waiting, never lose the committer
                log.exception("the answer committer failed")
                for pending in batch:
                    if not pending.done.is_set():
                        pending.result = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
                        pending.done.set()

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            results: list[Any] = submit_answers(self.engine, [p.request for p in batch])
        except SQLAlchemyError as exc:
            if len(batch) == 1:
                results = [exc]
            else:
                log.warning("a batch of %d answers failed (%s); committing them one by one", len(batch),
                            type(exc).__name__)
                results = [self._alone(p.request) for p in batch]
        for pending, result in zip(batch, results):
            pending.result = result
            pending.done.set()

    def _alone(self, request: AnswerRequest) -> AnswerReceipt | BaseException:
        try:
            return submit_answers(self.engine, [request])[0]
        except SQLAlchemyError as exc:
            return exc
