"""The chaos run's plan on the cluster (tests/chaos/faults.py): the PostgreSQL leader among the faults,
spread over the load so a long recovery cannot push every failover past its end."""
from __future__ import annotations

import random

from tests.chaos.cluster import ClusterStore
from tests.chaos.faults import KINDS, Faults


def test_the_cluster_plan_kills_the_postgres_leader_once_per_100_s_spread_over_the_load():
    rng = random.Random(7)
    redis, kafka = ClusterStore(None, "redis", rng), ClusterStore(None, "kafka", rng)
    plan = Faults(None, redis, kafka, rng, postgres=object()).plan(300, per_kind=3)
    kinds = [kind for _, kind in plan]
    assert sorted(kinds) == sorted([*KINDS * 3, *["postgres"] * 3])  # no redis_wipe on the cluster
    at = [at_s for at_s, kind in plan if kind == "postgres"]
    assert at[0] == plan[0][0] and at[1] < 150 < at[2]


def test_without_the_cluster_postgres_is_not_in_the_plan():
    rng = random.Random(7)
    redis, kafka = ClusterStore(None, "redis", rng), ClusterStore(None, "kafka", rng)
    assert "postgres" not in [kind for _, kind in Faults(None, redis, kafka, rng).plan(300, per_kind=3)]
