"""docs/configuration.md, written from the settings of app/core/config.py (each one's variable, default
and sentence), so the reference cannot drift from the code: a unit test compares the file with `render()`.

    .venv/bin/python -m app.core.config_doc > docs/configuration.md
"""
from __future__ import annotations

import sys
from typing import Any

from app.core.config import describe

COMMAND = ".venv/bin/python -m app.core.config_doc > docs/configuration.md"

HEADER = f"""\
# Configuration

<!-- Generated from app/core/config.py: do not edit by hand. After changing a setting, run
     {COMMAND}
     (tests/unit/test_docs.py fails while this file is stale). -->

Every process (web, relay, worker, ingest, the operator CLI) reads its configuration from the
environment through `app/core/config.py`, the one owner of every setting below. Every variable has a
default that matches `make up`, so a developer sets nothing. A malformed value stops the process at
start with one line naming the variable. `python -m app.core.config` prints the values in force.

Values are trimmed; a choice (`RELAY_MODE`, `JWT_ALGORITHM`, `LOG_FORMAT`, `LOG_LEVEL`) is read in any
case; a switch is `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off`; a rate (`RATE_*`) is written in the
`limits` library's notation (`10/minute`, `3000 per minute`).

| variable | default | meaning |
| --- | --- | --- |
"""

FOOTER = """
The tooling around the services reads a few variables of its own: the tests' (`TEST_DATABASE`,
`TEST_WAIT_S`, `FUZZ_*`...) are in [testing.md](testing.md), the cluster's ports (`CLUSTER_*_PORT`) in
[operations.md](operations.md#clustered-topology), `SECRET_KEY`'s handling by `make up` in
[operations.md](operations.md#the-secret-key), the benchmarks' (`BENCH_*`) in
[performance.md](performance.md).
"""


def _default(value: Any) -> str:
    return "(empty)" if value == "" else f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole of docs/configuration.md."""
    rows = [f"| `{env}` | {_default(default)} | {_cell(doc)} |" for env, default, doc in describe()]
    return HEADER + "\n".join(rows) + "\n" + FOOTER


if __name__ == "__main__":
    sys.stdout.write(render())
