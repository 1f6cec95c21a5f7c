"""Reading boards: who may, and one atomic Lua call per page, rebuilding a board Redis lacks."""
from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.core.board import READ_ATTEMPTS
from app.core.errors import Forbidden, NotFound
from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import rebuild_session_board
from app.quiz.board.scripts import NEEDS_REBUILD, session_board_scripts
from app.quiz.domain import scoring

# One rebuild at a time per session in this process: when a board is missing, every socket of a
# large room asks for it at once (a reconnect wave after Redis lost it). The first rebuilds; the
# others wait and read the rebuilt board instead of each rebuilding it (and each rebuild resyncing
# the whole room). A fixed set of locks, a session's chosen by its id: the memory stays bounded
# however many sessions the process ever rebuilds, and two sessions sharing a lock only take turns.
_REBUILD_LOCKS = tuple(threading.Lock() for _ in range(64))


def _rebuild_lock(session_id: uuid.UUID) -> threading.Lock:
    return _REBUILD_LOCKS[session_id.int % len(_REBUILD_LOCKS)]


def check_reader(db: Session, session_id: uuid.UUID, user_id: uuid.UUID,
                 participant_id: uuid.UUID | None = None) -> None:
    """The host and the session's participants may read its board; `participant_id` must be one."""
    with db.begin():
        row = db.execute(text("""
            SELECT s.host_id,
                   EXISTS (SELECT 1 FROM quiz_session_participants p
                           WHERE p.quiz_session_id = s.id AND p.user_id = :user AND p.removed_at IS NULL)
                       AS joined,
                   EXISTS (SELECT 1 FROM quiz_session_participants p
                           WHERE p.quiz_session_id = s.id AND p.id = :participant AND p.removed_at IS NULL)
                       AS target_exists
            FROM quiz_sessions s WHERE s.id = :session"""),
            {"session": session_id, "user": user_id, "participant": participant_id}).one_or_none()
    if row is None:
        raise NotFound("not_found", "no such session")
    if row.host_id != user_id and not row.joined:
        raise Forbidden("not_in_session", "only the host and the session's players can see its leaderboard")
    if participant_id is not None and not row.target_exists:
        raise NotFound("not_found", "no such participant in this session")


def _read(db: Session, redis, session_id: uuid.UUID, script_name: str, args: list[Any]) -> list[Any]:
    keys = SessionKeys.of(session_id)
    script = getattr(session_board_scripts(redis), script_name)
    for _ in range(READ_ATTEMPTS):
        reply = script([keys.board, keys.meta, keys.names], args)
        if reply[0] != NEEDS_REBUILD:
            return reply
        with _rebuild_lock(session_id):
            reply = script([keys.board, keys.meta, keys.names], args)
            if reply[0] != NEEDS_REBUILD:  # rebuilt while this read waited for the lock
                return reply
            rebuild_session_board(db, redis, session_id)
    raise RuntimeError(f"the board of {session_id} vanished {READ_ATTEMPTS} times while being read")


def _entries(flat: list[Any], first_rank: int) -> list[dict[str, Any]]:
    return [{"rank": first_rank + i // 3, "participant_id": _text(flat[i]), "nickname": _text(flat[i + 2]),
             "score": int(flat[i + 1])} for i in range(0, len(flat), 3)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_page(db: Session, redis, session_id: uuid.UUID, limit: int, offset: int) -> dict[str, Any]:
    reply = _read(db, redis, session_id, "read_session_board_page", [offset, limit])
    return {"session_id": str(session_id), "version": int(reply[0]), "total_players": int(reply[1]),
            "entries": _entries(reply[2:], offset + 1)}


def read_around(db: Session, redis, session_id: uuid.UUID, participant_id: uuid.UUID,
                around: int) -> dict[str, Any]:
    reply = _read(db, redis, session_id, "read_session_board_around", [str(participant_id), around])
    if reply[0] == 0:
        # In PostgreSQL (checked by check_reader) but its join is not applied yet.
        return {"session_id": str(session_id), "version": None, "rank": None, "score": 0, "entries": []}
    entries = _entries(reply[3:], int(reply[2]))
    own = next(e for e in entries if e["participant_id"] == str(participant_id))
    return {"session_id": str(session_id), "version": int(reply[0]), "total_players": int(reply[1]),
            "rank": own["rank"], "score": own["score"], "entries": entries}


def question_results(redis, session_id: uuid.UUID, question_id: uuid.UUID,
                     participant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]] | None:
    """What `app.quiz.service.rooms.question_results` reads from PostgreSQL, from one Redis call: each
    given player's answer to the closed question as answer_scored recorded it, and their score and rank
    on the board the close left; the last question closed, also once the host's Next opened the next
    one. None when Redis cannot say it exactly (the question's answers are not all known there, a player
    already answered the next question, or a player who did not answer a question worth nothing keeps a
    streak only PostgreSQL knows): the caller asks PostgreSQL."""
    if not participant_ids:
        return {}
    keys = SessionKeys.of(session_id)
    reply = session_board_scripts(redis).read_question_results(
        [keys.results, keys.board], [str(question_id), *map(str, participant_ids)])
    if int(reply[0]) != 1:
        return None
    question_points = int(reply[1])
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for n, participant_id in enumerate(participant_ids):
        answer, rank, score = reply[2 + 3 * n: 5 + 3 * n]
        if int(rank) < 0:
            continue  # not on the board (removed): no result, as PostgreSQL's standings leave them out
        own = {"participant_id": str(participant_id), "score": int(score), "rank": int(rank) + 1}
        if answer:
            choice, correct, points, streak = map(int, _text(answer).split(":"))
            own.update(answered=True, choice=choice, correct=bool(correct), points=points, streak=streak,
                       streak_bonus=scoring.streak_bonus(streak) if points else 0)
        elif question_points > 0:  # no answer to a question that counts breaks the streak (after_close)
            own.update(answered=False, choice=None, correct=False, points=0, streak=0, streak_bonus=0)
        else:
            return None
        found[participant_id] = own
    return found
