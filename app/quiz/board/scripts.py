"""The Lua scripts of a quiz session's board (lua/), sharing lua/session_board_lib.lua."""
from __future__ import annotations

from app.core.lua import APPLIED, DUPLICATE, NEEDS_REBUILD, Script, ScriptSet, registered, script_source

LIBRARY = "session_board_lib.lua"


class SessionBoardScripts(ScriptSet):
    """The registered scripts; call them with `client=` a pipeline to queue them."""

    LIBRARY = LIBRARY
    NAMES = ("apply_batch", "apply_answer_scored", "apply_participant_joined", "apply_participant_removed",
             "apply_participant_restored", "apply_question_extended", "apply_question_opened",
             "apply_question_closed", "apply_session_ended",
             "read_session_board_page", "read_session_board_around", "read_question_results",
             "swap_rebuilt_session_board",
             "register_room_socket")

    apply_batch: Script  # a run of the session's events in one call (app/core/lua.py pack_batch)
    apply_answer_scored: Script
    apply_participant_joined: Script
    apply_participant_removed: Script
    apply_participant_restored: Script
    apply_question_extended: Script
    apply_question_opened: Script
    apply_question_closed: Script
    apply_session_ended: Script
    read_session_board_page: Script
    read_session_board_around: Script
    read_question_results: Script
    swap_rebuilt_session_board: Script
    register_room_socket: Script


def session_board_scripts(client) -> SessionBoardScripts:
    """The session board's scripts registered on `client`, registered on first use."""
    return registered(SessionBoardScripts, client)


def session_board_script_source(name: str) -> str:
    return script_source(name, LIBRARY)


__all__ = ["APPLIED", "DUPLICATE", "NEEDS_REBUILD", "SessionBoardScripts", "session_board_scripts",
           "session_board_script_source"]
