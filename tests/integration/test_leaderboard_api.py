"""The leaderboard service's API end to end in-process: boards, API keys, score writes and their retries,
reads, and the events that carry every change to Redis."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app.core.errors import ServiceError
from app.leaderboards.service.batcher import ScoreBatcher
from app.leaderboards.submissions import Authority, ScoreRequest, ScoreResult, Submission
from tests.helpers import Api
from tests.integration.leaderboard_support import Applier, board, owner, score


@pytest.fixture()
def applier(config, engine, redis_client):
    return Applier(config, engine, redis_client)


def test_seed_001_walk_through(api: Api, applier):
    host = owner(api)
    created = board(api, host, id=f"game1-{host.user_id[:8]}", max_entries=10000)
    board_id = created["id"]
    assert (created["current_period"], created["prev_reset"] is not None,
            created["next_reset"]) == ("all", True, None)
    first = score(api, host, board_id, "player123", 1500, metadata={"level": 10}).get_json()
    assert (first["outcome"], first["score"], first["previous_score"]) == ("changed", 1500, None)
    batch = api.post("/api/v1/scores/batch", {"scores": [
        {"player_id": "player1", "leaderboard_id": board_id, "score": 1000},
        {"player_id": "player2", "leaderboard_id": board_id, "score": 2000},
        {"player_id": "player3", "leaderboard_id": board_id, "score": 1500},
        {"player_id": "player4", "leaderboard_id": "no-such-board", "score": 1}]}, token=host.token,
        expect=200).get_json()["results"]
    assert [r.get("outcome") for r in batch[:3]] == ["changed"] * 3 \
        and batch[3]["error"]["code"] == "not_found"
    applier.catch_up(board_id)
    top = api.get(f"/api/v1/leaderboards/{board_id}/top", expect=200, limit=10).get_json()
    assert [(e["player_id"], e["score"]) for e in top["entries"]] == [
        # 1500: who reached it first
        ("player2", 2000), ("player123", 1500), ("player3", 1500), ("player1", 1000)]
    assert top["total"] == 4 and top["version"] >= 4
    me = api.get(f"/api/v1/leaderboards/{board_id}/player/player123", expect=200).get_json()
    assert (me["rank"], me["score"], me["top_percent"]) == (2, 1500, 50.0)
    around = api.get(f"/api/v1/leaderboards/{board_id}/around/player123", expect=200, range=1).get_json()
    assert [e["rank"] for e in around["entries"]] == [1, 2, 3]
    window = api.get(f"/api/v1/leaderboards/{board_id}/range", expect=200, start=2, end=3).get_json()
    assert [e["player_id"] for e in window["entries"]] == ["player123", "player3"]
    stats = api.get(f"/api/v1/leaderboards/{board_id}/stats", expect=200).get_json()
    assert (stats["count"], stats["min"], stats["max"], stats["sum"], stats["p50"]) == (
        4, 1000, 2000, 6000, 1500)
    api.get(f"/api/v1/leaderboards/{board_id}/player/nobody", expect=404)


def test_only_registered_owners_create_and_change_boards(api: Api):
    host, guest, other = owner(api), api.guest(), owner(api)
    api.post("/api/v1/leaderboards", {"id": "g" + host.user_id[:8], "name": "x", "sort_order": "desc",
                                      "update_mode": "best", "reset_period": "never"}, token=guest.token,
             expect=403)
    created = board(api, host)
    again = api.post("/api/v1/leaderboards", {"id": created["id"], "name": "x", "sort_order": "asc",
                                              "update_mode": "best", "reset_period": "daily"},
                     token=host.token, expect=409)
    assert again.get_json()["error"]["code"] == "board_exists"
    assert api.post("/api/v1/leaderboards", {"id": "default", "name": "x", "sort_order": "asc",
                                             "update_mode": "best", "reset_period": "daily"},
                    token=host.token, expect=409)
    assert api.client.patch(f"/api/v1/leaderboards/{created['id']}", json={"name": "Renamed"},
                            headers={"Authorization": f"Bearer {other.token}"}).status_code == 403
    patched = api.client.patch(f"/api/v1/leaderboards/{created['id']}",
                               json={"name": "Renamed", "max_entries": 5},
                               headers={"Authorization": f"Bearer {host.token}"})
    assert patched.status_code == 200 and (patched.get_json()["name"], patched.get_json()["max_entries"]) == (
        "Renamed", 5)
    assert api.client.delete("/api/v1/leaderboards/default",
                             headers={"Authorization": f"Bearer {host.token}"}).status_code == 403
    assert api.client.delete(f"/api/v1/leaderboards/{created['id']}",
                             headers={"Authorization": f"Bearer {host.token}"}).status_code == 204
    api.get(f"/api/v1/leaderboards/{created['id']}", expect=404)
    api.get("/api/v1/leaderboards/default", expect=200)


def test_board_ids_are_unique_and_reserved_whatever_their_case(api: Api, engine):
    """`DEFAULT` is the system's `default`; `foo` is `Foo` (of another user, or deleted). Lookups match the
    id as it was created, so a board has one spelling in its keys and events."""
    settings = {"name": "x", "sort_order": "desc", "update_mode": "best", "reset_period": "never"}
    host, other = owner(api), owner(api)
    for reserved in ("DEFAULT", "Default", "dEfAuLt"):
        refused = api.post("/api/v1/leaderboards", {"id": reserved, **settings}, token=host.token, expect=409)
        assert refused.get_json()["error"]["code"] == "board_exists", reserved
    mixed = f"Foo-{host.user_id[:8]}"
    api.post("/api/v1/leaderboards", {"id": mixed, **settings}, token=host.token, expect=201)
    for clash in (mixed.lower(), mixed.upper()):
        refused = api.post("/api/v1/leaderboards", {"id": clash, **settings}, token=other.token, expect=409)
        assert refused.get_json()["error"]["code"] == "board_exists", clash
    api.get(f"/api/v1/leaderboards/{mixed}", expect=200)
    api.get(f"/api/v1/leaderboards/{mixed.lower()}", expect=404)
    # A deleted board's id stays taken in every case.
    api.client.delete(f"/api/v1/leaderboards/{mixed}", headers={"Authorization": f"Bearer {host.token}"})
    api.post("/api/v1/leaderboards", {"id": mixed.lower(), **settings}, token=other.token, expect=409)
    # Two creations at once that differ only in case: PostgreSQL lets one through.
    racing = [f"race-{other.user_id[:8]}", f"RACE-{other.user_id[:8]}"]
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda i: api.client.application.test_client().post(
            "/api/v1/leaderboards", json={"id": i, **settings}, headers=other.headers).status_code, racing))
    assert statuses == [201, 409]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM leaderboards WHERE lower(id) = lower(:id)"),
                                  {"id": racing[0]}).scalar() == 1


def test_api_keys_write_to_their_owners_boards_only(api: Api):
    host, other = owner(api), owner(api)
    mine, theirs = board(api, host), board(api, other)
    key = api.post("/api/v1/api-keys", {"name": "game server"}, token=host.token, expect=201).get_json()
    assert key["key"].startswith("lbk_")
    listed = api.get("/api/v1/api-keys", token=host.token, expect=200).get_json()["keys"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    body = {"leaderboard_id": mine["id"], "player_id": "p", "score": 5}
    api.post("/api/v1/scores", body, token=key["key"], expect=201)
    api.post("/api/v1/scores", {**body, "leaderboard_id": theirs["id"]}, token=key["key"], expect=403)
    refused = api.post("/api/v1/quizzes", {"title": "t", "questions": []}, token=key["key"], expect=403)
    assert refused.get_json()["error"]["code"] == "credential_not_allowed"  # a known key, of the wrong kind
    assert api.client.delete(f"/api/v1/api-keys/{key['id']}",
                             headers={"Authorization": f"Bearer {host.token}"}).status_code == 204
    api.post("/api/v1/scores", body, token=key["key"], expect=401)


def test_retries_with_one_submission_id_count_once(api: Api, applier):
    host = owner(api)
    board_id = board(api, host, update_mode="increment")["id"]
    body = {"leaderboard_id": board_id, "player_id": "p1", "score": 10, "submission_id": "s-1"}
    first = api.post("/api/v1/scores", body, token=host.token, expect=201).get_json()
    again = api.post("/api/v1/scores", body, token=host.token, expect=200).get_json()
    assert {k: v for k, v in again.items() if k != "rank"} == {k: v for k, v in first.items() if k != "rank"}
    conflict = api.post("/api/v1/scores", {**body, "score": 11}, token=host.token, expect=409).get_json()
    assert conflict["error"]["code"] == "submission_conflict"
    # Inside one batch and across requests: one id, counted once.
    results = api.post("/api/v1/scores/batch", {"scores": [
        {**body, "submission_id": "s-2"}, {**body, "submission_id": "s-2"}, body,
        {**body, "submission_id": "s-3"}]}, token=host.token, expect=200).get_json()["results"]
    assert [r["score"] for r in results] == [20, 20, 10, 30]
    applier.catch_up(board_id)
    assert api.get(f"/api/v1/leaderboards/{board_id}/player/p1", expect=200).get_json()["score"] == 30


def test_concurrent_requests_share_transactions_and_each_gets_its_own_results(api: Api, engine):
    hosts = [owner(api) for _ in range(2)]
    boards = [board(api, host, update_mode="increment")["id"] for host in hosts]
    batcher = ScoreBatcher(engine, max_batch=8)
    requests = []
    for n in range(40):
        mine = n % 2
        target = boards[mine] if n % 10 else boards[1 - mine]  # every tenth: another owner's board
        requests.append(ScoreRequest((Submission(target, f"p{n % 5}", 1, submission_id=f"s{n % 20}"),),
                                     Authority(owner_id=uuid.UUID(hosts[mine].user_id))))
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = [r[0] for r in pool.map(batcher.submit, requests)]
    refused = [i for i, r in enumerate(results) if isinstance(r, ServiceError)]
    assert refused == [0, 10, 20, 30] and all(results[i].code == "not_owner" for i in refused)
    # Each submission id counted once on its board (the owner of the even requests had s0 and s10 refused);
    # the second request of each id is its retry, answered with the original result.
    with engine.connect() as connection:
        totals = dict(connection.execute(text(
            "SELECT leaderboard_id, sum(score) FROM leaderboard_entries WHERE leaderboard_id = ANY(:b) "
            "GROUP BY leaderboard_id"), {"b": boards}).all())
    assert totals == {boards[0]: 8, boards[1]: 10}
    replayed = [r for r in results if isinstance(r, ScoreResult) and r.replayed]
    assert len(replayed) == 18


def test_a_failing_commit_is_outcome_unknown_and_a_retry_with_its_id_counts_once(api: Api, engine, applier):
    host = owner(api)
    board_id = board(api, host, update_mode="increment")["id"]
    trigger = f"fail_commit_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the commit failed'; END $$"""))
        # A deferred constraint trigger raises at COMMIT, after every statement succeeded.
        connection.execute(text(f"""
            CREATE CONSTRAINT TRIGGER {trigger} AFTER INSERT OR UPDATE ON leaderboard_entries
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.leaderboard_id = '{board_id}')
            EXECUTE FUNCTION {trigger}()"""))
    body = {"leaderboard_id": board_id, "player_id": "p1", "score": 5, "submission_id": "once"}
    try:
        for sent in (body, {**body, "submission_id": None}):
            failed = api.post("/api/v1/scores", {k: v for k, v in sent.items() if v is not None},
                              token=host.token, expect=504).get_json()
            assert failed["error"]["code"] == "outcome_unknown"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON leaderboard_entries"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
    assert score(api, host, board_id, "p1", 5, submission_id="once").get_json()["score"] == 5
    assert score(api, host, board_id, "p1", 5, expect=200, submission_id="once").get_json()["score"] == 5
    applier.catch_up(board_id)
    assert api.get(f"/api/v1/leaderboards/{board_id}/player/p1", expect=200).get_json()["score"] == 5


