"""Clients of the live rooms for the e2e and fan-out benchmarks: WebSockets and a Redis stream observer.

Why the room stream: the cache worker appends one entry to `room:{S}` per event it applies. An answer
to the open question is held (`answer_received`, with participant_id and question_id): its points
stay hidden until the question closes. A change of the board (`question_closed`, a join, a rebuild)
carries the room's new `version`; the leaderboard message pushed to sockets carries the board's
version. So "the first leaderboard message that shows the change" is the first one with version >=
the version of the change's stream entry. The entry id's millisecond part is Redis' clock when the
worker applied the event (same machine, same clock as the client's time.time()).
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import re
import threading
import time
import uuid
from datetime import datetime

import redis as redis_lib

from app.quiz.board.keys import SessionKeys

# A room's board: its own message, or the board a close's frame (or a snapshot) carries.
_LEADERBOARD = re.compile(rb'"type":"leaderboard".*?"version":(\d+)|"version":(\d+).*?"type":"leaderboard"'
                          rb'|"leaderboard":\{"session_id":"[^"]*","version":(\d+)')
_NEXT_VERSION = re.compile(rb'"type":"next".*?"version":(\d+)|"version":(\d+).*?"type":"next"')
_BOARD_UPDATE = re.compile(rb'"type":"leaderboard_update".*?"version":(\d+)'
                           rb'|"version":(\d+).*?"type":"leaderboard_update"')


BOARD_CHANGES = {b"question_closed", b"participant_joined", b"answer_scored", b"board_rebuilt"}


class StreamObserver(threading.Thread):
    """Reads the rooms' notification streams: when each answer was applied (held) in Redis, and each
    board change's version and instant; for closes also the commit instant (PostgreSQL's clock)."""

    def __init__(self, redis_url: str, session_ids: list[uuid.UUID]):
        super().__init__(daemon=True)
        self.client = redis_lib.Redis.from_url(redis_url)
        self.streams = {SessionKeys.of(s).room: "0-0" for s in session_ids}
        self.room_of = {SessionKeys.of(s).room: s for s in session_ids}
        self.answers: dict[tuple[str, str], float] = {}  # (participant, question) -> applied at
        self.changes: dict[uuid.UUID, list[tuple[int, float]]] = {s: [] for s in session_ids}
        # (session, question) -> (version, closed at in PostgreSQL, applied at)
        self.closes: dict[tuple[uuid.UUID, str], tuple[int, float, float]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            batches = self.client.xread(self.streams, count=2000, block=300)
            for key, entries in batches or []:
                key = key.decode()
                session = self.room_of[key]
                for entry_id, fields in entries:
                    self.streams[key] = entry_id.decode()
                    kind = fields.get(b"type")
                    applied_at = int(entry_id.split(b"-")[0]) / 1000.0
                    if kind == b"answer_received":
                        self.answers[(fields[b"participant_id"].decode(),
                                      fields[b"question_id"].decode())] = applied_at
                    if kind not in BOARD_CHANGES:
                        continue
                    version = int(fields[b"version"])
                    self.changes[session].append((version, applied_at))
                    if kind == b"question_closed":
                        closed_at = datetime.fromisoformat(
                            json.loads(fields[b"data"])["closed_at"]).timestamp()
                        self.closes[(session, fields[b"question_id"].decode())] = (version, closed_at,
                                                                                   applied_at)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


class _WsProtocol(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455) for receiving: the handshake, then unmasked server frames.

    Stamping happens in data_received, i.e. when the event loop reads the socket, with little work per
    frame, so that a burst of 2,000 pushes is stamped close to when it arrived (a full client library
    spends ~10x more per message, which would be measured as fan-out latency)."""

    def __init__(self, owner: RoomSocket, request: bytes, handshake: asyncio.Future):
        self.owner, self.request, self.handshake = owner, request, handshake
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:12])
            del self.buffer[:end + 4]
            if b" 101" not in status:
                if not self.handshake.done():
                    self.handshake.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                self.transport.close()
                return
            self.upgraded = True
            if not self.handshake.done():
                self.handshake.set_result(True)
        buf = self.buffer
        while len(buf) >= 2:
            opcode, length, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < offset + length:
                return
            payload = bytes(buf[offset:offset + length])
            del buf[:offset + length]
            if opcode in (0x1, 0x0):
                self.owner.on_message(payload, now)
            elif opcode == 0x9:  # ping: answer with a masked pong carrying the same payload
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:  # the server's close: its code and reason say why
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self.owner.on_close(code, payload[2:].decode(errors="replace"), now)
                self.transport.close()

    def send_text(self, text: str) -> None:
        """A client text frame (masked, with a zero key: the payload goes as it is)."""
        payload = text.encode()
        size = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | size]) if size < 126
                                else bytes([0x80 | 126]) + size.to_bytes(2, "big"))
        self.transport.write(head + b"\0\0\0\0" + payload)

    def connection_lost(self, exc) -> None:
        self.owner.on_lost(exc, time.time())
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(True)


