"""The web's timers look for due questions and periods once per interval for a whole deployment
(app/web/timers.py `take_tick`): the first worker to ask in an interval does, the others skip it; when
Redis cannot say, every worker looks (a close happens once whatever the number of lookers)."""
from __future__ import annotations

import redis as redis_lib

from app.web import timers
from tests.helpers import free_port


def test_one_worker_of_a_deployment_takes_each_interval(config, redis_client):
    key = timers.tick_key(config)
    taken = [timers.take_tick(redis_client, key, 60.0) for _ in range(3)]  # three workers, one interval
    assert taken == [True, False, False]
    other = timers.tick_key(config.replace(database_url=config.database_url + "_other"))
    assert other != key
    assert timers.take_tick(redis_client, other, 60.0)  # another database is another deployment
    redis_client.delete(key, other)


def test_a_worker_looks_when_redis_cannot_say(config):
    unreachable = redis_lib.Redis(port=free_port(), socket_connect_timeout=1)
    assert timers.take_tick(unreachable, timers.tick_key(config), 60.0)
