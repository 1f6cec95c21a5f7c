"""Open sockets are capped per client address and per user, counted across every web process; a
process that is killed stops counting once its lease ends (the WebPair runs with a cap of 3 per address,
2 per user, and a lease of 6 s)."""
from __future__ import annotations

from tests.e2e.conftest import WebPair, as_address, new_address
from tests.e2e.room_client import SocketClient, ticket_for
from tests.helpers import Api, HttpClient, wait_until


def board_socket(pair: WebPair, index: int, address: str) -> SocketClient:
    return SocketClient(f"{pair.ws_url(index)}/ws/leaderboards/default", header=as_address(address))


def is_open(socket: SocketClient) -> bool:
    """True once the socket had its first message; False when it was closed instead."""
    try:
        socket.wait_for(lambda m: True)
        return True
    except AssertionError:
        return False


def held(pair: WebPair, index: int, address: str) -> SocketClient:
    socket = board_socket(pair, index, address)
    assert is_open(socket), (socket.close_code, socket.close_reason)
    return socket


def gets_in(pair: WebPair, index: int, address: str, opened: list[SocketClient]) -> bool:
    """Whether one more socket of `address` opens now (it is added to `opened`, to close later)."""
    socket = board_socket(pair, index, address)
    opened.append(socket)
    return is_open(socket)


def graphql_socket(pair: WebPair, index: int, address: str) -> SocketClient:
    socket = SocketClient(f"{pair.ws_url(index)}/graphql", header=as_address(address),
                          subprotocols=["graphql-transport-ws"])
    socket.send({"type": "connection_init"})
    socket.wait_type("connection_ack")
    return socket


def test_open_sockets_of_an_address_are_counted_across_web_processes(web_pair: WebPair):
    address = new_address()
    # Every kind of socket counts: a live board's, GraphQL's (and a room's, below).
    sockets = [held(web_pair, 0, address), graphql_socket(web_pair, 0, address), held(web_pair, 1, address)]
    try:
        refused = board_socket(web_pair, 1, address)
        assert refused.wait_closed() == 4429
        assert "too many open sockets from your address (at most 3)" in refused.close_reason
        sockets.append(held(web_pair, 0, new_address()))  # another address has slots of its own

        sockets[0].close()  # its slot comes back once the server has seen the close
        wait_until(lambda: gets_in(web_pair, 1, address, sockets),
                   "the slot of a closed socket never came back")
    finally:
        for socket in sockets:
            socket.close()


def test_the_sockets_of_a_killed_web_process_stop_counting(web_pair: WebPair):
    address = new_address()
    sockets = [held(web_pair, 1, address) for _ in range(3)]
    assert board_socket(web_pair, 0, address).wait_closed() == 4429
    web_pair.kill(1)  # no `finally` of its handlers gives a slot back
    try:
        wait_until(lambda: gets_in(web_pair, 0, address, sockets),
                   "the sockets of a killed web process kept counting")
    finally:
        for socket in sockets:
            socket.close()
        web_pair.restart(1)


def test_open_sockets_of_a_user_are_capped_across_web_processes(web_pair: WebPair):
    http = Api(HttpClient(web_pair.url(0)))
    host = http.host()
    address = new_address()
    rooms = []
    try:
        for index in range(3):
            session_id = http.live_session(host)["id"]
            ticket = ticket_for(web_pair.ws_url(0), session_id, host.token)
            url = f"{web_pair.ws_url(index % 2)}/ws/sessions/{session_id}?ticket={ticket}"
            rooms.append(SocketClient(url, header=as_address(address)))
            if index < 2:
                rooms[-1].wait_type("snapshot")
        assert rooms[2].wait_closed() == 4429
        assert "too many open sockets of this user (at most 2)" in rooms[2].close_reason
    finally:
        for room in rooms:
            room.close()
