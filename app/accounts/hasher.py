"""The process that hashes passwords for a web worker (`python -m app.accounts.hasher`; hashing.py starts
it): one request at a time, a line of JSON each way on its standard input and output, until its input
ends (its worker closed it, or died).

It runs only when nothing else of the machine wants the CPU (SCHED_IDLE). In a process of its own, a
hash never holds the web worker's GIL: a hashing thread of the worker, preempted by the machine's other
work while it held the GIL for the few bytecodes around scrypt, kept the worker's event loop waiting
until that thread ran again.
"""
from __future__ import annotations

import json
import signal
import sys

from werkzeug.security import check_password_hash, generate_password_hash

from app.core.concurrency import yield_to_everything


def answer(request: dict) -> dict:
    """{"make": password} -> {"hash": ...}; {"check": [hash, password]} -> {"matches": bool}."""
    if "make" in request:
        return {"hash": generate_password_hash(request["make"])}
    password_hash, password = request["check"]
    return {"matches": check_password_hash(password_hash, password)}


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C of the stack's terminal ends it without a trace
    yield_to_everything()
    for line in sys.stdin.buffer:
        try:
            reply = answer(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:  # a hash werkzeug cannot read, a broken request
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
