"""The Lua scripts, the rebuild and the worker's pipeline, unchanged, on a 3-node Redis Cluster; the
clients the processes build from REDIS_CLUSTER_NODES (scripts, boards, rate limits through them) and the
hub's per-shard reads of the room streams.

The worker's batch is one apply_batch call per session or board on the node of its slot (counted in
the nodes' command statistics). The cluster is started by this module on loopback ports in a temporary
directory and torn down at the end; Debian's redis-server and redis-cli are enough.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from itertools import zip_longest

import pytest
from redis.cluster import ClusterNode, RedisCluster
from sqlalchemy.orm import Session

from app.accounts.users import create_guest
from app.core.errors import TooManyRequests
from app.core.events import envelope_from_row
from app.core.redis_client import make_redis, node_of
from app.leaderboards.board.reads import LeaderboardReader, RankWaits
from app.leaderboards.board.verify import cached_boards, compare_period
from app.leaderboards.service.boards import create_board
from app.leaderboards.service.scores import submit_scores
from app.leaderboards.submissions import Authority, Submission
from app.quiz.board.keys import SessionKeys
from app.quiz.board.reads import read_page
from app.quiz.board.rebuild import rebuild_session_board
from app.quiz.board.verify import cached_sessions, compare_session_board
from app.web.ratelimits import Limit, RateLimits
from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub
from app.web.rooms.room import RoomReads
from app.web.runtime import Runtime
from cache_worker.process import projections
from cache_worker.worker import CacheWorker, _Pending
from tests.conftest import service_unreachable
from tests.events import EVENTS
from tests.helpers import wait_until
from tests.integration.leaderboard_support import Applier, board_events
from tests.integration.test_key_prefix import two_key_spaces
from tests.integration.test_leaderboard_order import _postgres, _redis
from tests.integration.test_session_board_scripts import exercise_scripts
from tests.integration.test_worker_batches import live_board
from tests.integration.worker_support import event_rows, pg_ranking, pg_scores, play

PORTS = (7101, 7102, 7103)


def _wait_for(check, what: str) -> None:
    wait_until(check, f"redis cluster: {what}", every_s=0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        service_unreachable("redis-server/redis-cli", FileNotFoundError("install the redis-server package"))
    root = tmp_path_factory.mktemp("redis-cluster")
    servers = []
    try:
        for port in PORTS:
            directory = root / str(port)
            directory.mkdir()
            servers.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--appendonly",
                 "no", "--save", "", "--dir", str(directory)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        for port in PORTS:
            _wait_for(lambda port=port:
                      subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                     text=True).stdout.strip() == "PONG",
                      f"port {port} did not answer")
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in PORTS), "--cluster-replicas",
             "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        _wait_for(lambda: "cluster_state:ok" in subprocess.run(
            ["redis-cli", "-p", str(PORTS[0]), "cluster", "info"], capture_output=True, text=True).stdout,
            "cluster_state never became ok")
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in PORTS])
        yield client
        client.close()
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def test_scripts_run_unchanged_on_a_cluster(cluster):
    exercise_scripts(cluster)


def test_rebuild_read_and_pipelined_apply_on_a_cluster(cluster, api, engine, config):
    sessions = [play(api, players=3, questions=2) for _ in range(3)]  # spread over several slots
    for session in sessions:
        sid = session["id"]
        rebuild_session_board(engine, cluster, sid)
        page = read_page(None, cluster, sid, 100, 0)
        assert [e["participant_id"] for e in page["entries"]] == pg_ranking(engine, sid)
        assert {e["participant_id"]: e["score"] for e in page["entries"]} == pg_scores(engine, sid)
        # ops verify: a transaction in the session's slot
        assert compare_session_board(engine, cluster, sid) == []
    assert {s["id"] for s in sessions} <= cached_sessions(cluster)  # SCAN over every node

    # The worker's pipelined batch across sessions, all duplicates of the rebuilt snapshots.
    worker = CacheWorker(config, consumer=None, producer=None, redis=cluster,
                         projections=projections(config, cluster, engine))
    rows = [row for s in sessions for row in event_rows(engine, s["id"])]
    pending = [_Pending(None, envelope_from_row(r), EVENTS.parse(envelope_from_row(r))) for r in rows]
    worker.apply_events(pending)
    assert worker.metrics.duplicates._value.get() == len(rows)
    cluster.flushall()  # this test's own cluster
    worker.apply_events(pending)  # boards missing: rebuilt, then every event is a duplicate
    for session in sessions:
        assert read_page(None, cluster, session["id"], 100, 0)["total_players"] == 3
        page = read_page(None, cluster, session["id"], 100, 0)
        assert {e["participant_id"]: e["score"] for e in page["entries"]} == pg_scores(engine, session["id"])


def _evalsha_calls() -> int:
    """EVALSHA calls this test's cluster ran since its statistics were reset, over every node."""
    total = 0
    for port in PORTS:
        stats = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True,
                               text=True).stdout
        total += sum(int(line.split("calls=")[1].split(",")[0]) for line in stats.splitlines()
                     if line.startswith("cmdstat_evalsha:"))
    return total


