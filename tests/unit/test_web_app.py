"""What every request of the web app shares, whatever its route."""
from __future__ import annotations

import base64
import os
import socket
import uuid

import flask
import flask_sock
from flask.sessions import NullSession

from app import create_app


def test_a_request_opens_no_cookie_session():
    app = create_app()
    with app.test_request_context("/healthz", headers={"Cookie": "session=eyJ4IjoxfQ.abc.def"}):
        assert isinstance(flask.session, NullSession)
    response = app.test_client().get("/healthz", headers={"Cookie": "session=eyJ4IjoxfQ.abc.def"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_only_the_sockets_the_heartbeat_does_not_watch_get_pings_of_the_librarys_own():
    """simple-websocket's ping makes its reader wait for every frame in a selector (costly per pong); the
    room and board sockets have the heartbeat (rooms/heartbeat.py), GraphQL's have the library's ping."""
    app = create_app()
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    for path, pinged in ((f"/ws/sessions/{uuid.uuid4()}", False), ("/ws/leaderboards/weekly", False),
                         ("/ws", False), ("/graphql", True)):
        server_end, client = socket.socketpair()
        try:
            socket_environ = {"werkzeug.socket": server_end}
            with app.test_request_context(path, headers=upgrade, environ_base=socket_environ):
                ws = flask_sock.Server(flask.request.environ, **app.config["SOCK_SERVER_OPTIONS"])
                assert bool(ws.ping_interval) is pinged, f"{path}: ping interval {ws.ping_interval}"
                ws.close()
        finally:
            client.close()
            server_end.close()
