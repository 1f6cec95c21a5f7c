"""Equal scores reached in the same millisecond: every read that ranks in PostgreSQL (a reload's own
standing, the game's report) orders them as the board in Redis does, so a player's rank on a reload,
in a close and in the report is one rank."""
from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import rebuild_session_board
from app.quiz.service.rooms import standings
from tests.helpers import Api, sample_questions


def test_players_tied_within_a_millisecond_rank_in_postgresql_as_on_the_board(api: Api, engine, redis_client):
    host = api.host()
    sid = api.live_session(host, sample_questions(1))["id"]
    joined = [api.join(sid, api.guest()) for _ in range(4)]
    players = sorted(joined, key=lambda p: uuid.UUID(p.participant_id))
    # The same score reached in one millisecond, the microseconds in the players' id order: ordering by
    # the instant (ascending) and by the board's member order (ids descending) disagree on every pair.
    with engine.begin() as db:
        created = db.execute(text("SELECT created_at FROM quiz_sessions WHERE id = :s"),
                             {"s": sid}).scalar_one()
        millisecond = created.replace(microsecond=created.microsecond // 1000 * 1000) + timedelta(seconds=5)
        for n, player in enumerate(players):
            db.execute(text("UPDATE quiz_session_participants SET score = 300, score_reached_at = :at "
                            "WHERE id = :p"), {"at": millisecond + timedelta(microseconds=100 + 200 * n),
                                              "p": player.participant_id})
    rebuild_session_board(engine, redis_client, sid)

    on_the_board = [m.decode() if isinstance(m, bytes) else m
                    for m in redis_client.zrevrange(SessionKeys.of(sid).board, 0, -1)]
    assert sorted(on_the_board) == sorted(p.participant_id for p in players)
    with Session(engine) as db:
        ranked = standings(db, uuid.UUID(sid), [uuid.UUID(p.participant_id) for p in players])
    assert sorted(ranked, key=lambda pid: ranked[pid]["rank"]) == [uuid.UUID(m) for m in on_the_board]
    assert [ranked[uuid.UUID(m)]["rank"] for m in on_the_board] == [1, 2, 3, 4]

    nickname = {p.participant_id: p.nickname for p in players}
    report = api.get(f"/api/v1/sessions/{sid}/report", token=host.token, expect=200).get_json()
    assert [p["nickname"] for p in report["players"]] == [nickname[m] for m in on_the_board]
