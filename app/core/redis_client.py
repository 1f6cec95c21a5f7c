"""The one builder of every process's Redis client: a Redis Cluster when REDIS_CLUSTER_NODES names seed
nodes, else the single Redis of REDIS_URL.

Every key the project writes carries its session or board as a hash tag (`{...}`), so each script,
transaction and multi-key command of one session or board stays in one slot and runs unchanged on a
cluster. What spans sessions or boards (the worker's batch, the hub's stream reads) groups its keys
by the node that owns their slot (`node_of`). The rate limits' `limits` storage builds its own client
from a URI; `rate_limit_storage` gives it the same nodes and shares the plain client's pool.
"""
from __future__ import annotations

from typing import Any

import redis
from limits.storage import RedisClusterStorage, RedisStorage
from redis.cluster import ClusterNode, RedisCluster

from app.core import redis_keys
from app.core.config import Config

Client = redis.Redis | RedisCluster


def cluster_nodes(config: Config) -> list[tuple[str, int]]:
    """The seed nodes of REDIS_CLUSTER_NODES as (host, port); empty when Redis is not a cluster."""
    nodes = []
    for item in config.redis_cluster_nodes.split(","):
        if item.strip():
            host, _, port = item.strip().rpartition(":")
            nodes.append((host, int(port)))
    return nodes


def make_redis(config: Config, *, max_connections: int | None = None, blocking: bool = False,
               socket_timeout: float | None = 5, socket_connect_timeout: float | None = 2) -> Client:
    """The process's Redis client. `max_connections` bounds the pool (per node on a cluster);
    `blocking` makes a caller wait for a free connection, up to 10 s, instead of failing. It also makes
    `config`'s REDIS_KEY_PREFIX the prefix of every key this process builds (app/core/redis_keys.py)."""
    redis_keys.configure(config)
    pool_options: dict[str, Any] = {}
    if max_connections is not None:
        pool_options["max_connections"] = max_connections
    if blocking:
        pool_options.update(connection_pool_class=redis.BlockingConnectionPool, timeout=10)
    nodes = cluster_nodes(config)
    if nodes:
        # Through a URL (the first seed), so each node's pool is built by `connection_pool_class`.
        (host, port), *others = nodes
        return RedisCluster(url=f"redis://{host}:{port}",
                            startup_nodes=[ClusterNode(h, p) for h, p in others],
                            socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
                            **pool_options)
    pool_class = pool_options.pop("connection_pool_class", redis.ConnectionPool)
    pool = pool_class.from_url(config.redis_url, socket_timeout=socket_timeout,
                               socket_connect_timeout=socket_connect_timeout, health_check_interval=30,
                               **pool_options)
    return redis.Redis(connection_pool=pool)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def node_client(client: Client, key: str) -> redis.Redis:
    """The plain client of the node that owns `key`'s slot (the client itself on a plain Redis): for
    pipelines of scripts, which redis-py's cluster pipeline refuses (EVALSHA)."""
    if not is_cluster(client):
        return client
    return client.get_redis_connection(client.get_node_from_key(key))


def node_of(client: Client, key: str) -> str | None:
    """The name (host:port) of the node that owns `key`'s slot; None on a plain Redis (one node)."""
    if not is_cluster(client):
        return None
    return client.get_node_from_key(key).name


def rate_limit_storage(config: Config, client: Client, key_prefix: str) -> RedisStorage:
    """The `limits` storage on the same Redis: the plain client's pool, or the same cluster nodes."""
    if is_cluster(client):
        nodes = ",".join(f"{host}:{port}" for host, port in cluster_nodes(config))
        return RedisClusterStorage(f"redis+cluster://{nodes}", key_prefix=key_prefix,
                                   socket_timeout=5, socket_connect_timeout=2)
    return RedisStorage(config.redis_url, connection_pool=client.connection_pool, key_prefix=key_prefix)
