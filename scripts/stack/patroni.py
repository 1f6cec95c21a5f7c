"""The cluster's PostgreSQL tier: 3 PostgreSQL nodes under Patroni (pg-1..3), etcd as Patroni's consensus
store (etcd-1..3) and HAProxy (pg-lb) in front of whichever node Patroni reports as the leader.

Every process of the cluster connects to pg-lb. HAProxy asks each node's Patroni REST API for
`GET /primary` (200 on the leader alone) every second and sends new connections to the node that answers
200; when a node goes down, `on-marked-down shutdown-sessions` closes the connections still open to it,
so the clients reconnect (to the new leader) instead of waiting on a dead socket.

Durability: `synchronous_mode: true` with one synchronous standby. A commit is acknowledged once it is
on the leader and the synchronous standby, and Patroni promotes only a node named in its sync key, so
a failover never loses an acknowledged commit. `synchronous_mode_strict` stays off: with both standbys
down the leader goes on alone (the sync key then names no standby, so no stale node can be promoted)
rather than refuse every write; the cluster is built to keep answering through one fault.

Timeouts, for a loaded two-core machine that must not fail over by itself: etcd's heartbeat 250 ms and
election timeout 2.5 s (10x its defaults' ratio kept, headroom for a starved process); Patroni's
defaults ttl 30, loop_wait 10, retry_timeout 10 (loop_wait + 2 * retry_timeout <= ttl): a leader that
cannot reach etcd for 10 s keeps its role, and a dead leader is replaced within ttl + loop_wait (~40 s
at worst).

Addresses: each node listens on a loopback address of its own, 127.0.1.N (Linux routes all of 127/8
to lo, so nothing is configured for it), and reaches etcd there too (every etcd member also listens on
each node's address), so all of a node's traffic, in and out, carries its address and one firewall
rule on it cuts the node off from etcd, its replicas, pg-lb and the clients (the partition test,
tests/cluster/partition.py). The other programs stay on 127.0.0.1.

Written by scripts/stack at every start; the configuration files are JSON, which YAML reads as is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.postgres import PG_ROLES, ROOT_USER, pg_bindir
from scripts.stack.programs import PRIORITY, StackError, wait_for
from scripts.stack.supervisor import Policy, Program, Supervisor

ETCD_NODES = tuple(f"etcd-{i}" for i in (1, 2, 3))
PG_NODES = tuple(f"pg-{i}" for i in (1, 2, 3))
SCOPE = "livequiz"
# Cluster-wide PostgreSQL settings (Patroni's dynamic configuration, written to etcd at bootstrap):
# wal_level=logical for the relay's change-data capture, wal_log_hints for pg_rewind of a former leader.
PG_PARAMETERS = {
    "max_connections": 300,
    "wal_level": "logical",
    "max_replication_slots": 64,
    "max_wal_senders": 16,
    "wal_log_hints": "on",
    "hot_standby": "on",
    "synchronous_commit": "on",
}
# Patroni drops every replication slot it does not manage (on the leader too, whenever it re-reads
# them: after a start, a promotion); the relay's logical slots (outbox_relay_<database>, made by the
# relay, read by SQL between which they are inactive) are the relay's own: Patroni leaves them alone.
IGNORE_SLOTS = [{"type": "logical", "plugin": "pgoutput"}]
# Per node (each of 3 nodes on one machine: smaller buffers than the single stack's server).
PG_LOCAL = {
    "shared_buffers": "128MB",
    "work_mem": "8MB",
    "fsync": "on",
    "full_page_writes": "on",
    "wal_compression": "on",
    "max_wal_size": "1GB",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "log_min_duration_statement": 1000,
    "log_lock_waits": "on",
}


def _index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def node_host(name: str) -> str:
    """Node pg-N's loopback address of its own: 127.0.1.N."""
    return f"127.0.1.{_index(name)}"


