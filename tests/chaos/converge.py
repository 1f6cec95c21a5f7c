"""After the load: end every session, then wait (bounded) until the system has caught up.

Caught up means: the outbox is empty (every committed event published), the cache worker's group
has committed every offset of the topic, and every session's board in Redis equals PostgreSQL.
Ending the sessions first closes every question, so no points are held in `pending:{S}` and a
board is comparable with the participants' scores. A session Redis does not cache (its board went
with the wiped Redis and no event touched it since) is read once through the API, whose read path
rebuilds it from PostgreSQL; then it is compared like the others.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from confluent_kafka import Consumer, KafkaException, TopicPartition
from sqlalchemy import text

from app.core.config import Config
from app.core.outbox import outbox_lag
from app.quiz.board.rebuild import UnknownSession
from app.quiz.board.verify import compare_session_board
from tests.chaos.hosts import Lane
from tests.chaos.settings import say
from tests.helpers import Api, HttpClient, wait_until

PROGRESS_S = 5.0


@dataclass
class State:
    unpublished: int = -1
    consumer_lag: int = -1
    sessions: int = 0
    equal: int = 0
    differences: dict[str, list] = field(default_factory=dict)
    read_to_rebuild: set[str] = field(default_factory=set)  # uncached boards read through the API

    @property
    def converged(self) -> bool:
        return self.unpublished == 0 and self.consumer_lag == 0 and self.equal == self.sessions


def end_all_sessions(engine, base_url: str, lanes: list[Lane]) -> int:
    """End, as their hosts, the sessions still live (a lost `create` may have left one in its lobby)."""
    tokens = {lane.host_id: lane.host_token for lane in lanes}
    api = Api(HttpClient(base_url))
    with engine.connect() as db:
        live = db.execute(text("SELECT id, host_id FROM quiz_sessions WHERE status <> 'ended'")).all()
    for session_id, host_id in live:
        path, token = f"/api/v1/sessions/{session_id}/end", tokens[str(host_id)]
        wait_until(lambda: _status(api.post, path, token) in (200, 409),  # noqa: B023 - called right here
                   f"session {session_id} could not be ended", every_s=0.5)
    return len(live)


def _status(method: Callable, path: str, token: str) -> int | None:
    try:
        return method(path, token=token).status_code
    except requests.RequestException:
        return None


def consumer_lag(consumer: Consumer, topic: str) -> int:
    """Messages of `topic` the worker's group has not committed yet (-1: the broker cannot tell now)."""
    try:
        numbers = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        partitions = [TopicPartition(topic, p) for p in numbers]
        total = 0
        for committed in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, committed.partition), timeout=10,
                                                     cached=False)
            total += high - max(committed.offset, 0)
        return total
    except KafkaException:
        return -1


def measure(config: Config, engine, redis, consumer: Consumer, api: Api, hosts: dict[str, str]) -> State:
    state = State()
    _, state.unpublished = outbox_lag(engine, config.relay_mode)
    state.consumer_lag = consumer_lag(consumer, config.kafka_topic)
    with engine.connect() as db:
        sessions = [(str(s), str(h)) for s, h in db.execute(text("SELECT id, host_id FROM quiz_sessions"))]
    state.sessions = len(sessions)
    for session_id, host_id in sessions:
        try:
            differences = compare_session_board(engine, redis, session_id)
        except UnknownSession:
            differences = ["unknown"]
        if differences is None:  # not cached: the read path rebuilds it
            _status(api.get, f"/api/v1/sessions/{session_id}/leaderboard", hosts[host_id])
            state.read_to_rebuild.add(session_id)
            differences = compare_session_board(engine, redis, session_id)
            if differences is None:
                differences = ["not cached, even after a read"]
        if differences:
            state.differences[session_id] = differences
        else:
            state.equal += 1
    return state


def converge(config: Config, engine, redis, base_url: str, lanes: list[Lane], bound_s: float,
             watch: Callable[[], None]) -> tuple[float | None, State]:
    """Seconds until everything caught up (None if it did not within `bound_s`) and the last state seen.
    `watch` restarts a process that exited on its own meanwhile (faults.py)."""
    consumer = Consumer({"bootstrap.servers": config.kafka_bootstrap_servers, "enable.auto.commit": False,
                         "group.id": config.kafka_consumer_group})  # only reads the group's offsets
    api = Api(HttpClient(base_url))
    hosts = {lane.host_id: lane.host_token for lane in lanes}
    started = next_word = time.monotonic()
    read_to_rebuild: set[str] = set()
    try:
        while True:
            watch()
            state = measure(config, engine, redis, consumer, api, hosts)
            read_to_rebuild |= state.read_to_rebuild
            state.read_to_rebuild = read_to_rebuild
            waited = time.monotonic() - started
            if state.converged:
                return waited, state
            if waited > bound_s:
                return None, state
            if time.monotonic() >= next_word:
                say(f"converging for {waited:.0f} s: {state.unpublished} events unpublished, consumer lag "
                    f"{state.consumer_lag}, boards equal {state.equal} of {state.sessions}")
                next_word += PROGRESS_S
            time.sleep(1.0)
    finally:
        consumer.close()
