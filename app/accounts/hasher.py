"""The process that hashes passwords for a web worker (`python -m app.accounts.hasher`; hashing.py starts
it): one request at a time, a line of JSON each way on its standard input and output, until its input
ends (its worker closed it, or died).

It runs only when nothing else of the machine wants the CPU (SCHED_IDLE), and, in a process of its
own, never holds the web worker's GIL: a thread of the worker at SCHED_IDLE that the machine's other
work preempts while it holds the GIL would keep the worker's event loop waiting until it ran again.
"""
from __future__ import annotations

import json
import signal
import sys
import time

from werkzeug.security import check_password_hash, generate_password_hash

from app.core.concurrency import yield_to_everything


def answer(request: dict) -> dict:
    """{"make": password} -> {"hash": ...}; {"check": [hash, password]} -> {"matches": bool}; each with
    `cpu_s`, the CPU seconds it took (charged to the web process's budget)."""
    began = time.thread_time()
    if "make" in request:
        reply = {"hash": generate_password_hash(request["make"])}
    else:
        password_hash, password = request["check"]
        reply = {"matches": check_password_hash(password_hash, password)}
    return {**reply, "cpu_s": time.thread_time() - began}


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
