"""A score's metadata (seed 001's `{"level": 10}`, the Kafka message's `game_id`) comes back with its
entry in every read, from Redis and after a rebuild from PostgreSQL alike, bounded in size on the way in."""
from __future__ import annotations

import json

import pytest

from app.core.poison import PoisonMessage
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.domain import METADATA_MAX_BYTES
from app.leaderboards.messages import decode_score
from tests.helpers import Api
from tests.integration.leaderboard_support import Applier, board, owner, score
from tests.integration.test_graphql import data


@pytest.fixture()
def applier(config, engine, redis_client):
    return Applier(config, engine, redis_client)


def _metadata_by_player(entries: list[dict]) -> dict[str, object]:
    return {e["player_id"]: e["metadata"] for e in entries}


def test_every_entry_read_returns_the_entrys_metadata(api: Api, client, applier, redis_client):
    host = owner(api)
    board_id = board(api, host)["id"]
    score(api, host, board_id, "ann", 30, metadata={"level": 10, "game_id": "match123"})
    score(api, host, board_id, "ben", 20)
    score(api, host, board_id, "cat", 10, metadata={"weapon": "bow"})
    score(api, host, board_id, "cat", 15)  # a better score without metadata keeps the entry's metadata
    applier.catch_up(board_id)
    expected = {"ann": {"level": 10, "game_id": "match123"}, "ben": None, "cat": {"weapon": "bow"}}
    base = f"/api/v1/leaderboards/{board_id}"

    def rest_reads() -> list[dict[str, object]]:
        top = api.get(f"{base}/top", expect=200, limit=2).get_json()
        after = api.get(f"{base}/range", expect=200, cursor=top["next_cursor"], limit=5).get_json()
        ranged = api.get(f"{base}/range", expect=200, start=1, end=3).get_json()
        around = api.get(f"{base}/around/ben", expect=200, range=1).get_json()
        alone = api.get(f"{base}/around/ann", expect=200, range=0).get_json()
        player = api.get(f"{base}/player/cat", expect=200).get_json()
        boards = api.get("/api/v1/players/ann/boards", expect=200).get_json()["boards"]
        return [_metadata_by_player(top["entries"] + after["entries"]),
                _metadata_by_player(ranged["entries"]),
                _metadata_by_player(around["entries"]), _metadata_by_player(alone["entries"]),
                {"cat": player["metadata"]},
                {"ann": next(b["metadata"] for b in boards if b["leaderboard_id"] == board_id)}]

    wanted = [expected, expected, expected, {"ann": expected["ann"]}, {"cat": expected["cat"]},
              {"ann": expected["ann"]}]
    assert rest_reads() == wanted
    got = data(client, 'query($b: ID!) { top(board_id: $b) { entries { player_id metadata } } '
                       'player(board_id: $b, player_id: "ann") { metadata } }', {"b": board_id})
    assert (_metadata_by_player(got["top"]["entries"]) == expected
            and got["player"]["metadata"] == expected["ann"])

    # Redis lost the board: the rebuild from PostgreSQL brings the metadata back with the entries.
    keys = LeaderboardKeys(board_id)
    redis_client.delete(keys.cfg, keys.periods, *keys.period("all").all)
    assert rest_reads() == wanted


def test_metadata_is_bounded_on_every_write_path(api: Api, client):
    host = owner(api)
    board_id = board(api, host)["id"]
    fits = {"note": "x" * (METADATA_MAX_BYTES - len('{"note":""}'))}
    assert len(json.dumps(fits, separators=(",", ":")).encode()) == METADATA_MAX_BYTES
    score(api, host, board_id, "ann", 1, metadata=fits)
    too_big = {"note": "x" * (METADATA_MAX_BYTES - len('{"note":""}') + 1)}
    refused = score(api, host, board_id, "ann", 2, expect=400, metadata=too_big).get_json()
    assert "metadata" in refused["error"]["message"]
    multibyte = {"note": "é" * (METADATA_MAX_BYTES // 2)}  # bytes of UTF-8, not characters
    score(api, host, board_id, "ann", 2, expect=400, metadata=multibyte)
    api.post("/api/v1/scores/batch", {"scores": [{"leaderboard_id": board_id, "player_id": "ben", "score": 1,
                                                  "metadata": too_big}]}, token=host.token, expect=400)
    refused = client.post("/graphql", json={
        "query": "mutation($s: ScoreInput!) { submitScore(input: $s) { outcome } }",
        "variables": {"s": {"leaderboard_id": board_id, "player_id": "cat", "score": 1,
                            "metadata": too_big}}},
        headers={"Authorization": f"Bearer {host.token}"}).get_json()
    assert refused["errors"][0]["extensions"]["code"] == "invalid_request"
    # On Kafka, seed 001's game_id joins the metadata: the two together must fit.
    message = {"leaderboard_id": board_id, "player_id": "dee", "score": 1,
               "metadata": {"note": "x" * (METADATA_MAX_BYTES - 40)}}
    assert decode_score(json.dumps(message).encode()).submission("k").metadata["note"]
    with pytest.raises(PoisonMessage, match="metadata"):
        decode_score(json.dumps({**message, "game_id": "g" * 64}).encode())
