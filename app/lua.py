"""Loading the Lua scripts of lua/ into Redis: a set of scripts that share one library file.

A script that shares a library gets it prepended (after lua/common_lib.lua, which every library uses); each file still begins by asserting its KEYS and
ARGV. redis-py's `register_script` reloads a script on NOSCRIPT, so a restarted or failed-over Redis
needs nothing from us. Scripts are registered once per Redis client and process.
"""
from __future__ import annotations

import threading
from pathlib import Path

from redis.commands.core import Script

LUA_DIR = Path(__file__).resolve().parents[1] / "lua"
APPLIED, DUPLICATE, NEEDS_REBUILD = 1, 0, -1


COMMON_LIBRARY = "common_lib.lua"  # before every library: what they all use


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


__all__ = ["APPLIED", "DUPLICATE", "NEEDS_REBUILD", "Script", "ScriptSet", "registered", "script_source"]
