# Local stack and tests. Everything runs without Docker: scripts/deps.sh installs what the stacks need,
# scripts/stack (`python -m scripts.stack`) runs them under a supervisor (supervisord, in .stack/).
# Every Python program runs from the project's virtualenv (.venv), built from requirements.lock by
# scripts/venv.sh when it is missing or the lock changed; nothing is installed into the system Python.
# Ports and URLs come from app/core/config.py, so e.g. `WEB_PORT=8001 make up` works.

DEPS := scripts/deps.sh
PY := .venv/bin/python
STACK := $(PY) -m scripts.stack

.PHONY: up up-cluster down down-cluster ps logs services lint test test-cluster test-debezium test-unit bench bench-cluster chaos chaos-cluster feed lock clean

up:
	$(DEPS)
	$(STACK) up

# The clustered topology (3 PostgreSQL nodes under Patroni with etcd, 3 Kafka nodes, a Redis Cluster
# of 6, 2 webs behind HAProxy, 2 of each consumer) on its own ports; see scripts/stack/cluster.py. `make down` stops it too.
up-cluster:
	$(DEPS) cluster
	$(STACK) cluster up

# The cluster alone (the single stack keeps running).
down-cluster:
	$(STACK) cluster down

down:
	$(STACK) cluster down
	$(STACK) down

# One line per process: pid, state, uptime, restarts (exits on its own, each restarted by the supervisor).
ps:
	$(STACK) ps
	@$(STACK) cluster ps

logs:
	$(STACK) logs $(NAME)

services:
	$(DEPS)
	$(STACK) services

# ruff over the whole tree (rules in pyproject.toml): a finding fails `make test` before any test runs.
lint:
	$(DEPS) && $(PY) -m ruff check .

test: lint
	$(STACK) services && $(PY) -m pytest

# The integration and end-to-end suites on the running cluster (`make up-cluster` first), their
# processes two of each, then the cluster's fault tests (tests/cluster). Not part of `make test`: CI has
# no cluster. PYTEST_ARGS narrows it (e.g. PYTEST_ARGS=tests/cluster).
test-cluster:
	$(STACK) cluster test $(PYTEST_ARGS)

# The relay's contract against Debezium (RELAY_MODE=debezium): Kafka Connect with the outbox connector as
# the relay, on the stack's PostgreSQL and Kafka (tests/debezium; make test runs one smoke test of it).
# Then the whole end-to-end suite, browser tests included, with Connect as the stack's relay: a run of its
# own (its stack's connector reads the slot tests/debezium's worker reads), on a database of its own.
test-debezium:
	$(DEPS) && $(STACK) services && $(PY) -m pytest tests/unit/test_debezium_connector.py \
		tests/integration/relay/test_relay_debezium.py tests/debezium $(PYTEST_ARGS)
	RELAY_MODE=debezium TEST_DATABASE=$${TEST_DATABASE:-quiz_test}_e2e_debezium $(PY) -m pytest tests/e2e

# The fast loop: pure tests, no services.
test-unit:
	scripts/venv.sh ensure >/dev/null && $(PY) -m pytest tests/unit

# Measurements, not tests: bench_*.py modules with bench_* functions, never collected by `make test`.
bench:
	$(DEPS) && $(STACK) services && $(PY) -m pytest tests/bench -p no:cacheprovider -s -o timeout=1500 \
		-o python_files='bench_*.py' -o python_functions='bench_*'

# POST /answers and POST /scores on the running cluster with and without synchronous_mode, in one run;
# BENCH_CLUSTER_COMPARE=pgbouncer: the webs straight to pg-lb against through a pgbouncer; see
# tests/bench/cluster_writes.py.
bench-cluster:
	$(STACK) cluster bench

# A bounded chaos run (CHAOS_SECONDS, default 300) with a private Redis and Kafka; see tests/chaos/.
chaos:
	$(DEPS) && $(STACK) services && $(PY) -m tests.chaos

# The same chaos run on the running cluster (`make up-cluster` first): two of each process of its own,
# and the cluster's Kafka brokers and Redis masters among the faults; see tests/chaos/cluster.py.
chaos-cluster:
	$(STACK) cluster chaos

# Seed 001's feed: 1,000 players' scores through Kafka to the board `demo` (created if missing), for
# a minute at 100 a second; watch it at http://127.0.0.1:8000/boards/demo.
feed:
	$(PY) -m flask --app app ops produce-scores --board demo --create --players 1000 --rate 100 --duration 60

# Re-resolve requirements.lock from setup.cfg (UPGRADE=1 moves every pin to its newest version).
lock:
	scripts/venv.sh lock

clean:
	$(STACK) cluster down
	$(STACK) clean
