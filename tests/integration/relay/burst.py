"""A burst of answers across three sessions, played the same way for every relay (poll, wal, Debezium),
and what its publication must keep: each event once, keyed by its session, in its session's order."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import text

from tests.events import EVENTS
from tests.helpers import Api, Player, sample_questions
from tests.integration.relay.support import Message

QUESTIONS = 2


@dataclass
class Burst:
    host: Player
    sessions: list[dict]
    players: dict[str, list[Player]]

    @classmethod
    def joined(cls, api: Api, players_each: int) -> Burst:
        host = api.host()
        sessions = [api.live_session(host, sample_questions(QUESTIONS)) for _ in range(3)]
        return cls(host, sessions, {s["id"]: [api.join(s["id"], api.guest()) for _ in range(players_each)]
                                    for s in sessions})

    def play(self, app, api: Api, workers: int) -> None:
        """Each question opened in every session, all its players answering at once, then closed."""
        def answer(job):
            session_id, player, question_id = job
            Api(app.test_client()).answer(session_id, player, question_id, hash(player.user_id) % 4)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in range(QUESTIONS):
                jobs = []
                for s in self.sessions:
                    opened = api.next_question(s["id"], self.host)
                    jobs += [(s["id"], p, opened["question_id"]) for p in self.players[s["id"]]]
                list(pool.map(answer, jobs))
                for s in self.sessions:
                    api.close_question(s["id"], self.host)

    def events(self, engine) -> list:
        """The sessions' events (id, aggregate_id, event_type) in the order they were written."""
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, aggregate_id, event_type FROM events "
                                     "WHERE aggregate_id = ANY(:s) ORDER BY created_at, seq"),
                                {"s": [s["id"] for s in self.sessions]}).all()
        answers = len(self.sessions) * len(next(iter(self.players.values()))) * QUESTIONS
        assert sum(r.event_type == "answer_scored" for r in rows) == answers
        return rows

    def check_published(self, rows, found: dict[str, list[Message]]) -> None:
        """Each event once, keyed by its session, with its id and type in the headers; per session,
        events whose transactions conflict (join, open, close) in exactly their commit order, and every
        answer between the opening and the closing of its question."""
        for row in rows:
            copies = found[str(row.id)]
            assert len(copies) == 1, f"{row.id} published {len(copies)} times"
            envelope = EVENTS.decode(copies[0].value)
            assert copies[0].key == row.aggregate_id.encode() and envelope.aggregate_id == row.aggregate_id
            assert copies[0].headers["event_type"].decode() == envelope.event_type == row.event_type
            assert copies[0].event_id == str(envelope.event_id) == str(row.id)
        for s in self.sessions:
            in_db = [r for r in rows if str(r.aggregate_id) == s["id"]]
            messages = sorted((found[str(r.id)][0] for r in in_db), key=lambda m: m.offset)
            assert len({m.partition for m in messages}) == 1
            published = [m.event_id for m in messages]
            barriers = _barriers(in_db)
            assert [e for e in published if e in barriers] == [str(r.id) for r in in_db if _is_barrier(r)]
            assert _segments(published, in_db) == _segments([str(r.id) for r in in_db], in_db)


def _is_barrier(row) -> bool:
    return row.event_type != "answer_scored"


def _barriers(rows) -> set[str]:
    return {str(r.id) for r in rows if _is_barrier(r)}


def _segments(order: list[str], rows) -> list[tuple[str, frozenset[str]]]:
    """Each barrier event with the set of answers published after it and before the next barrier."""
    barriers = _barriers(rows)
    segments: list[tuple[str, set[str]]] = []
    for event_id in order:
        if event_id in barriers:
            segments.append((event_id, set()))
        else:
            segments[-1][1].add(event_id)
    return [(b, frozenset(a)) for b, a in segments]
