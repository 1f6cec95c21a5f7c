"""`python -m cache_worker.bench [EVENTS]`: worker throughput on answer_scored events from Kafka.

Creates one session with 2,000 players in PostgreSQL (DATABASE_URL), produces EVENTS synthetic
answer_scored events for it to a fresh topic, then times a CacheWorker applying them all
(decode + pipelined Lua + offset store). Compare with `redis-benchmark` running the same script
(the command is printed at the end).
"""
from __future__ import annotations

import hashlib
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.core.config import load_config
from app.core.db import get_engine
from app.core.events import Envelope
from app.core.kafka import ensure_topics, make_consumer, make_producer
from app.core.redis_client import make_redis, node_of
from app.quiz.board.keys import SessionKeys
from app.quiz.board.scripts import session_board_script_source
from app.quiz.events import QUIZ_SESSION, SESSION_EVENTS, AnswerScored
from cache_worker.process import projections
from cache_worker.worker import CacheWorker

PLAYERS = 2000


def _session(engine) -> tuple[uuid.UUID, list[uuid.UUID]]:
    session_id, host, quiz = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    players = [uuid.uuid4() for _ in range(PLAYERS)]
    with engine.begin() as db:
        db.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, 'bench-host', true)"),
                   {"id": host})
        db.execute(text("INSERT INTO quizzes (id, owner_id, title) VALUES (:id, :o, 'bench')"),
                   {"id": quiz, "o": host})
        db.execute(text("INSERT INTO quiz_sessions (id, quiz_id, host_id, join_code, status) "
                        "VALUES (:id, :q, :h, :c, 'ended')"),
                   {"id": session_id, "q": quiz, "h": host, "c": f"{random.randrange(10**6):06d}"})
        db.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, 'bench', true)"),
                   [{"id": p} for p in players])
        # Nicknames are unique within a session (uq_quiz_session_participants_nickname).
        db.execute(text("INSERT INTO quiz_session_participants (id, quiz_session_id, user_id, nickname) "
                        "VALUES (:id, :s, :id, :n)"),
                   [{"id": p, "s": session_id, "n": f"bench-{i}"} for i, p in enumerate(players)])
    return session_id, players


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100_000
    run = uuid.uuid4().hex[:8]
    config = load_config().replace(kafka_topic=f"bench.{run}.events", kafka_dlq_topic=f"bench.{run}.dlq",
                                   kafka_consumer_group=f"bench.{run}", worker_batch_size=1000)
    ensure_topics(config)
    engine = get_engine(config.database_url)
    session_id, players = _session(engine)
    producer = make_producer(config)
    now = datetime.now(UTC)
    for i in range(count):
        participant = random.choice(players)
        payload = SESSION_EVENTS.payload_for("answer_scored", AnswerScored(
            answer_id=uuid.uuid4(), participant_id=participant, user_id=participant, nickname="bench",
            question_id=uuid.uuid4(), choice=0, correct=True, points=random.randrange(500, 1001), streak=1,
            answered_ms=100, answered_at=now + timedelta(milliseconds=i), total=0))
        envelope = Envelope(uuid.uuid4(), "answer_scored", 1, QUIZ_SESSION, str(session_id), now, payload)
        producer.produce(config.kafka_topic, key=str(session_id).encode(), value=envelope.to_json(),
                         headers=envelope.headers())
        producer.poll(0)
    producer.flush(60)

    client = make_redis(config, socket_timeout=None)
    worker = CacheWorker(config, make_consumer(config), make_producer(config), client,
                         projections(config, client, engine), poll_timeout_s=1.0)
    worker.subscribe()
    handled, started = 0, None
    while handled < count:
        n = worker.run_once()
        if n and started is None:
            started = time.perf_counter() - 0  # first batch arrived: the clock starts with it
        handled += n
    elapsed = time.perf_counter() - started
    worker.close()
    print(f"worker: {count} events in {elapsed:.2f}s = {count / elapsed:,.0f} events/s "
          f"(batch {config.worker_batch_size}, one partition's key)")

    keys = SessionKeys.of(f"bench-{run}")
    client.hset(keys.meta, mapping={"version": 0, "epoch_ms": int(now.timestamp() * 1000), "recent_seq": 0})
    source = session_board_script_source("apply_answer_scored")
    client.script_load(source)  # on a cluster, on every primary
    sha = hashlib.sha1(source.encode()).hexdigest()
    if node_of(client, keys.meta):  # the node that owns the session's slot
        host, _, port = node_of(client, keys.meta).rpartition(":")
        target = f"--cluster -h {host} -p {port}"
    else:
        url = config.redis_url.split("//", 1)[1]
        host, _, rest = url.partition(":")
        port, _, db = rest.partition("/")
        target = f"-h {host} -p {port} --dbnum {db or 0}"
    print(f"redis-benchmark {target} -n {count} -r 1000000000 -c 50 -P 16 "
          f"EVALSHA {sha} {len(keys.apply_keys)} {' '.join(keys.apply_keys)} "
          f"ev:__rand_int__ answer:__rand_int__ p:__rand_int__ bench 750 "
          f"{int(now.timestamp() * 1000) + 1000} q 1 1 1")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
