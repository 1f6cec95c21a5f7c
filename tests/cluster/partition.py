"""A PostgreSQL node of the cluster cut off from everything (etcd, its replicas, pg-lb, the clients) while it
keeps running: the network partition of the cluster's fault tests.

Each node listens on a loopback address of its own, 127.0.1.N, and reaches etcd there too
(scripts/stack/patroni.py), so every packet of the node carries that address. The cut is an nftables table
of the test's own that drops, on input, every packet from or to the address: nothing is refused (a RST
would tell the peers something), packets just vanish, as in a partition, and connections already open
hang, as they do. Leaving the context deletes the table, whatever happened (`nft delete table`); a
table left over by a killed run is deleted before a new cut. Needs `nft` (scripts/deps.sh cluster) and
CAP_NET_ADMIN (root).

Why not a network namespace: a running process cannot be moved into one (`unshare --net` starts a new
process), so each node would have to be started in a namespace of its own joined to the others by veth
pairs, and every address of the stack would change with it; the node's own loopback address gives the
same cut with one rule and leaves the cluster as it runs every day.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

TABLE = "livequiz_partition"


def _nft(script: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"nft: {done.stderr.strip()}\n{script}"


def heal() -> None:
    """Delete the partition's table if there is one."""
    if subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True,
                      check=False).returncode == 0:
        _nft(f"delete table inet {TABLE}\n")


@contextmanager
def cut_off(address: str) -> Iterator[None]:
    """While the block runs, every packet from or to `address` (a node's 127.0.1.N) is dropped."""
    assert shutil.which("nft"), "nft is not installed (scripts/deps.sh cluster installs nftables)"
    assert address.startswith("127.0.1."), f"{address} is not a node's own address"
    heal()
    _nft(f"""table inet {TABLE} {{
    chain input {{
        type filter hook input priority -10; policy accept;
        ip saddr {address} drop
        ip daddr {address} drop
    }}
}}
""")
    try:
        yield
    finally:
        heal()
