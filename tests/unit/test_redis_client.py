"""Without REDIS_CLUSTER_NODES the one builder makes today's single-Redis client (the cluster's is
tested against a real cluster in tests/integration/test_redis_cluster.py)."""
from __future__ import annotations

import redis

from app.core.config import load_config
from app.core.redis_client import cluster_nodes, is_cluster, make_redis, node_of, rate_limit_storage


def test_the_seed_nodes_are_read_as_host_port_pairs():
    config = load_config({"REDIS_CLUSTER_NODES": "a:7000,10.0.0.2:7001"})
    assert cluster_nodes(config) == [("a", 7000), ("10.0.0.2", 7001)]
    assert cluster_nodes(load_config({})) == []


def test_without_seed_nodes_it_is_one_redis_from_redis_url_and_the_limits_share_its_pool():
    config = load_config({"REDIS_URL": "redis://example.invalid:6390/3"})
    client = make_redis(config, max_connections=7, blocking=True)
    assert type(client) is redis.Redis and not is_cluster(client)
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool) and pool.max_connections == 7
    assert (pool.connection_kwargs["host"], pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (
        "example.invalid", 6390, 3)
    assert node_of(client, "room:{s}") is None  # one node: every stream in one XREAD
    assert rate_limit_storage(config, client, "rl").storage.connection_pool is pool
