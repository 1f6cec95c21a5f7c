"""Rebuild one session's board from PostgreSQL and swap it in atomically, while events flow.

Steps of `rebuild_session_board`:

1. Read `mark = meta:{S}.recent_seq` (0 when absent), and `meta:{S}.rebuilds` with it (app/core/board.py,
   Mark). Every change the worker applies bumps the first and appends the change to the stream
   `recent:{S}` with id `<seq>-0`; every swap bumps the second.
2. Open a REPEATABLE READ, READ ONLY transaction. Its snapshot is taken by the first query,
   after the mark was read. From that one snapshot read the participants (score as of the last
   closed question, score_reached_at, nickname), the answers (ids; those of an open question, not
   yet counted, with their points), the questions opened or closed, the session's status and the
   `events` ids of the session.
3. Write the rebuilt board into `lb:{S}:rebuild:<token>`, the open question's answers into
   `pending:{S}:rebuild:<token>` and the snapshot's dedupe members (event ids and natural keys)
   into `applied:{S}:rebuild:<token>` (all expire if we die), and the nicknames into `names:{S}`
   (idempotent).
4. `swap_rebuilt_session_board.lua`, in one atomic call: for every `recent:{S}` entry after the mark whose
   natural key is not in the snapshot set, replay it onto the rebuilt keys; RENAME them over
   `lb:{S}` and `pending:{S}`; union the snapshot set into `applied:{S}`; set the epoch, the open
   question and the expiry of an ended session, bump the version and tell the room.

Why this is exact:
- An event the worker applied before the mark was published before the mark, hence committed
  before the snapshot, hence in it. So the live applications the snapshot may lack all sit in
  `recent:{S}` after the mark; the swap replays exactly those not in the snapshot.
- An event in the snapshot but not yet applied live is marked applied by the swap, so its later
  delivery is a duplicate. An event in neither is applied normally after the swap.
- If `recent:{S}` was trimmed past the mark or reset (flushed) meanwhile, the swap refuses and
  the rebuild starts over.
- If another rebuild swapped in after the mark (a read and the worker can both find the board missing),
  its board, with the live changes since, already holds everything this snapshot does: this swap drops
  its keys and changes nothing (an older snapshot renamed over a newer one would lose its players).
- Dedupe survives the relay pruning published `events` rows: the natural keys (apply.py) are
  derived from the domain tables, which keep them forever, and the scripts check them as well as
  the event id.
- The points of an open question stay hidden after a rebuild too: PostgreSQL adds them to the
  participants only when the question closes, and the rebuild holds them in `pending:{S}`.

"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.core.board import OVERTAKEN, REBUILD_KEY_TTL_S, SWAPPED, Mark, Swap, rebuild_until_swapped
from app.core.clock import instant_ms
from app.core.projection import UnknownAggregate
from app.quiz.board.apply import (
    ENDED_KEY,
    ENDED_SESSION_TTL,
    answer_key,
    closed_key,
    extended_key,
    joined_key,
    opened_key,
    removed_key,
    restored_key,
)
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scores import composite, reached_ms
from app.quiz.board.scripts import session_board_scripts
from app.quiz.domain.sessions import ENDED, QUESTION_OPEN

# An ended session read after its keys expired is cached again for this long, then expires again.
REREAD_ENDED_TTL = timedelta(hours=1)
_CHUNK = 2000


class UnknownSession(UnknownAggregate):
    """The session does not exist in PostgreSQL."""


@dataclass(frozen=True)
class Rebuilt:
    session_id: str
    players: int
    marked: int
    replayed: int
    version: int


def session_epoch_ms(created_at) -> int:
    """The instant reach times count from: the session's creation, in whole milliseconds."""
    return instant_ms(created_at)


@dataclass(frozen=True)
class _Snapshot:
    epoch_ms: int
    players: list[tuple[str, str, int, int]]  # participant id, nickname, score, reached_ms
    held: dict[str, str]  # participant id -> "points:at_ms" of the open question's answers
    open_question: str  # '' when no question is open
    applied: list[str]
    event_count: int
    expire_at_s: int  # 0: the session has not ended


