"""The change feed (seed 003): the worker announces a board's top N on the change topic whenever it
changed, never for a write below it, and again after a crash that came before it was remembered."""
from __future__ import annotations

import json

import pytest

from app.leaderboards.board.changes import DIGEST_FIELD
from app.leaderboards.board.keys import LeaderboardKeys
from tests.integration.leaderboard_support import board, owner, score
from tests.integration.relay.support import read_topic
from tests.integration.test_ops import publish_as_relay
from tests.integration.worker_support import drain, new_worker


@pytest.fixture()
def feed(topics):
    return topics.replace(change_top=2)


def _announced(config, board_id: str) -> list[dict]:
    return [json.loads(m.value) for m in read_topic(config.kafka_bootstrap_servers, config.change_topic)
            if m.key == board_id.encode()]


def _write_and_apply(api, who, config, engine, worker, board_id: str, scores: dict[str, int]) -> None:
    for player, value in scores.items():
        score(api, who, board_id, player, value)
    drain(worker, publish_as_relay(config, engine, board_id))


def test_the_top_is_announced_when_it_changes_and_only_then(api, feed, engine, redis_client):
    worker = new_worker(feed, engine, redis_client)
    try:
        who = owner(api)
        board_id = board(api, who)["id"]
        _write_and_apply(api, who, feed, engine, worker, board_id, {"ann": 30, "bob": 20, "cy": 10})
        first = _announced(feed, board_id)
        assert [[(e["player_id"], e["score"]) for e in m["entries"]] for m in first][-1] == [
            ("ann", 30), ("bob", 20)]

        _write_and_apply(api, who, feed, engine, worker, board_id, {"cy": 15})  # below the top 2
        assert len(_announced(feed, board_id)) == len(first)

        _write_and_apply(api, who, feed, engine, worker, board_id, {"cy": 40})
        latest = _announced(feed, board_id)
        assert len(latest) == len(first) + 1
        change = latest[-1]
        assert [(e["player_id"], e["score"]) for e in change["entries"]] == [("cy", 40), ("ann", 30)]
        assert (change["leaderboard_id"], change["total"]) == (board_id, 3)
        assert change["version"] > first[-1]["version"] and change["period"] == first[-1]["period"]

        # A crash after the announcement was produced but before it was remembered: the redelivered
        # batch announces that top again (consumers keep the newest version), and nothing else.
        redis_client.hdel(LeaderboardKeys(board_id).period(change["period"]).meta, DIGEST_FIELD)
        drain(worker, publish_as_relay(feed, engine, board_id))  # every event again, all duplicates
        again = _announced(feed, board_id)
        assert len(again) == len(latest) + 1 and again[-1]["entries"] == change["entries"]
        assert again[-1]["version"] == change["version"]
    finally:
        worker.close()
