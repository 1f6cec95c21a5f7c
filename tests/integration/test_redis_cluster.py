"""The Lua scripts, the rebuild and the worker's pipeline, unchanged, on a 3-node Redis Cluster.

The cluster is started by this module on loopback ports in a temporary directory and torn down
at the end; Debian's redis-server and redis-cli are enough.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from redis.cluster import ClusterNode, RedisCluster

from app.events import envelope_from_row
from app.session_boards.reads import read_page
from app.session_boards.rebuild import rebuild_board
from cache_worker.worker import CacheWorker, _Pending
from tests.conftest import service_unreachable
from tests.integration.test_session_board_scripts import exercise_scripts
from tests.integration.worker_support import event_rows, pg_ranking, pg_scores, play

PORTS = (7101, 7102, 7103)


def _wait_for(check, what: str, attempts: int = 100) -> None:
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"redis cluster: {what}")


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
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--appendonly", "no",
                 "--save", "", "--dir", str(directory)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        for port in PORTS:
            _wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                             text=True).stdout.strip() == "PONG", f"port {port} did not answer")
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in PORTS), "--cluster-replicas", "0",
             "--cluster-yes"], capture_output=True, text=True, timeout=60)
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
        rebuild_board(engine, cluster, sid)
        page = read_page(None, cluster, sid, 100, 0)
        assert [e["participant_id"] for e in page["entries"]] == pg_ranking(engine, sid)
        assert {e["participant_id"]: e["score"] for e in page["entries"]} == pg_scores(engine, sid)

    # The worker's pipelined batch across sessions, all duplicates of the rebuilt snapshots.
    worker = CacheWorker(config, consumer=None, producer=None, redis=cluster, engine=engine)
    rows = [row for s in sessions for row in event_rows(engine, s["id"])]
    pending = [_Pending(None, envelope_from_row(r), envelope_from_row(r).parsed_payload()) for r in rows]
    worker.apply_events(pending)
    assert worker.metrics.duplicates._value.get() == len(rows)
    cluster.flushall()  # this test's own cluster
    worker.apply_events(pending)  # boards missing: rebuilt, then every event is a duplicate
    for session in sessions:
        assert read_page(None, cluster, session["id"], 100, 0)["total_players"] == 3
        page = read_page(None, cluster, session["id"], 100, 0)
        assert {e["participant_id"]: e["score"] for e in page["entries"]} == pg_scores(engine, session["id"])
