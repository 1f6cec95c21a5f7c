"""The host's controls on the running stack: each change travels outbox → relay → Kafka → worker →
room, and every socket of the room hears it."""
from __future__ import annotations

from datetime import datetime

import pytest

from tests.e2e.room_client import RoomClient
from tests.helpers import Api, HttpClient, sample_questions, wait_until


@pytest.fixture()
def http(live_stack) -> Api:
    return Api(HttpClient(live_stack.base_url))


def test_every_screen_hears_more_time_and_a_player_put_back(live_stack, http: Api):
    host = http.host()
    questions = sample_questions(2, time_limit_s=60)
    sid = http.live_session(host, questions)["id"]
    kept, removed = http.join(sid, http.guest()), http.join(sid, http.guest())
    first = http.next_question(sid, host)
    http.answer(sid, removed, first["question_id"], questions[0]["correct_choice"])
    http.answer(sid, kept, first["question_id"], (questions[0]["correct_choice"] + 1) % 4)
    hosting = RoomClient(live_stack.ws_url, sid, host.token)
    watching = RoomClient(live_stack.ws_url, sid, kept.token)
    try:
        hosting.wait_type("snapshot")
        watching.wait_type("snapshot")
        # Both answered: the question closes by itself, and the board shows the points.
        board = f"/api/v1/sessions/{sid}/leaderboard"
        score = wait_until(lambda: next((
            e["score"] for e in http.get(board, token=host.token, expect=200).get_json()["entries"]
            if e["participant_id"] == removed.participant_id and e["score"] > 0), None),
            "the points on the board")

        second = http.next_question(sid, host)
        extended = http.post(f"/api/v1/sessions/{sid}/questions/extend", {"seconds": 10}, token=host.token,
                             expect=200).get_json()
        heard = watching.wait_type("question_extended")
        assert heard["question_id"] == second["question_id"] and heard["added_s"] == 10
        assert datetime.fromisoformat(heard["deadline"]) == datetime.fromisoformat(extended["deadline"])

        place = f"/api/v1/sessions/{sid}/participants/{removed.participant_id}"
        http.delete(place, token=host.token, expect=200)
        hosting.wait_for(lambda m: m["type"] == "player_removed" and m["player_count"] == 1)
        http.post(f"{place}/restore", token=host.token, expect=200)
        back = hosting.wait_for(lambda m: m["type"] == "player_restored")
        assert (back["participant_id"], back["player_count"]) == (removed.participant_id, 2)
        # Back on the board with the points earned before the removal.
        hosting.wait_for(lambda m: m["type"] == "leaderboard" and m["_received"] > back["_received"] and any(
            e["participant_id"] == removed.participant_id and e["score"] == score for e in m["entries"]))
        rejoined = RoomClient(live_stack.ws_url, sid, removed.token)
        assert rejoined.wait_type("snapshot")["you"]["score"] == score
        rejoined.close()
    finally:
        hosting.close()
        watching.close()
