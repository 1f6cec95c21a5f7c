"""The PostgreSQL leader cut off from etcd, from its replicas and from pg-lb while it keeps running
(tests/cluster/partition.py: its own loopback address dropped by nftables), under load.

Patroni on the cut leader cannot renew its leader key: it demotes its PostgreSQL to a read-only
standby (no split brain: it no longer takes writes), the key expires and the synchronous standby takes
over; the cluster is then held to every check of tests/cluster/failover.py (nothing acknowledged lost or
doubled, events in Kafka, boards equal, the republish within its bound). When the cut ends, the old
leader rejoins the cluster as a replica of the new leader's timeline.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

from scripts.stack.patroni import node_host
from tests.cluster.failover import FAILOVER_S, fail_over
from tests.cluster.partition import cut_off
from tests.helpers import wait_until


def test_a_leader_cut_off_from_etcd_and_its_replicas_demotes_itself_and_rejoins_as_a_replica(
        stack, engine, redis_client, engines):
    demoted = {}

    @contextmanager
    def partitioned(leader: str, _standby: str):
        with cut_off(node_host(leader)):
            yield
            # Still cut off: its PostgreSQL (asked over its own socket) is a standby now, writes refused.
            demoted[leader] = wait_until(lambda: engines.in_recovery(leader),
                                         f"{leader} still runs as a primary while cut off",
                                         timeout_s=FAILOVER_S)

    result = fail_over(stack, engine, redis_client, engines, partitioned, "partition of the leader")
    assert demoted == {result.old: True}
    assert re.search(r"demot(ing|ed) self because DCS is not accessible and I was a leader",
                     engines.log_of(result.old))
    new = engines.postgres_members()[result.new]["timeline"]
    engines.wait_replica(result.old, new)
