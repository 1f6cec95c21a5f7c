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


__all__ = ["APPLIED", "BATCH_CHUNK", "DUPLICATE", "NEEDS_REBUILD", "Call", "Script", "ScriptSet",
           "pack_batch", "registered", "script_source"]
