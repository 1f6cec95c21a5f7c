"""What a hostile client can do to the room and board sockets: a message nested deeper than any real one
gets a protocol error and the socket goes on."""
from __future__ import annotations

import pytest

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