def test_players_report_their_own_actions_on_boards_that_allow_it(api: Api):
    host = owner(api)
    game = board(api, host, update_mode="increment", self_report_max=50)
    closed = board(api, host, update_mode="increment")
    player = api.guest()
    reported = api.post(f"/api/v1/games/{game['id']}/scores", {"action": "headshot", "score": 15},
                        token=player.token, expect=201).get_json()
    assert (reported["player_id"], reported["score"]) == (player.user_id, 15)
    # Over the board's own cap: well-formed (the document's bound is 2^53 - 1), refused by its setting.
    api.post(f"/api/v1/games/{game['id']}/scores", {"action": "cheat", "score": 51}, token=player.token,
             expect=422)
    api.post(f"/api/v1/games/{game['id']}/scores", {"action": "cheat", "score": -1}, token=player.token,
             expect=400)
    api.post(f"/api/v1/games/{closed['id']}/scores", {"action": "x", "score": 1}, token=player.token,
             expect=403)
    activity = api.get(f"/api/v1/players/{player.user_id}/activity", token=player.token,
                       expect=200).get_json()
    assert [(a["action"], a["points"]) for a in activity["activity"]] == [("headshot", 15)]
    boards = api.get(f"/api/v1/players/{player.user_id}/boards", expect=200).get_json()["boards"]
    assert [(b["leaderboard_id"], b["score"], b["rank"]) for b in boards] == [(game["id"], 15, 1)]


