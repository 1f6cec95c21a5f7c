"""Answers over the player's room socket: the HTTP path's checks, scoring, group commit, receipts and
retry safety, as socket messages with the same codes, acknowledged only after the commit."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.e2e.room_client import RoomClient
from tests.helpers import Api, HttpClient


@pytest.fixture()
def http(live_stack) -> Api:
    return Api(HttpClient(live_stack.base_url))


def _reply(client: RoomClient, ref) -> dict:
    return client.wait_for(lambda m: m.get("ref") == ref and m["type"] in ("answer_recorded", "error"))


def test_an_answer_over_the_socket_is_recorded_once_and_safe_to_resend(live_stack, http: Api, engine):
    host = http.host()
    sid = http.live_session(host)["id"]
    ann, ben, cy = (http.join(sid, http.guest(name)) for name in ("Ann", "Ben", "Cy"))
    sockets = {name: RoomClient(live_stack.ws_url, sid, player.token)
               for name, player in (("ann", ann), ("ben", ben), ("cy", cy))}
    host_room = RoomClient(live_stack.ws_url, sid, host.token)
    try:
        for client in (*sockets.values(), host_room):
            client.wait_type("snapshot")
        question = http.next_question(sid, host)
        qid = question["question_id"]

        sockets["ann"].send({"type": "answer", "question_id": qid, "choice": 0, "ref": "a1"})
        recorded = _reply(sockets["ann"], "a1")
        assert recorded["type"] == "answer_recorded" and recorded["choice"] == 0 and not recorded["replayed"]
        with engine.connect() as c:  # acknowledged: it is committed
            assert c.execute(text("SELECT choice FROM participant_answers WHERE id = :a"),
                             {"a": recorded["answer_id"]}).scalar() == 0

        # The same answer again (a lost acknowledgement): its original receipt; another choice: refused
        # with the recorded receipt; over HTTP the same.
        sockets["ann"].send({"type": "answer", "question_id": qid, "choice": 0, "ref": 2})
        again = _reply(sockets["ann"], 2)
        assert again["replayed"] and again["answer_id"] == recorded["answer_id"]
        sockets["ann"].send({"type": "answer", "question_id": qid, "choice": 1, "ref": "a3"})
        other = _reply(sockets["ann"], "a3")
        assert other["type"] == "error" and other["code"] == "already_answered"
        assert other["answer"]["answer_id"] == recorded["answer_id"]
        assert http.answer(sid, ann, qid, 0, expect=200).get_json()["answer_id"] == recorded["answer_id"]

        # The points stay hidden until the close, whichever way the answer came.
        assert "points" not in recorded and "correct" not in recorded
        # Bad messages get the error codes, and the socket stays open.
        for ref, bad, code in (("b1", {"question_id": "nope", "choice": 0}, "invalid_message"),
                               ("b2", {"question_id": qid, "choice": "0"}, "invalid_message"),
                               ("b3", {"question_id": qid, "choice": 0, "extra": 1}, "invalid_message")):
            sockets["ben"].send({"type": "answer", "ref": ref, **bad})
            assert _reply(sockets["ben"], ref)["code"] == code
        sockets["ben"].send({"type": "answer", "question_id": qid, "choice": 9, "ref": "b4"})
        assert _reply(sockets["ben"], "b4")["code"] == "invalid_choice"

        # The host does not answer; the close shows the answers' effect.
        host_room.send({"type": "answer", "question_id": qid, "choice": 0, "ref": "h"})
        assert host_room.wait_for(lambda m: m["type"] == "error")["code"] == "unknown_message"
        sockets["ben"].send({"type": "answer", "question_id": qid, "choice": 1, "ref": "b5"})
        assert _reply(sockets["ben"], "b5")["type"] == "answer_recorded"
        http.close_question(sid, host)
        closed = sockets["ann"].wait_type("question_closed")
        assert closed["you"]["correct"] is True
        # Too late: the HTTP path's code.
        sockets["cy"].send({"type": "answer", "question_id": qid, "choice": 1, "ref": "c1"})
        assert _reply(sockets["cy"], "c1")["code"] == "question_closed"
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s"),
                             {"s": sid}).scalar() == 2
    finally:
        for client in (*sockets.values(), host_room):
            client.close()
