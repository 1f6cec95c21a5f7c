"""Group commit of answers: one transaction for many, each answer still judged on its own."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from app.core.errors import Conflict, Forbidden
from app.core.group_commit import Pending
from app.quiz.service.answers import AnswerBatcher, AnswerReceipt, AnswerRequest, submit_answers
from tests.helpers import Api


def _open_rooms(api: Api, rooms: int, players: int, host=None):
    host = host or api.host()
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
    host = api.host()
    (sid, qid, players), = _open_rooms(api, 1, 3, host)
    outsider = api.guest()
    requests = [
        AnswerRequest(uuid.UUID(players[0].user_id), uuid.UUID(sid), uuid.UUID(qid), 0),
        AnswerRequest(uuid.UUID(players[1].user_id), uuid.UUID(sid), uuid.UUID(qid), 1),
        # again, another choice
        AnswerRequest(uuid.UUID(players[0].user_id), uuid.UUID(sid), uuid.UUID(qid), 2),
        # again, the same one
        AnswerRequest(uuid.UUID(players[1].user_id), uuid.UUID(sid), uuid.UUID(qid), 1),
        AnswerRequest(uuid.UUID(outsider.user_id), uuid.UUID(sid), uuid.UUID(qid), 0),     # not joined
        AnswerRequest(uuid.UUID(players[2].user_id), uuid.UUID(sid), uuid.uuid4(), 0),     # wrong question
    ]
    results = submit_answers(engine, requests)
    assert [type(r) for r in results] == [AnswerReceipt, AnswerReceipt, Conflict, AnswerReceipt, Forbidden,
                                          Conflict]
    assert results[5].code == "invalid_question"
    assert results[2].code == "already_answered" and results[2].extra["answer"] == results[0].view()
    assert results[3] == AnswerReceipt(results[1].answer_id, results[1].question_id, 1,
                                       results[1].answered_ms, replayed=True)
    assert _count(engine, "SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s", s=sid) == 2
    assert _count(engine, "SELECT count(*) FROM events "
                          "WHERE aggregate_id = :s AND event_type = 'answer_scored'", s=sid) == 2
    totals = dict(_rows(engine, "SELECT payload->>'participant_id', (payload->>'total')::int FROM events "
                                "WHERE aggregate_id = :s AND event_type = 'answer_scored'", s=sid))
    scores_sql = "SELECT id::text, score FROM quiz_session_participants WHERE quiz_session_id = :s"
    assert set(dict(_rows(engine, scores_sql, s=sid)).values()) == {0}, "points stay hidden while it is open"
    api.close_question(sid, host)
    scores = dict(_rows(engine, scores_sql, s=sid))
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
                                f"WHEN (NEW.payload->>'nickname' = '{doomed.nickname}') "
                                f"EXECUTE FUNCTION {trigger}()"))
    try:
        batch = [Pending(AnswerRequest(uuid.UUID(p.user_id), uuid.UUID(sid), uuid.UUID(qid), 0))
                 for p in players]
        AnswerBatcher(engine)._commit(batch)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON events"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
    assert all(isinstance(p.result, AnswerReceipt) for p in batch[:3])
    assert isinstance(batch[3].result, Exception) and not isinstance(batch[3].result, AnswerReceipt)
    assert _count(engine, "SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s", s=sid) == 3
    assert _count(engine, "SELECT score FROM quiz_session_participants WHERE id = :p",
                  p=doomed.participant_id) == 0


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
    assert all(isinstance(r, AnswerReceipt) and not r.replayed for r in first)
    # Sent again, every answer gets its original receipt.
    assert [(r.answer_id, r.answered_ms, r.replayed) for r in again] == [
        (r.answer_id, r.answered_ms, True) for r in first]
    for sid, _, players in rooms:
        assert _count(engine, "SELECT count(*) FROM events WHERE aggregate_id = :s "
                              "AND event_type = 'answer_scored'", s=sid) == len(players)
