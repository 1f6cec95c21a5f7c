"""WebSocket text frames built once per message and written to every socket as they are.

A server's frames are never masked (RFC 6455, section 5.1) and these sockets never compress
(app/web/extensions.py declines permessage-deflate), so a message broadcast to a room is the same bytes
on every socket. The room hands the same `str` to each of its sockets; `text_frame` encodes and frames
it on the first socket's send and every other socket finds the frame by that string (its hash is
cached in the object), so a socket's sender only writes. Sending through simple-websocket instead would
UTF-8 encode and frame the message again on each of 2,000 sockets, and its `sock.send` may write a
frame partly under backpressure; this writes it whole.
"""
from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from simple_websocket import ConnectionClosed

_FIN_TEXT = 0x81
# A protocol ping with no payload (FIN, opcode 9): browsers and WebSocket libraries answer it by themselves.
PING_FRAME = b"\x89\x00"
# Enough for the messages in flight at once in a process (a broadcast, a board push, a close's result).
_FRAMES_CACHED = 256


@lru_cache(maxsize=_FRAMES_CACHED)
def text_frame(text: str) -> bytes:
    return payload_frame(text.encode())


def payload_frame(payload: bytes) -> bytes:
    """The text frame of a UTF-8 `payload` (a player's own copy of a close: framed once, never cached)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _FIN_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload


def frame_of(text: str | bytes) -> bytes:
    """The frame of a message: a text's shared frame; bytes are a frame already (a ping, a player's copy)."""
    return text if isinstance(text, bytes) else text_frame(text)


def frame_writer(ws: Any) -> Callable[[str | bytes], None]:
    """A Connection's `send` for the simple-websocket `ws`: writes the message's frame whole, waiting for
    the socket to take it (the sender of a slow client)."""
    def send(text: str | bytes) -> None:
        if not ws.connected:
            raise ConnectionClosed(ws.close_reason, ws.close_message)
        frame = frame_of(text)
        # One write, as a rule (gevent's sendall asks the socket for its buffer size first).
        written = ws.sock.send(frame)
        if written < len(frame):
            ws.sock.sendall(memoryview(frame)[written:])
    return send


def frame_trier(ws: Any) -> Callable[[bytes], int]:
    """A Connection's `try_send` for `ws`: writes what the socket's kernel buffer takes of `frame` now,
    never waiting, and returns how many bytes that was (0: the buffer is full). Under gevent `ws.sock`
    wraps a non-blocking OS socket whose own `send` would wait for room; the OS socket never does."""
    os_socket = getattr(ws.sock, "_sock", ws.sock)

    def try_send(frame: bytes) -> int:
        if not ws.connected:
            raise ConnectionClosed(ws.close_reason, ws.close_message)
        try:
            return os_socket.send(frame, socket.MSG_DONTWAIT)
        except (BlockingIOError, TimeoutError):  # TimeoutError: a socket with a timeout set
            return 0
    return try_send


def socket_closer(ws: Any) -> Callable[[int, str], None]:
    """A Connection's `close` for `ws`: sends the close code, then wakes the handler waiting in
    `ws.receive`, which returns at once instead of at its timeout (so the socket leaves its room now)."""
    def close(code: int, reason: str) -> None:
        ws.close(code, reason)
        ws.event.set()
    return close


# What the heartbeat leaves in simple-websocket's `pong_received` once it asked: true to the library, whose
# own ping (SOCK_SERVER_OPTIONS `ping_interval`) closes a socket (1008) whose flag is false at its tick,
# yet not `True`, which only a pong writes. Left False, a tick that came while the pong to the heartbeat's
# ping was still on its way closed a live socket: a few in a thousand every 25 s, more the busier the web.
# (The heartbeat's routes now take no ping of the library's own: extensions.py `_server`.)
ASKED = "asked"


def pong_check(ws: Any) -> Callable[[], bool]:
    """Whether `ws` received a pong since the last call (simple-websocket notes it in `pong_received`).
    The heartbeat owns the liveness of the sockets it watches (WS_SILENT_CLOSE_S): the library's own
    ping never finds one of them without a pong."""
    def took_pong() -> bool:
        heard, ws.pong_received = ws.pong_received is True, ASKED
        return heard
    return took_pong
