"""Kafka Connect relays (RELAY_MODE=debezium) on the cluster: the stack's two distributed Connect workers
(tests/live_stack.py, as `make up-cluster` runs them) share one group, and the outbox connector's one task
runs on one of them. That worker is killed (SIGKILL: no offset commit, no slot confirmation) while
sessions are played and scores written through the balancer; the group gives the task to the other,
which resumes from the offsets last committed to the group's offset topic (and Debezium's slot).

Debezium's guarantee here is at least once: what the dead worker had produced since its last offset
commit is published again, with the same event ids. The test counts those copies (the run's summary
prints them) and holds the consumers to absorbing them: every acknowledged answer and score is in
PostgreSQL once, every event is on Kafka (each session's first copies in order), and every board in
Redis equals PostgreSQL.

`make test-cluster` runs this module on its own with RELAY_MODE=debezium (scripts/stack/cluster_runs.py).
"""
from __future__ import annotations

import pytest

from app.core.config import load_config
from outbox_relay import debezium
from scripts.stack.connect import REBALANCE_DELAY_MS
from tests.cluster.failover import REPORT, Scorer, nothing_lost_or_doubled
from tests.cluster.game import Game, playing
from tests.helpers import WAIT_S, wait_until

if load_config().relay_mode != "debezium":
    pytest.fail("tests/cluster/test_connect_failover.py runs with RELAY_MODE=debezium (make test-cluster "
                "runs it so)", pytrace=False)

# The group notices the dead worker after Connect's session timeout (session.timeout.ms, 10 s), waits
# REBALANCE_DELAY_MS for it to come back, then starts the task on the other; room for a loaded machine.
MOVE_S = 10 + REBALANCE_DELAY_MS / 1000 + 60


def running_on(config) -> str | None:
    """The worker id (host:port) running the connector's task, as the worker of `config` reports it."""
    try:
        status = debezium.connector_status(config)
    except OSError:
        return None
    running = [task["worker_id"] for task in (status or {}).get("tasks", []) if task["state"] == "RUNNING"]
    return running[0] if running else None


def test_a_killed_connect_workers_task_moves_to_the_other_and_nothing_is_lost_or_doubled(
        stack, engine, redis_client):
    workers = stack.connect
    assert sorted(workers) == ["connect-1", "connect-2"], "the stack runs no distributed Connect workers"
    names = {f"127.0.0.1:{config.connect_port}": name for name, config in workers.items()}
    first = wait_until(lambda: running_on(workers["connect-1"]), "the connector's task runs on no worker")
    victim = names[first]
    survivor = next(name for name in workers if name != victim)
    survivor_id = f"127.0.0.1:{workers[survivor].connect_port}"
    scorer = Scorer(stack.base_url)
    # Games in play when the worker dies, and games played once its task runs on the other (a game of
    # 40 questions lasts about as long as the move: the first ones may be over by then).
    games, later = [Game(stack.base_url) for _ in range(2)], [Game(stack.base_url) for _ in range(2)]
    scorer.thread.start()
    try:
        with playing(games):
            wait_until(lambda: all(g.played >= 2 for g in games) and len(scorer.acknowledged) >= 5,
                       "the games did not play 2 questions, or 5 scores were not acknowledged")
            stack.stack.kill(victim)
            wait_until(lambda: running_on(workers[survivor]) == survivor_id,
                       f"the task did not move from {victim} to {survivor}", timeout_s=MOVE_S)
            scored = len(scorer.acknowledged)
            with playing(later):
                wait_until(lambda: all(g.played >= 5 for g in later)
                           and len(scorer.acknowledged) >= scored + 5,
                           "the later games did not play 5 questions, or 5 more scores were not "
                           "acknowledged, after the task moved")
    finally:
        scorer.stop.set()
        scorer.thread.join(WAIT_S)
        stack.stack.supervisor.start(victim)  # it joins the group again, the task stays where it runs
    if scorer.error is not None:
        raise scorer.error
    games += later
    rows, found = nothing_lost_or_doubled(stack, engine, redis_client, games, scorer, "debezium")
    copies = sum(len(found[row.id]) - 1 for row in rows)
    REPORT.append(f"Connect worker {victim} killed, its task moved to {survivor}: {len(rows)} events, "
                  f"{copies} published again (at least once), none lost; "
                  f"{len(scorer.acknowledged)} scores and every answer recorded once")
    print(REPORT[-1])
