"""Low-load latency against a running stack (`make up`): `.venv/bin/python -m tests.bench.probe_low_load [N]`.

Answers one question with N players, one at a time (plus one warm-up answer), and times, from each 201,
the answer's event appearing on Kafka and the leaderboard endpoint showing the new score.
"""
from __future__ import annotations

import sys
import time
import uuid

from confluent_kafka import Consumer

from app.core.config import load_config
from tests.helpers import Api, HttpClient, sample_questions


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(answers: int = 30) -> None:
    config = load_config()
    api = Api(HttpClient(f"http://{config.web_host}:{config.web_port}"))
    host = api.host()
    session_id = api.live_session(host, sample_questions(1, time_limit_s=240))["id"]
    players = [api.join(session_id, api.guest()) for _ in range(answers + 1)]
    question = api.next_question(session_id, host)
    consumer = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers,
                         "group.id": f"probe-{uuid.uuid4()}", "auto.offset.reset": "latest"})
    consumer.subscribe([config.kafka_topic])
    while not consumer.assignment():
        consumer.poll(0.2)
    on_kafka, on_board = [], []
    for player in players:
        answer_id = api.answer(session_id, player, question["question_id"], 0).get_json()["answer_id"]
        acknowledged = time.perf_counter()
        deadline = acknowledged + 10
        while time.perf_counter() < deadline:
            message = consumer.poll(1)
            if message is not None and not message.error() and answer_id.encode() in message.value():
                on_kafka.append((time.perf_counter() - acknowledged) * 1000)
                break
        while time.perf_counter() < deadline:
            board = api.get(f"/api/v1/sessions/{session_id}/leaderboard", token=host.token,
                            limit=100).get_json()
            if any(e["participant_id"] == player.participant_id and e["score"] > 0 for e in board["entries"]):
                on_board.append((time.perf_counter() - acknowledged) * 1000)
                break
    consumer.close()
    # The first answer also waits for the probe's own consumer to start fetching: not the system's time.
    on_kafka, on_board = on_kafka[1:], on_board[1:]
    for name, values in (("201 -> event on Kafka", on_kafka), ("201 -> leaderboard shows it", on_board)):
        print(f"{name}: p50 {percentile(values, 0.5):.1f} ms, max {max(values):.1f} ms (n={len(values)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
