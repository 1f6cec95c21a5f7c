"""A real WebSocket client for the room protocol, recording every message it receives."""
from __future__ import annotations

import json
import struct
import threading
import time
from typing import Any, Callable

import websocket


class RoomClient:
    def __init__(self, ws_url: str, session_id: str, token: str):
        self.ws = websocket.create_connection(f"{ws_url}/ws/sessions/{session_id}?access_token={token}", timeout=10)
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

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 15.0) -> dict[str, Any]:
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

    def wait_type(self, kind: str, timeout_s: float = 15.0) -> dict[str, Any]:
        return self.wait_for(lambda m: m["type"] == kind, timeout_s)

    def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        self._reader.join(timeout_s)
        return self.close_code

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
