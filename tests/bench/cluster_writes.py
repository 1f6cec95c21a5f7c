"""`make bench-cluster`: what synchronous replication costs a write on the cluster (`make up-cluster`
first). POST /answers and POST /scores, each for BENCH_CLUSTER_SECONDS (default 45), with Patroni's
`synchronous_mode` on (a commit waits for the synchronous standby), then off (the leader commits alone),
then on again, in one run on the same stack, so the machine's other load weighs on each phase alike.

BENCH_CLUSTER_COMPARE=pgbouncer compares instead the webs' way to the leader, synchronous_mode on: pg-lb
straight, then a pgbouncer of the bench's own in transaction mode in front of pg-lb
(tests/bench/pgbouncer.py; the webs then prepare no statement on the server), then pg-lb again. The
webs are started again for each phase; the relays and workers stay on pg-lb.

The stack is the bench's own, on the cluster's engines (as `make chaos-cluster` runs it,
tests/chaos/cluster.py): two webs behind an HAProxy of its own, two relays and two workers, database
`quiz_bench_cluster`, topics `test.bench-<run>.*` (deleted at the end), Redis keys of its prefix, limits
set out of the load's reach. The load is closed: BENCH_CLUSTER_CLIENTS (default 16) requests in flight.
Answers: one session of 64 players; each question opened, answered by every player at once, closed.
Scores: +1 on an `increment` board, each under a submission id of its own, for 64 players.
"""
from __future__ import annotations

import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app.core.config import load_config
from app.core.redis_client import make_redis
from scripts.stack.patroni import PG_NODES, node_host, patch_dynamic
from tests.bench.pgbouncer import pgbouncer, wait_answers
from tests.bench.support import env_int, tmpdir
from tests.chaos.cluster import ClusterStack
from tests.chaos.infra import fresh_database, release_slots
from tests.chaos.settings import chaos_config
from tests.cluster.engines import from_environment
from tests.helpers import Api, HttpClient, drop_prefix_keys, drop_run_topics, sample_questions, wait_until
from tests.live_stack import reaches_both

ROOT = Path(__file__).resolve().parents[2]
SECONDS = env_int("BENCH_CLUSTER_SECONDS", 45)
CLIENTS = env_int("BENCH_CLUSTER_CLIENTS", 16)
COMPARE = os.environ.get("BENCH_CLUSTER_COMPARE", "synchronous")
PLAYERS = 64
QUESTIONS = 100  # a quiz's most


@dataclass
class Phase:
    what: str
    synchronous: bool
    latencies_ms: list[float]
    busy_s: float
    via: str = "pg-lb"

    def row(self) -> str:
        lat = sorted(self.latencies_ms)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        mode = "on" if self.synchronous else "off"
        return (f"| {self.what:<13} | {mode:<16} | {self.via:<9} | {len(lat) / self.busy_s:7.1f}/s "
                f"| {statistics.median(lat):7.1f} ms | {p99:7.1f} ms | {len(lat):6d} |")


def config_of(run: str):
    base = load_config()
    prefix = f"test.bench-{run}."
    return chaos_config(run, base.redis_url, base.kafka_bootstrap_servers, base.redis_cluster_nodes).replace(
        database_url=base.database_url.rsplit("/", 1)[0] + "/quiz_bench_cluster",
        redis_key_prefix=f"{prefix}:", kafka_topic=prefix + "events", kafka_dlq_topic=prefix + "dlq",
        kafka_consumer_group=prefix + "cache-worker", score_topic=prefix + "scores",
        score_dlq_topic=prefix + "scores.dlq", score_consumer_group=prefix + "score-ingest",
        change_topic=prefix + "changes")


def set_synchronous(conninfo: str, on: bool) -> None:
    """Patroni's synchronous_mode (PATCH /config on the first node that answers), once the leader runs
    with it (synchronous_standby_names set, or empty)."""
    engines = from_environment()
    patch_dynamic([f"http://{node_host(name)}:{engines.postgres_port(name) + 1}" for name in PG_NODES],
                  {"synchronous_mode": on})  # each node's REST API listens beside its PostgreSQL

    def applied() -> bool:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            names = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
        return bool(names) == on

    wait_until(applied, f"synchronous_mode {on} not applied by the leader", timeout_s=120, every_s=1)


