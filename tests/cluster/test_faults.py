"""One component of the clustered topology crashes (SIGKILL) while sessions are played; the other
instance, replica or broker carries on, and afterwards PostgreSQL, Kafka and Redis agree (audit.py).

Bounds come from the configuration the components run with; a wait that runs out fails the test.
"""
from __future__ import annotations

import os
import signal
import time

import psutil
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from app.core.db import application_name
from app.core.redis_client import node_of
from app.quiz.board.keys import SessionKeys
from app.quiz.board.rebuild import rebuild_session_board
from outbox_relay.relay import LEADER_LOCK_KEY
from tests.cluster.audit import (
    board_differences,
    in_kafka_in_order,
    recorded_once,
    wait_boards_equal,
    wait_caught_up,
    wait_published,
)
from tests.cluster.engines import Restoring
from tests.cluster.game import Game, playing
from tests.e2e.room_client import RoomClient
from tests.helpers import Api, HttpClient, wait_until
from tests.live_stack import upstream_of

# A standby relay retries the leader lock every RELAY_POLL_INTERVAL_S; PostgreSQL frees a dead leader's
# lock when its connection breaks. Generous for a loaded machine, still far below the hang bound.
TAKEOVER_POLLS = 30
# The workers' consumer session (app/core/kafka.py make_consumer: session.timeout.ms) and a rebalance.
GROUP_MOVE_S = 10 + 30
# librdkafka's request.timeout.ms (the relay's producer keeps the default, 30 s): no event waits longer
# than that to be published while a broker is down.
CLIENT_TIMEOUT_S = 30
# Redis Cluster's cluster-node-timeout (scripts/stack/cluster.py, 5 s) and the replica's election.
FAILOVER_S = 5 + 30
# HAProxy marks a web down after `fall 2` checks `inter 2s` (scripts/haproxy.cfg).
BALANCER_S = 2 * 2 + 30

_LEADER = text("""
    SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid::bigint = :key
      AND l.objsubid = 1 AND a.datname = current_database()""")


def kill(stack, name: str) -> None:
    os.killpg(stack.processes[name].pid, signal.SIGKILL)
    stack.processes[name].wait(30)


def leading_relay(stack, engine) -> str | None:
    """The relay whose PostgreSQL connection holds the leader lock, matched by the process its
    application_name names (through pg-lb, the connection's client port is HAProxy's)."""
    with engine.connect() as db:
        holder = db.execute(_LEADER, {"key": LEADER_LOCK_KEY}).scalar()
    if holder is None:
        return None
    for name in ("relay-1", "relay-2"):
        process = stack.processes[name]
        if process.poll() is None:
            children = psutil.Process(process.pid).children(recursive=True)
            tree = [process.pid] + [child.pid for child in children]
            if holder in {application_name(pid) for pid in tree}:
                return name
    return None


def progressed(games: list[Game], questions: int):
    """Waits until every game closed `questions` more questions than when it was called."""
    start = [game.played for game in games]
    last = min(len(game.questions) for game in games)
    wait_until(lambda: all(g.played >= min(s + questions, last) for g, s in zip(games, start)),
               f"the games did not play {questions} more questions")


def test_the_standby_relay_takes_over_from_a_dead_leader_and_keeps_each_sessions_order(stack, engine):
    games = [Game(stack.base_url) for _ in range(2)]
    with playing(games):
        progressed(games, 2)
        leader = wait_until(lambda: leading_relay(stack, engine), "no relay holds the leader lock")
        standby = ({"relay-1", "relay-2"} - {leader}).pop()
        kill(stack, leader)
        wait_until(lambda: leading_relay(stack, engine) == standby, f"{standby} did not take the lead",
                   timeout_s=TAKEOVER_POLLS * stack.config.relay_poll_interval_s)
        progressed(games, 3)
    rows = wait_published(engine, games, stack.config.relay_mode)
    in_kafka_in_order(stack.config, rows)
    for game in games:
        recorded_once(engine, game)


def group_members(config) -> dict[str, set[int]]:
    """The workers' group: each member's client id and the partitions of the topic assigned to it."""
    admin = AdminClient({"bootstrap.servers": config.kafka_bootstrap_servers})
    group_id = config.kafka_consumer_group
    group = admin.describe_consumer_groups([group_id])[group_id].result(10)
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions
                          if tp.topic == config.kafka_topic}
            for m in group.members}


def test_a_dead_workers_partitions_move_to_the_other_and_nothing_is_lost_or_doubled(stack, engine,
                                                                                    redis_client):
    config = stack.config
    everything = set(range(config.kafka_partitions))
    wait_until(lambda: len(group_members(config)) == 2, "the two workers did not both join their group")
    games = [Game(stack.base_url) for _ in range(2)]
    with playing(games):
        progressed(games, 2)
        kill(stack, "worker-1")
        moved = wait_until(lambda: (members := group_members(config)) and len(members) == 1
                           and set().union(*members.values()) == everything and members,
                           "the dead worker's partitions did not move to the other", timeout_s=GROUP_MOVE_S)
        assert list(moved.values()) == [everything]
        progressed(games, 3)
    wait_published(engine, games, stack.config.relay_mode)
    wait_caught_up(config)
    for game in games:
        recorded_once(engine, game)
        # Lost or doubled in Redis would show here: every counted answer on the board once.
        assert board_differences(engine, redis_client, game) == []


