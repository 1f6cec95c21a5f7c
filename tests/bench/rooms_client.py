"""Clients of the live rooms for the e2e and fan-out benchmarks: WebSockets and a Redis stream observer.

Why the room stream: the cache worker appends one entry to `room:{S}` per event it applies, carrying
the room's new `version` (and, for answers, participant_id and question_id); the leaderboard message
pushed to sockets carries the board's version. So "the first leaderboard message whose version
includes the answer" is the first one with version >= the version of that answer's stream entry. The
entry id's millisecond part is Redis' clock when the worker applied the event: the moment of the
leaderboard change (same machine, same clock as the client's time.time()).
"""
from __future__ import annotations

import asyncio
import bisect
import re
import threading
import time
import uuid

import redis as redis_lib
import websockets

from app.leaderboards.keys import SessionKeys

_LEADERBOARD = re.compile(rb'"type":"leaderboard".*?"version":(\d+)|"version":(\d+).*?"type":"leaderboard"')


class StreamObserver(threading.Thread):
    """Reads the rooms' notification streams: answer (participant, question) -> (version, applied_at_s)."""

    def __init__(self, redis_url: str, session_ids: list[uuid.UUID]):
        super().__init__(daemon=True)
        self.client = redis_lib.Redis.from_url(redis_url)
        self.streams = {SessionKeys.of(s).room: "0-0" for s in session_ids}
        self.room_of = {SessionKeys.of(s).room: s for s in session_ids}
        self.answers: dict[tuple[str, str], tuple[int, float]] = {}
        self.changes: dict[uuid.UUID, list[tuple[int, float]]] = {s: [] for s in session_ids}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            batches = self.client.xread(self.streams, count=2000, block=300)
            for key, entries in batches or []:
                key = key.decode()
                session = self.room_of[key]
                for entry_id, fields in entries:
                    self.streams[key] = entry_id.decode()
                    if fields.get(b"type") != b"answer_scored":
                        continue
                    version = int(fields[b"version"])
                    applied_at = int(entry_id.split(b"-")[0]) / 1000.0
                    self.answers[(fields[b"participant_id"].decode(), fields[b"question_id"].decode())] = (
                        version, applied_at)
                    self.changes[session].append((version, applied_at))

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


class RoomSocket:
    """One WebSocket in a room, recording (version, arrival wall time) of every leaderboard message."""

    __slots__ = ("session_id", "versions", "arrivals", "messages", "task", "connected", "error")

    def __init__(self, session_id: uuid.UUID):
        self.session_id = session_id
        self.versions: list[int] = []
        self.arrivals: list[float] = []
        self.messages = 0
        self.connected = False
        self.error: str | None = None

    async def run(self, ws_url: str, token: str, ready: asyncio.Semaphore | None = None) -> None:
        uri = f"{ws_url}/ws/sessions/{self.session_id}?access_token={token}"
        try:
            async with websockets.connect(uri, compression=None, max_size=2**20, open_timeout=60,
                                          ping_interval=None, close_timeout=1) as ws:
                self.connected = True
                if ready is not None:
                    ready.release()
                    ready = None
                async for message in ws:
                    now = time.time()
                    self.messages += 1
                    raw = message if isinstance(message, bytes) else message.encode()
                    match = _LEADERBOARD.search(raw[:200]) or _LEADERBOARD.search(raw)
                    if match:
                        self.versions.append(int(match.group(1) or match.group(2)))
                        self.arrivals.append(now)
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
            self.error = repr(exc)
        finally:
            if ready is not None:
                ready.release()

    def first_arrival(self, version: int, after_index: int = 0) -> float | None:
        """Arrival of the first leaderboard message with a version >= `version` (versions only grow)."""
        i = bisect.bisect_left(self.versions, version, lo=after_index)
        return self.arrivals[i] if i < len(self.arrivals) else None


async def connect_all(ws_url: str, sockets_and_tokens: list[tuple[RoomSocket, str]], concurrency: int = 100,
                      timeout_s: float = 300) -> float:
    """Open every socket (at most `concurrency` handshakes at once); returns the seconds it took."""
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    for sock, token in sockets_and_tokens:
        await gate.acquire()
        sock.task = asyncio.create_task(sock.run(ws_url, token, gate))
        if time.monotonic() - started > timeout_s:
            break
    for _ in range(concurrency):  # every handshake finished (connected or failed)
        await asyncio.wait_for(gate.acquire(), timeout=max(1.0, timeout_s - (time.monotonic() - started)))
    for _ in range(concurrency):
        gate.release()
    return time.monotonic() - started


async def close_all(sockets: list[RoomSocket]) -> None:
    tasks = [s.task for s in sockets if getattr(s, "task", None) is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
