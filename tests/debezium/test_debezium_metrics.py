"""Kafka Connect's metrics as the stack's Prometheus scrapes them (RELAY_MODE=debezium): the worker's JMX
exporter agent (scripts/stack/connect.py, rules scripts/prometheus/connect-jmx.yml) serves every series
of CONNECT_METRICS, which the alert rules read, with Debezium's streaming metrics moving as events pass."""
from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from outbox_relay import debezium
from scripts.stack.connect import CONNECT_METRICS
from tests.debezium.test_debezium_relay import insert_one, on_topic
from tests.helpers import wait_until


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The worker's /metrics: series name -> [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            series.setdefault(sample.name, []).append((sample.labels, sample.value))
    return series


def events_seen(port: int) -> dict[str, float]:
    """Debezium's events-seen counter by connector (its topic prefix)."""
    return {labels["server"]: value for labels, value in scrape(port)["debezium_streaming_events_seen_total"]}


def test_the_workers_exporter_serves_debeziums_streaming_metrics_and_connects_task_metrics(
        debezium_connect, relayed, engine):
    port = debezium_connect.config.connect_metrics_port
    server = f"{relayed.kafka_topic}.debezium"  # the connector's topic.prefix
    connector = debezium.connector_name(relayed)
    seen_before = events_seen(port)
    ids = [insert_one(engine) for _ in range(3)]
    on_topic(relayed, ids)

    def counted() -> bool:
        return events_seen(port).get(server, 0) >= seen_before.get(server, 0) + 3

    wait_until(counted, "Debezium's events-seen counter did not count the 3 events")
    series = scrape(port)
    missing = {name: labels for name, labels in CONNECT_METRICS.items()
               if not any(set(found) == labels for found, _ in series.get(name, []))}
    assert missing == {}, "series the alert rules read that the worker does not serve"
    mine = {name: [value for labels, value in samples
                   if labels.get("server") == server or labels.get("connector") == connector]
            for name, samples in series.items() if name in CONNECT_METRICS}
    assert mine["debezium_streaming_connected"] == [1.0]
    assert mine["kafka_connect_connector_running_task_count"] == [1.0]
    assert mine["kafka_connect_connector_failed_task_count"] == [0.0]
    assert mine["kafka_connect_source_record_write_total"][0] >= 3
    assert mine["kafka_connect_task_record_errors_total"] == [0.0]
    assert 0 <= mine["debezium_streaming_milliseconds_behind_source"][0]
    # Only what the rules keep (and the agent's JVM and process series): not Connect's ~400.
    assert not [name for name in series if name.startswith(("kafka_connect", "debezium"))
                and name not in CONNECT_METRICS]
