"""The rank a score write answers with: every write path waits, SCORE_RANK_WAIT_MS at most, until the
board shows the write, a batch as a single score does (one deadline for all its items)."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from app import create_app
from tests.helpers import WAIT_S, Api, wait_until
from tests.integration.leaderboard_support import Applier, board, owner


@pytest.fixture(scope="module")
def patient_client(app, config):
    """A web app whose writes wait as long as a test waits for anything: a rank missing from an answer
    is then the write path's doing, never a busy machine's."""
    return create_app(config.replace(score_rank_wait_ms=int(WAIT_S * 1000))).test_client()


def _apply_once_committed(engine, applier: Applier, board_id: str, players: int) -> threading.Thread:
    """In the background, as the worker would: once the write's entries are committed, apply its events
    (the request is answering meanwhile)."""
    def committed() -> bool:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM leaderboard_entries "
                                           "WHERE leaderboard_id = :b AND score IS NOT NULL"),
                                      {"b": board_id}).scalar() == players

    def run() -> None:
        wait_until(committed, "the batch was never committed", every_s=0.01)
        applier.catch_up(board_id)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_batch_answers_the_rank_of_each_item_once_the_board_shows_it(patient_client, config, engine,
                                                                      redis_client):
    api = Api(patient_client)
    host = owner(api)
    board_id = board(api, host)["id"]
    applier = Applier(config, engine, redis_client)
    shown = _apply_once_committed(engine, applier, board_id, 3)
    results = api.post("/api/v1/scores/batch", {"scores": [
        {"leaderboard_id": board_id, "player_id": "ann", "score": 10},
        {"leaderboard_id": board_id, "player_id": "ben", "score": 30},
        {"leaderboard_id": board_id, "player_id": "cat", "score": 20},
        # unchanged (best): ann's rank all the same
        {"leaderboard_id": board_id, "player_id": "ann", "score": 5},
        {"leaderboard_id": "no-such-board", "player_id": "ann", "score": 1}]},
        token=host.token, expect=200).get_json()["results"]
    shown.join(WAIT_S)
    assert [(r.get("player_id"), r.get("outcome"), r.get("rank")) for r in results[:4]] == [
        ("ann", "changed", 3), ("ben", "changed", 1), ("cat", "changed", 2), ("ann", "unchanged", 3)]
    assert results[4]["error"]["code"] == "not_found"


def test_graphql_submit_scores_answers_ranks_as_the_rest_batch_does(patient_client, config, engine,
                                                                    redis_client):
    api = Api(patient_client)
    host = owner(api)
    board_id = board(api, host)["id"]
    applier = Applier(config, engine, redis_client)
    shown = _apply_once_committed(engine, applier, board_id, 2)
    answer = patient_client.post("/graphql", json={
        "query": "mutation($s: [ScoreInput!]!) { submitScores(scores: $s) { result { player_id rank } } }",
        "variables": {"s": [{"leaderboard_id": board_id, "player_id": "ann", "score": 10},
                            {"leaderboard_id": board_id, "player_id": "ben", "score": 30}]}},
        headers={"Authorization": f"Bearer {host.token}"})
    shown.join(WAIT_S)
    assert answer.status_code == 200, answer.get_json()
    assert [item["result"] for item in answer.get_json()["data"]["submitScores"]] == [
        {"player_id": "ann", "rank": 2}, {"player_id": "ben", "rank": 1}]
