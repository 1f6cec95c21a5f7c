"""The wire format of the worker's batch call (app/core/lua.py pack_batch, read by lua/common_lib.lua
apply_batch)."""
from __future__ import annotations

import json

from app.core.lua import LUA_DIR, Call, pack_batch


def test_every_key_goes_once_and_each_event_names_its_key_set():
    period_a = ["cfg", "z:a", "e:a", "m:a", "r:a", "room"]
    period_b = ["cfg", "z:b", "e:b", "m:b", "r:b", "room"]
    keys, (sets, events) = pack_batch([
        Call("leaderboard_apply_entry", period_a, ["ann", 2, 1, 30, 5, "Ann", "a"]),
        Call("leaderboard_apply_config", ["cfg", "room"], [3, "desc", ""]),
        Call("leaderboard_apply_entry", period_b, ["bob", 1, 2, "", 0, "", "b"]),
        Call("leaderboard_apply_entry", period_a, ["ann", 3, 1, 35, 6, "Ann", "a"]),
    ])
    assert keys == ["cfg", "z:a", "e:a", "m:a", "r:a", "room", "z:b", "e:b", "m:b", "r:b"]
    positions = json.loads(sets)  # Lua counts from 1
    assert [[keys[p - 1] for p in positions[n - 1]] for n in (1, 2, 3)] == [
        period_a, ["cfg", "room"], period_b]
    assert json.loads(events) == [
        ["leaderboard_apply_entry", 1, "ann", 2, 1, 30, 5, "Ann", "a"],
        ["leaderboard_apply_config", 2, 3, "desc", ""],
        ["leaderboard_apply_entry", 3, "bob", 1, 2, "", 0, "", "b"],
        ["leaderboard_apply_entry", 1, "ann", 3, 1, 35, 6, "Ann", "a"]]


def test_text_travels_as_it_is():
    _, (_, events) = pack_batch([Call("apply_participant_joined", ["k"],
                                      ["e", "joined:p", "p", 'Zoë "ü" 🎉', 1])])
    assert '"Zoë \\"ü\\" 🎉"' in events  # UTF-8 as such (no \\u escapes); JSON's own escapes only
    assert json.loads(events)[0][5] == 'Zoë "ü" 🎉'


def test_each_script_named_in_a_batch_is_a_function_of_its_library():
    session_board_lib = (LUA_DIR / "session_board_lib.lua").read_text()
    leaderboard_lib = (LUA_DIR / "leaderboard_lib.lua").read_text()
    for name in ("apply_answer_scored", "apply_participant_joined", "apply_participant_removed",
                 "apply_question_opened", "apply_question_closed", "apply_session_ended"):
        assert f"function APPLY.{name}(keys, argv)" in session_board_lib
        assert f"return APPLY.{name}(KEYS, ARGV)" in (LUA_DIR / f"{name}.lua").read_text()
    for name in ("leaderboard_apply_entry", "leaderboard_apply_config", "leaderboard_apply_period",
                 "leaderboard_close_period"):
        assert f"function APPLY.{name}(keys, argv)" in leaderboard_lib
        assert f"return APPLY.{name}(KEYS, ARGV)" in (LUA_DIR / f"{name}.lua").read_text()
