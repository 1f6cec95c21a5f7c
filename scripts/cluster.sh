#!/usr/bin/env bash
# The clustered topology of the live quiz on 127.0.0.1, without Docker: the same programs as
# scripts/stack.sh (whose functions it sources), each several times.
#
#   scripts/cluster.sh deps     what scripts/stack.sh deps installs, plus HAProxy (apt)
#   scripts/cluster.sh up       start whatever part of the cluster is not running, and wait until it is ready
#   scripts/cluster.sh down     stop everything this script started (data stays in .stack/cluster/)
#   scripts/cluster.sh ps       one line per component
#   scripts/cluster.sh logs [NAME]  follow .stack/cluster/*.log (or .stack/cluster/NAME.log)
#   scripts/cluster.sh test [ARGS]  (make test-cluster) pytest on the running cluster's engines: the
#                               integration and end-to-end suites, then the cluster's faults (tests/cluster)
#   scripts/cluster.sh chaos    (make chaos-cluster) the chaos run (tests/chaos) on the cluster's engines
#
# It runs: 3 Kafka nodes (combined broker+controller, a quorum of 3; the project's topics with
# KAFKA_PARTITIONS partitions, replication factor 3, min.insync.replicas 2), a Redis Cluster of
# 3 masters with a replica each, 2 gunicorn web servers behind HAProxy, and 2 each of the relay, the
# cache worker and the score ingest. PostgreSQL is the single stack's (POSTGRES_PORT; started here
# when nothing listens there) with a database of its own, CLUSTER_DATABASE.
#
# Ports (each a block starting at a variable, so one variable moves the block):
#   CLUSTER_WEB_PORT=18000       HAProxy; the webs on the next ports (18001, 18002)
#   CLUSTER_KAFKA_PORT=19092     node N: broker 19092+2(N-1), controller the port after it
#   CLUSTER_REDIS_PORT=17000     nodes on 17000-17005
#   CLUSTER_METRICS_PORT=19101   /metrics of relay-1, relay-2, worker-1, worker-2, ingest-1, ingest-2 (19101-19106),
#                                web-1, web-2 (19107, 19108)
# Pid files and logs are in .stack/cluster/, with each node's data.
set -euo pipefail

# shellcheck source=scripts/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
RUN_DIR="$STACK/cluster"

CLUSTER_WEB_PORT="${CLUSTER_WEB_PORT:-18000}"
CLUSTER_KAFKA_PORT="${CLUSTER_KAFKA_PORT:-19092}"
CLUSTER_REDIS_PORT="${CLUSTER_REDIS_PORT:-17000}"
CLUSTER_METRICS_PORT="${CLUSTER_METRICS_PORT:-19101}"
CLUSTER_DATABASE="${CLUSTER_DATABASE:-quiz_cluster}"

KAFKA_NODES=(kafka-1 kafka-2 kafka-3)
REDIS_NODES=(redis-1 redis-2 redis-3 redis-4 redis-5 redis-6)
WEBS=(web-1 web-2)
CONSUMERS=(relay-1 relay-2 worker-1 worker-2 ingest-1 ingest-2)
COMPONENTS=("${KAFKA_NODES[@]}" "${REDIS_NODES[@]}" "${WEBS[@]}" lb "${CONSUMERS[@]}")

