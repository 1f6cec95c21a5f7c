#!/usr/bin/env bash
# Local stack for the live-quiz service, without Docker.
#
#   scripts/stack.sh deps       install what the stack needs (apt packages, the project's .venv, Kafka jars)
#   scripts/stack.sh services   start the infrastructure only: PostgreSQL, Redis, Kafka, topics, migrations
#   scripts/stack.sh up         services + the app processes (web, relay, worker, ingest)
#   scripts/stack.sh down       stop everything this script started (data stays in .stack/)
#   scripts/stack.sh ps         one line per component
#   scripts/stack.sh logs [NAME]  follow .stack/*.log (or .stack/NAME.log)
#   scripts/stack.sh clean      down, then remove .stack/ (all local data)
#
# Ports and URLs come from app/config.py (`python -m app.config`), so the usual environment
# overrides (WEB_PORT=8001 scripts/stack.sh up, ...) apply here too. Every Python program runs from
# the project's virtualenv (.venv, built from requirements.lock by scripts/venv.sh when missing).
#
# Everything at runtime lives in .stack/ (data, *.log, *.pid); Kafka jars are cached in .cache/kafka/lib.
# Processes are started in their own session (setsid), so they outlive `make` and the calling shell,
# and they listen on 127.0.0.1 only. scripts/cluster.sh (make up-cluster) sources this file for the
# clustered topology: its pid files, logs and data are in .stack/cluster/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STACK="$ROOT/.stack"
RUN_DIR="$STACK"  # where pid and log files go: .stack/ here, .stack/cluster/ for scripts/cluster.sh
KAFKA_CACHE="$ROOT/.cache/kafka"
KAFKA_LIB="$KAFKA_CACHE/lib"
KAFKA_POM="$ROOT/scripts/kafka-pom.xml"
PYTHON=""  # the venv's interpreter, set by use_venv
STOP_TIMEOUT_S="${STOP_TIMEOUT_S:-15}"

cd "$ROOT"

say() { printf '%s\n' "$*"; }
warn() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Configuration (single source: app/config.py)
# ---------------------------------------------------------------------------------------------
# Tokens are signed with SECRET_KEY: unless one is given, each checkout gets its own random key.
ensure_secret_key() {
    [[ -n "${SECRET_KEY:-}" ]] && return 0
    mkdir -p "$STACK"
    if [[ ! -s "$STACK/secret_key" ]]; then
        (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$STACK/secret_key")
    fi
    SECRET_KEY="$(cat "$STACK/secret_key")"
    export SECRET_KEY
}

load_config() {
    ensure_secret_key
    local cfg
    # -W: `python -m app.config` warns (RuntimeWarning from runpy) when app/__init__.py imports app.config.
    cfg="$("$PYTHON" -W ignore::RuntimeWarning -m app.config)" || die "could not read the configuration (python -m app.config)"
    eval "$cfg"
    # User, password and database of the role the stack creates, parsed from DATABASE_URL.
    local parsed
    parsed="$("$PYTHON" - "$DATABASE_URL" <<'PY'
import shlex, sys
from urllib.parse import urlsplit, unquote
u = urlsplit(sys.argv[1])
user = unquote(u.username or "") or "quiz"
password = unquote(u.password or "") or "quiz"
db = unquote(u.path.lstrip("/")) or "quiz"
print(f"DB_USER={shlex.quote(user)} DB_PASSWORD={shlex.quote(password)} DB_NAME={shlex.quote(db)} "
      f"DB_HOST={shlex.quote(u.hostname or '')} DB_PORT={shlex.quote(str(u.port or ''))}")
PY
)"
    eval "$parsed"
}

# Warn (do not fail) when a URL points at a different local port than the one the stack starts.
check_urls_match_ports() {
    "$PYTHON" - "$DATABASE_URL" "$POSTGRES_PORT" "$REDIS_URL" "$REDIS_PORT" \
        "$KAFKA_BOOTSTRAP_SERVERS" "$KAFKA_PORT" <<'PY' || true
import sys
from urllib.parse import urlsplit
db, pg_port, redis, redis_port, kafka, kafka_port = sys.argv[1:]
local = {"127.0.0.1", "localhost", "::1"}
def check(name, host, port, env_port_name, env_port):
    if host in local and port and str(port) != env_port:
        print(f"stack: warning: {name} uses port {port} but {env_port_name}={env_port}; "
              f"the app will not reach the stack's server", file=sys.stderr)
d = urlsplit(db); check("DATABASE_URL", d.hostname, d.port, "POSTGRES_PORT", pg_port)
r = urlsplit(redis); check("REDIS_URL", r.hostname, r.port, "REDIS_PORT", redis_port)
first = kafka.split(",")[0].strip()
if ":" in first:
    host, _, port = first.rpartition(":")
    check("KAFKA_BOOTSTRAP_SERVERS", host, port, "KAFKA_PORT", kafka_port)
PY
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL binaries and the OS user that runs it
# ---------------------------------------------------------------------------------------------
pg_bindir() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    echo ""
}

