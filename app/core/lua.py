"""Loading the Lua scripts of lua/ into Redis: a set of scripts that share one library file.

A script that shares a library gets it prepended (after lua/common_lib.lua, which every library uses);
each file still begins by asserting its KEYS and ARGV. redis-py's `register_script` reloads a script
on NOSCRIPT, so a restarted or failed-over Redis needs nothing from us. Scripts are registered once per
Redis client and process.

A library's apply rules are Lua functions (APPLY.<script>) that both the one-event scripts and
lua/apply_batch.lua call: the batch applies one aggregate's events in one call, packed by `pack_batch`
(this module owns that wire format) and at most BATCH_CHUNK events a call.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from redis.commands.core import Script
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).resolve().parents[2] / "lua"
APPLIED, DUPLICATE, NEEDS_REBUILD = 1, 0, -1


COMMON_LIBRARY = "common_lib.lua"  # before every library: what they all use

# Most events one apply_batch call carries. A script holds Redis for its whole run, and every other
# client (reads, rooms, rate limits) waits behind it: an answer costs Redis 15-30 us in Lua (measured on
# the 2-core test machine: 50 answers in one call, 1.4 ms), so 100 of them hold it 1.5-3 ms at most,
# while the call's own cost (its round trip and set-up, ~0.1 ms) is already down to ~1 us an event.
BATCH_CHUNK = 100


class Call(NamedTuple):
    """One event's script call: the one-event script's name (also its function in the library's APPLY
    table), its KEYS and its ARGV."""

    script: str
    keys: list[str]
    args: list[Any]


def pack_batch(calls: Iterable[Call], notes: list[list[str]] | None = None) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one apply_batch call applying `calls` (one aggregate's, in order): every key once,
    the key sets the events use as positions in KEYS (Lua counts from 1), then the events as
    [script, key set, ARGV...] (lua/common_lib.lua apply_batch reads them), then, when `notes` is given,
    the fields each event's room notes end with (one list per call: its journey, app/core/tracing.py)."""
    keys: list[str] = []
    positions: dict[str, int] = {}
    keysets: dict[tuple[str, ...], int] = {}
    sets: list[list[int]] = []
    events: list[list[Any]] = []
    for script, call_keys, args in calls:
        wanted = tuple(call_keys)
        number = keysets.get(wanted)
        if number is None:
            for name in wanted:
                if name not in positions:
                    keys.append(name)
                    positions[name] = len(keys)
            sets.append([positions[name] for name in wanted])
            number = keysets[wanted] = len(sets)
        events.append([script, number, *args])
    argv = [json.dumps(sets, separators=(",", ":")),
            json.dumps(events, separators=(",", ":"), ensure_ascii=False)]
    if notes:
        argv.append(json.dumps(notes, separators=(",", ":")))
    return keys, argv


def script_source(name: str, library: str) -> str:
    """The text sent to Redis for script `name`: the common library, its library, then the script."""
    return "\n".join((LUA_DIR / part).read_text() for part in (COMMON_LIBRARY, library, f"{name}.lua"))


class ScriptSet:
    """The scripts of one library, registered on a client; call them with `client=` a pipeline to queue them.
    Subclasses name the library and the scripts (their annotations list them)."""

    LIBRARY: str = ""
    NAMES: tuple[str, ...] = ()

    def __init__(self, client) -> None:
        for name in self.NAMES:
            setattr(self, name, client.register_script(script_source(name, self.LIBRARY)))


_registered: dict[tuple[type, int], tuple[object, ScriptSet]] = {}
_lock = threading.Lock()


def registered(kind: type[ScriptSet], client):
    """The scripts of `kind` registered on `client`, registered on first use."""
    with _lock:
        known = _registered.get((kind, id(client)))
        if known is None or known[0] is not client:
            known = (client, kind(client))
            _registered[(kind, id(client))] = known
        return known[1]


