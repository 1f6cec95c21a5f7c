"""`python -m scripts.stack COMMAND`: what the Makefile's stack targets run (see scripts/stack/__init__.py).

up | services | down | ps | logs [NAME] | clean              the single stack (.stack/)
cluster up | down | ps | logs [NAME] | test [ARGS] | chaos | bench   the clustered topology (.stack/cluster/)
"""

from __future__ import annotations

import sys

from scripts.stack.programs import StackError


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        if argv[0] == "cluster":
            from scripts.stack import cluster_runs
            from scripts.stack.cluster import Cluster

            command, args = (argv[1] if len(argv) > 1 else ""), argv[2:]
            cluster = Cluster()
            actions = {
                "up": cluster.up,
                "down": cluster.down,
                "ps": cluster.ps,
                "logs": lambda: cluster.logs(args[0] if args else None),
                "test": lambda: cluster_runs.test(cluster, args),
                "chaos": lambda: cluster_runs.chaos(cluster),
                "bench": lambda: cluster_runs.bench(cluster),
            }
        else:
            from scripts.stack.single import STACK_DIR, Single, logs

            command, args = argv[0], argv[1:]
            if command == "logs":  # no configuration needed
                logs(STACK_DIR, args[0] if args else None)
                return 0
            single = Single()
            actions = {
                "up": single.up,
                "services": single.services,
                "down": single.down,
                "ps": single.ps,
                "clean": single.clean,
            }
        if command not in actions:
            print(__doc__.strip(), file=sys.stderr)
            return 2
        actions[command]()
        return 0
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
