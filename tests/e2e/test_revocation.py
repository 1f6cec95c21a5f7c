"""A revoked credential stops working in every web process: an API key the moment its revocation is
answered, whichever process answered it; a logout closes the sockets of the tokens it revoked (4401),
wherever they are, voids the tickets issued to them, and no answer sent with them is recorded after it.
Each test revokes through one process of the WebPair and watches the other."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.e2e.conftest import WebPair, as_address, new_address
from tests.e2e.room_client import SocketClient, ticket_for
from tests.helpers import Api, HttpClient, Player

PASSWORD = "correct horse"  # what Api.host() registers


def _room(pair: WebPair, index: int, session_id: str, ticket: str) -> SocketClient:
    return SocketClient(f"{pair.ws_url(index)}/ws/sessions/{session_id}?ticket={ticket}",
                        header=as_address(new_address()))


def _graphql(pair: WebPair, index: int, token: str) -> SocketClient:
    socket = SocketClient(f"{pair.ws_url(index)}/graphql", header=as_address(new_address()),
                          subprotocols=["graphql-transport-ws"])
    socket.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    socket.wait_type("connection_ack")
    return socket


def test_a_revoked_api_key_is_refused_by_every_web_process_at_once(web_pair: WebPair):
    first, second = Api(HttpClient(web_pair.url(0))), Api(HttpClient(web_pair.url(1)))
    owner = first.host()
    board_id = "rk-" + uuid.uuid4().hex[:10]
    first.post("/api/v1/leaderboards", {"id": board_id, "name": "Revoked", "sort_order": "desc",
                                        "update_mode": "best", "reset_period": "never"}, token=owner.token,
               expect=201)
    key = first.post("/api/v1/api-keys", {"name": "game server"}, token=owner.token, expect=201).get_json()
    score = {"leaderboard_id": board_id, "player_id": "p1", "score": 1}
    # the second process has checked the key
    second.post("/api/v1/scores", score, token=key["key"], expect=201)
    first.delete(f"/api/v1/api-keys/{key['id']}", token=owner.token, expect=204)
    refused = second.post("/api/v1/scores", {**score, "score": 2}, token=key["key"], expect=401).get_json()
    assert "revoked" in refused["error"]["message"]
    first.delete(f"/api/v1/api-keys/{key['id']}", token=owner.token, expect=404)  # revoked already


def test_logout_closes_that_tokens_sockets_everywhere_and_voids_its_tickets(web_pair: WebPair):
    http = Api(HttpClient(web_pair.url(0)))
    host = http.host()
    session_id = http.live_session(host)["id"]
    player = http.join(session_id, http.host())  # a registered player, who can sign in again
    unused_ticket = ticket_for(web_pair.ws_url(0), session_id, player.token)
    room = _room(web_pair, 1, session_id, ticket_for(web_pair.ws_url(0), session_id, player.token))
    host_room = _room(web_pair, 1, session_id, ticket_for(web_pair.ws_url(0), session_id, host.token))
    graphql = _graphql(web_pair, 1, player.token)
    sockets = [room, host_room, graphql]
    try:
        room.wait_type("snapshot")
        host_room.wait_type("snapshot")

        http.post("/api/v1/auth/logout", token=player.token, expect=204)  # through the other process
        assert room.wait_closed() == 4401 and "revoked" in room.close_reason
        assert graphql.wait_closed() == 4401
        voided = _room(web_pair, 1, session_id, unused_ticket)
        sockets.append(voided)
        assert voided.wait_closed() == 4401 and "revoked" in voided.close_reason

        # Only the revoked tokens: the host's socket goes on, and the player signs in again.
        host_room.send({"type": "ping"})
        assert host_room.wait_type("pong") and host_room.close_code is None
        token = http.post("/api/v1/auth/login", {"username": player.nickname, "password": PASSWORD},
                          expect=200).get_json()["access_token"]
        again = _room(web_pair, 1, session_id, ticket_for(web_pair.ws_url(0), session_id, token))
        sockets.append(again)
        assert again.wait_type("snapshot")["you"]["participant_id"] == player.participant_id
    finally:
        for socket in sockets:
            socket.close()


def _answers_of(engine, participant_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM participant_answers "
                                       "WHERE quiz_session_participant_id = :p"),
                                  {"p": participant_id}).scalar()


def test_an_answer_over_the_socket_after_logout_is_not_recorded(web_pair: WebPair, engine):
    http = Api(HttpClient(web_pair.url(0)))
    host = http.host()
    session_id = http.live_session(host)["id"]
    player: Player = http.join(session_id, http.host())
    room = _room(web_pair, 1, session_id, ticket_for(web_pair.ws_url(0), session_id, player.token))
    try:
        room.wait_type("snapshot")
        question_id = http.next_question(session_id, host)["question_id"]
        room.wait_type("question_opened")
        http.post("/api/v1/auth/logout", token=player.token, expect=204)
        room.send({"type": "answer", "question_id": question_id, "choice": 0, "ref": "after-logout"})
        assert room.wait_closed() == 4401  # the socket's handler has taken the answer, or never will
        assert not room.of_type("answer_recorded")
        assert _answers_of(engine, player.participant_id) == 0
    finally:
        room.close()
