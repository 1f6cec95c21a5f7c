"""Group commit of answers: one transaction for many, each answer still judged on its own."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from app.services.answers import AnswerBatcher, AnswerReceipt, AnswerRequest, _Pending, submit_answers
from app.services.errors import Conflict, Forbidden, Invalid
from tests.helpers import Api


def _open_rooms(api: Api, rooms: int, players: int):
    host = api.host()
    opened = []
    for _ in range(rooms):
        sid = api.live_session(host)["id"]
        joined = [api.join(sid, api.guest()) for _ in range(players)]
        opened.append((sid, api.next_question(sid, host)["question_id"], joined))
    return opened


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def _rows(engine, sql: str, **params):
    with engine.connect() as connection:
        return connection.execute(text(sql), params).all()


def test_one_batch_mixes_accepted_and_refused_answers(api: Api, engine):
    (sid, qid, players), = _open_rooms(api, 1, 3)
    outsider = api.guest()
    requests = [
        AnswerRequest(uuid.UUID(players[0].user_id), uuid.UUID(sid), uuid.UUID(qid), 0),
        AnswerRequest(uuid.UUID(players[1].user_id), uuid.UUID(sid), uuid.UUID(qid), 1),
        AnswerRequest(uuid.UUID(players[0].user_id), uuid.UUID(sid), uuid.UUID(qid), 2),   # again: refused
        AnswerRequest(uuid.UUID(outsider.user_id), uuid.UUID(sid), uuid.UUID(qid), 0),     # not joined
        AnswerRequest(uuid.UUID(players[2].user_id), uuid.UUID(sid), uuid.uuid4(), 0),     # wrong question
    ]
    results = submit_answers(engine, requests)
    assert [type(r) for r in results] == [AnswerReceipt, AnswerReceipt, Conflict, Forbidden, Invalid]
    assert results[2].code == "already_answered"
    assert _count(engine, "SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s", s=sid) == 2
    assert _count(engine, "SELECT count(*) FROM events WHERE aggregate_id = :s AND event_type = 'answer_scored'",
                  s=sid) == 2
    totals = dict(_rows(engine, "SELECT payload->>'participant_id', (payload->>'total')::int FROM events "
                                "WHERE aggregate_id = :s AND event_type = 'answer_scored'", s=sid))
    scores = dict(_rows(engine, "SELECT id::text, score FROM quiz_session_participants WHERE quiz_session_id = :s",
                        s=sid))
    assert totals == {pid: score for pid, score in scores.items() if pid in totals}
    assert scores[players[0].participant_id] > 0 and scores[players[1].participant_id] == 0


def test_a_failing_batch_is_retried_answer_by_answer(api: Api, engine):
    (sid, qid, players), = _open_rooms(api, 1, 4)
    doomed = players[3]
    trigger = f"fail_batch_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                f"BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$"))
        connection.execute(text(f"CREATE TRIGGER {trigger} BEFORE INSERT ON events FOR EACH ROW "
                                f"WHEN (NEW.payload->>'nickname' = '{doomed.nickname}') EXECUTE FUNCTION {trigger}()"))
    try:
        batch = [_Pending(AnswerRequest(uuid.UUID(p.user_id), uuid.UUID(sid), uuid.UUID(qid), 0)) for p in players]
        AnswerBatcher(engine)._commit(batch)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON events"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
    assert all(isinstance(p.result, AnswerReceipt) for p in batch[:3])
    assert isinstance(batch[3].result, Exception) and not isinstance(batch[3].result, AnswerReceipt)
    assert _count(engine, "SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s", s=sid) == 3
    assert _count(engine, "SELECT score FROM quiz_session_participants WHERE id = :p", p=doomed.participant_id) == 0


def test_concurrent_answers_across_rooms_are_each_recorded_once(api: Api, engine):
    rooms = _open_rooms(api, 4, 25)
    batcher = AnswerBatcher(engine, max_batch=16)
    requests = [AnswerRequest(uuid.UUID(p.user_id), uuid.UUID(sid), uuid.UUID(qid), i % 4)
                for sid, qid, players in rooms for i, p in enumerate(players)]

    def submit(request):
        try:
            return batcher.submit(request)
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(max_workers=32) as pool:
        first = list(pool.map(submit, requests))
        again = list(pool.map(submit, requests))
    assert all(isinstance(r, AnswerReceipt) for r in first)
    assert all(isinstance(r, Conflict) and r.code == "already_answered" for r in again)
    for sid, _, players in rooms:
        assert _count(engine, "SELECT count(*) FROM events WHERE aggregate_id = :s "
                              "AND event_type = 'answer_scored'", s=sid) == len(players)
