"""The metrics endpoints of the running stack parse as Prometheus text and move with traffic.

The live stack runs its relay and worker without metrics ports; this module swaps them for the
same commands with RELAY_METRICS_PORT and WORKER_METRICS_PORT set (one relay and one worker at a
time: the relay elects a leader, and the worker's group splits partitions) and leaves them
running for the rest of the session, so the stack behaves as before. The web serves its metrics on
a port of its own (WEB_METRICS_PORT, from the gunicorn master), never on the public one. With
RELAY_MODE=debezium Kafka Connect publishes the round's events, and its JMX exporter counts them.
"""
from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT
from tests.e2e.room_client import SocketClient
from tests.helpers import (
    Api,
    HttpClient,
    free_port,
    sample_questions,
    single_node,
    stack_env,
    wait_until,
)

pytestmark = single_node("one relay, one worker and one web are scraped for the traffic; with two of each "
                         "the counts split between them")


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted labels: value}} of one scrape, through the Prometheus text parser."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for key, value in samples.get(name, {}).items() if wanted <= set(key))


def answers_http(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def metered_stack(live_stack):
    """The live stack with its relay and worker serving metrics on free ports."""
    ports = {"relay": free_port(), "worker": free_port()}
    for name in ports:
        live_stack.restart(name, RELAY_METRICS_PORT=str(ports["relay"]),
                           WORKER_METRICS_PORT=str(ports["worker"]))
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    for name, url in urls.items():
        wait_until(lambda name=name, url=url: live_stack.processes[name].poll() is None and answers_http(url),
                   f"the {name} did not serve {url}")
    urls["web"] = live_stack.metrics_url("web")
    for name, own in live_stack.connect.items():  # RELAY_MODE=debezium: Connect's JMX exporter
        urls[name] = f"http://127.0.0.1:{own.connect_metrics_port}/metrics"
    return live_stack, urls


class Round:
    """A session of two questions played over real HTTP, one question at a time."""

    def __init__(self, base_url: str, players: int):
        self.api = Api(HttpClient(base_url))
        self.host = self.api.host()
        self.questions = sample_questions(2, time_limit_s=120)
        self.session_id = self.api.live_session(self.host, self.questions)["id"]
        self.players = [self.api.join(self.session_id, self.api.guest()) for _ in range(players)]

    def play_question(self, position: int) -> None:
        question = self.api.next_question(self.session_id, self.host)
        for player in self.players:
            self.api.answer(self.session_id, player, question["question_id"],
                            self.questions[position]["correct_choice"])
        # Every player answered, so the server's timer may have closed it already: one close either way.
        closed = self.api.post(f"/api/v1/sessions/{self.session_id}/questions/close", token=self.host.token,
                               expect=None)
        assert closed.status_code == 200 or closed.get_json()["error"]["code"] == "no_open_question", \
            closed.get_json()


def test_metrics_endpoints_parse_and_move_with_traffic(metered_stack):
    stack, urls = metered_stack
    before = {name: scrape(url) for name, url in urls.items()}
    players = 3
    game = Round(stack.base_url, players)
    game.play_question(0)
    events = players + 1 + players + 1  # joins, question opened, answers, question closed

    web = scrape(urls["web"])
    answer_route = "/api/v1/sessions/<session_id>/answers"  # the URL rule, never the session's id
    assert total(web, "answers_accepted_total") - total(before["web"], "answers_accepted_total") == players
    assert (total(web, "events_written_total", event_type="participant_joined")
            - total(before["web"], "events_written_total", event_type="participant_joined")) == players
    assert (total(web, "events_written_total", event_type="answer_scored")
            - total(before["web"], "events_written_total", event_type="answer_scored")) == players
    assert (total(web, "http_requests_total", route=answer_route, status="201")
            - total(before["web"], "http_requests_total", route=answer_route, status="201")) == players
    assert total(web, "http_request_duration_seconds_count", route=answer_route) >= players
    assert "outbox_lag_seconds" in web and "outbox_unpublished_events" in web
    assert "ws_connections" in web

    def handled(samples) -> float:
        return total(samples, "worker_events_applied_total") + total(samples,
                                                                     "worker_duplicates_skipped_total")

    def moved(name: str, count, at_least: float, since):
        now = scrape(urls[name])
        return now if count(now) - count(since) >= at_least else None

    if stack.connect:
        # RELAY_MODE=debezium: Kafka Connect publishes, and counts the outbox rows Debezium read from its
        # slot; the relay process publishes nothing (it keeps the partitions and measures the backlog).
        wait_until(lambda: moved("connect", lambda m: total(m, "debezium_streaming_events_seen_total"),
                                 events, before["connect"]),
                   "Kafka Connect did not report the round's events read")
        relay = scrape(urls["relay"])
    else:
        relay = wait_until(lambda: moved("relay", lambda m: total(m, "relay_events_published_total"),
                                         events, before["relay"]),
                           "the relay did not report the round's events published")
        assert total(relay, "relay_batch_size_count") > total(before["relay"], "relay_batch_size_count")
    assert "relay_outbox_lag_seconds" in relay and "relay_unpublished_events" in relay
    # Each event is handled once: applied, or a duplicate of what a board rebuilt from PostgreSQL
    # already held (whichever path built the session's board first).
    first = wait_until(lambda: moved("worker", handled, events, before["worker"]),
                       "the worker did not report the round's events handled")
    assert "worker_board_rebuilds_total" in first and "worker_batch_retries_total" in first
    game.play_question(1)
    wait_until(lambda: moved("worker", lambda m: total(m, "worker_events_applied_total"), players + 2, first),
               "the worker did not report the second question's events applied")
    wait_until(lambda: scrape(urls["worker"]).get("worker_consumer_lag"),
               "the worker did not report its consumer lag")

    # The board the worker built agrees with PostgreSQL, through the operator's real entry point.
    verify = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "ops", "verify", "--session",
                             game.session_id], cwd=ROOT, env=stack_env(stack.config), capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_public_port_has_no_metrics_and_the_metrics_port_is_loopback_only(live_stack):
    public = requests.get(f"{live_stack.base_url}/metrics", timeout=10)
    assert public.status_code == 404 and public.json()["error"]["code"] == "not_found"
    port = int(live_stack.envs["web"]["WEB_METRICS_PORT"])
    master = psutil.Process(live_stack.processes["web"].pid)
    listening = [c.laddr for c in master.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    assert [address.ip for address in listening if address.port == port] == ["127.0.0.1"]
    # The workers hold the public port only: the metrics port is the master's.
    for worker in master.children():
        assert port not in {c.laddr.port for c in worker.net_connections("tcp")
                            if c.status == psutil.CONN_LISTEN}
    assert "http_requests_total" in scrape(live_stack.metrics_url("web"))


def test_the_web_metrics_add_up_every_worker_and_outlive_a_worker_restart(live_stack):
    """Requests land on either worker; the master's sum counts each one, and a worker killed and
    replaced neither takes its counts with it nor stops the endpoint."""
    url, route = live_stack.metrics_url("web"), "/healthz"
    master = psutil.Process(live_stack.processes["web"].pid)

    def served() -> float:
        return total(scrape(url), "http_requests_total", route=route, status="200")

    def send(count: int) -> None:
        for _ in range(count):
            assert requests.get(f"{live_stack.base_url}{route}", timeout=30).status_code == 200

    before = served()
    send(20)
    assert served() - before == 20
    workers = master.children()
    victim = workers[0]
    victim.kill()

    def replaced() -> bool:
        alive = [p for p in master.children() if p.status() != psutil.STATUS_ZOMBIE]
        return len(alive) >= len(workers) and victim.pid not in {p.pid for p in alive}

    wait_until(replaced, "the gunicorn master did not replace the killed worker", every_s=0.1)
    send(20)
    assert served() - before == 40


def test_graphql_sockets_are_counted_while_open_and_not_after(live_stack):
    """An anonymous graphql-transport-ws socket, acknowledged and closed by its client, leaves the
    open-sockets gauge where it found it (its close once raised before the count went down)."""
    url = live_stack.metrics_url("web")
    before = total(scrape(url), "ws_connections")
    sockets = [SocketClient(f"{live_stack.ws_url}/graphql", subprotocols=["graphql-transport-ws"])
               for _ in range(3)]
    for socket in sockets:
        socket.send({"type": "connection_init"})
        socket.wait_type("connection_ack")
    wait_until(lambda: total(scrape(url), "ws_connections") >= before + 3,
               "three open sockets were never counted")
    for socket in sockets:
        socket.close()
    wait_until(lambda: total(scrape(url), "ws_connections") <= before,
               "closed GraphQL sockets are still counted")
