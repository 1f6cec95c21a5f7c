"""Live sessions: open a room, join it, move through the questions, end it."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, Forbidden, Gone, NotFound
from app.core.ids import new_id
from app.core.outbox import record_event
from app.quiz.domain import scoring
from app.quiz.domain import sessions as rules
from app.quiz.events import (
    SESSION_EVENTS,
    ParticipantJoined,
    QuestionClosed,
    QuestionExtended,
    QuestionOpened,
    SessionEnded,
)
from app.quiz.service.quizzes import image_url

_JOIN_CODE_ATTEMPTS = 20


def _conflict(exc: rules.TransitionError) -> Conflict:
    return Conflict(exc.code, exc.message)


def create_session(db: Session, host_id: uuid.UUID, quiz_id: uuid.UUID) -> dict[str, Any]:
    with db.begin():
        # KEY SHARE: a delete of the quiz waits for the game to exist, and then deletes it too.
        owner = db.execute(text("SELECT owner_id FROM quizzes WHERE id = :id AND archived_at IS NULL "
                                "FOR KEY SHARE"), {"id": quiz_id}).scalar()
        if owner != host_id:
            raise NotFound("not_found", "no such quiz")
        for _ in range(_JOIN_CODE_ATTEMPTS):
            session_id, code = new_id(), rules.new_join_code()
            try:
                with db.begin_nested():
                    db.execute(text(
                        "INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status) "
                        "VALUES (:id, :quiz, :host, :code, :lobby)"),
                        {"id": session_id, "quiz": quiz_id, "host": host_id, "code": code,
                         "lobby": rules.LOBBY})
                break
            except IntegrityError:
                continue  # the code is in use by a live session: draw another
        else:
            raise Conflict("no_join_code", "could not allocate a join code; try again")
    return {"id": str(session_id), "quiz_id": str(quiz_id), "join_code": code, "status": rules.LOBBY}


def find_by_join_code(db: Session, join_code: str) -> uuid.UUID:
    with db.begin():
        session_id = db.execute(text(
            f"SELECT id FROM quiz_sessions WHERE join_code = :code AND {rules.LIVE_SQL}"),
            {"code": join_code}).scalar()
    if session_id is None:
        with db.begin():
            ended = db.execute(text(f"""
                SELECT 1 FROM quiz_sessions WHERE join_code = :code AND status = '{rules.ENDED}'
                  AND ended_at > clock_timestamp() - interval '1 day' LIMIT 1"""),
                {"code": join_code}).scalar()
        if ended:
            raise Gone("session_ended", "this game has ended; ask the host for the new PIN")
        raise NotFound("not_found", "no live session has that join code")
    return session_id


def describe_session(db: Session, session_id: uuid.UUID,
                     viewer_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The session as a player sees it; the correct choice only once the question has closed.

    With `viewer_id`, someone who is neither the host nor a player of the session sees only what
    joining needs (no question, no host). Without it the caller has checked membership already.
    """
    with db.begin():
        row = db.execute(text("""
            SELECT s.id, s.host_id, s.status, s.join_code, s.locked, s.question_shown_at,
                   s.question_opened_at, s.question_deadline,
                   (SELECT count(*) FROM quiz_session_participants p
                    WHERE p.quiz_session_id = s.id AND p.removed_at IS NULL) AS player_count,
                   (SELECT count(*) FROM questions qq WHERE qq.quiz_id = s.quiz_id) AS question_count,
                   EXISTS (SELECT 1 FROM quiz_session_participants p
                           WHERE p.quiz_session_id = s.id AND p.user_id = :viewer AND p.removed_at IS NULL)
                       AS viewer_joined,
                   q.id AS question_id, q.position, q.text, q.choices, q.time_limit_s, q.points,
                   q.correct_choice, q.kind, q.image_id, q.image_alt,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(a.choice, a.n)), '[]'::jsonb) FROM (
                        SELECT choice, count(*) AS n FROM participant_answers
                        WHERE quiz_session_id = s.id AND question_id = s.current_question_id
                        GROUP BY choice) a) AS answer_counts
            FROM quiz_sessions s LEFT JOIN questions q ON q.id = s.current_question_id
            WHERE s.id = :id"""), {"id": session_id, "viewer": viewer_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such session")
    member = viewer_id is None or row.viewer_joined or row.host_id == viewer_id
    return session_view(row, member=member)


def session_view(row: Row, *, member: bool = True) -> dict[str, Any]:
    view = {"id": str(row.id), "status": row.status, "join_code": row.join_code,
            "player_count": row.player_count, "question_count": row.question_count, "locked": row.locked}
    if not member:
        return view
    current = None
    if row.question_id is not None:
        counts = [0] * len(row.choices)
        for choice, n in row.answer_counts:
            counts[choice] = n
        current = {
            "id": str(row.question_id), "position": row.position, "kind": row.kind, "text": row.text,
            "choices": row.choices, "time_limit_s": row.time_limit_s, "points": row.points,
            "image_url": image_url(row.image_id), "image_alt": row.image_alt,
            "shown_at": (row.question_shown_at or row.question_opened_at).isoformat(),
            "opened_at": row.question_opened_at.isoformat(), "deadline": row.question_deadline.isoformat(),
            "answered": sum(counts),
        }
        if row.status != rules.QUESTION_OPEN:  # closed: the answer, and how the room answered
            current["correct_choice"] = row.correct_choice
            current["choice_counts"] = counts
    return {**view, "current_question": current}


def _joinable(db: Session, session_id: uuid.UUID, user_id: uuid.UUID) -> Row:
    """The session a player joins (or rejoins), if it still takes players, with the caller's place in
    it and their account's nickname (_JOIN_CHECKS)."""
    session = db.execute(text(_JOIN_CHECKS), {"s": session_id, "u": user_id}).one_or_none()
    if session is None:
        raise NotFound("not_found", "no such session")
    try:
        rules.check_can_join(session.status)
    except rules.TransitionError as exc:
        raise _conflict(exc) from None
    return session


def join_session(db: Session, user_id: uuid.UUID, session_id: uuid.UUID,
                 nickname: str | None) -> dict[str, Any]:
    """Join as a player. A nickname is unique in a session (trimmed, case-insensitive); the player gets
    a rejoin code of their own, to take their place back from another device. Three statements (the
    checks, the insert, the event), no savepoint: a join storm is made of them. A concurrent join's
    conflict leaves the insert without a row; only then is it looked up which one it was."""
    with db.begin():
        session = _joinable(db, session_id, user_id)
        if session.host_id == user_id:
            raise Forbidden("host_cannot_join", "the host runs the session and cannot play in it")
        if session.participant_id is not None:
            _refuse_existing(session.participant_id, session.joined_as, session.removed)
        if session.locked:
            raise Conflict("room_locked", "the host has locked this game: nobody new can join")
        nickname = session.user_nickname if nickname is None else nickname
        participant_id, code = new_id(), rules.new_rejoin_code()
        joined = db.execute(text("""
            INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname, rejoin_code)
            VALUES (:id, :session, :user, :nickname, :code)
            ON CONFLICT DO NOTHING
            RETURNING joined_at,
                      (SELECT count(*) FROM quiz_session_participants
                       WHERE quiz_session_id = :session AND removed_at IS NULL) + 1 AS player_count"""),
            {"id": participant_id, "session": session_id, "user": user_id, "nickname": nickname,
             "code": code}).one_or_none()
        if joined is None:  # a join of the same player or nickname committed meanwhile
            existing = db.execute(text(_JOIN_CHECKS), {"s": session_id, "u": user_id}).one()
            if existing.participant_id is not None:
                _refuse_existing(existing.participant_id, existing.joined_as, existing.removed)
            raise Conflict("nickname_taken", f"someone in this game is already called {nickname!r}: "
                                             "pick another nickname")
        record_event(db, SESSION_EVENTS, session_id, "participant_joined", ParticipantJoined(
            participant_id=participant_id, user_id=user_id, nickname=nickname,
            player_count=joined.player_count, joined_at=joined.joined_at))
    return {"participant_id": str(participant_id), "nickname": nickname, "rejoin_code": code}


# A join's checks in one read: the session (KEY SHARE: joins run side by side, never interleaved with its
# end), the caller's place in it if they have one, and their account's nickname.
_JOIN_CHECKS = """
    SELECT s.status, s.host_id, s.locked, p.id AS participant_id, p.nickname AS joined_as,
           p.removed_at IS NOT NULL AS removed, u.nickname AS user_nickname
    FROM quiz_sessions s LEFT JOIN users u ON u.id = :u
    LEFT JOIN quiz_session_participants p ON p.quiz_session_id = s.id AND p.user_id = :u
    WHERE s.id = :s FOR KEY SHARE OF s"""


def _refuse_existing(participant_id: uuid.UUID, nickname: str, removed: bool) -> None:
    """The caller has a place in the session already: removed by the host, or joined."""
    if removed:
        raise Forbidden("removed", "the host removed you from this game")
    raise Conflict("already_joined", "you have already joined this session",
                   participant_id=str(participant_id), nickname=nickname)


def rejoin_session(db: Session, user_id: uuid.UUID, session_id: uuid.UUID, nickname: str,
                   rejoin_code: str) -> dict[str, Any]:
    """Take a place back from another device: the player's nickname and their own rejoin code move
    the place (score, streak, answers) to the caller's account, and give it a new code. Returns the
    place, and the account that held it (its sockets are to be closed)."""
    with db.begin():
        session = _joinable(db, session_id, user_id)
        place = db.execute(text("""
            SELECT id, user_id, nickname FROM quiz_session_participants
            WHERE quiz_session_id = :s AND lower(nickname) = lower(:nickname) AND rejoin_code = :code
              AND removed_at IS NULL FOR UPDATE"""),
            {"s": session_id, "nickname": nickname.strip(),
             "code": rules.normal_rejoin_code(rejoin_code)}).one_or_none()
        if place is None:
            raise NotFound("no_such_player", "no player of this game has that nickname and rejoin code")
        if place.user_id != user_id:
            mine = db.execute(text("SELECT 1 FROM quiz_session_participants "
                                   "WHERE quiz_session_id = :s AND user_id = :u"),
                              {"s": session_id, "u": user_id}).scalar()
            if mine or session.host_id == user_id:
                raise Conflict("already_joined", "this account is already in the game: rejoin from a new one")
        code = rules.new_rejoin_code()
        db.execute(text("UPDATE quiz_session_participants SET user_id = :u, rejoin_code = :code "
                        "WHERE id = :id"),
                   {"u": user_id, "code": code, "id": place.id})
    return {"participant_id": str(place.id), "nickname": place.nickname, "rejoin_code": code,
            "previous_user_id": str(place.user_id)}


def lock_for_host(db: Session, host_id: uuid.UUID | None, session_id: uuid.UUID, *,
                  for_update: bool = True) -> Row:
    """The session, checked to be the host's; locked against other changes unless only read."""
    row = db.execute(text(f"""
        SELECT s.id, s.quiz_id, s.host_id, s.status, s.current_question_id, clock_timestamp() AS now,
               q.position, q.correct_choice, q.points, q.choices
        FROM quiz_sessions s LEFT JOIN questions q ON q.id = s.current_question_id
        WHERE s.id = :id {"FOR UPDATE OF s" if for_update else ""}"""), {"id": session_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such session")
    if host_id is not None and row.host_id != host_id:
        raise Forbidden("not_host", "only the session's host can do that")
    return row


def _close_open_question(db: Session, session: Row, reason: str) -> dict[str, Any]:
    """Close the open question of a locked session; answers in flight have finished (they hold KEY SHARE)."""
    counts = [0] * len(session.choices)
    for choice, count in db.execute(text(
            "SELECT choice, count(*) FROM participant_answers "
            "WHERE quiz_session_id = :s AND question_id = :q GROUP BY choice"),
            {"s": session.id, "q": session.current_question_id}):
        counts[choice] = count
    # The question's points become visible now, all at once (scoring.after_close, in SQL); answers in
    # flight have committed: they held KEY SHARE.
    params = scoring.close_params(session.id, session.current_question_id, session.points)
    for statement, statement_params in zip(scoring.CLOSE_SQL, params):
        db.execute(text(statement), statement_params)
    db.execute(text("UPDATE quiz_sessions SET status = :closed WHERE id = :id"),
               {"id": session.id, "closed": rules.QUESTION_CLOSED})
    closed = QuestionClosed(question_id=session.current_question_id, position=session.position,
                            correct_choice=session.correct_choice, choice_counts=counts,
                            closed_at=session.now, reason=reason)
    record_event(db, SESSION_EVENTS, session.id, "question_closed", closed)
    return closed.model_dump(mode="json")


def open_next_question(db: Session, host_id: uuid.UUID, session_id: uuid.UUID,
                       get_ready_s: float = 0.0) -> dict[str, Any]:
    """Show the next question now; its answers open after the quiz's get-ready length (`get_ready_s`
    when the quiz has none) on PostgreSQL's clock, and its time limit counts from then."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        next_position = 0 if session.position is None else session.position + 1
        question_count, quiz_get_ready_s = db.execute(text(
            "SELECT (SELECT count(*) FROM questions WHERE quiz_id = :q), get_ready_s "
            "FROM quizzes WHERE id = :q"),
            {"q": session.quiz_id}).one()
        if quiz_get_ready_s is not None:
            get_ready_s = quiz_get_ready_s
        try:
            rules.check_can_open_next(session.status, next_position, question_count)
        except rules.TransitionError as exc:
            raise _conflict(exc) from None
        if session.status == rules.QUESTION_OPEN:
            _close_open_question(db, session, "next")
        question = db.execute(text(
            "SELECT id, position, kind, text, choices, time_limit_s, points, image_id, image_alt "
            "FROM questions WHERE quiz_id = :q AND position = :p"),
            {"q": session.quiz_id, "p": next_position}).one()
        shown_at: datetime = session.now
        opened_at = shown_at + timedelta(seconds=get_ready_s)
        deadline = opened_at + timedelta(seconds=question.time_limit_s)
        db.execute(text("""
            UPDATE quiz_sessions SET status = :open, current_question_id = :q, question_shown_at = :shown,
                   question_opened_at = :opened, question_deadline = :deadline WHERE id = :id"""),
            {"q": question.id, "shown": shown_at, "opened": opened_at, "deadline": deadline, "id": session_id,
             "open": rules.QUESTION_OPEN})
        opened = QuestionOpened(question_id=question.id, position=question.position, text=question.text,
                                choices=question.choices, time_limit_s=question.time_limit_s,
                                points=question.points, opened_at=opened_at, deadline=deadline,
                                question_count=question_count, kind=question.kind, shown_at=shown_at,
                                image_url=image_url(question.image_id), image_alt=question.image_alt)
        record_event(db, SESSION_EVENTS, session_id, "question_opened", opened)
    return opened.model_dump(mode="json")


def close_question(db: Session, session_id: uuid.UUID, *, host_id: uuid.UUID | None = None,
                   reason: str = "host", question_id: uuid.UUID | None = None) -> dict[str, Any] | None:
    """Close the open question. With `question_id`, only if that one is still open (else None)."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        if question_id is not None and (session.status != rules.QUESTION_OPEN
                                        or session.current_question_id != question_id):
            return None
        try:
            rules.check_can_close(session.status)
        except rules.TransitionError as exc:
            raise _conflict(exc) from None
        return _close_open_question(db, session, reason)


def extend_question(db: Session, host_id: uuid.UUID, session_id: uuid.UUID, seconds: int,
                    seen_deadline: datetime | None = None, *, max_extra_s: int) -> dict[str, Any]:
    """More time for the open question: its deadline moves `seconds` later, up to `max_extra_s`
    (QUESTION_MAX_EXTRA_S) beyond its time limit in all. The timers close by the deadline in PostgreSQL,
    and the answers are judged by it, so the new deadline holds everywhere at once; the rooms hear it
    from the event.

    With `seen_deadline` (the deadline the host saw), a question whose deadline is another one now was
    extended already: a retry gets the question as it is (`replayed`), not one more extension."""
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        try:
            rules.check_can_close(session.status)
        except rules.TransitionError as exc:
            raise _conflict(exc) from None
        row = db.execute(text("""
            SELECT s.question_opened_at, s.question_deadline, q.time_limit_s FROM quiz_sessions s
            JOIN questions q ON q.id = s.current_question_id WHERE s.id = :s"""), {"s": session_id}).one()
        if row.question_deadline <= session.now:
            raise Conflict("question_closed", "the question's time is up: it is closing")
        if seen_deadline is not None and seen_deadline != row.question_deadline:
            return {"question_id": str(session.current_question_id), "position": session.position,
                    "deadline": row.question_deadline.isoformat().replace("+00:00", "Z"), "added_s": 0,
                    "extra_s": round((row.question_deadline - row.question_opened_at).total_seconds())
                    - row.time_limit_s, "replayed": True}
        deadline = row.question_deadline + timedelta(seconds=seconds)
        extra_s = round((deadline - row.question_opened_at).total_seconds()) - row.time_limit_s
        if extra_s > max_extra_s:
            raise Conflict("too_much_time", f"a question gets at most {max_extra_s} s more than its "
                           "time limit", max_extra_s=max_extra_s)
        db.execute(text("UPDATE quiz_sessions SET question_deadline = :deadline WHERE id = :s"),
                   {"deadline": deadline, "s": session_id})
        extended = QuestionExtended(question_id=session.current_question_id, position=session.position,
                                    deadline=deadline, added_s=seconds, extra_s=extra_s,
                                    extended_at=session.now)
        record_event(db, SESSION_EVENTS, session_id, "question_extended", extended)
    return {**extended.model_dump(mode="json"), "replayed": False}


def end_session(db: Session, host_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Any]:
    with db.begin():
        session = lock_for_host(db, host_id, session_id)
        try:
            rules.check_can_end(session.status)
        except rules.TransitionError as exc:
            raise _conflict(exc) from None
        if session.status == rules.QUESTION_OPEN:
            _close_open_question(db, session, "end")
        db.execute(text("UPDATE quiz_sessions SET status = :ended, ended_at = :now WHERE id = :id"),
                   {"now": session.now, "id": session_id, "ended": rules.ENDED})
        record_event(db, SESSION_EVENTS, session_id, "session_ended", SessionEnded(ended_at=session.now))
    return {"id": str(session_id), "status": rules.ENDED, "ended_at": session.now.isoformat()}


def find_due_questions(db: Session) -> list[Row]:
    """Open questions past their deadline, or answered by every player: they close by themselves."""
    with db.begin():
        return db.execute(text(f"""
            SELECT s.id, s.current_question_id,
                   CASE WHEN s.question_deadline <= clock_timestamp() THEN 'deadline' ELSE 'all_answered' END
                       AS reason
            FROM quiz_sessions s
            WHERE s.{rules.OPEN_SQL} AND (
                s.question_deadline <= clock_timestamp()
                OR (SELECT count(*) FROM participant_answers a  -- a removed player's answer waits for nobody
                    JOIN quiz_session_participants p
                      ON p.id = a.quiz_session_participant_id AND p.removed_at IS NULL
                    WHERE a.quiz_session_id = s.id AND a.question_id = s.current_question_id)
                   >= GREATEST(1, (SELECT count(*) FROM quiz_session_participants p
                                   WHERE p.quiz_session_id = s.id AND p.removed_at IS NULL))
            )""")).all()


def close_due_questions(db: Session) -> int:
    """Close every due question once, however many processes run this at the same time."""
    closed = 0
    for due in find_due_questions(db):
        if close_question(db, due.id, reason=due.reason, question_id=due.current_question_id) is not None:
            closed += 1
    return closed
