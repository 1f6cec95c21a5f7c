"""A real WebSocket client for the room protocol, recording every message it receives."""
from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
import websocket

from tests.helpers import WAIT_S


def ticket_for(ws_url: str, session_id: str, token: str) -> str:
    """A one-use ticket for the room, from POST /api/v1/ws-tickets with the bearer token."""
    response = requests.post(ws_url.replace("ws://", "http://", 1) + "/api/v1/ws-tickets",
                             json={"session_id": session_id}, headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
    assert response.status_code == 201, (response.status_code, response.text)
    return response.json()["ticket"]


class SocketClient:
    """A WebSocket at `url`, its messages recorded as they arrive (each stamped `_received`)."""

    def __init__(self, url: str, **options):
        self.ws = websocket.create_connection(url, timeout=WAIT_S, **options)
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except Exception:
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(data) >= 2:
                    self.close_code = struct.unpack("!H", data[:2])[0]
                    self.close_reason = data[2:].decode(errors="replace")
                break
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                message = json.loads(data)
                message["_received"] = time.monotonic()
                with self._arrived:
                    self.messages.append(message)
                    self._arrived.notify_all()
        with self._arrived:
            self._arrived.notify_all()

    def send(self, message: dict[str, Any] | str) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._arrived:
            return [m for m in self.messages if m["type"] == kind]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout_s: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._arrived:
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive() and seen == len(self.messages):
                    raise AssertionError(f"no matching message within {timeout_s}s; got "
                                         f"{[m['type'] for m in self.messages]} close={self.close_code}")
                self._arrived.wait(min(remaining, 0.5))

    def wait_type(self, kind: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return self.wait_for(lambda m: m["type"] == kind, timeout_s)

    def wait_closed(self, timeout_s: float = WAIT_S) -> int | None:
        self._reader.join(timeout_s)
        return self.close_code

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class RoomClient(SocketClient):
    """Opens the room with a fresh ticket (or `query`, a raw query string, to test refusals)."""

    def __init__(self, ws_url: str, session_id: str, token: str | None = None, *, query: str | None = None):
        if query is None:
            query = f"ticket={ticket_for(ws_url, session_id, token)}"
        super().__init__(f"{ws_url}/ws/sessions/{session_id}?{query}")
