"""Both sides of the consumers' one rule (app/core/poison.py), in one batch: while a store is down, a real
message is retried with backoff and never dead-lettered, and the consumer resumes by itself once the
store is back; a poison message beside it is dead-lettered at once. The stores go down for real: a
Redis server of the test's own is stopped and started again, and PostgreSQL is reached through a TCP
gate of the test's that refuses connections until it opens."""
from __future__ import annotations

import socket
import threading

import pytest
import redis
from sqlalchemy.engine import make_url

from app.core.db import get_engine
from score_ingest.process import build_ingest
from tests.helpers import free_port, wait_until
from tests.integration.leaderboard_support import board, owner
from tests.integration.poison_support import VERY_DEEP, Raw, dead_letters, nested, produce_all
from tests.integration.test_foundation import _start_redis
from tests.integration.test_poison_messages import _score
from tests.integration.test_score_ingest import entries
from tests.integration.worker_support import event_rows, new_worker, pg_scores, play, publish, redis_scores


class Gate:
    """A TCP forwarder to `target`: until `open()`, nothing listens on `port`, and connecting to it is
    refused as connecting to a server that is down is."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class Running:
    """A consumer's `run()` on a thread of its own, as its process runs it; `alive()` fails the test
    with what it raised once it has died."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.raised: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:  # noqa: BLE001 - reported by alive()
            self.raised = exc

    def alive(self) -> bool:
        if not self.thread.is_alive():
            pytest.fail(f"the consumer died on a message: {self.raised!r}"[:2000])
        return True

    def stop(self) -> None:
        self.consumer.signal_shutdown()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the consumer did not stop"


def _poison_out_and_the_rest_retried(config, dlq_topic: str, poison: Raw, running: Running) -> None:
    """While the store is down: the poison is dead-lettered at once, and the batch beside it is retried."""
    [letter] = dead_letters(config, dlq_topic, 1, running.alive)
    assert letter.value == poison.value
    wait_until(lambda: running.alive() and running.consumer.metrics.retries._value.get() >= 2,
               "the batch beside the poison was not retried")


def _only_the_poison_dead_lettered(config, topic: str, dlq_topic: str, poison: Raw, running: Running) -> None:
    """The messages beside `poison` were never dead-lettered: the next dead letter is a poison produced
    after them."""
    marker = Raw("marker", b"{not json", key=poison.key)
    produce_all(config, topic, [marker])
    letters = dead_letters(config, dlq_topic, 2, running.alive)
    assert sorted(m.value for m in letters) == sorted([poison.value, marker.value])


def test_the_ingest_retries_while_postgresql_is_down_and_dead_letters_only_the_poison(api, topics, engine):
    board_id = board(api, owner(api), update_mode="increment")["id"]
    key = board_id.encode()
    url = make_url(topics.database_url)
    gate = Gate((url.host, url.port))
    ingest = build_ingest(topics,
                          engine=get_engine(url.set(port=gate.port).render_as_string(hide_password=False),
                                            pool_size=2), poll_timeout_s=0.2, max_backoff_s=0.5)
    poison = Raw("very deep", nested(VERY_DEEP), key=key)
    produce_all(topics, topics.score_topic, [Raw("valid", _score(board_id, "ann", 10), key=key), poison,
                                             Raw("valid", _score(board_id, "ann", 5), key=key)])
    running = Running(ingest)
    try:
        _poison_out_and_the_rest_retried(topics, topics.score_dlq_topic, poison, running)  # PostgreSQL down
        gate.open()
        wait_until(lambda: running.alive() and entries(engine, board_id) == {"ann": 15},
                   "the ingest did not resume by itself")
        _only_the_poison_dead_lettered(topics, topics.score_topic, topics.score_dlq_topic, poison, running)
    finally:
        running.stop()
        gate.close()


def test_the_worker_retries_while_redis_is_down_and_dead_letters_only_the_poison(api, engine, topics,
                                                                                 tmp_path):
    session = play(api, players=3, questions=2)
    sid = session["id"]
    rows = event_rows(engine, sid)
    port = free_port()
    server = _start_redis(port, str(tmp_path))
    private = redis.Redis(host="127.0.0.1", port=port)
    worker = new_worker(topics, engine, private, max_backoff_s=0.5)
    server.terminate()
    server.wait(10)
    poison = Raw("very deep", nested(VERY_DEEP), key=sid.encode())
    publish(topics, rows[:3])
    produce_all(topics, topics.kafka_topic, [poison])
    publish(topics, rows[3:])
    running = Running(worker)
    try:
        _poison_out_and_the_rest_retried(topics, topics.kafka_dlq_topic, poison, running)  # Redis down
        server = _start_redis(port, str(tmp_path))
        wait_until(lambda: running.alive() and redis_scores(private, sid) == pg_scores(engine, sid),
                   "the worker did not resume by itself")
        _only_the_poison_dead_lettered(topics, topics.kafka_topic, topics.kafka_dlq_topic, poison, running)
    finally:
        running.stop()
        server.kill()
        server.wait(10)