@dataclass(frozen=True)
class Layout:
    """The tier's ports. CLUSTER_PG_PORT: HAProxy, then node N's PostgreSQL at PG_PORT + 2N - 1 and its
    Patroni REST API the port after it. CLUSTER_ETCD_PORT: member N's client port ETCD_PORT + 2(N-1), its
    peer port the port after it."""

    pg_port: int = 15432
    etcd_port: int = 12379

    def pg(self, name: str) -> int:
        return self.pg_port + 2 * _index(name) - 1

    def api(self, name: str) -> int:
        return self.pg(name) + 1

    def etcd_client(self, name: str) -> int:
        return self.etcd_port + 2 * (_index(name) - 1)

    def etcd_peer(self, name: str) -> int:
        return self.etcd_client(name) + 1

    def ports(self) -> dict[str, dict[int, str]]:
        ports: dict[str, dict[int, str]] = {}
        for name in ETCD_NODES:
            ports[name] = {p: "CLUSTER_ETCD_PORT" for p in (self.etcd_client(name), self.etcd_peer(name))}
        for name in PG_NODES:
            ports[name] = {p: "CLUSTER_PG_PORT" for p in (self.pg(name), self.api(name))}
        ports["pg-lb"] = {self.pg_port: "CLUSTER_PG_PORT"}
        return ports

    def etcd_hosts(self, host: str = "127.0.0.1") -> str:
        """The etcd members' client endpoints on `host` (a node's own address: each member listens there)."""
        return ",".join(f"{host}:{self.etcd_client(name)}" for name in ETCD_NODES)


def etcd_command(layout: Layout, name: str, data: Path) -> list[str]:
    """etcd member `name` of the 3-member cluster, its data in `data`."""
    peers = ",".join(f"{n}=http://127.0.0.1:{layout.etcd_peer(n)}" for n in ETCD_NODES)
    client, peer = f"http://127.0.0.1:{layout.etcd_client(name)}", f"http://127.0.0.1:{layout.etcd_peer(name)}"
    # Also on each node's address: a node reaches etcd from its own (its cut cuts that too).
    listen = ",".join([client] + [f"http://{node_host(n)}:{layout.etcd_client(name)}" for n in PG_NODES])
    return [
        "etcd", "--name", name, "--data-dir", str(data),
        "--listen-client-urls", listen, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", peers, "--initial-cluster-token", f"{SCOPE}-etcd",
        "--initial-cluster-state", "new",
        # A loaded two-core machine must not elect a new etcd leader by itself.
        "--heartbeat-interval", "250", "--election-timeout", "2500",
    ]  # fmt: skip