def test_a_batch_of_sessions_and_boards_is_one_call_per_aggregate_on_a_cluster(cluster, api, engine, config):
    sessions = [play(api, players=2, questions=1)["id"] for _ in range(4)]  # spread over several slots
    with Session(engine, expire_on_commit=False) as db:
        owner_id = create_guest(db, "cluster batch owner").id
    boards = []
    for _ in range(3):
        board_id = "c" + uuid.uuid4().hex[:14]
        create_board(engine, owner_id, {"id": board_id, "name": "cluster", "sort_order": "desc",
                                        "update_mode": "best", "reset_period": "never", "timezone": "UTC",
                                        "max_entries": None, "self_report_max": None, "metadata": None})
        submit_scores(engine, [Submission(board_id, p, v) for p, v in (("ann", 5), ("ben", 9), ("ann", 7))],
                      Authority(owner_id=owner_id))
        boards.append(board_id)
    for sid in sessions:
        live_board(cluster, engine, sid)
    streams = [event_rows(engine, sid) for sid in sessions] + [board_events(engine, b) for b in boards]
    mixed = [row for rows in zip_longest(*streams) for row in rows if row is not None]
    pending = [_Pending(None, envelope_from_row(r), EVENTS.parse(envelope_from_row(r))) for r in mixed]
    worker = CacheWorker(config, consumer=None, producer=None, redis=cluster,
                         projections=projections(config, cluster, engine))
    worker.apply_events(pending)  # the boards' periods are rebuilt on the way
    for sid in sessions:
        page = read_page(None, cluster, sid, 100, 0)
        assert {e["participant_id"]: e["score"] for e in page["entries"]} == pg_scores(engine, sid)
        assert [e["participant_id"] for e in page["entries"]] == pg_ranking(engine, sid)
    for board_id in boards:
        assert _redis(cluster, board_id) == _postgres(engine, board_id, "desc") == [("ben", 9), ("ann", 7)]

    # Delivered again: every aggregate's events go in one call on the node of its slot, all skipped.
    for port in PORTS:
        subprocess.run(["redis-cli", "-p", str(port), "config", "resetstat"], check=True, capture_output=True)
    again = CacheWorker(config, consumer=None, producer=None, redis=cluster,
                        projections=projections(config, cluster, engine))
    again.apply_events(pending)
    assert _evalsha_calls() == len(sessions) + len(boards)
    assert again.metrics.duplicates._value.get() == len(pending)


@pytest.fixture(scope="module")
def cluster_config(cluster, config):
    return config.replace(redis_cluster_nodes=",".join(f"127.0.0.1:{port}" for port in PORTS))


def test_every_process_builds_a_cluster_client_from_the_seed_nodes(cluster_config):
    assert isinstance(make_redis(cluster_config), RedisCluster)
    web = Runtime(cluster_config).redis  # the web process's, with its blocking pool
    assert isinstance(web, RedisCluster) and web.ping()  # what GET /health asks
    exercise_scripts(make_redis(cluster_config))  # the quiz sessions' apply and read scripts