index_of() { echo "${1##*-}"; }  # kafka-3 -> 3
kafka_port() { echo $((CLUSTER_KAFKA_PORT + 2 * ($1 - 1))); }
redis_port() { echo $((CLUSTER_REDIS_PORT + $1 - 1)); }
web_port() { echo $((CLUSTER_WEB_PORT + $1)); }
web_metrics_port() { echo $((CLUSTER_METRICS_PORT + ${#CONSUMERS[@]} + $1 - 1)); }  # after the consumers'

# The settings every cluster process gets, exported for spawn(); the per-process ones (WEB_PORT and
# the *_METRICS_PORT) are set where each process starts.
cluster_config() {
    local i kafka=() redis=() quorum=()
    for i in 1 2 3; do
        kafka+=("127.0.0.1:$(kafka_port "$i")")
        quorum+=("127.0.0.1:$(($(kafka_port "$i") + 1))")
        PORTS_OF[kafka-$i]="$(kafka_port "$i"):CLUSTER_KAFKA_PORT $(($(kafka_port "$i") + 1)):CLUSTER_KAFKA_PORT"
        PORTS_OF[web-$i]="$(web_port "$i"):CLUSTER_WEB_PORT $(web_metrics_port "$i"):CLUSTER_METRICS_PORT"
    done
    for i in 1 2 3 4 5 6; do
        redis+=("127.0.0.1:$(redis_port "$i")")
        PORTS_OF[redis-$i]="$(redis_port "$i"):CLUSTER_REDIS_PORT"
    done
    PORTS_OF[lb]="$CLUSTER_WEB_PORT:CLUSTER_WEB_PORT"
    local name offset=0
    for name in "${CONSUMERS[@]}"; do
        PORTS_OF[$name]="$((CLUSTER_METRICS_PORT + offset)):CLUSTER_METRICS_PORT"
        offset=$((offset + 1))
    done
    CONTROLLER_BOOTSTRAP="$(IFS=,; echo "${quorum[*]}")"
    export KAFKA_BOOTSTRAP_SERVERS="$(IFS=,; echo "${kafka[*]}")"
    # Every Redis client becomes a RedisCluster when REDIS_CLUSTER_NODES is set; REDIS_URL names one
    # node for whatever reads only it.
    export REDIS_CLUSTER_NODES="$(IFS=,; echo "${redis[*]}")"
    export REDIS_URL="redis://127.0.0.1:$CLUSTER_REDIS_PORT/0"
    # The single stack's server and role, the cluster's own database (DATABASE_URL has no query part).
    export DATABASE_URL="${DATABASE_URL%/*}/$CLUSTER_DATABASE"
    export WEB_HOST=127.0.0.1
    # Players open the balancer, not one web: the join link and its QR code name it.
    export PUBLIC_URL="${PUBLIC_URL:-http://127.0.0.1:$CLUSTER_WEB_PORT}"
    # HAProxy adds X-Forwarded-For: the webs trust one proxy for the client address (rate limits).
    export WEB_TRUSTED_PROXIES=1
    export SECRET_KEY
}

metrics_port_of() { component_ports "$1" | cut -d: -f1; }

# ---------------------------------------------------------------------------------------------
# PostgreSQL: the single stack's server, the cluster's database
# ---------------------------------------------------------------------------------------------
cluster_postgres() {
    PGBIN="$(pg_bindir)"
    [[ -n "$PGBIN" ]] || die "PostgreSQL is not installed (run: scripts/cluster.sh deps)"
    if is_running postgres; then
        :
    elif port_owner "$POSTGRES_PORT" >/dev/null; then
        say "postgres: using the server already listening on 127.0.0.1:$POSTGRES_PORT"
    else
        start_postgres
    fi
    wait_pg_query
    # The app's role may create databases (CREATEDB, see start_postgres); over TCP, so this works
    # against any PostgreSQL the single stack would use.
    PGPASSWORD="$DB_PASSWORD" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$POSTGRES_PORT" \
        -U "$DB_USER" -d "$DB_NAME" -v db="$CLUSTER_DATABASE" <<'SQL' || die "could not create database $CLUSTER_DATABASE"
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# ---------------------------------------------------------------------------------------------
# Kafka: three combined nodes, a controller quorum of three
# ---------------------------------------------------------------------------------------------
start_cluster_kafka() {
    local name i ids=()
    # The quorum's voters, given to every node's first format: node id, controller endpoint and the
    # id of the node's metadata directory, fixed once and kept with the data.
    local voters_file="$RUN_DIR/kafka-initial-controllers"
    if [[ ! -s "$voters_file" ]]; then
        mkdir -p "$RUN_DIR"
        for i in 1 2 3; do
            ids+=("$i@127.0.0.1:$(($(kafka_port "$i") + 1)):$("$PYTHON" -c \
                'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())')")
        done
        (IFS=,; echo "${ids[*]}") >"$voters_file"
    fi
    for name in "$@"; do
        i="$(index_of "$name")"
        start_kafka_node "$name" "$i" "$(kafka_port "$i")" "$(($(kafka_port "$i") + 1))" "$CONTROLLER_BOOTSTRAP" 3 2 \
            "$RUN_DIR/kafka-cluster.id" --initial-controllers "$(cat "$voters_file")"
    done
}

# ---------------------------------------------------------------------------------------------
# Redis Cluster: six nodes, three masters with a replica each
# ---------------------------------------------------------------------------------------------
start_cluster_redis() {
    local name
    for name in "$@"; do
        start_redis_server "$name" "$(redis_port "$(index_of "$name")")" "$RUN_DIR/$name" \
            "cluster-enabled yes" "cluster-config-file nodes.conf" "cluster-node-timeout 5000"
    done
}

redis_info() {  # PORT FIELD: a field of CLUSTER INFO
    redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# Create the cluster when no node has a slot yet (first start); later its nodes.conf files reform it.
# Then wait until every node says cluster_state:ok.
form_redis_cluster() {
    local i port slots assigned=0 nodes=()
    for i in 1 2 3 4 5 6; do
        nodes+=("127.0.0.1:$(redis_port "$i")")
        slots="$(redis_info "$(redis_port "$i")" cluster_slots_assigned)"
        assigned=$((assigned + ${slots:-0}))
    done
    if (( assigned == 0 )); then
        say "redis: creating the cluster (3 masters, 1 replica each)"
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >>"$(logfile redis-cluster)" 2>&1 \
            || { tail -n 20 "$(logfile redis-cluster)" >&2; die "redis --cluster create failed (see $(logfile redis-cluster))"; }
    fi
    local start=$SECONDS ok
    for i in $(seq 1 120); do
        ok=0
        for port in "${nodes[@]##*:}"; do
            [[ "$(redis_info "$port" cluster_state)" == ok ]] && ok=$((ok + 1))
        done
        if (( ok == 6 )); then
            say "redis: cluster_state:ok on 6 nodes after $((SECONDS - start)) s"
            return 0
        fi
        sleep 0.5
    done
    redis-cli -h 127.0.0.1 -p "$CLUSTER_REDIS_PORT" cluster nodes >&2 || true
    die "redis cluster is not ok after 60 s (nodes that lost their nodes.conf: remove .stack/cluster/redis-*)"
}

# ---------------------------------------------------------------------------------------------
# Webs and the load balancer
# ---------------------------------------------------------------------------------------------
# HAProxy (why not nginx: see scripts/haproxy.cfg, shared with the Compose file's `cluster` profile).
start_lb() {
    command -v haproxy >/dev/null 2>&1 || die "haproxy is not installed (run: scripts/cluster.sh deps)"
    local cfg="$ROOT/scripts/haproxy.cfg"
    local addresses=(LB_BIND="127.0.0.1:$CLUSTER_WEB_PORT" LB_WEB_1="127.0.0.1:$(web_port 1)" LB_WEB_2="127.0.0.1:$(web_port 2)")
    # The edge check's key and public routes, written from the webs' own configuration (app/edge.py).
    # Exported, not passed as arguments: with HS256 they hold the shared secret.
    local line
    "$PYTHON" -m app.edge "$RUN_DIR/edge" >>"$(logfile lb)" 2>&1 \
        || { tail -n 20 "$(logfile lb)" >&2; die "writing the edge's files failed (see $(logfile lb))"; }
    while IFS= read -r line; do [[ -z "$line" ]] || export "$line"; done <"$RUN_DIR/edge/haproxy.env"
    env "${addresses[@]}" haproxy -c -q -f "$cfg" >>"$(logfile lb)" 2>&1 \
        || { tail -n 20 "$(logfile lb)" >&2; die "haproxy: invalid $cfg (see $(logfile lb))"; }
    # -db: in the foreground (spawn detaches it), logging to stdout. HAProxy resets its stdout's flags
    # to non-blocking, dropping O_APPEND, so it would write over lb.log from its start: it writes to a
    # pipe instead, and a cat appends to the log (and ends when haproxy does).
    spawn lb bash -c 'exec "$@" > >(exec cat) 2>&1' lb env "${addresses[@]}" haproxy -db -f "$cfg"
}

# Ready when /healthz through the balancer has been answered by each web (its X-Upstream header).
wait_lb() {
    local url="http://127.0.0.1:$CLUSTER_WEB_PORT/healthz" seen=" " upstream i
    for i in $(seq 1 120); do
        upstream="$(curl -fsS -o /dev/null -D - --max-time 2 "$url" 2>/dev/null | tr -d '\r' \
            | sed -n 's/^[Xx]-[Uu]pstream: //p' || true)"
        [[ -n "$upstream" && "$seen" != *" $upstream "* ]] && seen+="$upstream "
        if [[ "$seen" == *" web-1 "* && "$seen" == *" web-2 "* ]]; then
            say "lb: http://127.0.0.1:$CLUSTER_WEB_PORT/healthz answered by web-1 and web-2"
            return 0
        fi
        is_running lb || { tail -n 20 "$(logfile lb)" >&2; die "haproxy exited (see $(logfile lb))"; }
        sleep 0.25
    done
    tail -n 20 "$(logfile lb)" >&2
    die "haproxy on $CLUSTER_WEB_PORT did not reach both webs within 30 s (answered by:${seen% })"
}

# An app process (web, relay, worker, ingest instance) with its own port settings.
start_cluster_app() {
    local name="$1"
    case "$(kind_of "$name")" in
        web) WEB_PORT="$(web_port "$(index_of "$name")")" WEB_METRICS_PORT="$(web_metrics_port "$(index_of "$name")")" \
            start_app "$name" ;;
        relay) RELAY_METRICS_PORT="$(metrics_port_of "$name")" start_app "$name" ;;
        worker) WORKER_METRICS_PORT="$(metrics_port_of "$name")" start_app "$name" ;;
        ingest) INGEST_METRICS_PORT="$(metrics_port_of "$name")" start_app "$name" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
not_running() {  # prints the components of "$@" that are not running
    local name
    for name in "$@"; do is_running "$name" || printf '%s\n' "$name"; done
}

prepare_cluster_data() {  # [quiet]: the topics (RF 3, min ISR 2) and migrations, idempotent like stack.sh's
    local out
    out="$("$PYTHON" -m app.kafka topics --replication-factor 3 --min-insync-replicas 2 2>&1)" \
        || { printf '%s\n' "$out" >&2; die "creating the Kafka topics failed"; }
    [[ "${1:-}" == quiet ]] || say "kafka: $out"
    out="$(run_migrations 2>&1)" || { printf '%s\n' "$out" >&2; die "migrations of $CLUSTER_DATABASE failed"; }
    [[ "${1:-}" == quiet ]] || say "migrations: $CLUSTER_DATABASE at head"
}

cmd_cluster_up() {
    mkdir -p "$RUN_DIR"
    local to_start
    mapfile -t to_start < <(not_running "${COMPONENTS[@]}")
    if [[ ${#to_start[@]} -eq 0 ]]; then
        say "already running: all ${#COMPONENTS[@]} cluster components (scripts/cluster.sh ps)"
        cluster_postgres
        prepare_cluster_data quiet
        say "Live quiz cluster is up: http://127.0.0.1:$CLUSTER_WEB_PORT/"
        return 0
    fi
    local name running=()
    for name in "${COMPONENTS[@]}"; do
        [[ " ${to_start[*]} " == *" $name "* ]] || running+=("$name")
    done
    [[ ${#running[@]} -eq 0 ]] || say "already running: ${running[*]}"
    check_ports "${COMPONENTS[@]}"
    cluster_postgres

    local kafka=() redis=() webs=() consumers=() lb=0
    for name in "${to_start[@]}"; do
        case "$(kind_of "$name")" in
            kafka) kafka+=("$name") ;;
            redis) redis+=("$name") ;;
            web) webs+=("$name") ;;
            lb) lb=1 ;;
            *) consumers+=("$name") ;;
        esac
    done
    # The nodes of each cluster start together: a Kafka quorum needs two voters before it answers.
    [[ ${#kafka[@]} -eq 0 ]] || start_cluster_kafka "${kafka[@]}"
    [[ ${#redis[@]} -eq 0 ]] || start_cluster_redis "${redis[@]}"
    wait_kafka 3 "${KAFKA_NODES[@]}"
    form_redis_cluster
    prepare_cluster_data

    for name in "${webs[@]}" "${consumers[@]}"; do start_cluster_app "$name"; done
    for name in "${webs[@]}"; do wait_http "$name" "http://127.0.0.1:$(web_port "$(index_of "$name")")/healthz"; done
    (( ! lb )) || start_lb
    wait_lb
    say "Live quiz cluster is up: http://127.0.0.1:$CLUSTER_WEB_PORT/ (scripts/cluster.sh ps; logs in .stack/cluster/)"
}

cmd_cluster_down() {
    local name pid any=0
    for name in "${COMPONENTS[@]}"; do is_running "$name" && any=1; done
    if (( ! any )); then
        rm -f "$RUN_DIR"/*.pid 2>/dev/null || true
        say "cluster: nothing is running"
        return 0
    fi
    # Clients first (the relays flush to Kafka), then the servers.
    for name in lb "${WEBS[@]}" "${CONSUMERS[@]}"; do stop_component "$name"; done
    # All Kafka nodes are told at once: one stopping after the others would wait for a quorum that is gone.
    local told=()
    for name in "${KAFKA_NODES[@]}"; do
        if pid="$(running_pid "$name")"; then kill -TERM "$pid" 2>/dev/null && told+=("$name (pid $pid)"); fi
    done
    [[ ${#told[@]} -eq 0 ]] || say "stopping ${told[*]} together"
    for name in "${KAFKA_NODES[@]}" "${REDIS_NODES[@]}"; do stop_component "$name"; done
    say "cluster stopped (data kept in .stack/cluster/)"
}

# The suites on the cluster's engines (TEST_CLUSTER=1; tests/helpers.py): Kafka and Redis Cluster by
# cluster_config's KAFKA_BOOTSTRAP_SERVERS and REDIS_CLUSTER_NODES, a database of the tests' own
# (TEST_DATABASE, quiz_test_cluster) on the same PostgreSQL. The end-to-end fixtures start two of each
# process themselves; the fault tests find this script's components by CLUSTER_RUN_DIR's pid files and
# start what they killed again with `scripts/cluster.sh up`.
test_environment() {
    local missing
    mapfile -t missing < <(not_running "${COMPONENTS[@]}")
    [[ ${#missing[@]} -eq 0 ]] || die "not running: ${missing[*]} (start the cluster: make up-cluster)"
    # The cluster's webs trust their balancer; the tests' own processes decide for themselves.
    unset WEB_TRUSTED_PROXIES
    export CLUSTER_RUN_DIR="$RUN_DIR"
    export CLUSTER_WEB_PORT CLUSTER_KAFKA_PORT CLUSTER_REDIS_PORT CLUSTER_METRICS_PORT CLUSTER_DATABASE
    cd "$ROOT"
}

cmd_cluster_test() {
    test_environment
    export TEST_CLUSTER=1 TEST_DATABASE="${TEST_DATABASE:-quiz_test_cluster}"
    [[ $# -gt 0 ]] || set -- tests/integration tests/e2e tests/cluster
    exec "$PYTHON" -m pytest -p no:cacheprovider "$@"
}

# The chaos run (tests/chaos/cluster.py) with its own processes on the cluster's engines, its own
# database (quiz_chaos) and key prefix; it kills brokers and Redis masters and starts them again.
cmd_cluster_chaos() {
    test_environment
    export CHAOS_TARGET=cluster
    exec "$PYTHON" -m tests.chaos
}

cmd_cluster_ps() {
    printf '%-9s %-8s %-8s %s\n' CLUSTER PID STATE PORT
    ps_lines "${COMPONENTS[@]}"
}

cluster_main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        up | down | ps | test | chaos) use_venv; load_config; cluster_config ;;
    esac
    case "$cmd" in
        deps)
            cmd_deps
            command -v haproxy >/dev/null 2>&1 || apt_install haproxy
            ;;
        up) cmd_cluster_up ;;
        down) cmd_cluster_down ;;
        ps) cmd_cluster_ps ;;
        test) cmd_cluster_test "$@" ;;
        chaos) cmd_cluster_chaos ;;
        logs) cmd_logs "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

cluster_main "$@"
