"""The one launcher of the live quiz's processes: `make up` and its siblings, the clustered topology,
and the stacks of the end-to-end tests, the benchmarks and the chaos runs.

Every stack is one supervisord (Supervisor, from PyPI) in a run directory of its own, driven from
here: supervisor.py (supervisord's files and socket, the restart policies), programs.py (the app
processes and HAProxy as command lines), engines.py (PostgreSQL, Redis, Kafka), single.py (`make up`
in .stack/), cluster.py (`make up-cluster` in .stack/cluster/). `python -m scripts.stack --help` lists
the commands. It lives in scripts/ because it is the developer's and the tests' tooling, not part of
any deployed process: production runs the same programs under its own supervisor (docker-compose.yml's
`restart: unless-stopped`, systemd...).
"""
