"""The Lua scripts of the leaderboard service (lua/lb_*.lua), sharing lua/lb_lib.lua."""
from __future__ import annotations

from app.core.lua import Script, ScriptSet, registered


class BoardScripts(ScriptSet):
    LIBRARY = "lb_lib.lua"
    NAMES = ("apply_batch", "lb_apply_entry", "lb_apply_config", "lb_apply_period", "lb_close_period", "lb_read_range",
             "lb_read_after", "lb_read_player", "lb_read_stats", "lb_swap_period")

    apply_batch: Script  # a run of the board's events in one call (app/core/lua.py pack_batch)
    lb_apply_entry: Script
    lb_apply_config: Script
    lb_apply_period: Script
    lb_close_period: Script
    lb_read_range: Script
    lb_read_after: Script
    lb_read_player: Script
    lb_read_stats: Script
    lb_swap_period: Script


def board_scripts(client) -> BoardScripts:
    """The board scripts registered on `client`, registered on first use."""
    return registered(BoardScripts, client)