def test_leaderboard_scripts_reads_and_verify_through_the_cluster_client(cluster_config, engine):
    client = make_redis(cluster_config)
    with Session(engine, expire_on_commit=False) as db:
        owner_id = create_guest(db, "cluster board owner").id
    boards, results = [], []
    for _ in range(4):  # spread over several slots
        board_id = "c" + uuid.uuid4().hex[:14]
        create_board(engine, owner_id, {"id": board_id, "name": "cluster", "sort_order": "desc",
                                        "update_mode": "best", "reset_period": "never", "timezone": "UTC",
                                        "max_entries": None, "self_report_max": None, "metadata": None})
        written = submit_scores(engine, [Submission(board_id, p, v)
                                         for p, v in (("ann", 5), ("ben", 9), ("ann", 7))],
                                Authority(owner_id=owner_id))
        boards.append(board_id)
        results.extend(written)
    applier = Applier(cluster_config, engine, client)
    for board_id in boards:
        applier.catch_up(board_id)
        assert _redis(client, board_id) == _postgres(engine, board_id, "desc") == [("ben", 9), ("ann", 7)]
        assert compare_period(engine, client, board_id, "all") == []
    assert set(boards) <= cached_boards(client)
    # A score write's rank, read for many writes at once: one pipeline per node.
    assert RankWaits(client).wait(results, 30) == [2, 1, 2] * len(boards)
    reader = LeaderboardReader(engine, client)
    assert [e["player_id"] for e in reader.page(boards[0], period=None, offset=0, limit=10)["entries"]] == [
        "ben", "ann"]


def test_rate_limits_count_in_the_cluster(cluster_config):
    limits = RateLimits(cluster_config.replace(rate_login_per_username="2/minute"),
                        make_redis(cluster_config))
    who = Limit("login_per_username", "cluster-" + uuid.uuid4().hex)
    limits.hit(who)
    limits.hit(who)
    with pytest.raises(TooManyRequests):  # a refusal, so the count reached Redis (failing open never refuses)
        limits.hit(who)
    other = Limit("login_per_username", "cluster-" + uuid.uuid4().hex)
    limits.hit(other)  # counted apart, in its own slot


def _blocked_reads(port: int) -> int:
    """Connections of this node blocked in an XREAD right now."""
    clients = subprocess.run(["redis-cli", "-p", str(port), "client", "list"], capture_output=True,
                             text=True).stdout.splitlines()
    return sum(1 for line in clients
               if " cmd=xread" in line and "b" in line.split(" flags=")[1].split(" ")[0])


def test_the_hub_reads_each_shard_with_one_blocking_read(cluster, cluster_config):
    client = make_redis(cluster_config)
    rooms: dict[str, list[uuid.UUID]] = {}  # node -> sessions whose room stream it owns
    while len(rooms) < len(PORTS) or min(len(r) for r in rooms.values()) < 2:
        session_id = uuid.uuid4()
        rooms.setdefault(node_of(client, SessionKeys.of(session_id).room), []).append(session_id)
    reads = RoomReads(top=lambda session_id, limit: {"version": 1, "total_players": 1, "entries": []},
                      question_results=lambda *args: {}, snapshot=lambda *args: ({}, {}))
    hub = RoomHub(client, reads, interval_s=0.05)
    sent: dict[uuid.UUID, list[str]] = {}
    connections = []
    try:
        for session_id in (s for sessions in rooms.values() for s in sessions):
            sent[session_id] = []
            connection = Connection(sent[session_id].append, session_id, participant_id=None, max_buffered=64,
                                    on_drop=lambda kind: None, on_sent=lambda kind: None, is_host=True)
            threading.Thread(target=connection.run_sender, daemon=True).start()
            hub.join(connection, hub.stream_tail(session_id))
            connections.append(connection)
        def shard_readers() -> list[str]:
            return sorted(t.name for t in threading.enumerate()
                          if t.name.startswith("room-streams-127.0.0.1:71"))

        wait_until(lambda: shard_readers() == sorted(f"room-streams-{node}" for node in rooms),
                   "one reader for each shard")

        for session_id in sent:  # written by another client, as the cache worker does
            cluster.xadd(SessionKeys.of(session_id).room,
                         {"type": "participant_joined", "nickname": str(session_id),
                          "participant_id": str(session_id), "player_count": 1})
        for session_id, messages in sent.items():
            wait_until(lambda session_id=session_id, messages=messages:
                       any(str(session_id) in m and "player_joined" in m for m in messages),
                       f"the notification of room {session_id}")

        # One blocking XREAD per shard, never one per room: sample each node while the readers wait.
        seen = {port: set() for port in PORTS}
        for _ in range(40):
            for port in PORTS:
                seen[port].add(_blocked_reads(port))
            time.sleep(0.02)
        assert all(counts <= {0, 1} and 1 in counts for counts in seen.values()), seen
    finally:
        hub.stop()
        for connection in connections:
            connection.close()


def test_two_key_prefixes_keep_apart_in_the_cluster(cluster_config, engine):
    """Database 0 is all a cluster has: what shares it is kept apart by REDIS_KEY_PREFIX alone."""
    two_key_spaces(cluster_config, engine)
