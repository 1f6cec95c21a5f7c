"""The operator CLI: `flask --app app ops ...` (see `--help` of each command), one module per group.

Every command reads the environment's configuration through the app, prints a one-line summary
last, and exits 0 on success, 1 on a failure or a finding (verify: a board differs), 2 on a usage
error. Progress bars are drawn only when stdout is a terminal.

PostgreSQL is the truth (DESIGN.md, invariant 4): verify compares Redis with it, rebuild copies it
into Redis with the atomic swap of app/quiz/board/rebuild.py, and replay and redrive resend
events that the worker dedupes by event id, so neither can count an event twice.
"""
from __future__ import annotations

from app.ops import (  # noqa: F401  (they register the commands)
    dead_letters,
    outbox,
    produce,
    rebuild,
    replay,
    trace,
    verify,
)
from app.ops.common import dlq, ops

__all__ = ["ops", "dlq"]
