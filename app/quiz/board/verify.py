"""Comparing a session's board in Redis with PostgreSQL, the truth (`ops verify`).

Each participant's standing is compared whole: the score and the moment it was reached (which ranks
equal scores), so a board that orders ties differently differs too. The answers of an open question,
held in `pending:{S}` until it closes, are compared with PostgreSQL's uncounted answers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text

from app.core.board import cached_ids
from app.core.clock import instant_ms
from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import UnknownSession, session_epoch_ms
from app.quiz.board.scores import reached_ms, split

Standing = tuple[int, int]  # score, reached_ms: the two halves of the composite (scores.py)
_BOARD_KEY = re.compile(r"^(?:lb|meta):\{([0-9a-f-]{36})\}$")


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


def cached_sessions(redis) -> set[str]:
    """Sessions with a board or board metadata in Redis (SCAN, so it never blocks Redis), among the keys
    of this process's REDIS_KEY_PREFIX only."""
    return cached_ids(redis, ["meta:{*}", "lb:{*}"], _BOARD_KEY)  # not a rebuild's temporary keys


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
                    "WHERE quiz_session_id = :s AND removed_at IS NULL"),
                    {"s": session_id})}


def _postgres_held(engine, session_id: str) -> dict[str, Standing]:
    """(points, answered at ms) of the answers to the open question, which its close will add."""
    with engine.connect() as connection:
        return {str(pid): (int(points), instant_ms(at)) for pid, points, at in connection.execute(text(
            "SELECT a.quiz_session_participant_id, a.points, a.created_at FROM participant_answers a "
            "JOIN quiz_session_participants p ON p.id = a.quiz_session_participant_id "
            "WHERE a.quiz_session_id = :s AND NOT a.counted AND p.removed_at IS NULL"), {"s": session_id})}


def _redis_held(raw: dict) -> dict[str, Standing]:
    held = {}
    for member, value in raw.items():
        points, _, at_ms = (value.decode() if isinstance(value, bytes) else value).partition(":")
        held[member.decode() if isinstance(member, bytes) else member] = (int(points), int(at_ms))
    return held


def compare_session_board(engine, redis, session_id: str) -> list[Difference] | None:
    """Differences between the Redis board and PostgreSQL (score and reach time of every player, and
    the answers held for the open question); None when Redis holds no board at all.

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


def drop_session_board(redis, session_id: str) -> None:
    """Remove the cached state of a session PostgreSQL does not know (the room stream stays)."""
    keys = SessionKeys.of(session_id)
    redis.delete(keys.board, keys.applied, keys.meta, keys.names, keys.recent, keys.pending)
