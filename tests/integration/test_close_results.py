"""A player's own result of a close, as the room reads it: from the answers the board keeps in Redis, the
values PostgreSQL recorded, without a PostgreSQL round trip; from PostgreSQL when Redis cannot tell."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.events import envelope_from_row
from app.quiz.board.apply import apply_event
from app.quiz.board.rebuild import rebuild_session_board
from app.quiz.board.scripts import APPLIED, session_board_scripts
from app.quiz.service.rooms import question_results
from app.web.rooms.room import RoomReads
from app.web.runtime import Runtime
from tests.helpers import Api, Player, sample_questions
from tests.integration.worker_support import event_rows


def _apply_new(engine, redis_client, sid, seen: set) -> list[int]:
    rows = [r for r in event_rows(engine, sid) if r.id not in seen]
    seen |= {r.id for r in rows}
    scripts = session_board_scripts(redis_client)
    return [apply_event(scripts, redis_client, envelope_from_row(row)) for row in rows]


@dataclass
class _Room:
    """A live session of three players (one right, one wrong, one silent) whose board the test applies by
    hand, and the web's room reads with every SQL statement they run recorded."""
    host: Player
    sid: str
    right: Player
    wrong: Player
    silent: Player
    seen: set
    reads: RoomReads
    statements: list[str]

    @property
    def players(self) -> list[uuid.UUID]:
        return [uuid.UUID(p.participant_id) for p in (self.right, self.wrong, self.silent)]

    @classmethod
    def played(cls, api: Api, engine, redis_client, config, questions) -> _Room:
        host = api.host()
        sid = api.live_session(host, questions)["id"]
        right, wrong, silent = (api.join(sid, api.guest()) for _ in range(3))
        seen: set = set()
        rebuild_session_board(engine, redis_client, sid)
        _apply_new(engine, redis_client, sid, seen)
        runtime = Runtime(config)
        statements: list[str] = []
        event.listen(runtime.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        return cls(host, sid, right, wrong, silent, seen, runtime._room_reads(), statements)


def test_a_close_tells_each_player_what_postgresql_recorded_without_asking_it(api: Api, engine, redis_client,
                                                                              config):
    questions = sample_questions(2, time_limit_s=240)
    room = _Room.played(api, engine, redis_client, config, questions)
    host, sid, seen, players, reads, statements = (room.host, room.sid, room.seen, room.players, room.reads,
                                                   room.statements)
    right, wrong = room.right, room.wrong

    for n, question in enumerate(questions):  # the second question: the first one's streak goes on
        opened = api.next_question(sid, host)
        correct = question["correct_choice"]
        api.answer(sid, right, opened["question_id"], correct)
        api.answer(sid, wrong, opened["question_id"], (correct + 1) % len(question["choices"]))
        api.close_question(sid, host)
        assert set(_apply_new(engine, redis_client, sid, seen)) == {APPLIED}
        qid = uuid.UUID(opened["question_id"])
        with Session(engine) as db:
            recorded = {pid: {k: v for k, v in own.items() if k != "nickname"}
                        for pid, own in question_results(db, uuid.UUID(sid), qid, players).items()}
        assert recorded[players[0]]["correct"] and recorded[players[0]]["streak"] == n + 1
        assert not recorded[players[2]]["answered"]

        statements.clear()
        assert reads.question_results(uuid.UUID(sid), qid, players) == recorded
        assert statements == []  # Redis knew every result: no round trip to PostgreSQL

    # A rebuild does not bring back the answers kept for closes: PostgreSQL says it, the same.
    rebuild_session_board(engine, redis_client, sid)
    statements.clear()
    asked = reads.question_results(uuid.UUID(sid), qid, players)
    assert {pid: {k: v for k, v in own.items() if k != "nickname"} for pid, own in asked.items()} == recorded
    assert statements != []


def test_a_close_by_the_hosts_next_is_read_from_redis_after_the_next_question_opened(api: Api, engine,
                                                                                      redis_client, config):
    """Next closes the open question and opens the next one in one transaction: the worker applies both
    before the room reads the close, and the close's results still come from Redis, as PostgreSQL
    recorded them."""
    questions = sample_questions(3, time_limit_s=240)
    room = _Room.played(api, engine, redis_client, config, questions)
    host, sid, seen, players, reads, statements = (room.host, room.sid, room.seen, room.players, room.reads,
                                                   room.statements)
    right, wrong = room.right, room.wrong

    opened = api.next_question(sid, host)
    for question in questions[:2]:
        correct = question["correct_choice"]
        api.answer(sid, right, opened["question_id"], correct)
        api.answer(sid, wrong, opened["question_id"], (correct + 1) % len(question["choices"]))
        closing = uuid.UUID(opened["question_id"])
        opened = api.next_question(sid, host)  # closes this question, opens the next
        assert set(_apply_new(engine, redis_client, sid, seen)) == {APPLIED}
        with Session(engine) as db:
            recorded = {pid: {k: v for k, v in own.items() if k != "nickname"}
                        for pid, own in question_results(db, uuid.UUID(sid), closing, players).items()}
        assert recorded[players[0]]["correct"] and not recorded[players[2]]["answered"]
        statements.clear()
        asked = reads.question_results(uuid.UUID(sid), closing, players)
        assert statements == []  # Redis knew every result: no round trip to PostgreSQL
        assert asked == recorded
