"""The Lua scripts of a leaderboard (lua/leaderboard_*.lua), sharing lua/leaderboard_lib.lua."""
from __future__ import annotations

from app.core.lua import Script, ScriptSet, registered


class LeaderboardScripts(ScriptSet):
    LIBRARY = "leaderboard_lib.lua"
    NAMES = ("apply_batch", "leaderboard_apply_entry", "leaderboard_apply_config", "leaderboard_apply_period",
             "leaderboard_close_period", "leaderboard_read_range", "leaderboard_read_after",
             "leaderboard_read_player", "leaderboard_read_stats", "leaderboard_swap_period")

    apply_batch: Script  # a run of the board's events in one call (app/core/lua.py pack_batch)
    leaderboard_apply_entry: Script
    leaderboard_apply_config: Script
    leaderboard_apply_period: Script
    leaderboard_close_period: Script
    leaderboard_read_range: Script
    leaderboard_read_after: Script
    leaderboard_read_player: Script
    leaderboard_read_stats: Script
    leaderboard_swap_period: Script


def leaderboard_scripts(client) -> LeaderboardScripts:
    """The leaderboard scripts registered on `client`, registered on first use."""
    return registered(LeaderboardScripts, client)