def test_seed_001_health_names_answer(client):
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code in (200, 503)


def test_around_with_range_0_is_the_player_alone_over_rest_and_graphql(api: Api, client, applier):
    from tests.integration.test_graphql import data

    host = owner(api)
    board_id = board(api, host)["id"]
    for player, value in (("ann", 30), ("ben", 20), ("cat", 10)):
        score(api, host, board_id, player, value, display_name=player.title())
    applier.catch_up(board_id)
    top = api.get(f"/api/v1/leaderboards/{board_id}/top", expect=200).get_json()["entries"]
    for player, entry in zip(("ann", "ben", "cat"), top):
        around = api.get(f"/api/v1/leaderboards/{board_id}/around/{player}", expect=200, range=0).get_json()
        assert around["entries"] == [entry]  # min(2 * 0 + 1, total) = 1 entry: the player's own
    got = data(client, 'query($b: ID!) { around(board_id: $b, player_id: "ben", range: 0) '
                       "{ rank entries { rank player_id display_name score reached_at metadata } } }",
               {"b": board_id})
    assert got["around"] == {"rank": 2, "entries": [top[1]]}
    # The standing read itself carries no window.
    assert "entries" not in api.get(f"/api/v1/leaderboards/{board_id}/player/ben", expect=200).get_json()


def test_a_deleted_boards_id_is_never_used_again(api: Api):
    host = owner(api)
    created = board(api, host)
    api.client.delete(f"/api/v1/leaderboards/{created['id']}",
                      headers={"Authorization": f"Bearer {host.token}"})
    api.get(f"/api/v1/leaderboards/{created['id']}", expect=404)
    again = api.post("/api/v1/leaderboards", {"id": created["id"], "name": "Again", "sort_order": "desc",
                                              "update_mode": "best", "reset_period": "never"},
                     token=host.token, expect=409).get_json()["error"]
    assert again["code"] == "board_exists" and "exists (or existed)" in again["message"]