# PostgreSQL refuses to run as root. As root we run it as the `postgres` OS user (created by the
# Debian package) with runuser; as any other user we run it as that user.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        # cd /: the checkout itself may not be readable by postgres (all paths passed are absolute).
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Where the PostgreSQL files live. Normally $STACK/pg (owned by postgres). As root, the checkout may
# sit where the postgres user cannot traverse (e.g. /root is 0700), or so deep that the Unix socket
# path exceeds the kernel's 107-byte limit. We never chmod the user's parent directories; instead the
# PG files then go to /var/lib/postgresql/livequiz-<hash of checkout path> (postgres's own home,
# always reachable) and $STACK/pg becomes a symlink to it, so `rm -rf .stack` still finds it via
# `stack.sh clean`. The log and pid files stay in $STACK because root writes them, not postgres.
pg_home_resolve() {
    PG_HOME="$STACK/pg"
    if [[ -L "$PG_HOME" ]]; then
        PG_HOME="$(readlink -f "$PG_HOME")"
    elif [[ ! -d "$PG_HOME" ]]; then
        local sock_path="$PG_HOME/sock/.s.PGSQL.$POSTGRES_PORT"
        local reachable=1
        if [[ $EUID -eq 0 ]] && ! runuser -u postgres -- test -x "$STACK"; then reachable=0; fi
        if (( ${#sock_path} > 100 )); then reachable=0; fi
        if (( reachable )); then
            mkdir -p "$PG_HOME"
        else
            local hash alt
            hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
            alt="$(getent passwd postgres | cut -d: -f6)"
            alt="${alt:-/var/lib/postgresql}/livequiz-$hash"
            mkdir -p "$alt"
            ln -sfn "$alt" "$PG_HOME"
            say "postgres: $STACK is not reachable by the postgres user (or too deep for a socket);" \
                "its files live in $alt (linked from .stack/pg)"
            PG_HOME="$alt"
        fi
    fi
    PGDATA="$PG_HOME/data"
    PG_SOCK="$PG_HOME/sock"
    if [[ $EUID -eq 0 ]]; then chown postgres:postgres "$PG_HOME"; fi
    chmod 0700 "$PG_HOME"
}

# ---------------------------------------------------------------------------------------------
# Components, pid files, ports
# ---------------------------------------------------------------------------------------------
INFRA=(postgres redis kafka)
APPS=(web relay worker ingest)

pidfile() { echo "$RUN_DIR/$1.pid"; }
logfile() { echo "$RUN_DIR/$1.log"; }

# A component's kind: its name without an instance number (web-2 is a web, kafka-3 a kafka).
kind_of() { echo "${1%-[0-9]*}"; }

# The command line a live process of component $1 must contain, so a recycled pid is never taken
# for ours.
cmdline_marker() {
    case "$(kind_of "$1")" in
        postgres) echo "bin/postgres" ;;
        redis) echo "redis-server" ;;
        kafka) echo "$RUN_DIR/$1/server.properties" ;;
        web) echo "gunicorn" ;;
        relay) echo "outbox_relay" ;;
        worker) echo "cache_worker" ;;
        ingest) echo "score_ingest" ;;
        lb) echo "haproxy" ;;
    esac
}

read_pid() {
    local f
    f="$(pidfile "$1")"
    [[ -s "$f" ]] || return 1
    local pid
    pid="$(head -n 1 "$f" | tr -dc '0-9')"
    [[ -n "$pid" ]] || return 1
    echo "$pid"
}

# Prints the pid when component $1 is running (pid file + kill -0 + command line), else fails.
running_pid() {
    local pid
    pid="$(read_pid "$1")" || return 1
    alive "$pid" || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *"$(cmdline_marker "$1")"* ]] || return 1
    echo "$pid"
}

