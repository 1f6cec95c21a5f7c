"""Under `make up`, a process that dies comes back without anyone running anything: its supervisor
(scripts/stack, Policy APP) starts it again.

The four app processes run here as `make up` runs them (scripts/stack's programs and Policy APP), on a
supervisor of this module's own, with a database, topics and metrics ports of its own: the session's
live stack and `make test`'s services are untouched. Each test SIGKILLs one process (the web: its
gunicorn master) and waits for the state that says it is back: a new pid answering /healthz, or
consuming (the relay publishing the outbox, the worker and the ingest reporting their partitions' lag).
"""

from __future__ import annotations

from collections import defaultdict

import psutil
import pytest
import requests
from alembic import command
from prometheus_client.parser import text_string_to_metric_families

from app.core.kafka import ensure_topics
from scripts.stack.programs import APPS, AppStack
from scripts.stack.supervisor import APP
from tests.conftest import alembic_config, drop_replication_slots, recreate_database
from tests.e2e.room_client import RoomClient
from tests.helpers import Api, HttpClient, beside, free_port, stack_env, wait_until


def metrics(port: int) -> dict[str, float]:
    """{sample name: sum of its values} of one scrape; empty while nothing answers."""
    try:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except requests.RequestException:
        return {}
    samples: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name] += sample.value
    return samples


@pytest.fixture(scope="module")
def supervised(kafka_topics, redis_client, tmp_path_factory):
    config = beside(
        kafka_topics, "sup",
        # Our relay's, whatever RELAY_MODE the run has: under RELAY_MODE=debezium the relay process
        # publishes nothing (Kafka Connect does, an engine of `make up`, not one of the four app processes
        # this supervisor restarts), so nothing would show it back at work after its restart.
        relay_mode="wal" if kafka_topics.relay_mode == "debezium" else kafka_topics.relay_mode,
    )
    recreate_database(config.database_url)  # its relay leads on a database of its own
    command.upgrade(alembic_config(config.database_url), "head")
    ensure_topics(config)
    ports = {name: free_port() for name in ("web", "web_metrics", "relay", "worker", "ingest")}
    env = stack_env(
        config,
        WEB_PORT=str(ports["web"]),
        WEB_WORKERS="1",
        WEB_METRICS_PORT=str(ports["web_metrics"]),
        RELAY_METRICS_PORT=str(ports["relay"]),
        WORKER_METRICS_PORT=str(ports["worker"]),
        INGEST_METRICS_PORT=str(ports["ingest"]),
    )
    stack = AppStack(tmp_path_factory.mktemp("supervised"), env, APP)
    try:
        for name in APPS:
            stack.start(name)
        yield stack, ports
    finally:
        stack.close()
        drop_replication_slots(config.database_url)  # the relay's: it would keep the server's WAL


def consuming(name: str, ports: dict[str, int]) -> bool:
    """The process of `name` does its job: the web answers, the consumers report their partitions' lag,
    the relay has published the outbox's events (one is written first)."""
    if name == "web":
        try:
            return requests.get(f"http://127.0.0.1:{ports['web']}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False
    if name == "relay":
        return metrics(ports["relay"]).get("relay_events_published_total", 0) > 0
    return f"{name}_consumer_lag" in metrics(ports[name])


def an_event(ports: dict[str, int]) -> None:
    """Events in the outbox (a player joins), for the relay to publish; a request that gets no answer is
    made again (any of the events will do)."""
    api = Api(HttpClient(f"http://127.0.0.1:{ports['web']}"))

    def written() -> bool:
        try:
            api.join(api.live_session(api.host())["id"], api.guest())
        except requests.ConnectionError:
            return False
        return True

    wait_until(written, "no event could be written through the web")


@pytest.mark.parametrize("name", APPS)
def test_a_killed_process_is_started_again_by_its_supervisor(supervised, name):
    stack, ports = supervised
    if name == "relay":
        an_event(ports)
    wait_until(lambda: consuming(name, ports), f"{name} did not get to work before the kill")
    exits = stack.supervisor.exits().get(name, 0)

    killed = stack.kill(name)  # SIGKILL of the process itself (the web: its gunicorn master)

    # Back: a new pid that its supervisor counts as started (up for Policy APP's start_s), at work.
    wait_until(
        lambda: stack.supervisor.state(name) == "RUNNING" and stack.process(name).pid not in (0, killed),
        f"{name} was not started again after a SIGKILL",
    )
    if name == "relay":  # the new relay has published nothing yet
        an_event(ports)
    wait_until(lambda: consuming(name, ports), f"{name} did not get back to work after its restart")
    assert stack.supervisor.exits()[name] == exits + 1  # what `make ps` shows under RESTARTS


def listening(port: int) -> set[int]:
    """The processes holding a listening socket on 127.0.0.1:`port`."""
    return {conn.pid for conn in psutil.net_connections("tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid}


def test_a_killed_web_master_leaves_its_port_to_the_web_started_again(supervised):
    """A SIGKILLed gunicorn master (the OOM killer's way) leaves its workers behind; they let go of the
    public port at once, so the web its supervisor starts again binds on its first start and serves by
    itself: no second exit, and nobody but the new master's processes listens on the port. A client's
    connection is open on an old worker at the kill, as a player's socket would be."""
    stack, ports = supervised
    wait_until(lambda: consuming("web", ports), "the web did not answer before the kill")
    master = stack.process("web").pid
    old_workers = {child.pid for child in psutil.Process(master).children()}
    api = Api(HttpClient(f"http://127.0.0.1:{ports['web']}"))
    host = api.host()
    room = api.live_session(host)["id"]
    held = RoomClient(f"ws://127.0.0.1:{ports['web']}", room, api.join(room, api.guest()).token)
    held.wait_for(lambda message: message["type"] == "snapshot")  # a player's socket, open on an old worker
    exits = stack.supervisor.exits().get("web", 0)
    try:
        killed = stack.kill("web")

        def served_by_the_new_master() -> bool:
            pid = stack.process("web").pid
            if stack.supervisor.state("web") != "RUNNING" or pid in (0, killed):
                return False
            try:
                family = {pid} | {child.pid for child in psutil.Process(pid).children()}
            except psutil.NoSuchProcess:
                return False
            holders = listening(ports["web"])
            return bool(holders) and holders <= family and consuming("web", ports)

        wait_until(served_by_the_new_master, "the web started again did not take its port back")
    finally:
        held.ws.close()
    assert not listening(ports["web"]) & old_workers
    # The new master serves: had its first start found the port held, it would have exited, and the
    # supervisor would count a second exit.
    assert stack.supervisor.exits()["web"] == exits + 1
