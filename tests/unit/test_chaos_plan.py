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


def test_a_failovers_republish_is_the_one_logged_since_it_whichever_relays_log_holds_it(tmp_path):
    """The chaos run on the cluster, 2026-12-07: failover 3's relay-1 logged 6 events, and the run took
    relay-2's earlier 88 for it (the logs' lines in file order, sliced by their count before)."""
    from types import SimpleNamespace

    from tests.chaos.cluster import ClusterPostgres

    line = "republished {} events of slot outbox_relay_quiz_chaos from transaction 1 on\n"
    (tmp_path / "relay-1.log").write_text(line.format(125))
    (tmp_path / "relay-2.log").write_text(line.format(88))
    postgres = ClusterPostgres(None, SimpleNamespace(relay_mode="wal", database_url="postgresql://x/y"),
                               tmp_path)
    before = postgres.republishes()
    assert postgres.republished_since(before) == []
    with (tmp_path / "relay-1.log").open("a") as log:
        log.write("an unrelated line\n" + line.format(6))
    assert postgres.republished_since(before) == [6]
