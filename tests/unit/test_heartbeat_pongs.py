"""The heartbeat's pong check beside simple-websocket's own ping, on a real WebSocket over a socket pair.

The app gives simple-websocket a ping interval (SOCK_SERVER_OPTIONS): at each tick the library closes
the socket (1008) if its `pong_received` is false, else clears it and pings. The heartbeat (heartbeat.py)
reads the same flag for its own pings. A tick that came after the heartbeat's check and before the
client's pong to the heartbeat's ping closed a live socket."""
from __future__ import annotations

import base64
import os
import socket

import simple_websocket

from app.web.rooms.frames import pong_check
from tests.helpers import WAIT_S, wait_until

PING, CLOSE = 0x89, 0x88


def _server(ping_interval: float) -> tuple[simple_websocket.Server, socket.socket]:
    server_end, client = socket.socketpair()
    client.settimeout(WAIT_S)
    key = base64.b64encode(os.urandom(16)).decode()
    environ = {"werkzeug.socket": server_end, "HTTP_HOST": "quiz", "HTTP_UPGRADE": "websocket",
               "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_KEY": key,
               "HTTP_SEC_WEBSOCKET_VERSION": "13"}
    ws = simple_websocket.Server(environ, ping_interval=ping_interval)
    response = b""
    while b"\r\n\r\n" not in response:
        response += client.recv(1)
    assert response.startswith(b"HTTP/1.1 101")
    return ws, client


def _frame(client: socket.socket) -> tuple[int, bytes]:
    head = client.recv(2, socket.MSG_WAITALL)
    payload = client.recv(head[1] & 0x7F, socket.MSG_WAITALL) if head[1] & 0x7F else b""
    return head[0], payload


def test_the_librarys_own_ping_never_closes_a_socket_the_heartbeat_asked():
    ws, client = _server(ping_interval=0.5)
    took_pong = pong_check(ws)
    try:
        for _ in range(3):
            took_pong()  # a heartbeat round: its ping's pong is on its way when the library's tick comes
            opcode, payload = _frame(client)
            assert (opcode, payload) == (PING, b""), f"closed by the library's own ping: {payload!r}"
            client.sendall(b"\x8a\x80\x00\x00\x00\x00")  # the client's pong (masked, empty)
        wait_until(took_pong, "the heartbeat did not hear the pong")
    finally:
        if ws.connected:
            ws.close()
        client.close()
