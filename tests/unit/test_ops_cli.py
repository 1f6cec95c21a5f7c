"""The operator CLI's argument handling and bookkeeping, without any service."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import click
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from app import create_app
from app.core.dead_letters import DeadLetter, TopicState, commit_redriven, topic_state
from app.ops.replay import SinceParam
from app.quiz.board.verify import Difference


@pytest.fixture()
def runner():
    return create_app().test_cli_runner()


@pytest.mark.parametrize("args", [
    ["rebuild"],
    ["rebuild", "--all", "--session", "6d1f3a52-2b4f-4e0c-9a57-3e2f0f7c1c11"],
    ["replay"],
    ["replay", "--all", "--session", "6d1f3a52-2b4f-4e0c-9a57-3e2f0f7c1c11"],
    ["replay", "--all", "--since", "yesterday-ish"],
    ["verify", "--all", "--session", "6d1f3a52-2b4f-4e0c-9a57-3e2f0f7c1c11"],
    ["verify", "--session", "not-a-uuid"],
])
def test_a_usage_error_exits_2_before_touching_anything(runner, args):
    result = runner.invoke(args=["ops", *args])
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("command", [[], ["verify"], ["rebuild"], ["replay"], ["outbox"], ["dlq"],
                                     ["dlq", "list"], ["dlq", "redrive"]])
def test_every_command_has_help(runner, command):
    result = runner.invoke(args=["ops", *command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_replay_help_says_it_covers_what_the_relay_retains(runner):
    assert "RELAY_RETENTION_HOURS" in runner.invoke(args=["ops", "replay", "--help"]).output


def test_since_takes_an_iso_time_or_a_duration_ago():
    since = SinceParam()
    assert since.convert("2024-05-01T10:00:00", None, None) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert since.convert("2024-05-01T10:00:00+02:00", None, None) == datetime(2024, 5, 1, 8, tzinfo=UTC)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    assert abs(since.convert("2h", None, None) - two_hours_ago) < timedelta(minutes=1)
    with pytest.raises(click.BadParameter):
        since.convert("soon", None, None)


def test_a_difference_line_names_both_sides():
    assert Difference("s", "p", None,
                      (10, 5)).line() == "differs  session=s participant=p redis=missing postgres=10"
    assert Difference("s", "p", (10, 5), (10, 9)).line().endswith("tie-break: reached_ms redis=5 postgres=9")


class FakeConsumer:
    def __init__(self):
        self.committed: list[TopicPartition] = []

    def commit(self, offsets, asynchronous):
        self.committed.extend(offsets)


def letters(partition: int, *offsets: int) -> list[DeadLetter]:
    return [DeadLetter(partition, offset, b"k", b"v", []) for offset in offsets]


def committed(consumer) -> dict[int, int]:
    return {tp.partition: tp.offset for tp in consumer.committed}


def test_redrive_of_everything_commits_to_the_high_watermarks():
    state = TopicState([0, 1], {0: (0, 4), 1: (2, 3)}, {0: 1, 1: 2})
    consumer = FakeConsumer()
    read = letters(0, 1, 2, 3) + letters(1, 2)
    commit_redriven(consumer, "dlq", state, read, handled=read, everything=True)
    assert committed(consumer) == {0: 4, 1: 3}


def test_redrive_by_id_moves_the_mark_only_over_a_contiguous_handled_prefix():
    state = TopicState([0, 1], {0: (0, 6), 1: (0, 3)}, {0: 2, 1: 0})
    consumer = FakeConsumer()
    read = letters(0, 0, 1, 2, 3, 5) + letters(1, 0, 1, 2)  # offset 4 of partition 0 was deleted
    handled = [read[0], read[2], read[3], read[4], read[6]]  # 0:0, 0:2, 0:3, 0:5, 1:1
    commit_redriven(consumer, "dlq", state, read, handled=handled, everything=False)
    assert committed(consumer) == {0: 6}  # partition 1: its offset 0 is still pending


def test_a_dead_letter_keeps_its_original_headers_but_the_reason():
    letter = DeadLetter(0, 7, b"sid", b"{}",
                        [("event_id", b"e"), ("event_type", b"t"), ("dlq_reason", b"why")])
    assert letter.original_headers() == [("event_id", b"e"), ("event_type", b"t")]
    assert (letter.event_id, letter.event_type, letter.aggregate_id,
            letter.reason) == ("e", "t", "sid", "why")


class SlowKafka:
    """A consumer whose first answers about the topic "dlq" (one partition, 2 to 5 on it, 3 committed) carry
    the errors given, one per call, as a loaded or failing-over broker gives them."""

    def __init__(self, metadata_errors=(), committed_errors=(), topic_error=None):
        self.metadata_errors, self.committed_errors = list(metadata_errors), list(committed_errors)
        self.topic_error = topic_error
        self.asked = 0

    def list_topics(self, topic, timeout):
        self.asked += 1
        error = self.metadata_errors.pop(0) if self.metadata_errors else self.topic_error
        partitions = {} if error else {0: SimpleNamespace(error=None)}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=error, partitions=partitions)})

    def get_watermark_offsets(self, partition, timeout, cached):
        return 2, 5

    def committed(self, partitions, timeout):
        error = self.committed_errors.pop(0) if self.committed_errors else None
        return [SimpleNamespace(partition=0, offset=-1001 if error else 3, error=error)]


def test_a_dead_letter_topic_is_asked_again_while_kafka_answers_with_a_passing_error():
    kafka = SlowKafka(metadata_errors=[KafkaError(KafkaError.LEADER_NOT_AVAILABLE)],
                      committed_errors=[KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)])
    state = topic_state(kafka, "dlq")
    # Not "nothing committed" from the coordinator that was loading: the offset it holds.
    assert (state.partitions, state.watermarks, state.committed) == ([0], {0: (2, 5)}, {0: 3})
    assert kafka.asked == 3


def test_a_dead_letter_topic_that_does_not_exist_has_no_state():
    assert topic_state(SlowKafka(topic_error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)), "dlq") is None


def test_a_dead_letter_topic_kafka_will_not_tell_about_is_an_error_not_an_empty_topic():
    refused = SlowKafka(topic_error=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    with pytest.raises(KafkaException):
        topic_state(refused, "dlq")
    assert refused.asked == 1  # no passing error: not asked again
    with pytest.raises(KafkaException):  # a passing error that outlasts the wait
        topic_state(SlowKafka(topic_error=KafkaError(KafkaError.LEADER_NOT_AVAILABLE)), "dlq", wait_s=0)
