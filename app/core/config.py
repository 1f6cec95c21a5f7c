"""Configuration for every process, read from the environment when asked for.

`load_config()` is the only place that reads environment variables. Defaults match what
`make up` starts, so a developer needs to set nothing. `python -m app.core.config` prints the
resolved values as shell assignments for the stack scripts.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.secret_key import DEVELOPMENT_SECRET_KEY, MIN_SECRET_KEY_BYTES
from app.core.setting_values import (
    OPS_PASSWORD_MIN_CHARS,
    ConfigError,
    _bool,
    _choice,
    _float,
    _fraction,
    _http_url,
    _int,
    _jwt_algorithm,
    _nodes,
    _ops_password,
    _positive_float,
    _positive_int,
    _rate,
    _setting,
    _str,
    parse_key_prefix,
)


@dataclass(frozen=True)
class Config:
    database_url: str = _setting("DATABASE_URL", "postgresql+psycopg://quiz:quiz@127.0.0.1:5433/quiz",
                                 doc="SQLAlchemy URL of PostgreSQL")
    redis_url: str = _setting("REDIS_URL", "redis://127.0.0.1:6380/0", doc="Redis URL")
    redis_cluster_nodes: str = _setting(
        "REDIS_CLUSTER_NODES", "", _nodes,
        "comma-separated host:port seed nodes of a Redis Cluster; when set, every Redis client uses it, "
        "not REDIS_URL (empty: one Redis)")
    redis_key_prefix: str = _setting(
        "REDIS_KEY_PREFIX", "", parse_key_prefix,
        "prefix of every Redis key of the project, e.g. `quiz:` (separates what shares one Redis or cluster; "
        "no braces or glob characters)")
    kafka_bootstrap_servers: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", doc="Kafka bootstrap servers")
    kafka_topic: str = _setting("KAFKA_TOPIC", "quiz.events", doc="topic the relay publishes events to")
    kafka_dlq_topic: str = _setting("KAFKA_DLQ_TOPIC", "quiz.events.dlq", doc="dead-letter topic")
    kafka_partitions: int = _setting("KAFKA_PARTITIONS", 6, _int, "partitions of the event topics")
    kafka_consumer_group: str = _setting(
        "KAFKA_CONSUMER_GROUP", "quiz-cache-worker", doc="consumer group of the cache workers")
    score_topic: str = _setting(
        "SCORE_TOPIC", "leaderboard-scores", doc="topic game servers produce scores to (seed 001's messages)")
    score_dlq_topic: str = _setting("SCORE_DLQ_TOPIC", "leaderboard-scores.dlq",
                                    doc="dead-letter topic of score messages the ingest refused")
    score_consumer_group: str = _setting("SCORE_CONSUMER_GROUP", "leaderboard-score-ingest",
                                         doc="consumer group of the score ingest processes")
    score_ingest_batch: int = _setting(
        "SCORE_INGEST_BATCH", 1000, _int, "most score messages the ingest commits in one transaction")
    change_topic: str = _setting(
        "CHANGE_TOPIC", "change-leaderboard-topic",
        doc="topic the worker announces a board's new top on, whenever it changed (seed 003)")
    change_top: int = _setting("CHANGE_TOP", 10, _int, "size of the top the change topic carries")
    secret_key: str = _setting(
        "SECRET_KEY", DEVELOPMENT_SECRET_KEY,
        doc=f"the access tokens' keys are derived from it: a random value of at least {MIN_SECRET_KEY_BYTES} "
            "bytes (`make up` makes one)")
    allow_insecure_secret_key: bool = _setting(
        "ALLOW_INSECURE_SECRET_KEY", False, _bool,
        "development only: let the web process start with the default or a short SECRET_KEY")
    token_ttl_s: int = _setting("TOKEN_TTL_S", 12 * 3600, _int, "lifetime of an access token in seconds")
    jwt_algorithm: str = _setting(
        "JWT_ALGORITHM", "HS256", _jwt_algorithm,
        "how access tokens (JWTs) are signed: HS256, with a key derived from SECRET_KEY that a gateway must "
        "share, or ES256, whose public key /.well-known/jwks.json serves (docs/gateways.md)")
    jwt_private_key_file: str = _setting(
        "JWT_PRIVATE_KEY_FILE", "", str.strip, "ES256: a PEM file of the P-256 private key, "
        "the same for every web process (empty: derived from SECRET_KEY)")
    jwt_issuer: str = _setting("JWT_ISSUER", "livequiz",
                               doc="the `iss` claim of access tokens (Kong finds its key by it)")
    jwt_audience: str = _setting("JWT_AUDIENCE", "livequiz-api", doc="the `aud` claim of access tokens")
    max_body_bytes: int = _setting("MAX_BODY_BYTES", 256 * 1024, _int,
                                   "largest request body accepted (but a picture's, IMAGE_MAX_BYTES)")
    image_max_bytes: int = _setting(
        "IMAGE_MAX_BYTES", 2 * 1024 * 1024, _int,
        "largest picture POST /api/v1/images accepts (that route's own body limit)")
    image_quota_bytes: int = _setting(
        "IMAGE_QUOTA_BYTES", 50 * 1024 * 1024, _int,
        "bytes of pictures one account may keep (counted in PostgreSQL; over it an upload gets 413)")
    answer_batch_max: int = _setting("ANSWER_BATCH_MAX", 200, _int,
                                     "most answers committed in one transaction")
    score_batch_max: int = _setting("SCORE_BATCH_MAX", 100, _int,
                                    "most score requests of a web process committed in one transaction")
    score_commit_max_scores: int = _setting(
        "SCORE_COMMIT_MAX_SCORES", 1000, _int,
        "most scores a web process commits in one transaction, taken from each client in turn (a larger "
        "request is committed alone)")
    web_host: str = _setting("WEB_HOST", "127.0.0.1", doc="address the web server binds")
    web_port: int = _setting("WEB_PORT", 8000, _int, "port of the web server")
    public_url: str = _setting(
        "PUBLIC_URL", "", _http_url,
        "the address players open (e.g. https://quiz.example.org), which the join QR code and the host's "
        "screen show; never taken from a request's Host header "
        "(empty: http://WEB_HOST:WEB_PORT, for local use)")
    web_workers: int = _setting("WEB_WORKERS", 2, _int, "gunicorn worker processes")
    web_db_pool: int = _setting("WEB_DB_POOL", 20, _int,
                                "PostgreSQL connections per web worker (and as many overflow)")
    web_db_pool_timeout_s: float = _setting(
        "WEB_DB_POOL_TIMEOUT_S", 30.0, _positive_float,
        "how long a request waits for one of the web worker's PostgreSQL connections before it is refused "
        "with 503 `unavailable` and Retry-After (nothing recorded; the pages send it again by themselves)")
    database_prepared_statements: bool = _setting(
        "DATABASE_PREPARED_STATEMENTS", True, _bool,
        "prepare a statement on its connection once it has run 5 times; off when DATABASE_URL names a pooler "
        "in transaction mode (pgbouncer before 1.21), whose next transaction may run on another connection")
    web_redis_pool: int = _setting("WEB_REDIS_POOL", 64, _int, "Redis connections per web worker")
    postgres_port: int = _setting("POSTGRES_PORT", 5433, _int, "port of the PostgreSQL that `make up` starts")
    redis_port: int = _setting("REDIS_PORT", 6380, _int, "port of the Redis that `make up` starts")
    kafka_port: int = _setting("KAFKA_PORT", 9092, _int, "broker port of the Kafka that `make up` starts")
    kafka_controller_port: int = _setting(
        "KAFKA_CONTROLLER_PORT", 9093, _int, "controller port of the Kafka that `make up` starts")
    relay_mode: str = _setting("RELAY_MODE", "wal", _choice("wal", "poll", "debezium"), "wal: the relay "
        "reads committed events from a logical replication slot (needs wal_level=logical and a role with "
        "REPLICATION); poll: it claims unpublished rows and marks them (any PostgreSQL); debezium: Kafka "
        "Connect with Debezium's PostgreSQL connector and Outbox Event Router relays them (the stack runs "
        "it, needs what wal does), and the relay process only keeps the outbox's partitions")
    relay_wal_read: str = _setting("RELAY_WAL_READ", "peek", _choice("peek", "stream"), "how the wal relay "
        "reads its slot: peek, a SQL call per batch (decoding again from the slot's restart point); stream, "
        "the replication protocol (one walsender decodes once and sends transactions as they commit)")
    relay_batch_size: int = _setting("RELAY_BATCH_SIZE", 1000, _int, "events claimed per relay batch")
    relay_poll_interval_s: float = _setting(
        "RELAY_POLL_INTERVAL_S", 1.0, _float, "relay poll when no notification arrives")
    relay_retention_hours: float = _setting(
        "RELAY_RETENTION_HOURS", 24.0, _float,
        "a day's partition of published events is dropped once its end is this old (0: never)")
    relay_partition_days_ahead: int = _setting(
        "RELAY_PARTITION_DAYS_AHEAD", 2, _int,
        "daily partitions of `events` the relay creates ahead of today (at least 1)")
    relay_metrics_port: int = _setting("RELAY_METRICS_PORT", 9101, _int, "relay /metrics port (0: off)")
    connect_port: int = _setting(
        "CONNECT_PORT", 8083, _int,
        "REST port of the Kafka Connect worker (standalone) that the stack runs with RELAY_MODE=debezium")
    connect_metrics_port: int = _setting(
        "CONNECT_METRICS_PORT", 9107, _int,
        "/metrics port of that Kafka Connect worker (Prometheus's JMX exporter agent: Debezium's streaming "
        "metrics and Connect's task states and errors, scripts/prometheus/connect-jmx.yml; 0: off)")
    worker_metrics_port: int = _setting("WORKER_METRICS_PORT", 9102, _int, "worker /metrics port (0: off)")
    ingest_metrics_port: int = _setting("INGEST_METRICS_PORT", 9103, _int,
                                        "score ingest /metrics port (0: off)")
    web_metrics_port: int = _setting(
        "WEB_METRICS_PORT", 9104, _int,
        "web /metrics port on 127.0.0.1, served by the gunicorn master for all its workers (0: off); the "
        "public port has no /metrics")
    metrics_host: str = _setting(
        "METRICS_HOST", "127.0.0.1", _str,
        "address the metrics ports of the relay, worker, ingest and web master bind: loopback, unless "
        "the Prometheus that scrapes them runs on another host (e.g. 0.0.0.0 in a container, on a private "
        "network only)")
    otel_exporter_otlp_endpoint: str = _setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "", _http_url,
        "base URL of an OTLP/HTTP collector (e.g. http://127.0.0.1:4318): each process exports its traces "
        "to <URL>/v1/traces (empty: no tracing, nothing recorded; a request's or a score message's "
        "`traceparent` still passes on to its events)")
    otel_traces_sampler: str = _setting(
        "OTEL_TRACES_SAMPLER", "parentbased_traceidratio",
        _choice("parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off",
                "traceidratio", "always_on", "always_off"),
        "which traces are recorded while tracing is on (OpenTelemetry's names): by default a trace a "
        "request or score message starts is recorded at the ratio OTEL_TRACES_SAMPLER_ARG, and one that "
        "continues a caller's `traceparent` follows that caller's sampled flag, through every hop")
    otel_traces_sampler_arg: float = _setting(
        "OTEL_TRACES_SAMPLER_ARG", 0.01, _fraction,
        "the ratio of new traces recorded by the *traceidratio samplers (0 to 1): at 1 % an answer's spans "
        "cost a sixth of recording them all, and peak load still records several traces a second")
    otel_bsp_max_queue_size: int = _setting(
        "OTEL_BSP_MAX_QUEUE_SIZE", 2048, _positive_int,
        "recorded spans a process holds for export at most; past it a span is dropped and counted "
        "(tracing_spans_dropped_total{reason=\"queue_full\"}), never waited for")
    otel_exporter_otlp_timeout_ms: int = _setting(
        "OTEL_EXPORTER_OTLP_TIMEOUT", 1000, _positive_int,
        "milliseconds an export to the collector may take, connection attempts included; after a failed "
        "one the spans of the next seconds are dropped and counted (reason \"collector_down\"), "
        "not retried")
    prometheus_port: int = _setting(
        "PROMETHEUS_PORT", 9190, _int,
        "port of the Prometheus that `make up` starts (not 9090, where Debian's own may run)")
    redis_exporter_port: int = _setting(
        "REDIS_EXPORTER_PORT", 9105, _int, "port of the prometheus-redis-exporter that `make up` starts")
    postgres_exporter_port: int = _setting(
        "POSTGRES_EXPORTER_PORT", 9106, _int,
        "port of the prometheus-postgres-exporter that `make up` starts")
    prometheus_scrape_interval_s: int = _setting(
        "PROMETHEUS_SCRAPE_INTERVAL_S", 15, _positive_int,
        "seconds between two scrapes of each process by `make up`'s Prometheus; the /ops dashboard's rates "
        "span four of them (or a chart's step and one, when that is longer)")
    prometheus_url: str = _setting(
        "PROMETHEUS_URL", "", _http_url,
        "Prometheus whose HTTP API the /ops dashboard queries, from the web process (empty: "
        "http://127.0.0.1:PROMETHEUS_PORT)")
    ops_password: str = _setting(
        "OPS_PASSWORD", "", _ops_password,
        f"password of the operators' dashboard /ops (HTTP Basic, user `ops`), a random value of at least "
        f"{OPS_PASSWORD_MIN_CHARS} characters (`make up` makes one, in .stack/ops_password); empty: /ops is "
        "off (404)")
    prometheus_timeout_s: float = _setting(
        "PROMETHEUS_TIMEOUT_S", 5.0, _positive_float,
        "longest the web waits for one dashboard query to Prometheus; then that chart says Prometheus is "
        "unavailable (nothing else of the service asks Prometheus anything)")
    worker_batch_size: int = _setting("WORKER_BATCH_SIZE", 500, _int, "messages the worker takes per poll")
    question_get_ready_s: float = _setting(
        "QUESTION_GET_READY_S", 3.0, _float,
        "seconds a question shows before its answers open (its time limit counts from then)")
    question_max_extra_s: int = _setting(
        "QUESTION_MAX_EXTRA_S", 120, _positive_int,
        "seconds the host may add to an open question beyond its time limit, all Add time presses together "
        "(more is refused with 409 too_much_time)")
    session_retention_days: float = _setting(
        "SESSION_RETENTION_DAYS", 30.0, _positive_float,
        "days an ended game (its players' nicknames and answers) is kept before it is deleted")
    leaderboard_interval_ms: int = _setting(
        "LEADERBOARD_INTERVAL_MS", 100, _int, "least time between two leaderboard pushes to a room")
    join_count_interval_ms: int = _setting(
        "JOIN_COUNT_INTERVAL_MS", 1000, _int,
        "least time between two leaderboard pushes to a room whose board only joins moved since its last "
        "(its players see the count rise at this pace; the host hears each join at once)")
    ws_send_buffer: int = _setting("WS_SEND_BUFFER", 64, _int,
                                   "messages buffered per WebSocket before dropping")
    ws_joins_in_flight: int = _setting(
        "WS_JOINS_IN_FLIGHT", 32, _positive_int,
        "room sockets a web worker admits at once (checks, snapshot; each spends its ticket before it "
        "waits); more wait their turn, in order, and one that waits WS_JOIN_WAIT_S is closed with 1013 "
        "(reconnect)")
    ws_join_wait_s: float = _setting(
        "WS_JOIN_WAIT_S", 30.0, _positive_float,
        "how long a room socket may wait for its turn to be admitted before it is closed with 1013 (keep it "
        "below 35: a page gives up on a socket its room has not let in within 65 s)")
    auto_close_interval_s: float = _setting(
        "AUTO_CLOSE_INTERVAL_S", 0.25, _float, "how often due questions are looked for")
    web_trusted_proxies: int = _setting(
        "WEB_TRUSTED_PROXIES", 0, _int,
        "proxies in front of the web server whose X-Forwarded-For is trusted for the client address")
    rate_limits_enabled: bool = _setting("RATE_LIMITS_ENABLED", True, _bool,
                                         "enforce the RATE_* limits (shared by every web process, in Redis)")
    rate_login_per_username: str = _setting(
        "RATE_LOGIN_PER_USERNAME", "10/minute", _rate, "login attempts per username")
    rate_login_per_address: str = _setting(
        "RATE_LOGIN_PER_ADDRESS", "300/minute", _rate, "login attempts per client address")
    password_hashes_waiting: int = _setting("PASSWORD_HASHES_WAITING", 32, _positive_int, "logins a web "
        "process holds waiting for a password hash, a quarter of them per client address (past it: 429)")
    password_hash_cpu_share: float = _setting("PASSWORD_HASH_CPU_SHARE", 0.1, _positive_float, "share of "
        "one core a web process spends at most, on average, on passwords that did not match (hashes past "
        "it wait)")
    rate_signup_per_address: str = _setting(
        "RATE_SIGNUP_PER_ADDRESS", "3000/minute", _rate,
        "registrations and guest accounts per client address (a school of 2,000 behind one NAT address)")
    rate_join_per_address: str = _setting(
        "RATE_JOIN_PER_ADDRESS", "6000/minute", _rate, "join-code lookups and joins per client address")
    rate_join_per_user: str = _setting(
        "RATE_JOIN_PER_USER", "30/minute", _rate, "join-code lookups and joins per signed-in user")
    rate_join_misses_per_address: str = _setting("RATE_JOIN_MISSES_PER_ADDRESS", "300/minute", _rate,
                                                 "join-code lookups that find no game, per address")
    rate_join_misses_per_user: str = _setting(
        "RATE_JOIN_MISSES_PER_USER", "10/minute", _rate, "join-code lookups that find no game, per user")
    rate_sockets_per_user: str = _setting(
        "RATE_SOCKETS_PER_USER", "60/minute", _rate, "new WebSockets per signed-in user")
    rate_sockets_per_address: str = _setting(
        "RATE_SOCKETS_PER_ADDRESS", "6000/minute", _rate, "new WebSockets per client address")
    rate_public_reads_per_address: str = _setting(
        "RATE_PUBLIC_READS_PER_ADDRESS", "1200/minute", _rate, "reads open to anyone, per client address")
    rate_api_per_user: str = _setting(
        "RATE_API_PER_USER", "600/minute", _rate, "API requests per signed-in user")
    rate_api_per_address: str = _setting(
        "RATE_API_PER_ADDRESS", "30000/minute", _rate, "API requests per client address")
    rate_score_writes_per_user: str = _setting(
        "RATE_SCORE_WRITES_PER_USER", "60000/minute", _rate,
        "score writes per board owner, all their API keys together (a request of a batch counts once)")
    rate_image_uploads_per_user: str = _setting(
        "RATE_IMAGE_UPLOADS_PER_USER", "30/minute", _rate, "picture uploads per account")
    rate_score_writes_per_address: str = _setting("RATE_SCORE_WRITES_PER_ADDRESS", "120000/minute", _rate,
                                                  "score writes per client address (game servers)")
    graphql_playground: bool = _setting(
        "GRAPHQL_PLAYGROUND", True, _bool, "serve GraphiQL at GET /graphql to browsers (Accept: text/html); "
        "off: GET /graphql answers 405, as to any client")
    graphql_init_wait_s: float = _setting(
        "GRAPHQL_INIT_WAIT_S", 10.0, _float,
        "seconds a GraphQL WebSocket has to send connection_init before it is closed (4408)")
    graphql_max_mutations: int = _setting(
        "GRAPHQL_MAX_MUTATIONS", 10, _int, "most mutation fields one GraphQL operation runs "
        "(each is charged as its REST twin; submitScores batches)")
    ws_max_per_participant: int = _setting(
        "WS_MAX_PER_PARTICIPANT", 3, _int,
        "open room sockets per player (or host); a new one closes the oldest with 4409")
    ws_max_per_address: int = _setting(
        "WS_MAX_PER_ADDRESS", 1000, _positive_int,
        "open WebSockets per client address, all web processes together (a school of a few hundred phones "
        "behind one NAT address, with room for reloads); one more is closed at once with 4429")
    ws_max_per_user: int = _setting(
        "WS_MAX_PER_USER", 20, _positive_int,
        "open WebSockets per signed-in user, all web processes together (else 4429)")
    ws_slot_lease_s: float = _setting(
        "WS_SLOT_LEASE_S", 30.0, _positive_float,
        "how long the open sockets a web process counts in Redis stay counted without its heartbeat "
        "(a killed process's sockets stop counting after this)")
    ws_ping_interval_s: float = _setting(
        "WS_PING_INTERVAL_S", 5.0, _positive_float,
        "seconds between the protocol pings one thread per web process sends every WebSocket (browsers "
        "and WebSocket libraries answer them by themselves)")
    ws_silent_close_s: float = _setting(
        "WS_SILENT_CLOSE_S", 15.0, _positive_float,
        "seconds a WebSocket may stay silent (no pong, no message) before it is closed (4408); a player "
        "silent this long shows as away on the host's list of players")
    leaderboard_final_top: int = _setting("LEADERBOARD_FINAL_TOP", 10, _int,
                                          "standings a closed period's event carries (never the whole board)")
    leaderboard_period_ttl_s: int = _setting(
        "LEADERBOARD_PERIOD_TTL_S", 86400, _int,
        "how long a closed period stays in Redis (read later, it is rebuilt from PostgreSQL)")
    score_submission_retention_hours: float = _setting(
        "SCORE_SUBMISSION_RETENTION_HOURS", 168.0, _float,
        "how long a submission_id is remembered (a retry within it gets the original result)")
    score_rank_wait_ms: int = _setting(
        "SCORE_RANK_WAIT_MS", 250, _int, "how long a score write (a batch: all its items together) waits for "
        "the board to show it (else rank: null)")
    log_format: str = _setting("LOG_FORMAT", "text", _choice("text", "json"),
                               "text for a terminal, json for machines")
    log_level: str = _setting(
        "LOG_LEVEL", "info", _choice("debug", "info", "warning", "error"), "least level logged")

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def public_base_url(self) -> str:
        """PUBLIC_URL, or the bind address's (a wildcard bind is reached locally at 127.0.0.1)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.web_port}"

    def prometheus_base_url(self) -> str:
        """PROMETHEUS_URL, or the local stack's Prometheus."""
        return (self.prometheus_url or f"http://127.0.0.1:{self.prometheus_port}").rstrip("/")


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Build the configuration from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        env = f.metadata["env"]
        raw = environ.get(env)
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigError(f"{env}={raw!r} is not valid: {exc}") from None
    values.update(overrides)
    return Config(**values)


def config_environ(config: Config) -> dict[str, str]:
    """The environment variables that `load_config` reads back as `config` (for child processes)."""
    return {f.metadata["env"]: str(getattr(config, f.name)) for f in dataclasses.fields(Config)}


def describe() -> list[tuple[str, Any, str]]:
    """(variable, default, meaning) of every setting, for docs/configuration.md and `--help`."""
    return [(f.metadata["env"], f.default, f.metadata["doc"]) for f in dataclasses.fields(Config)]


def load_config_or_exit(*checks: Callable[[Config], None]) -> Config:
    """For a process's start: a bad variable ends it with one line naming it, and exit code 2."""
    try:
        config = load_config()
        for check in checks:
            check(config)
        return config
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> int:
    config = load_config_or_exit()
    for f in dataclasses.fields(Config):
        print(f"{f.metadata['env']}='{getattr(config, f.name)}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