is_running() { running_pid "$1" >/dev/null; }

# "PORT:ENV_NAME" pairs a component listens on: PORTS_OF[name] when set (scripts/cluster.sh fills it
# for its instances), else the single stack's settings.
declare -A PORTS_OF=()
component_ports() {
    if [[ -n "${PORTS_OF[$1]:-}" ]]; then echo "${PORTS_OF[$1]}"; return 0; fi
    case "$1" in
        postgres) echo "$POSTGRES_PORT:POSTGRES_PORT" ;;
        redis) echo "$REDIS_PORT:REDIS_PORT" ;;
        kafka) echo "$KAFKA_PORT:KAFKA_PORT $KAFKA_CONTROLLER_PORT:KAFKA_CONTROLLER_PORT" ;;
        web) echo "$WEB_PORT:WEB_PORT$([[ "$WEB_METRICS_PORT" != 0 ]] && echo " $WEB_METRICS_PORT:WEB_METRICS_PORT")" ;;
        relay) [[ "$RELAY_METRICS_PORT" != 0 ]] && echo "$RELAY_METRICS_PORT:RELAY_METRICS_PORT" || true ;;
        worker) [[ "$WORKER_METRICS_PORT" != 0 ]] && echo "$WORKER_METRICS_PORT:WORKER_METRICS_PORT" || true ;;
        ingest) [[ "$INGEST_METRICS_PORT" != 0 ]] && echo "$INGEST_METRICS_PORT:INGEST_METRICS_PORT" || true ;;
    esac
}

# Prints "pid name" of a process listening on TCP port $1 ("? ?" if unknown); fails when free.
port_owner() {
    local port="$1" line
    if command -v ss >/dev/null 2>&1; then
        line="$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n 1 || true)"
        [[ -n "$line" ]] || return 1
        local pid
        pid="$(grep -o 'pid=[0-9]*' <<<"$line" | head -n 1 | cut -d= -f2 || true)"
        if [[ -n "$pid" ]]; then
            echo "$pid $(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"
        else
            echo "? ?"
        fi
        return 0
    fi
    # No ss: try to bind the port ourselves.
    if "$PYTHON" -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(0)
sys.exit(1)' "$port"; then
        echo "? ?"
        return 0
    fi
    return 1
}

# Exit 1 with one line if any port needed by the components in "$@" (those not already running)
# is taken by another program.
check_ports() {
    local seen=" " comp pair port name owner pid pname
    for comp in "$@"; do
        for pair in $(component_ports "$comp"); do
            port="${pair%%:*}"
            name="${pair#*:}"
            if [[ "$seen" == *" $port "* ]]; then
                say "port $port is configured twice ($name); set $name to another port"
                exit 1
            fi
            seen+="$port "
        done
    done
    for comp in "$@"; do
        is_running "$comp" && continue
        for pair in $(component_ports "$comp"); do
            port="${pair%%:*}"
            name="${pair#*:}"
            if owner="$(port_owner "$port")"; then
                pid="${owner%% *}"
                pname="${owner#* }"
                say "port $port is taken by another program (pid $pid $pname); set $name to another port"
                exit 1
            fi
        done
    done
}

# Start "$@" detached in a new session; the pid written is the one of the exec'd program itself.
spawn() {
    local name="$1"
    shift
    local pf log
    pf="$(pidfile "$name")"
    log="$(logfile "$name")"
    rm -f "$pf"
    printf '\n==== %s starting %s ====\n' "$(date '+%F %T')" "$name" >>"$log"
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@" </dev/null >>"$log" 2>&1 &
    local i
    for i in $(seq 1 50); do
        [[ -s "$pf" ]] && return 0
        sleep 0.1
    done
    die "$name did not start (see $log)"
}

