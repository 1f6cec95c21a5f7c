"""Room placement behind the cluster's balancer (scripts/haproxy.cfg): every socket of a room lands on the
same web, so one process reads the room's stream and fans each change out, instead of every web."""
from __future__ import annotations

import base64
import os
import socket
import uuid

import pytest

from tests.e2e.conftest import WebPair
from tests.helpers import WAIT_S, free_port, wait_until
from tests.live_stack import reaches_both, start_balancer

SOCKETS_PER_ROOM = 8


def upgraded_by(port: int, path: str) -> str | None:
    """The web (HAProxy's X-Upstream) that answered a WebSocket handshake for `path`; the room then closes
    the socket (no ticket), which is all a placement needs."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    assert " 101 " in lines[0] + " ", lines[0]
    return next((line.split(":", 1)[1].strip() for line in lines[1:]
                 if line.lower().startswith("x-upstream:")), None)


@pytest.fixture(scope="module")
def balancer(live_stack, web_pair: WebPair) -> int:
    port = free_port()
    webs = {f"web-{i + 1}": int(env["WEB_PORT"]) for i, env in enumerate(web_pair.envs)}
    start_balancer(web_pair.stack, port, webs, live_stack.config, name="lb-placement")
    reaches_both(f"http://127.0.0.1:{port}", set(webs))
    yield port
    web_pair.stack.stop("lb-placement")


def test_every_socket_of_a_room_lands_on_the_same_web_and_rooms_spread_over_both(balancer: int):
    rooms = [uuid.uuid4() for _ in range(20)]  # all on one web by chance: 1 in 500,000
    placed = {room: {upgraded_by(balancer, f"/ws/sessions/{room}?ticket={uuid.uuid4().hex}")
                     for _ in range(SOCKETS_PER_ROOM)} for room in rooms}
    # The ticket (a query string, new on every socket) plays no part: one web per room.
    assert all(len(webs) == 1 and None not in webs for webs in placed.values()), placed
    # Other paths still go by load: a room's web is not everything's.
    assert {web for webs in placed.values() for web in webs} == {"web-1", "web-2"}, placed
    wait_until(lambda: len({upgraded_by(balancer, "/ws") for _ in range(4)}) == 2,
               "other sockets spread over both webs")
