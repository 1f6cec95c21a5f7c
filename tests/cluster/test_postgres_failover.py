"""The PostgreSQL leader of the cluster goes away under load (tests/cluster/failover.py holds the cluster to
the same checks after each): it dies (its Patroni and its PostgreSQL, SIGKILL), or hands over on purpose
(`patronictl switchover`). Patroni promotes the synchronous standby, pg-lb sends every connection to it,
the writes resume, and no acknowledged write is lost or doubled.

The crash goes through both modes of our relay at once: the run's stack (wal mode under `make test-cluster`)
and a stack beside it with the relay in the other mode (poll), on a database of its own (conftest.py's
`beside_stack`), each loaded and held to every check; the poll relay only reconnects.

Bounds come from the configuration the tier runs with (scripts/stack/patroni.py); a wait that runs out
fails the test. The time from the fault to the first write acknowledged through pg-lb is reported.
"""
from __future__ import annotations

from contextlib import contextmanager

from tests.cluster.failover import crash, fail_over


def test_the_postgres_leader_dies_the_synchronous_standby_takes_over_and_nothing_acknowledged_is_lost(
        stack, beside_stack, engine, redis_client, engines):
    fail_over(stack, engine, redis_client, engines, crash(engines), "leader crash", beside=[beside_stack])


def test_a_switchover_to_the_synchronous_standby_under_load_loses_and_doubles_nothing(
        stack, engine, redis_client, engines):
    @contextmanager
    def switched(leader: str, standby: str):
        engines.switchover(leader, standby)
        yield

    result = fail_over(stack, engine, redis_client, engines, switched, "switchover")
    # The old leader follows the new one (a clean shutdown: no rewind needed).
    new = engines.postgres_members()[result.new]["timeline"]
    engines.wait_replica(result.old, new)