# ---------------------------------------------------------------------------------------------
# deps
# ---------------------------------------------------------------------------------------------
apt_install() {
    [[ $# -gt 0 ]] || return 0
    local sudo=""
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        sudo="sudo"
    fi
    command -v apt-get >/dev/null 2>&1 || die "no apt-get; install these yourself: $*"
    say "deps: apt-get install $*"
    # Debian's postinst would start the system's own postgresql/redis services; a policy-rc.d that
    # exits 101 tells invoke-rc.d not to (the stack runs its own instances on other ports).
    local policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    local rc=0
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; then
        # Most likely stale or missing package lists: refresh them once and retry.
        $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "$@" || rc=$?
    fi
    if (( policy_added )); then $sudo rm -f /usr/sbin/policy-rc.d; fi
    return "$rc"
}

deps_system() {
    local missing=()
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    [[ -n "$(pg_bindir)" ]] || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
    if [[ ! -f "$KAFKA_LIB/.complete" ]] && ! command -v mvn >/dev/null 2>&1; then missing+=(maven); fi
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v ss >/dev/null 2>&1 || missing+=(iproute2)
    # For the tests: the Compose file check and the browser test (Debian's Chromium, never a download).
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # For `make bench`: the HTTP load generator (pgbench and redis-benchmark come with the servers).
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
}

use_venv() {
    PYTHON="$("$ROOT/scripts/venv.sh" ensure)"
}

deps_kafka() {
    if [[ -f "$KAFKA_LIB/.complete" ]]; then
        say "deps: kafka jars cached in ${KAFKA_LIB#$ROOT/}"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn is needed to fetch the Kafka jars (apt-get install maven)"
    say "deps: fetching the Kafka broker jars from Maven Central into ${KAFKA_LIB#$ROOT/}"
    local tmp="$KAFKA_CACHE/lib.tmp.$$" start=$SECONDS
    rm -rf "$tmp"
    mkdir -p "$tmp"
    mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "maven did not produce kafka_2.13 jar in $tmp"
    touch "$tmp/.complete"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    say "deps: kafka jars fetched in $((SECONDS - start)) s ($(ls "$KAFKA_LIB"/*.jar | wc -l) jars)"
}

# npm_ci DIR WHAT: DIR's node_modules from npm's registry by DIR/package-lock.json (exact versions and
# their hashes), unless they were installed from this lock already.
npm_ci() {
    local dir="$1" what="$2"
    if [[ -f "$dir/node_modules/.package-lock.json" && "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]]; then
        return 0
    fi
    say "deps: npm ci ($what)"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
}

deps_npm() {
    npm_ci "$ROOT" "GraphiQL and React, which the web process serves at GET /graphql"
    npm_ci "$ROOT/tests/e2e/axe" "axe-core for the browser tests"
}

cmd_deps() {
    mkdir -p "$STACK"
    deps_system
    use_venv
    deps_kafka
    deps_npm
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
pg_sql() {  # run psql as the superuser over the Unix socket; extra args passed to psql
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$POSTGRES_PORT" -U postgres -d postgres "$@"
}

# The relay reads the outbox from the WAL (change-data capture), which needs wal_level = logical;
# the polling relay runs on it too.
PG_WAL_LEVEL=logical

write_pg_conf() {
    # Rewritten at every start so port changes apply. fsync and synchronous_commit stay on:
    # an acknowledged answer must survive a crash (durability is a product promise).
    as_pg tee "$PGDATA/livequiz.conf" >/dev/null <<EOF
# Written by scripts/stack.sh at every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 300
shared_buffers = 256MB
work_mem = 8MB
maintenance_work_mem = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = $PG_WAL_LEVEL
max_replication_slots = 64
max_wal_senders = 16
wal_compression = on
wal_buffers = 16MB
min_wal_size = 256MB
max_wal_size = 2GB
checkpoint_timeout = 10min
checkpoint_completion_target = 0.9
random_page_cost = 1.1
effective_cache_size = 1GB
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
log_lock_waits = on
EOF
}

# A PostgreSQL started earlier gets the roles of this version of the script, and with another
# wal_level (e.g. from before the relay read the WAL) it is restarted with the configuration written
# afresh: wal_level only changes at a server start.
refresh_running_pg() {
    PGBIN="$(pg_bindir)"
    pg_home_resolve
    local current
    current="$(pg_sql -At -c 'SHOW wal_level' 2>/dev/null || true)"
    [[ -n "$current" ]] && pg_roles
    [[ -n "$current" && "$current" != "$PG_WAL_LEVEL" ]] || return 0
    say "postgres: wal_level is $current, the relay needs $PG_WAL_LEVEL: restarting PostgreSQL"
    write_pg_conf
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w -t 60 restart -m fast >>"$(logfile postgres)" 2>&1 \
        || die "postgres did not restart (see $(logfile postgres))"
    head -n 1 "$PGDATA/postmaster.pid" >"$(pidfile postgres)"
    wait_postgres
    wait_pg_query
}

start_postgres() {
    PGBIN="$(pg_bindir)"
    [[ -n "$PGBIN" ]] || die "PostgreSQL is not installed (run: scripts/stack.sh deps)"
    pg_home_resolve
    local log
    log="$(logfile postgres)"
    touch "$log"
    mkdir -p "$PG_SOCK"
    if [[ $EUID -eq 0 ]]; then chown postgres:postgres "$PG_SOCK"; fi
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        say "postgres: initdb ${PGDATA}"
        rm -rf "$PGDATA"
        # Superuser `postgres` only over the Unix socket (peer); TCP logins need a password.
        as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >>"$log" 2>&1 \
            || { tail -n 20 "$log" >&2; die "initdb failed (see $log)"; }
        echo "include_if_exists = 'livequiz.conf'" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
    fi
    write_pg_conf
    # No -l: the postmaster inherits this stdout/stderr, opened here by root, so the log can live in
    # .stack/ even when postgres could not write there. pg_ctl itself puts the postmaster in its own
    # session, so it survives the calling shell.
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w -t 60 start >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "postgres did not start (see $log)"
    fi
    head -n 1 "$PGDATA/postmaster.pid" >"$(pidfile postgres)"
    wait_postgres
    pg_roles
    wait_pg_query
}

# The app's role and database, also for a server started by an older version of this script. The
# role creates and reads the relay's logical replication slot (REPLICATION) and may CHECKPOINT
# (pg_checkpoint: the growth benchmark writes out its bulk load before it measures).
pg_roles() {
    pg_sql -v user="$DB_USER" -v pw="$DB_PASSWORD" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB REPLICATION', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'user', :'pw') \gexec
SELECT format('GRANT pg_checkpoint TO %I', :'user')
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_checkpoint')
   AND NOT pg_has_role(:'user', 'pg_checkpoint', 'MEMBER') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

wait_postgres() {
    local i
    for i in $(seq 1 120); do
        if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; then return 0; fi
        sleep 0.5
    done
    die "postgres on 127.0.0.1:$POSTGRES_PORT is not ready (see $(logfile postgres))"
}

# A real query over TCP with the app's credentials.
wait_pg_query() {
    local i
    for i in $(seq 1 60); do
        if PGPASSWORD="$DB_PASSWORD" "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$POSTGRES_PORT" \
            -U "$DB_USER" -d "$DB_NAME" -c 'SELECT 1' 2>/dev/null | grep -qx 1; then
            return 0
        fi
        sleep 0.5
    done
    die "postgres answers pg_isready but not a query as $DB_USER on $DB_NAME"
}

stop_postgres() {
    local pid
    pid="$(running_pid postgres)" || { rm -f "$(pidfile postgres)"; return 0; }
    PGBIN="$(pg_bindir)"
    pg_home_resolve
    say "stopping postgres (pid $pid)"
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t "$STOP_TIMEOUT_S" stop >>"$(logfile postgres)" 2>&1; then
        stop_pid postgres "$pid"
    fi
    rm -f "$(pidfile postgres)"
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
start_redis() { start_redis_server redis "$REDIS_PORT" "$STACK/redis"; }

# start_redis_server NAME PORT DIR [CONF_LINE...]: one redis-server with its data in DIR; the extra
# lines (scripts/cluster.sh's `cluster-enabled yes`, ...) are appended to the configuration.
start_redis_server() {
    local name="$1" port="$2" dir="$3"
    shift 3
    command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (run: scripts/stack.sh deps)"
    mkdir -p "$dir"
    local conf="$dir/redis.conf"
    cat >"$conf" <<EOF
# Written by scripts/stack.sh at every start; edits are overwritten.
bind 127.0.0.1
protected-mode yes
port $port
daemonize yes
pidfile $(pidfile "$name")
logfile $(logfile "$name")
loglevel notice
dir $dir
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
EOF
    [[ $# -eq 0 ]] || printf '%s\n' "$@" >>"$conf"
    rm -f "$(pidfile "$name")"
    printf '\n==== %s starting %s ====\n' "$(date '+%F %T')" "$name" >>"$(logfile "$name")"
    # daemonize: redis forks into its own session and writes its pid file.
    redis-server "$conf" || die "$name did not start (see $(logfile "$name"))"
    local i
    for i in $(seq 1 100); do
        if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)" == PONG ]]; then
            for i in $(seq 1 20); do [[ -s "$(pidfile "$name")" ]] && return 0; sleep 0.1; done
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$(logfile "$name")" >&2
    die "$name on 127.0.0.1:$port does not answer PING"
}

# ---------------------------------------------------------------------------------------------
# Kafka (combined KRaft nodes from the Maven Central jars: one here, three in scripts/cluster.sh)
# ---------------------------------------------------------------------------------------------
start_kafka() {
    start_kafka_node kafka 1 "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "127.0.0.1:$KAFKA_CONTROLLER_PORT" 1 1 \
        "$STACK/kafka/cluster.id" --standalone
    wait_kafka 1 kafka
}

# start_kafka_node NAME NODE_ID PORT CONTROLLER_PORT CONTROLLER_BOOTSTRAP REPLICATION MIN_ISR CLUSTER_ID_FILE
#   FORMAT_ARG...: one combined broker+controller in $RUN_DIR/NAME, formatted on first start with the
# cluster id of CLUSTER_ID_FILE (made when missing) and FORMAT_ARGs (--standalone for a single node,
# --initial-controllers ... for a quorum). REPLICATION and MIN_ISR are those of Kafka's internal topics.
start_kafka_node() {
    local name="$1" node_id="$2" port="$3" controller_port="$4" controller_bootstrap="$5" replication="$6"
    local min_isr="$7" cid_file="$8"
    shift 8
    [[ -f "$KAFKA_LIB/.complete" ]] || die "Kafka jars missing (run: scripts/stack.sh deps)"
    command -v java >/dev/null 2>&1 || die "java is not installed (run: scripts/stack.sh deps)"
    local dir="$RUN_DIR/$name"
    local data="$dir/data" props="$dir/server.properties" log4j="$dir/log4j2.xml" log
    log="$(logfile "$name")"
    mkdir -p "$dir"
    "$PYTHON" - "$ROOT/scripts/kafka-broker.properties" "$props" "$node_id" "$port" "$controller_port" \
        "$controller_bootstrap" "$replication" "$min_isr" "$data" <<'PY' || die "could not write $props"
import string, sys
template, out, node_id, port, controller_port, bootstrap, replication, min_isr, data = sys.argv[1:]
open(out, "w").write(string.Template(open(template).read()).substitute(
    node_id=node_id, port=port, controller_port=controller_port, controller_bootstrap=bootstrap,
    replication=replication, min_isr=min_isr, log_dirs=data))
PY
    # Logs to stdout, which spawn() sends to NAME.log: WARN, plus INFO for start/stop lines.
    cat >"$log4j" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/stack.sh. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{ISO8601}] %p %m (%c{1})%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Logger name="org.apache.kafka.controller.QuorumController" level="INFO"/>
    <Logger name="kafka.tools.StorageTool" level="INFO"/>
  </Loggers>
</Configuration>
EOF
    local cp="$KAFKA_LIB/*"
    local java_log=(-Dlog4j2.configurationFile="$log4j" -Dkafka.logs.dir="$RUN_DIR")
    # Format the storage once. The voters recorded then (the advertised CONTROLLER endpoints) are fixed
    # from then on: remember this node's controller port and say so if it changes.
    if [[ ! -f "$data/meta.properties" ]]; then
        local cid
        if [[ -s "$cid_file" ]]; then
            cid="$(cat "$cid_file")"
        else
            cid="$(java "${java_log[@]}" -cp "$cp" kafka.tools.StorageTool random-uuid 2>>"$log" | tail -n 1)"
            [[ -n "$cid" ]] || die "$name: could not generate a cluster id (see $log)"
            mkdir -p "$(dirname "$cid_file")"
            echo "$cid" >"$cid_file"
        fi
        say "$name: formatting storage (cluster id $cid)"
        java "${java_log[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$props" "$@" \
            >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$name: storage format failed"; }
        echo "$controller_port" >"$dir/formatted.controller.port"
    elif [[ -s "$dir/formatted.controller.port" && "$(cat "$dir/formatted.controller.port")" != "$controller_port" ]]; then
        die "$name: data in ${dir#$ROOT/} was formatted for controller port $(cat "$dir/formatted.controller.port");" \
            "set the port back or remove ${dir#$ROOT/}"
    fi
    spawn "$name" java ${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true "${java_log[@]}" -cp "$cp" kafka.Kafka "$props"
}

# wait_kafka BROKERS NAME...: each node's listener first (librdkafka would log every refused
# connection), then a metadata request to KAFKA_BOOTSTRAP_SERVERS that lists BROKERS brokers; the
# client's own stderr goes to the log unless the wait fails.
wait_kafka() {
    local brokers="$1" start=$SECONDS name port i
    shift
    for name in "$@"; do
        port="$(component_ports "$name" | cut -d' ' -f1 | cut -d: -f1)"
        for i in $(seq 1 900); do
            port_owner "$port" >/dev/null && break
            is_running "$name" || break
            sleep 0.1
        done
    done
    local err="$RUN_DIR/kafka-wait.err"
    if ! "$PYTHON" -m app.kafka wait 90 --brokers "$brokers" 2>"$err"; then
        for name in "$@"; do tail -n 30 "$(logfile "$name")" >&2; done
        grep -v '^%[0-9]|' "$err" >&2 || true
        die "kafka ($*) did not answer with $brokers broker(s) within 90 s (see $(logfile "$1"))"
    fi
    rm -f "$err"
    say "kafka: $brokers broker(s) answering after $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------------
# App processes
# ---------------------------------------------------------------------------------------------
start_app() {  # NAME: web, relay, worker or ingest, or an instance of one (web-2, relay-1, ...)
    case "$(kind_of "$1")" in
        web)
            # gunicorn's workers share one Prometheus registry directory per master, emptied at each start.
            local metrics_dir="$RUN_DIR/prometheus${1#web}"
            rm -rf "$metrics_dir" && mkdir -p "$metrics_dir"
            PROMETHEUS_MULTIPROC_DIR="$metrics_dir" spawn "$1" "$PYTHON" -m gunicorn -c gunicorn.conf.py 'app:create_app()'
            ;;
        relay) spawn "$1" "$PYTHON" -m outbox_relay ;;
        worker) spawn "$1" "$PYTHON" -m cache_worker ;;
        ingest) spawn "$1" "$PYTHON" -m score_ingest ;;
    esac
}

http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
    else
        "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
    fi
}

wait_web() { wait_http web "http://$WEB_HOST:$WEB_PORT/healthz"; }

wait_http() {  # NAME URL: until URL answers 2xx, while component NAME runs (60 s at most)
    local name="$1" url="$2" i
    for i in $(seq 1 120); do
        http_ok "$url" && return 0
        if ! is_running "$name"; then
            tail -n 30 "$(logfile "$name")" >&2
            die "$name exited during start-up (see $(logfile "$name"))"
        fi
        sleep 0.5
    done
    tail -n 30 "$(logfile "$name")" >&2
    die "$name did not answer $url within 60 s (see $(logfile "$name"))"
}

# ---------------------------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------------------------
run_migrations() {
    say "migrations: alembic upgrade head"
    "$PYTHON" -m alembic upgrade head
}

# ---------------------------------------------------------------------------------------------
# Stopping
# ---------------------------------------------------------------------------------------------
# True while pid $1 exists and is not a zombie (an un-reaped exited process still passes kill -0).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null || echo X)"
    [[ "$state" != Z && "$state" != X ]]
}

stop_pid() {  # name pid: SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL
    local name="$1" pid="$2" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 $((STOP_TIMEOUT_S * 10))); do
        alive "$pid" || return 0
        sleep 0.1
    done
    warn "$name (pid $pid) did not stop within ${STOP_TIMEOUT_S} s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
}

stop_component() {
    local name="$1" pid
    if [[ "$name" == postgres ]]; then stop_postgres; return; fi
    if pid="$(running_pid "$name")"; then
        say "stopping $name (pid $pid)"
        stop_pid "$name" "$pid"
    fi
    rm -f "$(pidfile "$name")"
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
# Start the components "$@" (in order) that are not running yet. All their ports are checked before
# anything starts. Topics and migrations run once the infrastructure is up, before any app process.
start_components() {
    local comp running=() to_start=() prepared=0
    for comp in "$@"; do
        if is_running "$comp"; then running+=("$comp"); else to_start+=("$comp"); fi
    done
    if is_running postgres; then refresh_running_pg; fi
    if [[ ${#to_start[@]} -eq 0 ]]; then
        say "already running: $*"
        prepare_data quiet
        return 0
    fi
    check_ports "$@"
    [[ ${#running[@]} -eq 0 ]] || say "already running: ${running[*]}"
    for comp in "${to_start[@]}"; do
        case "$comp" in
            postgres) start_postgres ;;
            redis) start_redis ;;
            kafka) start_kafka ;;
            web | relay | worker | ingest)
                if (( ! prepared )); then prepare_data; prepared=1; fi
                start_app "$comp"
                ;;
        esac
    done
    if (( ! prepared )); then prepare_data; fi
    return 0
}

# Topics and migrations are idempotent and cheap: run them on every services/up, also when everything
# was already running, so a stack started before a new migration still ends up at head.
prepare_data() {  # [quiet]: print output only when a step fails
    if [[ "${1:-}" == quiet ]]; then
        local out
        if is_running kafka && ! out="$("$PYTHON" -m app.kafka topics 2>&1)"; then
            printf '%s\n' "$out" >&2; die "creating the Kafka topics failed"
        fi
        if is_running postgres && ! out="$(run_migrations 2>&1)"; then
            printf '%s\n' "$out" >&2; die "migrations failed"
        fi
        return 0
    fi
    if is_running kafka; then "$PYTHON" -m app.kafka topics; fi
    if is_running postgres; then run_migrations; fi
}

cmd_services() {
    mkdir -p "$STACK"
    check_urls_match_ports
    start_components "${INFRA[@]}"
}

cmd_up() {
    mkdir -p "$STACK"
    check_urls_match_ports
    local started_web=0
    is_running web || started_web=1
    start_components "${INFRA[@]}" "${APPS[@]}"
    if is_running web; then
        (( started_web )) && wait_web
        say "Live quiz is up: http://$WEB_HOST:$WEB_PORT/ (host screen: /host)"
    else
        say "Infrastructure is up; the web app is not running yet"
    fi
}

cmd_down() {
    local comp any=0
    for comp in "${APPS[@]}" kafka redis postgres; do
        is_running "$comp" && any=1
    done
    if (( ! any )); then
        rm -f "$STACK"/*.pid 2>/dev/null || true
        say "nothing is running"
        return 0
    fi
    for comp in "${APPS[@]}" kafka redis postgres; do
        stop_component "$comp"
    done
    say "stopped (data kept in .stack/)"
}

cmd_ps() {
    printf '%-9s %-8s %-8s %s\n' NAME PID STATE PORT
    ps_lines "${INFRA[@]}" "${APPS[@]}"
}

ps_lines() {  # one line per component of "$@"
    local comp pid state ports
    for comp in "$@"; do
        ports="$(component_ports "$comp" | tr ' ' '\n' | cut -d: -f1 | paste -sd, -)"
        if pid="$(running_pid "$comp")"; then state=running; else pid=-; state=stopped; fi
        printf '%-9s %-8s %-8s %s\n' "$comp" "$pid" "$state" "${ports:--}"
    done
}

cmd_logs() {
    local files=()
    if [[ $# -gt 0 ]]; then
        [[ -f "$RUN_DIR/$1.log" ]] || die "no log $RUN_DIR/$1.log"
        files=("$RUN_DIR/$1.log")
    else
        shopt -s nullglob
        files=("$RUN_DIR"/*.log)
        shopt -u nullglob
        [[ ${#files[@]} -gt 0 ]] || die "no logs in $RUN_DIR yet"
    fi
    exec tail -n 50 -F "${files[@]}"
}

cmd_clean() {
    # The cluster's data is in .stack/cluster: never delete it under running processes.
    if compgen -G "$STACK/cluster/*.pid" >/dev/null; then
        die "the cluster may be running: stop it first (scripts/cluster.sh down, or make clean)"
    fi
    cmd_down
    # .stack/pg may be a symlink to the out-of-tree PG home (see pg_home_resolve): remove its target too.
    if [[ -L "$STACK/pg" ]]; then rm -rf "$(readlink -f "$STACK/pg")"; fi
    rm -rf "$STACK"
    say "removed .stack/"
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        services | up | down | ps | clean) use_venv ;;
    esac
    case "$cmd" in
        deps) cmd_deps ;;
        services) load_config; cmd_services ;;
        up) load_config; cmd_up ;;
        down) load_config; cmd_down ;;
        ps) load_config; cmd_ps ;;
        logs) cmd_logs "$@" ;;
        clean) load_config; cmd_clean ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

# scripts/cluster.sh sources this file for its functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
