#!/usr/bin/env bash
# What the local stacks need on this machine: Debian packages, the project's virtualenv, the Kafka
# broker's jars, the npm packages (GraphiQL that the web serves, axe-core for the browser tests). Bash
# does what it is good at here; the stacks themselves are run by scripts/stack (`make up`).
#
#   scripts/deps.sh           apt packages (PostgreSQL, Redis, Java, Prometheus, Chromium, wrk...), .venv (scripts/venv.sh),
#                             the Kafka jars into .cache/kafka/lib and Kafka Connect's with Debezium into
#                             .cache/connect/lib (Maven Central), npm ci of both lock files
#   scripts/deps.sh cluster   the same, plus HAProxy, Patroni, etcd and nftables (`make up-cluster`: its PostgreSQL
#                             nodes under Patroni, etcd as Patroni's consensus store)
#   scripts/deps.sh connect   only the Kafka Connect and Debezium jars (`make test-debezium`)
# Every jar's version is pinned in scripts/jars-versions-pom.xml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_CACHE="$ROOT/.cache/kafka"
KAFKA_LIB="$KAFKA_CACHE/lib"
KAFKA_POM="$ROOT/scripts/kafka-pom.xml"
CONNECT_LIB="$ROOT/.cache/connect/lib"
CONNECT_POM="$ROOT/scripts/connect-pom.xml"

cd "$ROOT"

say() { printf '%s\n' "$*"; }
die() { printf 'deps: %s\n' "$*" >&2; exit 1; }

pg_bindir() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    echo ""
}

apt_install() {
    [[ $# -gt 0 ]] || return 0
    local sudo=""
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        sudo="sudo"
    fi
    command -v apt-get >/dev/null 2>&1 || die "no apt-get; install these yourself: $*"
    say "deps: apt-get install $*"
    # Debian's postinst would start the system's own postgresql/redis/prometheus services; a policy-rc.d that
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
    # `make up`'s Prometheus (which brings promtool, for the alert rules' unit tests) and the exporters
    # of Redis and PostgreSQL it scrapes.
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
    command -v prometheus-postgres-exporter >/dev/null 2>&1 || missing+=(prometheus-postgres-exporter)
    # For `make bench`: the HTTP load generator (pgbench and redis-benchmark come with the servers).
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
}

# fetch_jars WHAT POM LIB MARKER: the runtime dependencies of POM into LIB (resolved by Maven, cached:
# fetched again only when LIB has no .complete, or POM or the versions changed since), MARKER a jar
# pattern that must be among them.
fetch_jars() {
    local what="$1" pom="$2" lib="$3" marker="$4"
    local stamp
    stamp="$(cat "$pom" "$ROOT/scripts/jars-versions-pom.xml" | cksum | cut -d' ' -f1)"
    if [[ -f "$lib/.complete" ]] && [[ "$(cat "$lib/.complete")" == "$stamp" || ! -s "$lib/.complete" ]]; then
        say "deps: $what jars cached in ${lib#$ROOT/}"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn is needed to fetch the $what jars (apt-get install maven)"
    say "deps: fetching the $what jars from Maven Central into ${lib#$ROOT/}"
    local tmp="$lib.tmp.$$" start=$SECONDS
    rm -rf "$tmp"
    mkdir -p "$tmp"
    mvn -q -B -Dstyle.color=never -f "$pom" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
    ls "$tmp"/$marker >/dev/null 2>&1 || die "maven did not produce $marker in $tmp"
    echo "$stamp" > "$tmp/.complete"
    rm -rf "$lib"
    mv "$tmp" "$lib"
    say "deps: $what jars fetched in $((SECONDS - start)) s ($(ls "$lib"/*.jar | wc -l) jars)"
}

deps_kafka() {
    fetch_jars "Kafka broker" "$KAFKA_POM" "$KAFKA_LIB" "kafka_2.13-*.jar"
}

# Kafka Connect (the broker's version) and Debezium's PostgreSQL connector, one classpath (RELAY_MODE=debezium).
deps_connect() {
    fetch_jars "Kafka Connect and Debezium" "$CONNECT_POM" "$CONNECT_LIB" "debezium-connector-postgres-*.jar"
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

deps_cluster() {
    local missing=()
    command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
    command -v patroni >/dev/null 2>&1 || missing+=(patroni)
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
    # The partition test cuts a PostgreSQL node's loopback address off with a firewall rule.
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
}

main() {
    deps_system
    "$ROOT/scripts/venv.sh" ensure >/dev/null
    deps_kafka
    deps_connect  # RELAY_MODE=debezium, and `make test`'s one test through Debezium
    deps_npm
    if [[ "${1:-}" == cluster ]]; then deps_cluster; fi
}

if [[ "${1:-}" == connect ]]; then
    deps_connect
    exit 0
fi
main "$@"