class _Waiting:
    __slots__ = ("keys", "args", "ready", "reply", "leads")

    def __init__(self, keys: list[str], args: list[Any]):
        self.keys, self.args = keys, args
        self.ready = threading.Event()
        self.reply: Any = None
        self.leads = False  # woken to send the next round trip, not with its reply


# What the calls of a round trip get when its sender was interrupted (e.g. its greenlet killed).
_INTERRUPTED = ConnectionError("the round trip carrying this call was interrupted")


class SharedRoundTrips:
    """Calls of one script, made by concurrent requests of a process, sent to Redis together.

    Each round trip costs its caller a send that wakes Redis, a poll and a read: on the 2-core machine of
    bench 14 that was more CPU than all the rest of a request's admission. Here the first caller sends
    its call at once; calls made while a round trip is in flight wait, and the first of them, when it
    came back, sends them all in one pipeline (at most `max_batch`), then hands the turn on. Each caller
    gets its own call's reply, or raises its own call's error, as from the script alone; a NOSCRIPT
    (Redis lost its scripts) loads the script and sends those calls again. The calls are independent
    scripts, run by Redis in the order they were made."""

    def __init__(self, script: Script, client, max_batch: int = 128):
        self.script, self.client, self.max_batch = script, client, max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._sending = False

    def waiting(self) -> int:
        """Calls queued behind the round trip in flight."""
        with self._lock:
            return len(self._queue)

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        mine = _Waiting(keys, args)
        with self._lock:
            self._queue.append(mine)
            leads = not self._sending
            self._sending = True
        if not leads:
            try:
                mine.ready.wait()
            except BaseException:  # e.g. its greenlet killed: never keep the others from their turn
                self._abandon(mine)
                raise
        if leads or mine.leads:
            self._send_next()
        if isinstance(mine.reply, Exception):
            raise mine.reply
        return mine.reply

    def _send_next(self) -> None:
        with self._lock:
            batch = self._queue[:self.max_batch]
            del self._queue[:self.max_batch]
        replies: list[Any] = [_INTERRUPTED] * len(batch)
        try:
            replies = self._round_trip(batch)
        except Exception as exc:  # noqa: BLE001 - each caller raises it as its own
            replies = [exc] * len(batch)
        finally:
            for waiting, reply in zip(batch, replies):
                waiting.reply = reply
                waiting.ready.set()
            with self._lock:
                self._hand_on()

    def _abandon(self, mine: _Waiting) -> None:
        """A caller stops waiting: its call leaves the queue (one sent already goes on without it), and
        the turn, if it was handed to it, goes on to the next."""
        with self._lock:
            if any(waiting is mine for waiting in self._queue):
                self._queue.remove(mine)
            if mine.leads:
                self._hand_on()

    def _hand_on(self) -> None:
        """(Holding the lock) The turn to send goes to the first call waiting, if any."""
        if self._queue:
            following = self._queue[0]
            following.leads = True
            following.ready.set()
        else:
            self._sending = False

    def _round_trip(self, batch: list[_Waiting]) -> list[Any]:
        if len(batch) == 1:
            return [self.script(keys=batch[0].keys, args=batch[0].args, client=self.client)]
        replies = self._pipeline(batch)
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            self.script.sha = self.client.script_load(self.script.script)
            for i, reply in zip(lost, self._pipeline([batch[i] for i in lost])):
                replies[i] = reply
        return replies

    def _pipeline(self, batch: list[_Waiting]) -> list[Any]:
        # EVALSHA queued as itself: given the Script, a pipeline first asks SCRIPT EXISTS (a round trip more).
        with self.client.pipeline(transaction=False) as pipe:
            for waiting in batch:
                pipe.evalsha(self.script.sha, len(waiting.keys), *waiting.keys, *waiting.args)
            return pipe.execute(raise_on_error=False)


__all__ = ["APPLIED", "BATCH_CHUNK", "DUPLICATE", "NEEDS_REBUILD", "Call", "Script", "ScriptSet",
           "SharedRoundTrips", "pack_batch", "registered", "script_source"]
