"""REDIS_KEY_PREFIX: its one owner (app/core/redis_keys.py), what the setting accepts, and the key names."""
from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from app.accounts import users
from app.core import redis_keys
from app.core.config import ConfigError, load_config
from app.leaderboards.board.keys import LeaderboardKeys
from app.quiz.board.keys import SessionKeys
from app.web import tickets
from app.web.ratelimits import KEY_PREFIX


def test_the_prefix_is_empty_by_default_and_refuses_braces_and_glob_characters():
    assert load_config({}).redis_key_prefix == ""
    assert load_config({"REDIS_KEY_PREFIX": "test.1a2b:"}).redis_key_prefix == "test.1a2b:"
    for bad in ("a{b}:", "t*", "t?", "t[1]", "a b"):
        with pytest.raises(ConfigError, match="REDIS_KEY_PREFIX"):
            load_config({"REDIS_KEY_PREFIX": bad})
        with pytest.raises(ValueError):
            redis_keys.use_prefix(bad)


def test_prefixed_sets_the_process_prefix_for_a_while_and_restores_it():
    before = redis_keys.prefix()
    with redis_keys.prefixed("x1:"):
        assert redis_keys.key("lb:{s}") == "x1:lb:{s}"
        assert redis_keys.pattern("lbc:{b:*}") == "x1:lbc:{b:*}"
        assert redis_keys.unprefixed(b"x1:lbc:{b:q}") == "lbc:{b:q}"
    assert redis_keys.prefix() == before


def test_every_key_builder_starts_with_the_prefix_and_keeps_the_hash_tag_slot():
    session_id, board_id = str(uuid.uuid4()), "b" + uuid.uuid4().hex[:8]
    with redis_keys.prefixed("t123:"):
        session, board = SessionKeys.of(session_id), LeaderboardKeys(board_id)
        period = board.period("all")
        named = [*session.apply_keys, session.sockets("u"), *session.rebuilding("x"), board.cfg,
                 board.periods, board.room, *period.apply_keys, *period.all, *period.rebuilding("x")]
        assert all(name.startswith("t123:") for name in named)
        assert {key_slot(name.encode()) for name in named[:len(session.apply_keys) + 4]} == {
            key_slot(f"room:{{{session_id}}}".encode())}
        assert {key_slot(name.encode()) for name in named[len(session.apply_keys) + 4:]} == {
            key_slot(f"lbc:{{b:{board_id}}}".encode())}
        assert tickets._key("T") == "t123:ws-ticket:T"
        assert users.revocation_key(uuid.UUID(int=1)).startswith("t123:tokens-valid-after:")
        assert redis_keys.key(KEY_PREFIX) == "t123:rl"  # the rate limits' storage prefix
