"""A response in one `send` (app/web/one_send.py): the bytes gunicorn itself writes, in one system call
when the body is one chunk of its stated length; gunicorn's own two writes otherwise."""
from __future__ import annotations

import socket

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from app.web import one_send


class CountedSocket:
    """A real socket whose `sendall` calls are counted."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sends: list[bytes] = []

    def sendall(self, data) -> None:
        self.sends.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _respond(method: str, headers: list[tuple[str, str]], chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    """One request answered by gunicorn's Response over a socket pair: the sends and the bytes received."""
    server, client = socket.socketpair()
    with server, client:
        client.sendall(f"{method} /api/v1/x HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        cfg = Config()
        request = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
        counted = CountedSocket(server)
        response = wsgi.Response(request, counted, cfg)
        response.start_response("201 CREATED", headers)
        for chunk in chunks:
            response.write(chunk)
        response.close()
        client.settimeout(5)
        received = b""
        while len(received) < sum(len(s) for s in counted.sends):
            received += client.recv(65536)
    return counted.sends, received


CASES = {
    "json": ("POST", [("Content-Type", "application/json"), ("Content-Length", "11")], [b'{"a":"xyz"}']),
    "two chunks": ("POST", [("Content-Length", "4")], [b"ab", b"cd"]),
    "no length": ("POST", [("Content-Type", "text/plain")], [b"stream"]),
    "head": ("HEAD", [("Content-Length", "2")], [b""]),
    "empty": ("POST", [("Content-Length", "0")], []),
}


@pytest.mark.parametrize("case", CASES)
def test_a_response_is_the_bytes_gunicorn_writes(case, monkeypatch):
    monkeypatch.setattr(util, "http_date", lambda *_: "Mon, 07 Dec 2026 08:00:00 GMT")
    monkeypatch.setattr(wsgi.Response, "write", wsgi.Response.write)  # gunicorn's own again afterwards
    own_sends, own = _respond(*CASES[case])
    one_send.install()
    sends, received = _respond(*CASES[case])
    assert received == own
    if case == "json":
        assert len(own_sends) == 2
        assert sends == [own]  # the head and the body in one send
    else:
        assert sends == own_sends