def _read_snapshot(bind: Engine, session_id: uuid.UUID) -> _Snapshot:
    with bind.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        with connection.begin():
            connection.execute(text("SET TRANSACTION READ ONLY"))
            session = connection.execute(text("""
                SELECT s.created_at, s.status, s.quiz_id, s.ended_at, s.current_question_id,
                       q.position AS current_position, clock_timestamp() AS now,
                       coalesce(round(extract(epoch FROM s.question_deadline - s.question_opened_at))::int
                                - q.time_limit_s, 0) AS extra_s
                FROM quiz_sessions s LEFT JOIN questions q ON q.id = s.current_question_id
                WHERE s.id = :s"""), {"s": session_id}).one_or_none()
            if session is None:
                raise UnknownSession(str(session_id))
            epoch = session_epoch_ms(session.created_at)
            everyone = connection.execute(text(
                "SELECT id, nickname, score, score_reached_at, removed_at, removals "
                "FROM quiz_session_participants WHERE quiz_session_id = :s"), {"s": session_id}).all()
            players = [(str(p.id), p.nickname, p.score, reached_ms(epoch, instant_ms(p.score_reached_at)))
                       for p in everyone if p.removed_at is None]
            applied = ["session"] + [joined_key(p.id) for p in everyone]
            for p in everyone:  # every removal so far, and every undo of one (all but the last, if removed)
                applied += [removed_key(p.id, n) for n in range(1, p.removals + 1)]
                applied += [restored_key(p.id, n) for n in range(1, p.removals + (p.removed_at is None))]
            removed = {str(p.id) for p in everyone if p.removed_at is not None}
            # A million answers and events: their ids as one text each, never a row object per id.
            applied += map(answer_key, _ids_of(connection, "participant_answers", "quiz_session_id",
                                               session_id))
            held: dict[str, str] = {}
            for answer in connection.execute(text(
                    "SELECT quiz_session_participant_id AS pid, points, created_at FROM participant_answers "
                    "WHERE quiz_session_id = :s AND NOT counted"), {"s": session_id}):
                # An open question's answer is hidden until its close.
                if str(answer.pid) not in removed:
                    held[str(answer.pid)] = f"{answer.points}:{instant_ms(answer.created_at)}"
            if session.status == QUESTION_OPEN:  # its extensions so far (those of closed ones change nothing)
                applied += [extended_key(session.current_question_id, n)
                            for n in range(1, session.extra_s + 1)]
            if session.current_position is not None:
                for question_id, position in connection.execute(text(
                        "SELECT id, position FROM questions WHERE quiz_id = :q AND position <= :p"),
                        {"q": session.quiz_id, "p": session.current_position}):
                    applied.append(opened_key(question_id))
                    if position < session.current_position or session.status != QUESTION_OPEN:
                        applied.append(closed_key(question_id))
            expire_at_s = 0
            if session.status == ENDED:
                applied.append(ENDED_KEY)
                expire_at_s = _ended_expiry_s(session.ended_at or session.now, session.now)
            event_ids = _ids_of(connection, "events", "aggregate_id", str(session_id))
    open_question = str(session.current_question_id) if session.status == QUESTION_OPEN else ""
    return _Snapshot(epoch, players, held, open_question, applied + event_ids, len(event_ids), expire_at_s)


def _ids_of(connection, table: str, column: str, value) -> list[str]:
    """The ids (as text) of `table`'s rows whose `column` is `value`: one aggregated text value, so a
    million ids cost one row and a split, not a row (and a UUID) each. (A text value holds up to 1 GB:
    27 million ids, 27 times a session of 10,000 players and 100 questions.)"""
    joined = connection.execute(text(f"SELECT string_agg(id::text, ',') FROM {table} WHERE {column} = :v"),
                                {"v": value}).scalar()
    return joined.split(",") if joined else []


def _ended_expiry_s(ended_at: datetime, now: datetime) -> int:
    """An ended session's keys expire ENDED_SESSION_TTL after its end; read later, they live a while
    longer."""
    return instant_ms(max(ended_at + ENDED_SESSION_TTL, now + REREAD_ENDED_TTL)) // 1000


def rebuild_session_board(engine_or_db: Engine | Session, redis, session_id: uuid.UUID | str,
                          before_swap=None) -> Rebuilt:
    """Rebuild the board of `session_id` from PostgreSQL and swap it in; see the module docstring.

    `before_swap` is a test hook, called between the snapshot and the swap.
    Raises UnknownSession when PostgreSQL has no such session.
    """
    bind = engine_or_db.get_bind() if isinstance(engine_or_db, Session) else engine_or_db
    session_id = uuid.UUID(str(session_id))
    keys = SessionKeys.of(session_id)
    scripts = session_board_scripts(redis)

    def attempt(token: str) -> Swap[Rebuilt]:
        mark = Mark.read(redis, keys.meta)
        snapshot = _read_snapshot(bind, session_id)
        rebuilt_board, rebuilt_applied, rebuilt_pending = temporary = keys.rebuilding(token)
        pipe = redis.pipeline(transaction=False)
        for start in range(0, len(snapshot.players), _CHUNK):
            chunk = snapshot.players[start:start + _CHUNK]
            pipe.zadd(rebuilt_board, {pid: composite(score, reached) for pid, _, score, reached in chunk})
            pipe.hset(keys.names, mapping={pid: nickname for pid, nickname, _, _ in chunk})
        for start in range(0, len(snapshot.applied), _CHUNK):
            pipe.sadd(rebuilt_applied, *snapshot.applied[start:start + _CHUNK])
        if snapshot.held:
            pipe.hset(rebuilt_pending, mapping=snapshot.held)
        for key in temporary:
            pipe.expire(key, REBUILD_KEY_TTL_S)
        pipe.execute()
        if before_swap is not None:
            before_swap()
        outcome = scripts.swap_rebuilt_session_board(
            [*keys.apply_keys, rebuilt_board, rebuilt_applied, rebuilt_pending],
            [snapshot.epoch_ms, mark.recent_seq, snapshot.event_count, snapshot.open_question,
             snapshot.expire_at_s, mark.rebuilds])
        if outcome[0] not in (SWAPPED, OVERTAKEN):
            return Swap(None, temporary)
        return Swap(Rebuilt(str(session_id), len(snapshot.players), len(snapshot.applied),
                            replayed=int(outcome[2]), version=int(outcome[1])), temporary)

    return rebuild_until_swapped(str(session_id), redis, attempt)
