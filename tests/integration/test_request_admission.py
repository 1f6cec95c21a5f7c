"""Admitting a signed-in request (app/web/api/core.py `RouteDoc.admit`, lua/rate_limits_admit.lua): the
address's budgets, the token's revocation and the user's budgets are one Redis round trip, and count
what the `limits` library's calls one at a time counted: in that order, each spent only by a request
that got past the ones before it, on the library's own keys."""
from __future__ import annotations

import threading
import uuid

import pytest

from app import create_app
from app.accounts.users import revoke_tokens
from app.web.extensions import RUNTIME
from tests.helpers import Api, single_node


@pytest.fixture()
def small(database, config):
    """Budgets small enough to reach; each test counts against addresses and users of its own."""
    return create_app(config.replace(rate_api_per_user="4/minute", rate_api_per_address="3/minute"))


def _address() -> dict[str, str]:
    return {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9"}


def _get(app, path: str, token: str, address: dict[str, str]) -> int:
    return app.test_client().get(path, headers={"Authorization": f"Bearer {token}"},
                                 environ_base=address).status_code


def _first_round_trip_held(redis, until, calls) -> int:
    """Run each of `calls` in a thread of its own, the first Redis connection taken held until `until()`
    returns (the round trip it carries stays in flight while the others queue); how many were taken."""
    pool, taken = redis.connection_pool, []
    get_connection = pool.get_connection

    def counted(*args, **kwargs):
        taken.append(1)
        if len(taken) == 1:
            until()
        return get_connection(*args, **kwargs)

    pool.get_connection = counted
    try:
        threads = [threading.Thread(target=call) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pool.get_connection = get_connection
    return len(taken)


def _setup(app) -> tuple[str, str, str]:
    """A player's token, their id and a session to read, made through `app` (the suite's budgets)."""
    api = Api(app.test_client())
    session = api.live_session(api.host())["id"]
    player = api.guest()
    return player.token, player.user_id, f"/api/v1/sessions/{session}"


@single_node("counts the checkouts of the Redis client's one pool; a RedisCluster keeps a pool per node")
def test_a_signed_in_request_is_admitted_in_one_redis_round_trip(app, api: Api, monkeypatch):
    host, player = api.host(), api.guest()
    path = f"/api/v1/sessions/{api.live_session(host)['id']}"
    api.get(path, token=player.token, expect=200)  # its token verified, its revocation instant cached
    pool = app.extensions[RUNTIME].redis.connection_pool
    taken, caller, get_connection = [], threading.get_ident(), pool.get_connection

    def counted(*args, **kwargs):
        if threading.get_ident() == caller:  # not a thread of the app's own
            taken.append(args)
        return get_connection(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counted)
    api.get(path, token=player.token, expect=200)
    assert len(taken) == 1


def test_a_users_budget_is_the_one_the_librarys_own_reads_see(app, small):
    token, user, path = _setup(app)
    budgets = small.extensions[RUNTIME].rate_limits
    assert budgets.strategy.test(budgets.items["api_per_user"], "api_per_user", user)
    assert [_get(small, path, token, _address()) for _ in range(5)] == [200, 200, 200, 200, 429]
    assert not budgets.strategy.test(budgets.items["api_per_user"], "api_per_user", user)


def test_a_request_its_address_refuses_spends_none_of_the_users_budget(app, small):
    token, _, path = _setup(app)
    crowded = _address()
    assert [_get(small, path, token, crowded) for _ in range(4)] == [200, 200, 200, 429]
    # The user spent 3 of 4 (the refused one counted against the address only): one more gets in.
    assert [_get(small, path, token, _address()) for _ in range(2)] == [200, 429]


def test_a_revoked_token_is_refused_at_once_and_spends_none_of_the_users_budget(app, small, engine,
                                                                               redis_client):
    token, user, path = _setup(app)
    assert _get(small, path, token, _address()) == 200  # verified and cached; 1 of 4 spent
    revoke_tokens(engine, redis_client, uuid.UUID(user))
    assert [_get(small, path, token, _address()) for _ in range(3)] == [401, 401, 401]
    budgets = small.extensions[RUNTIME].rate_limits
    assert budgets.strategy.get_window_stats(budgets.items["api_per_user"], "api_per_user",
                                             user).remaining == 3


def test_a_bad_token_is_refused_after_its_address_budget_is_spent(app, small):
    token, _, path = _setup(app)
    address = _address()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert [_get(small, path, forged, address) for _ in range(4)] == [401, 401, 401, 429]




@single_node("pipelines the calls on the one Redis; a cluster admits without the one-call script")
def test_admissions_made_while_a_round_trip_is_in_flight_share_the_next_one(app, config):
    """A request of a process waiting for a Redis round trip of its own pays for a send that wakes Redis:
    the admissions made while one is in flight go together in the next, each with its own outcome."""
    from app.accounts.users import revocation_key
    from app.web.ratelimits import Limit, RateLimits
    from tests.helpers import wait_until

    redis = app.extensions[RUNTIME].redis
    budgets = RateLimits(config, redis)
    users = [uuid.uuid4() for _ in range(8)]
    for n, user in enumerate(users):  # every other user signed out after their token was issued (at 1 ms)
        redis.set(revocation_key(user), 5 if n % 2 else 0, ex=60)
    outcomes = {}

    def admit(user: uuid.UUID) -> None:
        outcomes[user] = budgets.admit([Limit("api_per_address", _address()["REMOTE_ADDR"])],
                                       revocation_key(user), 1, [Limit("api_per_user", str(user))])

    taken = _first_round_trip_held(  # in flight until every other admission waits
        redis, lambda: wait_until(lambda: budgets._admissions.waiting() == 7, "the other admissions wait"),
        [lambda user=user: admit(user) for user in users])
    assert taken == 2  # the first alone, then the seven made meanwhile
    replies = [(outcomes[user].stopped, int(outcomes[user].instant)) for user in users]
    assert replies == [(False, 0), (True, 5)] * 4  # each call its own reply


@single_node("pipelines the calls on the one Redis")
def test_calls_of_a_shared_round_trip_that_redis_lost_the_script_of_are_sent_again(app):
    """After a restart Redis has no scripts: a pipeline's EVALSHA calls come back NOSCRIPT, and each
    caller still gets its own reply (the script is loaded, those calls sent again)."""
    from app.core.lua import SharedRoundTrips
    from tests.helpers import wait_until

    redis = app.extensions[RUNTIME].redis
    echo = redis.register_script("return ARGV[1]")
    shared = SharedRoundTrips(echo, redis)
    replies = {}

    def lose_the_script() -> None:  # while the first call is in flight, the others queue
        wait_until(lambda: shared.waiting() == 3, "the other calls wait for their turn")
        echo.sha = "0" * 40

    def call(n: int) -> None:
        replies[n] = shared([], [f"reply {n}"])

    _first_round_trip_held(redis, lose_the_script, [lambda n=n: call(n) for n in range(4)])
    assert replies == {n: f"reply {n}".encode() for n in range(4)}
    assert echo.sha != "0" * 40


@single_node("pipelines the calls on the one Redis")
def test_a_call_that_stops_waiting_for_its_turn_keeps_no_one_else_from_theirs(app, monkeypatch):
    """A request whose greenlet is killed while its admission waits for the round trip in flight leaves
    the queue: the turn it would have been handed goes to the next call, which still gets its reply."""
    from app.core import lua
    from tests.helpers import wait_until

    class Killed(BaseException):
        pass

    class KilledWhileWaiting(threading.Event):
        def wait(self, timeout=None):
            raise Killed

    waiting_init = lua._Waiting.__init__

    def init(self, keys, args):
        waiting_init(self, keys, args)
        if args == ["killed"]:
            self.ready = KilledWhileWaiting()

    monkeypatch.setattr(lua._Waiting, "__init__", init)
    redis = app.extensions[RUNTIME].redis
    shared = lua.SharedRoundTrips(redis.register_script("return ARGV[1]"), redis)
    pool, outcomes, killed_gone = redis.connection_pool, {}, threading.Event()
    get_connection, taken = pool.get_connection, []

    def counted(*args, **kwargs):
        taken.append(1)
        if len(taken) == 1:  # the first call is in flight until the killed one left and the last waits
            wait_until(lambda: killed_gone.is_set() and shared.waiting() >= 1, "the last call waits")
        return get_connection(*args, **kwargs)

    def call(name: str) -> None:
        try:
            outcomes[name] = shared([], [name])
        except Killed:
            outcomes[name] = "killed"
            killed_gone.set()

    pool.get_connection = counted
    try:
        first = threading.Thread(target=call, args=("first",), daemon=True)
        first.start()
        wait_until(lambda: taken, "the first call is in flight")
        call("killed")
        last = threading.Thread(target=call, args=("last",), daemon=True)
        last.start()
        for thread in (first, last):
            thread.join(10)
    finally:
        pool.get_connection = get_connection
    assert outcomes == {"first": b"first", "killed": "killed", "last": b"last"}