class RoomSocket:
    """One WebSocket in a room, recording (version, arrival wall time) of every board it is sent (a
    leaderboard message, a close's frame, a snapshot), and how it ended: the server's close code and
    reason, or a connection lost without a close frame (`admission` and `missed` say why one was not
    held, or did not get a change)."""

    __slots__ = ("session_id", "versions", "arrivals", "messages", "task", "connected", "error", "_protocol",
                 "connected_at", "last_message_at", "close_code", "close_reason", "ended_at")

    def __init__(self, session_id: uuid.UUID):
        self.session_id = session_id
        self.versions: list[int] = []
        self.arrivals: list[float] = []
        self.messages = 0
        self.connected = False
        self.error: str | None = None
        self.connected_at: float | None = None  # wall time the handshake finished
        self.last_message_at: float | None = None
        self.close_code: int | None = None  # the server's close frame, if one came
        self.close_reason = ""
        self.ended_at: float | None = None  # wall time the connection ended (close frame or lost)

    PATTERN = _LEADERBOARD  # the messages whose versions are recorded

    def on_message(self, raw: bytes, now: float) -> None:
        self.messages += 1
        self.last_message_at = now
        match = self.PATTERN.search(raw, 0, 200) or self.PATTERN.search(raw)
        if match:
            self.versions.append(int(next(group for group in match.groups() if group)))
            self.arrivals.append(now)

    def on_close(self, code: int | None, reason: str, now: float) -> None:
        if self.ended_at is None:
            self.close_code, self.close_reason, self.ended_at = code, reason, now

    def on_lost(self, exc: BaseException | None, now: float) -> None:
        if self.ended_at is None:
            self.ended_at = now
            self.close_reason = f"connection lost without a close frame ({exc!r})"

    def ended_how(self) -> str:
        """How the connection ended, in words (a closed one)."""
        if self.close_code is not None:
            return f"closed by the server {self.close_code} ({self.close_reason})"
        return self.close_reason

    def admission(self, within_s: float) -> str:
        """Why the socket is not held: no handshake, how it ended (before or after its snapshot), or, open,
        what it received in the `within_s` seconds (at least) since its handshake."""
        if not self.connected:
            return f"no handshake: {self.error}"
        if self.ended_at is not None:
            return f"{self.ended_how()}, {'after its snapshot' if self.versions else 'before any snapshot'}"
        if not self.messages:
            return f"open, nothing received within {within_s:.0f} s of its handshake"
        return f"open, messages but no snapshot within {within_s:.0f} s of its handshake"

    def missed(self, applied_at: float, within_s: float) -> str:
        """Why no board at least as new as a change applied at `applied_at` (wall time) arrived in the
        `within_s` seconds (at least) after it."""
        if not self.versions or (self.ended_at is not None and self.ended_at < applied_at):
            return f"not held: {self.admission(within_s)}"
        if self.ended_at is not None:
            return f"{self.ended_how()}, after the change"
        if self.last_message_at is None or self.last_message_at < applied_at:
            return f"open, nothing received within {within_s:.0f} s of the change"
        return f"open, messages but no board that new within {within_s:.0f} s of the change"

    def path(self, ticket: str) -> str:
        return f"/ws/sessions/{self.session_id}?ticket={ticket}"

    def extra_headers(self) -> str:
        return ""

    def opened(self, protocol: _WsProtocol) -> None:
        """Called once the handshake is done (a protocol that starts with client messages sends them here)."""

    async def run(self, ws_url: str, ticket: str, ready: asyncio.Semaphore | None = None) -> None:
        host_port = ws_url.split("//", 1)[1]
        host, _, port = host_port.partition(":")
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {self.path(ticket)} HTTP/1.1\r\nHost: {host_port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n{self.extra_headers()}\r\n").encode()
        loop = asyncio.get_running_loop()
        handshake = loop.create_future()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _WsProtocol(self, request, handshake), host, int(port)), 60)
            self._protocol = protocol
            await asyncio.wait_for(handshake, 60)
            self.opened(protocol)
            self.connected = True
            self.connected_at = time.time()
            if ready is not None:
                ready.release()
                ready = None
            await protocol.closed
        except (TimeoutError, OSError, ConnectionError) as exc:
            self.error = repr(exc)
        except asyncio.CancelledError:
            protocol = getattr(self, "_protocol", None)
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()
            raise
        finally:
            if ready is not None:
                ready.release()

    @property
    def joined(self) -> bool:
        """The server put the socket in its room: its snapshot (which carries the board) arrived, and the
        socket is still open. A handshake alone says nothing: the server joins or refuses after it."""
        protocol = getattr(self, "_protocol", None)
        return (bool(self.versions) and self.ended_at is None and protocol is not None
                and not protocol.closed.done())

    @property
    def settled(self) -> bool:
        """Joined, failed, or closed by the server: nothing more will happen to its admission."""
        protocol = getattr(self, "_protocol", None)
        return (self.joined or self.error is not None or self.ended_at is not None or protocol is None
                or protocol.closed.done())

    def first_arrival(self, version: int, after_index: int = 0) -> float | None:
        """Arrival of the first leaderboard message with a version >= `version` (versions only grow)."""
        i = bisect.bisect_left(self.versions, version, lo=after_index)
        return self.arrivals[i] if i < len(self.arrivals) else None


