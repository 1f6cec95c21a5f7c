"""What a hostile client can do to the room and board sockets: a message nested deeper than any real one
gets a protocol error and the socket goes on; a flood closes the socket with 4429, on every socket."""
from __future__ import annotations

import pytest
import websocket

from tests.e2e.room_client import RoomClient, SocketClient
from tests.helpers import Api, HttpClient

# 2,000 levels of arrays in 4,000 characters: under the 4 KiB message limit, deeper than Python's
# recursion limit.
DEEP = "[" * 2000 + "]" * 2000
SOCKETS = ("room", "board", "subscriptions")


@pytest.fixture()
def http(live_stack) -> Api:
    return Api(HttpClient(live_stack.base_url))


def open_socket(live_stack, http: Api, kind: str) -> SocketClient:
    """An open socket of `kind` that has had its first message (a room's snapshot, a board's top, or
    the pong of /ws, which sends nothing first)."""
    if kind == "room":
        host = http.host()
        socket = RoomClient(live_stack.ws_url, http.live_session(host)["id"], host.token)
        socket.wait_type("snapshot")
    elif kind == "board":
        socket = SocketClient(f"{live_stack.ws_url}/ws/leaderboards/default")
        socket.wait_type("leaderboard_update")
    else:
        socket = SocketClient(f"{live_stack.ws_url}/ws")
        socket.send({"type": "ping"})
        socket.wait_type("pong")
    return socket


def flood(socket: SocketClient, messages: list) -> None:
    """Send `messages` at once; the server may close the socket before the last ones are written."""
    for message in messages:
        try:
            socket.send(message)
        except (OSError, websocket.WebSocketException):
            return


@pytest.mark.parametrize("kind", SOCKETS)
def test_a_deeply_nested_message_gets_an_error_and_the_socket_stays_open(live_stack, http: Api, kind: str):
    socket = open_socket(live_stack, http, kind)
    try:
        socket.send(DEEP)
        error = socket.wait_type("error")
        assert error["code"] == "invalid_json" and "too_deep" in error["message"]
        socket.send({"type": "ping"})
        socket.wait_for(lambda m: m["type"] == "pong" and socket.of_type("error"))
        assert socket.close_code is None
    finally:
        socket.close()


@pytest.mark.parametrize("kind", SOCKETS)
def test_a_message_flood_closes_the_socket_with_4429(live_stack, http: Api, kind: str):
    socket = open_socket(live_stack, http, kind)
    try:
        flood(socket, [{"type": "ping"}] * 40)
        assert socket.wait_closed() == 4429 and "too many messages" in socket.close_reason
    finally:
        socket.close()


def test_a_burst_of_subscriptions_beyond_the_allowance_closes_with_4429(live_stack):
    """Seed 001's protocol: 22 subscribes at once are a flood like any other, and the client learns so."""
    socket = SocketClient(f"{live_stack.ws_url}/ws")
    try:
        flood(socket, [{"type": "subscribe", "leaderboard_id": "default"}] * 22)
        assert socket.wait_closed() == 4429
        assert socket.of_type("subscribed")  # the burst's first messages were answered before the close
    finally:
        socket.close()
