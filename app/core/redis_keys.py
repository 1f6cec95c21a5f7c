"""The one owner of REDIS_KEY_PREFIX: every Redis key the project reads or writes is built by `key`.

A Redis Cluster has only database 0, so what shares one Redis (the test suites, benchmarks, a second
deployment) is kept apart by a prefix of its keys, not by a database number. The prefix goes before
the whole name, so a key's hash tag stays intact and keeps its slot: `t1:room:{S}` hashes `{S}` as
`room:{S}` does. The Lua scripts never build a key name: each key they touch comes in KEYS, built here.

The prefix belongs to the process, like its one Redis: `configure(config)` sets it; `make_redis`
(app/core/redis_client.py), the builder of every process's client, and `create_app` call it, so a process
that can reach Redis uses its configuration's prefix. `key` and `pattern` read it when a name is built.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.core.config import Config, parse_key_prefix

_prefix = ""


def configure(config: Config) -> None:
    """Use `config`'s REDIS_KEY_PREFIX for every key built from now on in this process."""
    use_prefix(config.redis_key_prefix)


def use_prefix(prefix: str) -> None:
    # REDIS_KEY_PREFIX's own rule (raises on a brace or glob character)
    if parse_key_prefix(prefix) != prefix:
        raise ValueError(f"REDIS_KEY_PREFIX {prefix!r} has blanks around it")
    global _prefix
    _prefix = prefix


def prefix() -> str:
    """The prefix every key of this process starts with ('' when none is configured)."""
    return _prefix


def key(name: str) -> str:
    """The Redis key of `name` (`lb:{S}`, `ws-ticket:T`, ...) in this process's key space."""
    return _prefix + name


def pattern(name_pattern: str) -> str:
    """A SCAN MATCH pattern (`lbc:{b:*}`) limited to this process's keys (the prefix has no glob
    characters, so it matches itself only)."""
    return _prefix + name_pattern


def unprefixed(full_key: str | bytes) -> str:
    """The name of a key read back from Redis (a SCAN), without this process's prefix."""
    text = full_key.decode() if isinstance(full_key, bytes) else full_key
    return text[len(_prefix):] if text.startswith(_prefix) else text


@contextmanager
def prefixed(prefix_: str) -> Iterator[None]:
    """Build keys under another prefix for a while (tests that put two key spaces side by side)."""
    previous = _prefix
    use_prefix(prefix_)
    try:
        yield
    finally:
        use_prefix(previous)
