"""REDIS_KEY_PREFIX: two configurations that differ only in their prefix share one Redis database (as
two test runs, or a test run and a benchmark, share database 0 of a Redis Cluster) and see none of each
other's boards, tickets, rate limits or token revocations; the SCAN-based operator commands see their
own prefix only. `test_redis_cluster.py` runs `two_key_spaces` on a cluster as well."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from app.accounts.tokens import Principal
from app.accounts.users import create_guest, is_revoked, revoke_tokens
from app.core import redis_keys
from app.core.errors import TooManyRequests
from app.core.redis_client import make_redis
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.verify import cached_boards, compare_period
from app.leaderboards.service.boards import create_board
from app.leaderboards.service.scores import submit_scores
from app.leaderboards.submissions import Authority, Submission
from app.quiz.board.keys import SessionKeys
from app.quiz.board.verify import cached_sessions
from app.web import tickets
from app.web.ratelimits import Limit, RateLimits
from tests.integration.leaderboard_support import Applier


def two_key_spaces(config, engine) -> None:
    """Boards, tickets, rate limits and revocations written under one prefix are absent under the other,
    on the Redis (or cluster) of `config`; each SCAN finds its own prefix's boards only."""
    spaces = {name: config.replace(
        redis_key_prefix=f"{config.redis_key_prefix}{name}.{uuid.uuid4().hex[:6]}:",
        rate_login_per_username="2/minute") for name in ("a", "b")}
    a, b = spaces["a"], spaces["b"]
    with Session(engine, expire_on_commit=False) as db:
        owner = create_guest(db, "prefix owner")
    principal = Principal(user_id=owner.id, is_guest=True, issued_at_ms=1)
    board_id = "p" + uuid.uuid4().hex[:14]
    create_board(engine, owner.id, {"id": board_id, "name": "prefixed", "sort_order": "desc",
                                    "update_mode": "best", "reset_period": "never", "timezone": "UTC",
                                    "max_entries": None, "self_report_max": None, "metadata": None})
    submit_scores(engine, [Submission(board_id, "ann", 5)], Authority(owner_id=owner.id))
    session_id = str(uuid.uuid4())
    who = Limit("login_per_username", "prefix-" + uuid.uuid4().hex)

    with redis_keys.prefixed(a.redis_key_prefix):
        client = make_redis(a)
        assert redis_keys.prefix() == a.redis_key_prefix  # make_redis configures the process's prefix
        Applier(a, engine, client).catch_up(board_id)  # the worker's code path writes the board
        assert compare_period(engine, client, board_id, "all") == []
        client.hset(SessionKeys.of(session_id).meta, "version", 0)  # a session board's metadata
        ticket = tickets.issue(client, principal, uuid.UUID(session_id))
        limits_a = RateLimits(a, client)
        limits_a.hit(who)
        limits_a.hit(who)
        with pytest.raises(TooManyRequests):
            limits_a.hit(who)
        revoke_tokens(engine, client, owner.id)  # caches the logout under a's prefix
        a_keys = {k.decode() for k in client.scan_iter(match=redis_keys.pattern("*"), count=1000)}
        assert a_keys and all(k.startswith(a.redis_key_prefix) for k in a_keys)
        assert {LeaderboardKeys(board_id).cfg, SessionKeys.of(session_id).meta,
                LeaderboardKeys(board_id).period("all").z} <= a_keys
        assert any(k.startswith(f"{a.redis_key_prefix}rl:") for k in a_keys)  # the rate limits' counters
        assert f"{a.redis_key_prefix}tokens-valid-after:{owner.id}" in a_keys  # the logout's cache
        assert f"{a.redis_key_prefix}ws-ticket:{ticket}" in a_keys
        assert board_id in cached_boards(client) and session_id in cached_sessions(client)

    with redis_keys.prefixed(b.redis_key_prefix):
        client = make_redis(b)
        assert not client.exists(LeaderboardKeys(board_id).cfg, SessionKeys.of(session_id).meta)
        assert compare_period(engine, client, board_id, "all") is None  # not cached under b
        assert board_id not in cached_boards(client) and session_id not in cached_sessions(client)
        assert tickets.redeem(client, ticket, uuid.UUID(session_id)) is None  # a's ticket is not b's
        limits_b = RateLimits(b, client)
        limits_b.hit(who)  # b's budget is untouched by a's three hits
        limits_b.hit(who)
        assert is_revoked(engine, client, principal)  # from PostgreSQL, then cached under b too
        b_keys = {k.decode() for k in client.scan_iter(match=redis_keys.pattern("*"), count=1000)}
        assert b_keys and all(k.startswith(b.redis_key_prefix) for k in b_keys)  # b's SCAN: b's keys only
        assert client.exists(*a_keys) == len(a_keys)  # a's keys are all still there, beside b's

    # (the run's cleanup takes both: they start with its prefix)
    with redis_keys.prefixed(a.redis_key_prefix):
        client = make_redis(a)
        redeemed = tickets.redeem(client, ticket, uuid.UUID(session_id))  # still there: b did not spend it
        assert redeemed is not None and redeemed.user_id == owner.id


def test_two_prefixes_on_one_redis_database_keep_apart(config, engine, redis_client):
    two_key_spaces(config, engine)
    assert redis_keys.prefix() == config.redis_key_prefix  # the run's prefix is back
