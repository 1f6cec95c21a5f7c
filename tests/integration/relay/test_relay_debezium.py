"""RELAY_MODE=debezium, the one test `make test` runs through Kafka Connect: a quiz session's events,
relayed by Debezium's outbox connector, reach the cache worker and build the session's board. The
contract tests against Debezium run with `make test-debezium` (tests/debezium/)."""
from __future__ import annotations

from tests.helpers import Api, sample_questions, wait_until
from tests.integration.worker_support import fresh_topics, new_worker, pg_scores, redis_scores


def test_a_sessions_events_reach_the_worker_through_debezium(api: Api, debezium_connect, engine, redis_client,
                                                             kafka_topics):
    config = debezium_connect.start(fresh_topics(kafka_topics), engine)
    try:
        host = api.host()
        session = api.live_session(host, sample_questions(1))
        players = [api.join(session["id"], api.guest()) for _ in range(3)]
        opened = api.next_question(session["id"], host)
        for index, player in enumerate(players):
            api.answer(session["id"], player, opened["question_id"], index)  # one right, two wrong
        api.close_question(session["id"], host)
        expected = pg_scores(engine, session["id"])
        assert len(expected) == 3 and sorted(expected.values())[-1] > 0
        worker = new_worker(config, engine, redis_client)
        try:
            def board_built() -> bool:
                worker.run_once()
                return redis_scores(redis_client, session["id"]) == expected

            wait_until(board_built, "the session's board never matched PostgreSQL through Debezium")
        finally:
            worker.close()
    finally:
        debezium_connect.stop(config, engine)