def patroni_config(layout: Layout, name: str, home: Path, secrets: dict[str, str]) -> dict:
    """Patroni's configuration of node `name` (files under `home`); `secrets`: the passwords of the
    `postgres` superuser and the `replicator` role."""
    auth = "scram-sha-256"
    host = node_host(name)
    return {
        "scope": SCOPE,
        "namespace": "/service/",
        "name": name,
        "log": {"level": "INFO"},
        "restapi": {
            "listen": f"{host}:{layout.api(name)}",
            "connect_address": f"{host}:{layout.api(name)}",
        },
        # use_proxies: keep to these endpoints; otherwise Patroni swaps them for the members' advertised
        # ones (127.0.0.1) and a node cut off by its own address would still reach etcd.
        "etcd3": {"hosts": layout.etcd_hosts(host), "protocol": "http", "use_proxies": True},
        "bootstrap": {
            "dcs": {
                "ttl": 30,
                "loop_wait": 10,
                "retry_timeout": 10,
                "maximum_lag_on_failover": 1048576,
                "synchronous_mode": True,
                "synchronous_mode_strict": False,
                "synchronous_node_count": 1,
                "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": PG_PARAMETERS},
                "ignore_slots": IGNORE_SLOTS,
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
        },
        "postgresql": {
            "listen": f"{host}:{layout.pg(name)}",
            "connect_address": f"{host}:{layout.pg(name)}",
            # Patroni talks to its own PostgreSQL over the socket: a cut node still knows its state.
            "use_unix_socket": True,
            "data_dir": str(home / "data"),
            "bin_dir": str(pg_bindir()),
            "pgpass": str(home / "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": secrets["superuser"]},
                "replication": {"username": "replicator", "password": secrets["replication"]},
                "rewind": {"username": "postgres", "password": secrets["superuser"]},
            },
            "pg_hba": [
                "local all all peer",
                f"host replication replicator 127.0.0.0/8 {auth}",
                f"host all all 127.0.0.0/8 {auth}",
            ],
            "parameters": {**PG_LOCAL, "unix_socket_directories": str(home / "sock")},
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def patch_dynamic(api_urls: list[str], dcs: dict) -> None:
    """PATCH Patroni's cluster-wide configuration (`dcs`) through the first node's REST API that takes it
    (any node writes it to etcd); StackError when none does."""
    body = json.dumps(dcs).encode()
    for url in api_urls:
        request = urllib.request.Request(f"{url}/config", data=body, method="PATCH",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            continue
    raise StackError("no Patroni node took the cluster's configuration (PATCH /config)")


def haproxy_config(layout: Layout) -> str:
    """HAProxy in front of the leader: TCP to the node whose Patroni answers `GET /primary` with 200."""
    servers = "".join(
        f"    server {name} {node_host(name)}:{layout.pg(name)} check port {layout.api(name)}\n"
        for name in PG_NODES
    )
    return (
        "# Written by scripts/stack (scripts/stack/patroni.py) at every start; edits are overwritten.\n"
        "global\n    maxconn 2000\n\n"
        "defaults\n    mode tcp\n    timeout connect 4s\n    timeout client 30m\n    timeout server 30m\n"
        "    timeout check 2s\n\n"
        "listen postgres\n"
        f"    bind 127.0.0.1:{layout.pg_port}\n"
        "    option httpchk GET /primary\n"
        "    http-check expect status 200\n"
        "    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions\n" + servers
    )


class PatroniTier:
    """The tier's programs under the cluster's supervisor, the waits, the app's role and database."""

    def __init__(self, run_dir: Path, layout: Layout, secrets: dict[str, str]) -> None:
        self.run_dir, self.layout, self.secrets = run_dir, layout, secrets

    def home(self, name: str) -> Path:
        return self.run_dir / name

    def etcd_program(self, name: str, policy: Policy) -> Program:
        if not shutil.which("etcd"):
            raise StackError("etcd is not installed (run: scripts/deps.sh cluster)")
        data = self.home(name)
        data.mkdir(parents=True, exist_ok=True)
        return Program(name, etcd_command(self.layout, name, data), policy, stop_wait_s=30,
                       priority=PRIORITY["postgres"] - 10, ports=self.layout.ports()[name])

    def node_program(self, name: str, policy: Policy) -> Program:
        """Patroni of node `name`, running (and running PostgreSQL) as the `postgres` OS user when root."""
        if not shutil.which("patroni"):
            raise StackError("patroni is not installed (run: scripts/deps.sh cluster)")
        home = self.home(name)
        (home / "sock").mkdir(parents=True, exist_ok=True)
        config = home / "patroni.yml"
        config.write_text(json.dumps(patroni_config(self.layout, name, home, self.secrets), indent=2))
        config.chmod(0o600)
        if ROOT_USER:
            if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(self.run_dir)],
                              check=False).returncode:
                raise StackError(f"{self.run_dir} is not reachable by the postgres user")
            for path in (home, home / "sock", config):
                shutil.chown(path, "postgres", "postgres")
        home.chmod(0o700)
        # Patroni stops PostgreSQL itself on SIGTERM (a fast shutdown), then exits.
        return Program(name, ["patroni", str(config)], policy, user="postgres" if ROOT_USER else None,
                       directory=Path("/"), stop_wait_s=60, group_signals=False,
                       priority=PRIORITY["postgres"], ports=self.layout.ports()[name])

    def balancer_program(self, policy: Policy) -> Program:
        cfg = self.home("pg-lb") / "haproxy.cfg"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(haproxy_config(self.layout))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True,
                               check=False)
        if check.returncode:
            raise StackError(f"haproxy: invalid {cfg}: {check.stdout}{check.stderr}")
        return Program("pg-lb", ["haproxy", "-db", "-f", str(cfg)], policy,
                       priority=PRIORITY["postgres"] + 5, ports=self.layout.ports()["pg-lb"])

    def members(self) -> list[dict]:
        """Patroni's members as the first node that answers sees them ([] when none answers)."""
        for name in PG_NODES:
            try:
                url = f"http://{node_host(name)}:{self.layout.api(name)}/cluster"
                with urllib.request.urlopen(url, timeout=2) as response:
                    return json.load(response).get("members", [])
            except (OSError, ValueError):
                continue
        return []

    def start(self, supervisor: Supervisor, programs: list[Program]) -> None:
        """The etcd members of `programs` together (a quorum needs two before it answers), then the rest
        once etcd has decided its cluster version; and patronictl's file (the fault tests' switchover)."""
        etcd = [program for program in programs if program.name in ETCD_NODES]
        for program in etcd:
            supervisor.start(program.name, wait=False)
        if len(etcd) < len(programs):
            self.wait_etcd(supervisor)
        for program in programs:
            if program not in etcd:
                supervisor.start(program.name, wait=False)
        self.ctl_config()

    def etcd_decided(self) -> bool:
        """Whether an etcd member answers with the cluster's version decided: until its members have agreed
        on one, /version says "not_decided" and Patroni, reading it at its start, exits."""
        for name in ETCD_NODES:
            try:
                url = f"http://127.0.0.1:{self.layout.etcd_client(name)}/version"
                with urllib.request.urlopen(url, timeout=2) as response:
                    version = json.load(response).get("etcdcluster", "")
            except (OSError, ValueError):
                continue
            if version and version != "not_decided":
                return True
        return False

    def wait_etcd(self, supervisor: Supervisor, timeout_s: float = 120) -> None:
        wait_for(self.etcd_decided, "etcd's members agreeing on a cluster version", supervisor,
                 list(ETCD_NODES), timeout_s, every_s=0.25)

    def wait_leader(self, supervisor: Supervisor, timeout_s: float = 180) -> tuple[str, str]:
        """Until a running leader and a running synchronous standby; their names."""

        def roles() -> dict[str, str]:
            up = ("running", "streaming")
            return {m["role"]: m["name"] for m in self.members() if m.get("state") in up}

        wait_for(lambda: {"leader", "sync_standby"} <= set(roles()),
                 "a Patroni leader and a synchronous standby", supervisor, list(PG_NODES), timeout_s,
                 every_s=0.5)
        found = roles()
        return found["leader"], found["sync_standby"]

    def apply_dynamic(self, config: dict) -> None:
        """The cluster-wide part of `config` (bootstrap.dcs: written to etcd only when the cluster is
        made) on the running cluster, so a change of it reaches a cluster made before (PATCH /config)."""
        patch_dynamic([f"http://{node_host(name)}:{self.layout.api(name)}" for name in PG_NODES],
                      config["bootstrap"]["dcs"])

    def psql_leader(self, sql: str, **variables: str) -> subprocess.CompletedProcess:
        """`sql` as the superuser through pg-lb (the leader)."""
        args = [str(pg_bindir() / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.layout.pg_port), "-U", "postgres", "-d", "postgres"]
        for key, value in variables.items():
            args += ["-v", f"{key}={value}"]
        env = {"PGPASSWORD": self.secrets["superuser"], "PATH": "/usr/bin"}
        return subprocess.run(args, input=sql, env=env, capture_output=True, text=True, check=False)

    def roles(self, user: str, password: str, database: str) -> None:
        """The app's role and database on the leader (replicated to the standbys)."""
        done = self.psql_leader(PG_ROLES, user=user, pw=password, db=database)
        if done.returncode:
            raise StackError(f"creating the role {user} and database {database} failed: {done.stderr}")

    def ctl_config(self) -> Path:
        """patronictl's configuration: the cluster in etcd, reached on 127.0.0.1, not on a node's address
        (a node may be cut off)."""
        path = self.run_dir / "patronictl.yml"
        if self.run_dir.exists():
            path.write_text(json.dumps({"scope": SCOPE, "namespace": "/service/",
                                        "etcd3": {"hosts": self.layout.etcd_hosts(), "protocol": "http"}}))
        return path

    def table(self) -> str:
        """`patronictl list`: the members, their roles, timelines and lag."""
        done = subprocess.run(["patronictl", "-c", str(self.ctl_config()), "list"], capture_output=True,
                              text=True, check=False)
        return done.stdout.rstrip() or done.stderr.strip()
