"""Password hashes (scrypt, werkzeug), the work a login or a registration asks of the CPU: about 0.1 s
of a core and 32 MiB each, whoever sends the request, so what one client can start is
bounded and shared fairly before any of it runs.

A web process hashes two passwords at once (`SLOTS`), each in a process of its own (hasher.py) that
runs only when nothing else of the machine wants the CPU, and spends at most PASSWORD_HASH_CPU_SHARE
of a core on them on average (a `CpuBudget`): a core kept busy, even by work of the lowest priority,
still delays the wake-ups of the web's requests (docs/performance.md, "Password hashes on a budget"),
so the budget, not the priority, is what leaves the cores to the web. Logins past the two (and past
the budget) wait their turn, at most PASSWORD_HASHES_WAITING of
them and a quarter of those from one client address; the turns go to the addresses in turn, so a flood
of wrong logins from one address waits behind itself while another address's login is next. A login
past its address's share, or past the whole queue, gets 429 `logins_busy` with Retry-After at once.
Without gevent (the tests' in-process app, the CLI) a hash runs in the caller, behind the same gate.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from gevent import monkey

from app.accounts.hasher import answer
from app.core.concurrency import CpuBudget, FairGate, QueueFull
from app.core.errors import TooManyRequests, Unavailable
from app.core.metrics import PASSWORD_HASHES, RATE_LIMITED

# Two hashes at once per process: the two cores stay shared with everything else.
SLOTS = 2
# The error code of a login or registration refused for the queue (429).
LOGINS_BUSY = "logins_busy"
ROOT = Path(__file__).resolve().parents[2]


class PasswordHashing:
    """A web process's password hashes: `make` for a registration, `matches` for a login, each charged to
    the client address `client` (see the top)."""

    def __init__(self, waiting: int, cpu_share: float, slots: int = SLOTS):
        self._gate = FairGate(slots, waiting, per_owner=max(1, waiting // 4), on_change=PASSWORD_HASHES.inc)
        self._budget = CpuBudget(cpu_share)
        self._idle: list[_Hasher] = []  # started hashers no hash is running in
        self._pid = os.getpid()

    def make(self, password: str, client: str) -> str:
        return self._ask({"make": password}, client)["hash"]

    def matches(self, password_hash: str, password: str, client: str) -> bool:
        return self._ask({"check": [password_hash, password]}, client)["matches"]

    def _ask(self, request: dict, client: str) -> dict:
        try:
            with self._gate.held(client):
                started = self._budget.wait_turn()
                reply = self._in_a_hasher(request) if monkey.is_module_patched("socket") else answer(request)
                self._budget.charge(reply.get("cpu_s", 0.0), started)
        except QueueFull:
            RATE_LIMITED.labels(rule="password_hashing").inc()
            raise TooManyRequests(LOGINS_BUSY, "too many logins from your address are waiting to be "
                                  "checked; try again in a second", retry_after_s=1) from None
        if "error" in reply:
            raise ValueError(reply["error"])
        return reply

    def _in_a_hasher(self, request: dict) -> dict:
        if self._pid != os.getpid():  # a forked process makes its own
            self._idle, self._pid = [], os.getpid()
        for _ in range(2):  # a hasher that died (killed, out of memory) is replaced once
            hasher = self._idle.pop() if self._idle else _Hasher.start()
            try:
                reply = hasher.ask(request)
            except OSError:
                hasher.close()
                continue
            except BaseException:  # the request was cut short: the hasher's answer would go to the next
                hasher.close()
                raise
            self._idle.append(hasher)
            return reply
        raise Unavailable("unavailable", "the password could not be checked; send the request again")


class _Hasher:
    """One hasher process, and the socket its input and output are."""

    def __init__(self, process: subprocess.Popen, channel: socket.socket):
        self._process = process
        self._channel = channel
        self._replies = channel.makefile("rb")

    @classmethod
    def start(cls) -> _Hasher:
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", "app.accounts.hasher"], cwd=ROOT,
                                       stdin=theirs.fileno(), stdout=theirs.fileno())
        return cls(process, ours)

    def ask(self, request: dict) -> dict:
        self._channel.sendall(json.dumps(request).encode() + b"\n")
        line = self._replies.readline()
        if not line:
            raise ConnectionResetError("the hasher process ended")
        return json.loads(line)

    def close(self) -> None:
        self._replies.close()
        self._channel.close()
        self._process.kill()
        self._process.wait()
