"""High-volume score writes from Kafka (seed 001's topic and messages), on the same write path as
`POST /scores/batch`.

One batch: decode each message of `SCORE_TOPIC` ({"leaderboard_id", "player_id", "score",
"display_name"?, "metadata"?, "submission_id"?, "game_id"?}, keyed by board) with the API's own
schema; commit every decodable one through `submit_scores` in one transaction (entries and their
events in the outbox, as over HTTP); dead-letter, with the reason in a header, a message that cannot
be decoded or that the service refused (unknown board, invalid score, overflow, a submission id
reused for another score); and only then store the batch's offsets.

A message without a `submission_id` gets one from its place in the log (`kafka:<topic>:<partition>:
<offset>`), so every message has one: a crash between the commit and the offset store redelivers
the batch, and each redelivered message gets its original result instead of counting twice.
PostgreSQL unreachable, or a COMMIT whose outcome is unknown: the same batch is written again with
backoff (it is safe: every message has a submission id), offsets untouched. Any other failure of the
write is one message's (app/core/poison.py): the batch is halved until that message is found and
dead-lettered, and the others are committed.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine

from app.core.batch_consumer import BatchConsumer, message_traceparent
from app.core.errors import ServiceError
from app.core.poison import dead_letter_reason
from app.leaderboards.messages import decode_score, derived_submission_id
from app.leaderboards.service.scores import submit_scores
from app.leaderboards.submissions import Authority, ScoreResult, Submission

log = logging.getLogger(__name__)

SOURCE = "kafka"  # score_writes_total{source}


def decode(message: Message) -> Submission:
    """The submission a message carries, with its producer's `traceparent` header (if any) for its event;
    PoisonMessage (with the reason) when it carries none."""
    return decode_score(message.value()).submission(
        derived_submission_id(message.topic(), message.partition(), message.offset()),
        message_traceparent(message))


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.consumed = Counter("ingest_messages_consumed", "score messages read from the topic",
                                registry=self.registry)
        self.committed = Counter("ingest_scores_committed",
                                 "scores committed, by outcome (changed, unchanged)",
                                 ["outcome"], registry=self.registry)
        self.duplicates = Counter("ingest_duplicates",
                                  "redelivered messages answered with their original result",
                                  registry=self.registry)
        self.dead_lettered = Counter("ingest_dead_lettered", "messages sent to the dead-letter topic",
                                     ["reason"], registry=self.registry)
        self.batch_size = Histogram("ingest_batch_size", "messages per batch", registry=self.registry,
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
        self.retries = Counter("ingest_batch_retries", "batches written again after PostgreSQL failed",
                               registry=self.registry)
        self.lag = Gauge("ingest_consumer_lag", "messages behind the high watermark", ["partition"],
                         registry=self.registry)


class ScoreIngest(BatchConsumer):
    log = log

    def __init__(self, config, consumer, producer, engine: Engine, *, metrics: IngestMetrics | None = None,
                 poll_timeout_s: float = 0.5, max_backoff_s: float = 5.0,
                 after_commit: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.config = config
        self.consumer, self.producer, self.engine = consumer, producer, engine
        self.topic, self.dlq_topic = config.score_topic, config.score_dlq_topic
        self.batch_size = config.score_ingest_batch
        self.metrics = metrics or IngestMetrics()
        self.poll_timeout_s = poll_timeout_s
        self.max_backoff_s = max_backoff_s
        self.after_commit = after_commit

    def run_once(self) -> int:
        """Consume, commit and store one batch; returns how many messages it held."""
        messages = self.next_batch()
        if not messages:
            return 0
        self.metrics.consumed.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        decoded: list[tuple[Message, Submission]] = []
        for message in messages:
            try:
                decoded.append((message, decode(message)))
            except Exception as exc:  # noqa: BLE001 - whatever one message raises is about it (app/core/poison.py)
                self.refuse(message, exc)
        results = self.retry_or_isolate("committing scores", decoded, self._commit,
                                        message_of=lambda item: item[0])
        if results is None:
            return 0  # stopping while PostgreSQL was down: nothing stored, the batch is redelivered
        if self.after_commit is not None:
            self.after_commit()
        for message, result in results:
            self._count(message, result)
        if not self.flush_produced():
            return 0  # stopping while the broker was down: nothing stored, the batch is redelivered
        self.store_offsets(messages)
        return len(messages)

    def _commit(self, decoded: list[tuple[Message, Submission]]
                ) -> list[tuple[Message, ScoreResult | ServiceError]]:
        results = submit_scores(self.engine, [submission for _, submission in decoded], Authority(),
                                final_top=self.config.leaderboard_final_top, source=SOURCE)
        return [(message, result) for (message, _), result in zip(decoded, results)]

    def _count(self, message: Message, result: ScoreResult | ServiceError) -> None:
        if isinstance(result, ServiceError):
            self.dead_letter(message, dead_letter_reason(result))
        elif result.replayed:
            self.metrics.duplicates.inc()
        else:
            self.metrics.committed.labels(outcome=result.outcome).inc()
