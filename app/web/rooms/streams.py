"""The reader of the Redis streams a web process follows: one XREAD for all of them, not one per socket.

The hub (hub.py) says which streams to read and from which entry on (`positions`), and gets what each
read returned (`take`). On a Redis Cluster each stream sits in the slot of its session or board, and
one XREAD cannot span slots (CROSSSLOT), even on one node: the process keeps one reader per node
(shard), which sends that node one pipeline per round, an XREAD per slot, where only the last XREAD
blocks. So it is one round trip and at most one blocking read per shard, never a reader per room; a
shard that owns one slot of this process's streams blocks on it as one Redis does, and one that owns
several wakes at least every SHARD_BLOCK_MS to see the others.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from app.core.logs import RateLimitedLog
from app.core.redis_client import is_cluster, node_of
from app.core.retry import Backoff

log = logging.getLogger(__name__)

# The longest a cluster shard's reader blocks on one slot while its other slots wait: their latency.
SHARD_BLOCK_MS = 50
# What a cluster's reads raise while its slots move or a node is away (the second is no RedisError).
_CLUSTER_ERRORS = (redis.RedisError, RedisClusterException)


@dataclass
class Feed:
    """A stream the process reads for as long as it lives, whatever sockets it holds (the token
    revocations), from its first entry on: what it holds stays true."""

    stream_key: str
    deliver: Callable[[list[dict[str, Any]]], None]  # runs on the reader's thread: must not block
    last_id: str = "0-0"


class StreamReader:
    def __init__(self, redis_client, positions: Callable[[], dict[str, str]], take: Callable[[Any], None],
                 stopping: threading.Event, errors: RateLimitedLog):
        self.redis = redis_client
        self.rooms_positions = positions  # {stream key: id of the last entry read} of the rooms and boards
        self.take_rooms = take  # what one XREAD returned of them: [(stream key, [(entry id, fields)])]
        self.stopping = stopping
        self.errors = errors
        self.feeds: dict[str, Feed] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        reader = self._read_shards if is_cluster(self.redis) else self._read_streams
        threading.Thread(target=reader, name="room-streams", daemon=True).start()

    def follow(self, stream_key: str, deliver: Callable[[list[dict[str, Any]]], None]) -> None:
        """Read `stream_key` too, from its first entry on, for as long as the process lives."""
        with self._lock:
            self.feeds.setdefault(stream_key, Feed(stream_key, deliver))

    def positions(self) -> dict[str, str]:
        streams = self.rooms_positions()
        with self._lock:
            streams.update({feed.stream_key: feed.last_id for feed in self.feeds.values()})
        return streams

    def take(self, batches) -> None:
        """Deliver the feeds' notes here; hand the rooms' and boards' to the hub."""
        rooms = []
        for batch in batches or []:
            key = batch[0].decode()
            with self._lock:
                feed = self.feeds.get(key)
            if feed is None:
                rooms.append(batch)
                continue
            feed.last_id = batch[1][-1][0].decode()
            try:
                feed.deliver(decode_notes(key, batch[1], self.errors))
            except Exception:  # noqa: BLE001 - one bad note must not stop the reader of every room
                log.exception("cannot deliver the notes of %s", key)
        if rooms:
            self.take_rooms(rooms)

    def _read_streams(self) -> None:
        """One Redis: one blocking XREAD over every stream."""
        backoff = Backoff(first_s=0.1, cap_s=2.0)
        while not self.stopping.is_set():
            streams = self.positions()
            if not streams:
                time.sleep(0.05)
                continue
            try:
                batches = self.redis.xread(streams, count=500, block=200)
                backoff.reset()
            except redis.RedisError as exc:
                self.errors.warning("xread", "cannot read room notifications from Redis: %s", exc)
                time.sleep(backoff.next_delay())
                continue
            self.take(batches)

    def _read_shards(self) -> None:
        """A Redis Cluster: start a reader for each node that owns a stream of this process, once."""
        readers: dict[str, threading.Thread] = {}
        while not self.stopping.is_set():
            try:
                owners = {node_of(self.redis, key) for key in self.positions()}
            except _CLUSTER_ERRORS as exc:  # the cluster's layout is unknown for now
                self.errors.warning("xread", "cannot learn which node owns a room's stream: %s", exc)
                self._relearn_slots()
                owners = set()
            for name in owners - {n for n, t in readers.items() if t.is_alive()}:
                readers[name] = threading.Thread(target=self._read_shard, args=(name,),
                                                 name=f"room-streams-{name}", daemon=True)
                readers[name].start()
            time.sleep(0.05)

    def _read_shard(self, name: str) -> None:
        """One node's streams: one pipeline per round, an XREAD per slot, the last one blocking. Ends
        when the node owns none of them (its slots moved, or their rooms emptied); `_read_shards`
        starts it again when it is needed."""
        backoff = Backoff(first_s=0.1, cap_s=2.0)
        while not self.stopping.is_set():
            try:
                slots: dict[int, dict[str, str]] = {}
                for key, last in self.positions().items():
                    if node_of(self.redis, key) == name:
                        slots.setdefault(self.redis.keyslot(key), {})[key] = last
                node = self.redis.get_node(node_name=name)
                if not slots or node is None:  # nothing here, or the node left the cluster
                    return
                pipe = self.redis.get_redis_connection(node).pipeline(transaction=False)
                *others, blocking = slots.values()
                for streams in others:
                    pipe.xread(streams, count=500)
                pipe.xread(blocking, count=500, block=SHARD_BLOCK_MS if others else 200)
                batches = [batch for reply in pipe.execute() for batch in reply or []]
                backoff.reset()
            except _CLUSTER_ERRORS as exc:
                self.errors.warning("xread", "cannot read room notifications from Redis node %s: %s",
                                    name, exc)
                if not isinstance(exc, redis.TimeoutError):  # a slot moved or a node failed: learn the layout
                    self._relearn_slots()
                time.sleep(backoff.next_delay())
                continue
            self.take(batches)

    def _relearn_slots(self) -> None:
        try:
            self.redis.nodes_manager.initialize()
        except _CLUSTER_ERRORS as exc:  # retried at the next failed read
            self.errors.warning("slots", "cannot learn the cluster's slots: %s", exc)


def decode_notes(stream_key: str, entries, errors: RateLimitedLog) -> list[dict[str, Any]]:
    """The notes of one stream; one that cannot be read is logged and skipped, so the reader, which
    serves every room and board of the process, goes on."""
    notes = []
    for entry_id, fields in entries:
        try:
            note = decode_fields(fields)
            if "clicked_ms" in note:  # an event's note: when it was applied is its entry's time
                note["applied_ms"] = entry_id.split(b"-", 1)[0].decode()
            notes.append(note)
        except (ValueError, TypeError) as exc:
            errors.warning("note", "cannot read notification %s of %s: %s", entry_id, stream_key, exc)
    return notes


def decode_fields(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry: `type` plus either one JSON `data` field or plain fields."""
    note = {key.decode(): value.decode() for key, value in fields.items()}
    data = note.pop("data", None)
    if data:
        note.update(json.loads(data))
    return note
