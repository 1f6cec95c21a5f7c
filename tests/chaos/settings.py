"""The knobs of a chaos run (CHAOS_* variables) and the configuration its own stack runs with.

Everything the services read comes from one `Config`, passed to them as environment variables
(tests.helpers.stack_env), so the chaos stack cannot drift onto the shared database, Redis or Kafka.
"""
from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass, field

from app.core.config import Config, load_config

CHAOS_DATABASE = "quiz_chaos"
# Every client of the run is 127.0.0.1 and each player sends hundreds of requests a minute: budgets
# no load generator reaches, so a 429 would be a finding, not the load's own doing.
UNREACHABLE_RATE = "100000000/minute"
UNREACHABLE_SOCKETS = 1_000_000  # open sockets of the one address, all players together


def say(line: str) -> None:
    """One line of the run's progress on the terminal."""
    print(f"chaos: {line}", flush=True)


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"chaos: {name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    seconds: float = field(default_factory=lambda: _number("CHAOS_SECONDS", 300))
    sessions: int = field(default_factory=lambda: int(_number("CHAOS_SESSIONS", 8)))
    players: int = field(default_factory=lambda: int(_number("CHAOS_PLAYERS", 40)))
    # Requests in flight at once: the load is closed-loop, so this sets the rate the machine holds.
    concurrency: int = field(default_factory=lambda: int(_number("CHAOS_CONCURRENCY", 64)))
    faults_per_kind: int = field(default_factory=lambda: int(_number("CHAOS_FAULTS_PER_KIND", 0)))
    seed: int = field(default_factory=lambda: int(_number("CHAOS_SEED", random.randrange(10**6))))
    converge_s: float = field(default_factory=lambda: _number("CHAOS_CONVERGE_S", 300))
    # A client stops resending one answer after this long (counted as given up, never acknowledged).
    give_up_s: float = field(default_factory=lambda: _number("CHAOS_GIVE_UP_S", 180))
    keep: bool = field(default_factory=lambda: os.environ.get("CHAOS_KEEP", "") not in ("", "0"))

    @property
    def per_kind(self) -> int:
        """Faults of each kind: one per 100 s of load unless CHAOS_FAULTS_PER_KIND says."""
        return self.faults_per_kind or max(1, round(self.seconds / 100))


def chaos_config(run: str, redis_url: str, kafka_bootstrap: str, redis_cluster_nodes: str = "") -> Config:
    """The run's configuration; on the cluster (`redis_cluster_nodes`) its keys carry a prefix of the
    run's."""
    base = load_config()
    rates = {name: UNREACHABLE_RATE for name in Config.__dataclass_fields__
             if name.startswith("rate_") and name != "rate_limits_enabled"}
    return base.replace(
        database_url=base.database_url.rsplit("/", 1)[0] + "/" + CHAOS_DATABASE,
        redis_url=redis_url, kafka_bootstrap_servers=kafka_bootstrap, redis_cluster_nodes=redis_cluster_nodes,
        redis_key_prefix=f"chaos.{run}:" if redis_cluster_nodes else base.redis_key_prefix,
        kafka_topic=f"chaos.{run}.events", kafka_dlq_topic=f"chaos.{run}.dlq",
        kafka_consumer_group=f"chaos.{run}.cache-worker",
        score_topic=f"chaos.{run}.scores", score_dlq_topic=f"chaos.{run}.scores.dlq",
        score_consumer_group=f"chaos.{run}.score-ingest", change_topic=f"chaos.{run}.changes",
        ingest_metrics_port=0,
        question_get_ready_s=0.0,  # players answer the moment a question opens
        relay_metrics_port=0, worker_metrics_port=0, secret_key=secrets.token_urlsafe(48),
        # The audit compares the events table with the topic: nothing may be pruned meanwhile.
        relay_retention_hours=100_000.0, rate_limits_enabled=True, ws_max_per_address=UNREACHABLE_SOCKETS,
        **rates)