def partition_leaders(config) -> dict[int, int]:
    """Partition of the events topic -> the broker leading it."""
    admin = AdminClient({"bootstrap.servers": config.kafka_bootstrap_servers})
    topic = admin.list_topics(config.kafka_topic, timeout=10).topics[config.kafka_topic]
    return {p.id: p.leader for p in topic.partitions.values()}


def test_a_broker_dies_under_load_and_no_acknowledged_event_is_lost_or_kept_waiting(stack, engine,
                                                                                    redis_client,
                                                                                   engines):
    config = stack.config
    games = [Game(stack.base_url) for _ in range(3)]
    leaders = partition_leaders(config)
    # The broker leading the most partitions of the events topic: the relay and the workers both lose it.
    victim = max(set(leaders.values()), key=lambda broker: list(leaders.values()).count(broker))
    restoring = Restoring(engines)  # the broker starts again (reloading its logs) while the audit runs
    try:
        try:
            with playing(games):
                progressed(games, 2)
                killed_at = time.monotonic()
                engines.crash(engines.kafka_node(victim))
                wait_until(lambda: victim not in partition_leaders(config).values(),
                           f"broker {victim}'s partitions got no new leader")
                progressed(games, 3)
                outage_s = time.monotonic() - killed_at
        finally:
            restoring.start()
        rows = wait_published(engine, games, stack.config.relay_mode)
        found = in_kafka_in_order(config, rows)
        # Produced (the first copy's CreateTime) minus committed: how long an event waited, in either mode.
        longest = max(found[row.id][0].timestamp_ms / 1000 - row.created_at.timestamp() for row in rows)
        assert longest < CLIENT_TIMEOUT_S, (f"an event waited {longest:.1f} s to be published (outage of "
                                            f"{outage_s:.0f} s, client timeout {CLIENT_TIMEOUT_S} s)")
        wait_caught_up(config)
        for game in games:
            recorded_once(engine, game)
        wait_boards_equal(engine, redis_client, games)
    finally:
        restoring.wait()


def test_a_redis_master_dies_its_replica_takes_over_and_boards_equal_postgresql(stack, engine, redis_client,
                                                                                 engines):
    config = stack.config
    games = [Game(stack.base_url) for _ in range(2)]
    board = SessionKeys.of(games[0].session_id).board
    master = engines.redis_node(node_of(redis_client, board))
    try:
        with playing(games):
            progressed(games, 2)
            engines.crash(master)
            # A surviving node sees the slot served by another node: the replica was promoted.
            survivor = engines.redis("redis-1" if master != "redis-1" else "redis-2")
            wait_until(lambda: slot_owner(engines, survivor, board) not in (None, master)
                       and survivor.execute_command("CLUSTER INFO").get("cluster_state") == "ok",
                       f"no replica took over from {master}", timeout_s=FAILOVER_S)
            progressed(games, 3)
    finally:
        engines.restore()
    wait_published(engine, games, stack.config.relay_mode)
    wait_caught_up(config)
    rebuilt = []
    for game in games:
        recorded_once(engine, game)
        # A write the old master acknowledged but never passed on is lost with it: the board is rebuilt
        # from PostgreSQL, as an operator does after `ops verify` reports it.
        if board_differences(engine, redis_client, game):
            rebuild_session_board(engine, redis_client, game.session_id)
            rebuilt.append(game.session_id)
        assert board_differences(engine, redis_client, game) == []
    print(f"boards rebuilt after the failover: {len(rebuilt)} of {len(games)}")


def slot_owner(engines, node, key: str) -> str | None:
    """The node (`redis-N`) that `node`'s view of the cluster gives `key`'s slot to."""
    try:
        slot = node.execute_command("CLUSTER KEYSLOT", key)
        for start, end, (host, port, *_), *_ in node.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return engines.redis_node(f"{host.decode() if isinstance(host, bytes) else host}:{port}")
    except Exception:  # noqa: BLE001 - a node that cannot answer yet
        return None
    return None


def test_a_dead_web_leaves_the_balancer_sending_to_the_other_and_sockets_reconnect(stack):
    api = Api(HttpClient(stack.base_url))
    host = api.host()
    session = api.live_session(host)
    player = api.join(session["id"], api.guest())
    socket = RoomClient(stack.ws_url, session["id"], player.token)
    served_by = socket.ws.getheaders().get("x-upstream")
    assert served_by in ("web-1", "web-2"), socket.ws.getheaders()
    socket.wait_type("snapshot")
    other = ({"web-1", "web-2"} - {served_by}).pop()

    kill(stack, served_by)
    socket.wait_closed()  # the reader ends when the connection does (the dead web sent no close frame)
    assert not socket._reader.is_alive(), "the socket of the dead web stayed open"

    def only_other_answers() -> bool:
        answers = [upstream_of(f"{stack.base_url}/healthz") for _ in range(6)]
        return all(upstream == other for upstream in answers)

    wait_until(only_other_answers, f"the balancer kept sending requests to the dead {served_by}",
               timeout_s=BALANCER_S)
    api.get(f"/api/v1/sessions/{session['id']}/leaderboard", token=player.token, expect=200)
    again = RoomClient(stack.ws_url, session["id"], player.token)
    try:
        assert again.ws.getheaders().get("x-upstream") == other
        assert again.wait_type("snapshot")["you"]["participant_id"] == player.participant_id
    finally:
        again.close()
        socket.close()

