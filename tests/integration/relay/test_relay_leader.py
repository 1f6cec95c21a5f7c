"""The relay when no PostgreSQL leader answers (pg-lb during a failover, with no node passing its check):
it backs off, says so once in its log and in `relay_leader_unavailable`, and carries on by itself once
a leader answers again."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests

from tests.helpers import free_port, wait_until
from tests.integration.relay.gate import Gate
from tests.integration.relay.support import RelayProcess, insert_events, relay_env, wait_published


def gauge(port: int) -> float | None:
    try:
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    found = re.search(r"^relay_leader_unavailable (\S+)$", body, re.M)
    return float(found.group(1)) if found else None


def test_a_relay_without_a_leader_backs_off_says_so_and_resumes_when_one_answers(relay_config, engine):
    url = urlsplit(relay_config.database_url)
    gate = Gate((url.hostname, url.port))
    metrics = free_port()
    database_url = url._replace(netloc=f"{url.netloc.rsplit('@', 1)[0]}@127.0.0.1:{gate.port}").geturl()
    relay = RelayProcess(relay_env(relay_config, DATABASE_URL=database_url, RELAY_METRICS_PORT=metrics))
    try:
        wait_until(lambda: gauge(metrics) == 1.0, "relay_leader_unavailable did not become 1")
        wait_until(lambda: relay.logged("no leader reachable"), "the relay did not log the missing leader")
        # It keeps trying (each try a connection the gate closes), backing off between tries.
        wait_until(lambda: gate.refused >= 3, "the relay did not retry")
        ids = insert_events(engine, 50)
        gate.open.set()
        wait_published(engine, ids, relay_config.relay_mode)
        wait_until(lambda: gauge(metrics) == 0.0, "relay_leader_unavailable did not come back to 0")
        assert relay.logged("PostgreSQL answers again")
        assert sum("no leader reachable" in line for line in relay.lines) == 1  # said once an outage
        # The leader goes away again while the relay runs: it says so again.
        gate.shut()
        wait_until(lambda: gauge(metrics) == 1.0, "relay_leader_unavailable did not become 1 again")
    finally:
        relay.kill_if_running()
        gate.close()
