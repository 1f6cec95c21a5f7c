"""The leaderboard Lua scripts (lua/), registered once per Redis client and process.

A script that shares the board arithmetic gets lua/board_lib.lua prepended; each file still begins
by asserting its KEYS and ARGV. redis-py's `register_script` reloads a script on NOSCRIPT, so a
restarted or failed-over Redis needs nothing from us.
"""
from __future__ import annotations

import threading
from pathlib import Path

from redis.commands.core import Script

LUA_DIR = Path(__file__).resolve().parents[2] / "lua"
_LIBRARY = "board_lib.lua"
SCRIPT_NAMES = ("apply_answer_scored", "apply_participant_joined", "apply_question_opened",
                "apply_question_closed", "apply_session_ended", "read_leaderboard_page", "read_around",
                "swap_rebuilt_board", "register_socket")

APPLIED, DUPLICATE, NEEDS_REBUILD = 1, 0, -1


def script_source(name: str) -> str:
    """The text sent to Redis for script `name` (the library, then the script)."""
    return (LUA_DIR / _LIBRARY).read_text() + "\n" + (LUA_DIR / f"{name}.lua").read_text()


class LeaderboardScripts:
    """The registered scripts; call them with `client=` a pipeline to queue them."""

    def __init__(self, client) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(script_source(name)))

    apply_answer_scored: Script
    apply_participant_joined: Script
    apply_question_opened: Script
    apply_question_closed: Script
    apply_session_ended: Script
    read_leaderboard_page: Script
    read_around: Script
    swap_rebuilt_board: Script
    register_socket: Script


_registered: dict[int, tuple[object, LeaderboardScripts]] = {}
_lock = threading.Lock()


def scripts_for(client) -> LeaderboardScripts:
    """The scripts registered on `client`, registered on first use."""
    with _lock:
        known = _registered.get(id(client))
        if known is None or known[0] is not client:
            known = (client, LeaderboardScripts(client))
            _registered[id(client)] = known
        return known[1]
