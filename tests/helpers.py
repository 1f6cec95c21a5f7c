"""A small client for the HTTP API, shared by the integration and end-to-end tests."""
from __future__ import annotations

import os
import socket
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

T = TypeVar("T")

# How long a test waits for a state before it fails: a bound against hanging on a shared, busy
# machine, never a timing assertion. Tests wait on states, not on the machine's speed.
WAIT_S = float(os.environ.get("TEST_WAIT_S", "90"))

# `make test-cluster` (scripts/stack/cluster.py): the suites run on the clustered engines named by the
# environment (KAFKA_BOOTSTRAP_SERVERS, REDIS_CLUSTER_NODES), and the end-to-end stack runs two of each
# process behind a load balancer (tests/e2e/conftest.py).
CLUSTER = os.environ.get("TEST_CLUSTER", "") == "1"


def single_node(reason: str):
    """Marks a test that only means something on the single stack: skipped on the cluster, with why."""
    return pytest.mark.skipif(CLUSTER, reason=f"single stack only: {reason}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], T], what: str, timeout_s: float = WAIT_S, every_s: float = 0.05) -> T:
    """The first truthy result of `check`; fails the test with `what` if none comes within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {timeout_s:.0f} s)")
        time.sleep(every_s)


def sample_questions(count: int = 2, *, points: int = 1000, time_limit_s: int = 20) -> list[dict[str, Any]]:
    return [{"text": f"Question {i + 1}?", "choices": ["red", "green", "blue", "gold"],
             "correct_choice": i % 4, "time_limit_s": time_limit_s, "points": points} for i in range(count)]


@dataclass
class Player:
    token: str
    user_id: str
    nickname: str
    participant_id: str | None = None
    rejoin_code: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class HttpClient:
    """The Flask test client's interface over real HTTP, so `Api` drives a running server too."""

    def __init__(self, base_url: str):
        import requests

        self.base_url = base_url
        self.http = requests.Session()

    def _wrap(self, response):
        response.get_json = lambda: response.json() if response.content else None
        return response

    def post(self, path: str, json: Any = None, headers: dict | None = None):
        return self._wrap(self.http.post(self.base_url + path, json=json, headers=headers, timeout=30))

    def get(self, path: str, headers: dict | None = None, query_string: dict | None = None):
        return self._wrap(self.http.get(self.base_url + path, headers=headers, params=query_string,
                                        timeout=30))

    def put(self, path: str, json: Any = None, headers: dict | None = None):
        return self._wrap(self.http.put(self.base_url + path, json=json, headers=headers, timeout=30))

    def delete(self, path: str, headers: dict | None = None):
        return self._wrap(self.http.delete(self.base_url + path, headers=headers, timeout=30))


class Api:
    """Wraps a Flask test client (or anything with the same get/post signature)."""

    def __init__(self, client):
        self.client = client

    def _send(self, method: str, path: str, token: str | None, expect: int | None, **kwargs: Any):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = getattr(self.client, method)(path, headers=headers, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.get_json())
        return response

    def post(self, path: str, json: Any = None, token: str | None = None, expect: int | None = None):
        return self._send("post", path, token, expect, json=json)

    def put(self, path: str, json: Any = None, token: str | None = None, expect: int | None = None):
        return self._send("put", path, token, expect, json=json)

    def get(self, path: str, token: str | None = None, expect: int | None = None, **query: Any):
        return self._send("get", path, token, expect, query_string=query or None)

    def delete(self, path: str, token: str | None = None, expect: int | None = None):
        return self._send("delete", path, token, expect)

    def host(self) -> Player:
        username = "host_" + uuid.uuid4().hex[:12]
        user = self.post("/api/v1/auth/register", {"username": username, "password": "correct horse"},
                         expect=201).get_json()
        token = self.post("/api/v1/auth/login", {"username": username, "password": "correct horse"},
                          expect=200).get_json()["access_token"]
        return Player(token=token, user_id=user["user_id"], nickname=username)

    def guest(self, nickname: str | None = None) -> Player:
        nickname = nickname or "p" + uuid.uuid4().hex[:8]
        body = self.post("/api/v1/auth/guest", {"nickname": nickname}, expect=201).get_json()
        return Player(token=body["access_token"], user_id=body["user_id"], nickname=nickname)

    def quiz(self, host: Player, questions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return self.post("/api/v1/quizzes", {"title": "Capitals",
                                             "questions": questions or sample_questions()},
                         token=host.token, expect=201).get_json()

    def live_session(self, host: Player, questions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        quiz = self.quiz(host, questions)
        session = self.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token, expect=201).get_json()
        session["quiz"] = quiz
        return session

    def join(self, session_id: str, player: Player) -> Player:
        body = self.post(f"/api/v1/sessions/{session_id}/join", token=player.token, expect=201).get_json()
        player.participant_id = body["participant_id"]
        player.rejoin_code = body["rejoin_code"]
        return player

    def join_as(self, session_id: str, player: Player, nickname: str) -> Player:
        body = self.post(f"/api/v1/sessions/{session_id}/join", {"nickname": nickname}, token=player.token,
                         expect=201).get_json()
        player.participant_id, player.rejoin_code, player.nickname = (
            body["participant_id"], body["rejoin_code"], nickname)
        return player

    def next_question(self, session_id: str, host: Player) -> dict[str, Any]:
        return self.post(f"/api/v1/sessions/{session_id}/questions/next", token=host.token,
                         expect=200).get_json()

    def close_question(self, session_id: str, host: Player) -> dict[str, Any]:
        return self.post(f"/api/v1/sessions/{session_id}/questions/close", token=host.token,
                         expect=200).get_json()

    def answer(self, session_id: str, player: Player, question_id: str, choice: int,
               expect: int | None = 201):
        return self.post(f"/api/v1/sessions/{session_id}/answers",
                         {"question_id": question_id, "choice": choice}, token=player.token, expect=expect)


def fragment_bomb(n: int, selection: str = "__typename", on: str = "Query", operation: str = "query") -> str:
    """A GraphQL document of n fragments that each spread the next twice (about 40 bytes a fragment):
    2^n copies of `selection` once expanded."""
    chain = [f"fragment F{i} on {on} {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    return f"{operation} Q {{ ...F0 }} " + " ".join(chain + [f"fragment F{n} on {on} {{ {selection} }}"])


def drop_run_topics(config, prefix: str) -> list[str]:
    """Delete the Kafka topics whose names start with `prefix` (a test run's `test.<run>.`), and no
    other: a broker that every run leaves its topics on keeps each partition's files open, and a
    developer's `make up` broker runs out of file descriptors after a few hundred runs."""
    from confluent_kafka import KafkaException

    from app.core.kafka import make_admin

    if not prefix.startswith("test."):
        raise RuntimeError(f"refusing to delete topics outside a test run: {prefix!r}")
    admin = make_admin(config)
    names = sorted(t for t in admin.list_topics(timeout=WAIT_S).topics if t.startswith(prefix))
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result()
            except KafkaException:  # deleted meanwhile, or the broker is going: nothing more to do
                pass
    return names


def drop_prefix_keys(client) -> int:
    """Delete every key of this process's REDIS_KEY_PREFIX (SCAN MATCH <prefix>* + UNLINK), and no other:
    what a test suite does instead of FLUSHDB, so others sharing the Redis or cluster are left alone."""
    from app.core import redis_keys

    if not redis_keys.prefix():
        raise RuntimeError("no REDIS_KEY_PREFIX: refusing to delete every key")
    dropped = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=redis_keys.pattern("*"), count=1000):
        batch.append(key)
        if len(batch) >= 500:
            dropped += client.unlink(*batch)
            batch = []
    if batch:
        dropped += client.unlink(*batch)
    return dropped


def stack_env(config, **extra: str) -> dict[str, str]:
    """The environment of a web, relay or worker process that serves `config` (its database, topics,
    limits...), with `extra` on top."""
    from app.core.config import config_environ

    env = dict(os.environ)
    env.update(config_environ(config))
    env.update({"RELAY_METRICS_PORT": "0", "WORKER_METRICS_PORT": "0", "WEB_METRICS_PORT": "0",
                "LOG_FORMAT": "json", "LOG_LEVEL": os.environ.get("TEST_STACK_LOG_LEVEL", "warning"),
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def beside(config, name: str, **changes):
    """`config` for a stack run beside the session's on the same engines: the database `<database>_<name>`
    and the topics and consumer groups `<topic>.<name>...` of its own (deleted with the run's), the run's
    Redis keys (each one a stack writes is named by an id of its own, or by its database); `changes` on
    top."""
    own = f"{config.kafka_topic}.{name}"
    return config.replace(
        database_url=f"{config.database_url}_{name}",
        kafka_topic=own,
        kafka_dlq_topic=f"{own}.dlq",
        kafka_consumer_group=f"{own}.cache-worker",
        score_topic=f"{own}.scores",
        score_dlq_topic=f"{own}.scores.dlq",
        score_consumer_group=f"{own}.score-ingest",
        change_topic=f"{own}.changes",
        **changes,
    )


def tiny_png(width: int = 1, height: int = 1, extra: bytes = b"") -> bytes:
    """A valid PNG of grey pixels, with `extra` bytes in an ancillary chunk (to make it as big as wanted)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + (chunk(b"teXt", b"pad\x00" + extra) if extra else b"")
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def error_code(response) -> str:
    """The code of a JSON error response, checking the body is the service's error shape."""
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
    return body["error"]["code"]


def events_of(engine, session_id, event_type=None) -> list:
    """A session's events (event_type, payload) in the order they were written."""
    query = "SELECT event_type, payload FROM events WHERE aggregate_id = :s"
    if event_type:
        query += " AND event_type = :t"
    with engine.connect() as connection:
        return connection.execute(text(query + " ORDER BY created_at, seq"),
                                  {"s": session_id, "t": event_type}).all()
