"""The leaderboard read API: who may read, pages, around a player, and recovery from a flushed Redis."""
from __future__ import annotations

import uuid

from tests.helpers import drop_prefix_keys
from tests.integration.worker_support import (
    drain,
    event_rows,
    new_worker,
    pg_ranking,
    pg_scores,
    play,
    publish,
)


def _board(api, sid, token, **query):
    return api.get(f"/api/v1/sessions/{sid}/leaderboard", token=token, expect=200, **query).get_json()


def test_pages_follow_postgres_and_survive_a_flushed_redis(api, engine, redis_client, topics):
    session = play(api, players=7, questions=3)
    sid, host = session["id"], session["host"]
    drain(worker := new_worker(topics, engine, redis_client), publish(topics, event_rows(engine, sid)))
    worker.close()

    full = _board(api, sid, host.token, limit=100)
    assert full["session_id"] == sid and full["total_players"] == 7
    assert [e["participant_id"] for e in full["entries"]] == pg_ranking(engine, sid)
    assert {e["participant_id"]: e["score"] for e in full["entries"]} == pg_scores(engine, sid)
    assert [e["rank"] for e in full["entries"]] == list(range(1, 8))
    nicknames = {p.participant_id: p.nickname for p in session["players"]}
    assert all(e["nickname"] == nicknames[e["participant_id"]] for e in full["entries"])

    page = _board(api, sid, session["players"][0].token, limit=3, offset=2)
    assert page["entries"] == full["entries"][2:5]
    assert page["version"] == full["version"]

    me = session["players"][3]
    around = api.get(f"/api/v1/sessions/{sid}/leaderboard/{me.participant_id}", token=me.token, expect=200,
                     around=1).get_json()
    own = next(e for e in full["entries"] if e["participant_id"] == me.participant_id)
    assert (around["rank"], around["score"]) == (own["rank"], own["score"])
    first = max(own["rank"] - 1, 1)
    assert around["entries"] == full["entries"][first - 1:own["rank"] + 1]
    top = api.get(f"/api/v1/sessions/{sid}/leaderboard/{full['entries'][0]['participant_id']}",
                  token=host.token, expect=200, around=2).get_json()
    assert top["rank"] == 1 and top["entries"] == full["entries"][:3]

    drop_prefix_keys(redis_client)  # this run's keys only; other tests' boards rebuild the same way
    after = _board(api, sid, host.token, limit=100)
    assert after["entries"] == full["entries"]
    assert after["total_players"] == 7

    # Events redelivered after the rebuild are all duplicates of the snapshot.
    replay = new_worker(topics, engine, redis_client, group=f"replay-{uuid.uuid4().hex[:8]}")
    drain(replay, len(event_rows(engine, sid)))
    replay.close()
    assert _board(api, sid, host.token, limit=100)["entries"] == full["entries"]
    assert sum(c._value.get() for c in replay.metrics.applied._metrics.values()) == 0


def test_a_new_session_reads_an_empty_board(api):
    host = api.host()
    sid = api.live_session(host)["id"]
    body = _board(api, sid, host.token)
    assert body["total_players"] == 0 and body["entries"] == []


def test_read_statuses(api):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest())
    outsider = api.guest()
    base = f"/api/v1/sessions/{sid}/leaderboard"

    api.get(base, expect=401)
    api.get(base, token=outsider.token, expect=403)
    api.get(f"{base}/{player.participant_id}", token=outsider.token, expect=403)
    api.get(base, token=player.token, expect=200)
    api.get(f"/api/v1/sessions/{uuid.uuid4()}/leaderboard", token=host.token, expect=404)
    api.get("/api/v1/sessions/not-a-uuid/leaderboard", token=host.token, expect=404)
    api.get(f"{base}/{uuid.uuid4()}", token=host.token, expect=404)
    api.get(f"{base}/not-a-uuid", token=host.token, expect=404)
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1}, {"extra": 1}):
        assert api.get(base, token=host.token, expect=400,
                       **bad).get_json()["error"]["code"] == "invalid_query"
    api.get(f"{base}/{player.participant_id}", token=host.token, expect=400, around=51)
    api.get(base, token=host.token, expect=200, limit=100)
    api.get(base, token=host.token, expect=200, limit=1)