def timed(pool: ThreadPoolExecutor, calls) -> tuple[list[float], float]:
    """Each call's latency (ms), and the wall time of them all, run CLIENTS at a time."""
    def one(call) -> float:
        t0 = time.perf_counter()
        call()
        return (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    latencies = list(pool.map(one, calls))
    return latencies, time.perf_counter() - t0


def answers_phase(base_url: str, pool: ThreadPoolExecutor, synchronous: bool) -> Phase:
    api = Api(HttpClient(base_url))
    host = api.host()
    session = api.live_session(host, sample_questions(QUESTIONS, time_limit_s=240))["id"]
    players = list(pool.map(lambda _: api.join(session, api.guest()), range(PLAYERS)))
    clients = {p.user_id: Api(HttpClient(base_url)) for p in players}
    latencies, busy, deadline = [], 0.0, time.monotonic() + SECONDS
    for _ in range(QUESTIONS):
        if time.monotonic() > deadline:
            break
        question = api.post(f"/api/v1/sessions/{session}/questions/next", token=host.token,
                            expect=200).get_json()["question_id"]

        def answer(player, question=question):
            return lambda: clients[player.user_id].post(f"/api/v1/sessions/{session}/answers",
                                                        {"question_id": question, "choice": 0},
                                                        token=player.token, expect=201)

        took, wall = timed(pool, [answer(p) for p in players])
        latencies += took
        busy += wall
        api.post(f"/api/v1/sessions/{session}/questions/close", token=host.token)
    return Phase("POST /answers", synchronous, latencies, busy)


def scores_phase(base_url: str, pool: ThreadPoolExecutor, synchronous: bool) -> Phase:
    api = Api(HttpClient(base_url))
    owner = api.host()
    board = "b" + uuid.uuid4().hex[:12]
    api.post("/api/v1/leaderboards", {"id": board, "name": "Bench", "sort_order": "desc",
                                      "update_mode": "increment", "reset_period": "never"},
             token=owner.token, expect=201)
    clients = [Api(HttpClient(base_url)) for _ in range(CLIENTS)]
    deadline = time.monotonic() + SECONDS

    def client_loop(i: int) -> list[float]:
        took, n = [], 0
        while time.monotonic() < deadline:
            body = {"leaderboard_id": board, "player_id": f"player-{(i * 7 + n) % PLAYERS}", "score": 1,
                    "submission_id": str(uuid.uuid4())}
            t0 = time.perf_counter()
            clients[i].post("/api/v1/scores", body, token=owner.token, expect=201)
            took.append((time.perf_counter() - t0) * 1000)
            n += 1
        return took

    t0 = time.perf_counter()
    latencies = [ms for took in pool.map(client_loop, range(CLIENTS)) for ms in took]
    return Phase("POST /scores", synchronous, latencies, time.perf_counter() - t0)


def webs_via(stack: ClusterStack, env: dict[str, str]) -> None:
    """Both webs started again with `env` on top (their way to PostgreSQL), then answering through the
    balancer."""
    for name in stack.web_ports:
        stack.start(name, **env)
    reaches_both(stack.base_url, set(stack.web_ports))


def main() -> int:
    if COMPARE not in ("synchronous", "pgbouncer"):
        raise SystemExit(f"BENCH_CLUSTER_COMPARE is synchronous or pgbouncer, not {COMPARE!r}")
    os.chdir(ROOT)
    run = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
    config = config_of(run)
    conninfo = config.database_url.replace("postgresql+psycopg", "postgresql")
    fresh_database(config.database_url)
    from app.core.kafka import ensure_topics

    ensure_topics(config)
    stack = ClusterStack(config, tmpdir("livequiz-bench-cluster-"))
    phases: list[Phase] = []

    def measure(synchronous: bool, via: str) -> None:
        for phase in (answers_phase, scores_phase):
            phases.append(phase(stack.base_url, pool, synchronous))
            phases[-1].via = via
            print(phases[-1].row(), flush=True)

    try:
        for name in ("web-1", "web-2", "relay-1", "relay-2", "worker-1", "worker-2"):
            stack.start(name)
        stack.start_balancer()
        with ThreadPoolExecutor(CLIENTS) as pool:
            if COMPARE == "synchronous":
                for synchronous in (True, False, True):
                    set_synchronous(conninfo, synchronous)
                    measure(synchronous, "pg-lb")
            else:
                set_synchronous(conninfo, True)
                program, pooled_url = pgbouncer(config.database_url)
                stack.apps.supervisor.define(program)
                stack.apps.supervisor.start(program.name)
                wait_answers(pooled_url)
                direct = {"DATABASE_URL": config.database_url, "DATABASE_PREPARED_STATEMENTS": "1"}
                pooled = {"DATABASE_URL": pooled_url, "DATABASE_PREPARED_STATEMENTS": "0"}
                for via, env in (("pg-lb", direct), ("pgbouncer", pooled), ("pg-lb", direct)):
                    webs_via(stack, env)
                    measure(True, via)
    finally:
        set_synchronous(conninfo, True)
        stack.stop_all()
        release_slots(config.database_url)
        drop_run_topics(config, f"test.bench-{run}.")
        drop_prefix_keys(make_redis(config))
    print(f"\nPOST /answers and POST /scores on the cluster, {CLIENTS} in flight, {SECONDS} s a phase, "
          f"{os.cpu_count()} cores shared:")
    print("| request       | synchronous_mode | webs via  | rate      | p50        | p99        | count  |")
    print("|---------------|------------------|-----------|-----------|------------|------------|--------|")
    for phase in phases:
        print(phase.row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