class BoardSocket(RoomSocket):
    """A socket watching a live board's top 10 (`/ws/leaderboards/{id}`): the versions of its updates.
    `session_id` holds the board id."""

    __slots__ = ()
    PATTERN = _BOARD_UPDATE

    def path(self, ticket: str) -> str:
        return f"/ws/leaderboards/{self.session_id}?top=10"


class GraphQLSocket(RoomSocket):
    """A graphql-transport-ws socket subscribed to a board's top 10 (`boardTop`): the versions of its
    `next` messages. `session_id` holds the board id."""

    __slots__ = ()
    PATTERN = _NEXT_VERSION

    def path(self, ticket: str) -> str:
        return "/graphql"

    def extra_headers(self) -> str:
        return "Sec-WebSocket-Protocol: graphql-transport-ws\r\n"

    def opened(self, protocol) -> None:
        protocol.send_text('{"type":"connection_init"}')
        protocol.send_text(json.dumps({"id": "top", "type": "subscribe", "payload": {
            "query": "subscription($b: ID!) { boardTop(board_id: $b, top: 10) { version total entries "
                     "{ rank player_id display_name score } } }", "variables": {"b": str(self.session_id)}}}))


async def connect_all(ws_url: str, redis_url: str, sockets_and_users: list[tuple[RoomSocket, uuid.UUID]],
                      concurrency: int = 100, timeout_s: float = 300) -> float:
    """Open every socket (at most `concurrency` handshakes at once); returns the seconds it took.
    Each socket's ticket is written to Redis in-process just before its handshake (as POST
    /api/v1/ws-tickets would), since a ticket lives a minute."""
    import redis

    from app.accounts.tokens import Principal
    from app.web.tickets import issue

    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    for sock, user in sockets_and_users:
        await gate.acquire()
        ticket = issue(client, Principal(user, True, int(time.time() * 1000)), sock.session_id)
        sock.task = asyncio.create_task(sock.run(ws_url, ticket, gate))
        if time.monotonic() - started > timeout_s:
            break
    for _ in range(concurrency):  # every handshake finished (connected or failed)
        await asyncio.wait_for(gate.acquire(), timeout=max(1.0, timeout_s - (time.monotonic() - started)))
    for _ in range(concurrency):
        gate.release()
    return time.monotonic() - started


async def wait_joined(sockets: list[RoomSocket], timeout_s: float) -> float:
    """Wait until the server has admitted or refused every socket (its snapshot arrived, or it closed);
    returns the seconds it took. The server joins a socket to its room after the handshake, so a
    measurement that starts before this would count a late joiner's snapshot as a change's delivery."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s and not all(s.settled for s in sockets):
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def close_all(sockets: list[RoomSocket]) -> None:
    tasks = [s.task for s in sockets if getattr(s, "task", None) is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
