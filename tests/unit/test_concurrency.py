"""The fair gate and the CPU budget in front of password hashing (app/core/concurrency.py), and the hashes
in threads of their own at the lowest CPU priority where a web worker runs them (gevent's own pool keeps
the usual priority): under gevent, checked in a process of its own whose standard library is patched, as
a worker's is."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.core.concurrency import CpuBudget, FairGate, QueueFull
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


class Holders:
    """Callers of a gate, each in a thread that holds its slot until released; records the order in
    which they got it."""

    def __init__(self, gate: FairGate):
        self.gate = gate
        self.served: list[str] = []
        self.refused: list[str] = []
        self._release: dict[str, threading.Event] = {}

    def arrive(self, owner: str, name: str) -> None:
        release = self._release[name] = threading.Event()
        waiting = self.gate.waiting

        def hold() -> None:
            try:
                with self.gate.held(owner):
                    self.served.append(name)
                    release.wait()
            except QueueFull:
                self.refused.append(name)

        threading.Thread(target=hold, daemon=True).start()
        # The state it reached: holding a slot, waiting in line, or refused.
        wait_until(lambda: name in self.served or name in self.refused or self.gate.waiting > waiting,
                   f"{name} neither holds, waits nor was refused")

    def release(self, name: str) -> None:
        count = len(self.served)
        self._release[name].set()
        if self.gate.waiting:
            wait_until(lambda: len(self.served) > count, f"no caller got the slot {name} gave back")


def test_a_flood_from_one_owner_waits_behind_itself_and_past_its_share_is_refused():
    holders = Holders(FairGate(slots=1, waiting=3, per_owner=2))
    holders.arrive("flood", "f1")
    assert holders.served == ["f1"]
    for name in ("f2", "f3", "f4"):
        holders.arrive("flood", name)
    assert holders.refused == ["f4"]  # its owner's share of the line (2) was taken
    holders.arrive("user", "u1")
    holders.arrive("other", "o1")
    assert holders.refused == ["f4", "o1"]  # the whole line (3) was taken
    for name in ("f1", "f2", "u1", "f3"):
        holders.release(name)
    # The user, who came after the flood's second, went before it: owners take turns.
    assert holders.served == ["f1", "f2", "u1", "f3"]


def test_owners_take_turns_and_a_free_slot_is_taken_at_once():
    holders = Holders(FairGate(slots=2, waiting=8, per_owner=4))
    for name in ("a1", "a2", "a3", "a4", "b1", "b2", "c1"):
        holders.arrive(name[0], name)
    assert holders.served == ["a1", "a2"] and holders.gate.waiting == 5
    for name in ("a1", "a2", "a3", "b1", "c1", "a4"):
        holders.release(name)
    assert holders.served == ["a1", "a2", "a3", "b1", "c1", "a4", "b2"]
    holders.release("b2")
    assert holders.gate.waiting == 0
    holders.arrive("d", "d1")
    assert holders.served[-1] == "d1"


def test_a_cpu_budget_spaces_the_work_to_its_share_and_saves_up_no_burst():
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = CpuBudget(0.25, clock=lambda: now[0], sleep=sleep)
    started = budget.wait_turn()
    assert slept == []
    now[0] += 0.1
    budget.charge(0.1, started)  # 0.1 s of CPU at a quarter of a core: paid for 0.4 s after it began
    started = budget.wait_turn()
    assert slept == [pytest.approx(0.3)] and started == pytest.approx(100.4)
    budget.charge(0.1, started)
    now[0] += 60  # a quiet minute
    budget.wait_turn()
    budget.charge(0.1, now[0])
    assert budget.wait_turn() == pytest.approx(now[0]) and slept[-1] == pytest.approx(0.4)


def test_only_a_password_that_did_not_match_is_charged_to_the_hash_budget():
    """A registration and a right password are done once (the rate limits bound them): they leave the budget
    as it was, so a class signing in together is not spaced out; a wrong one (a guesser's) puts it in debt."""
    from app.accounts.hashing import PasswordHashing

    hashing = PasswordHashing(waiting=4, cpu_share=0.001)
    now, slept = [100.0], []
    hashing._budget = CpuBudget(0.001, clock=lambda: now[0], sleep=slept.append)
    made = hashing.make("correct horse", "198.51.100.1")
    assert hashing.matches(made, "correct horse", "198.51.100.1")
    hashing.make("battery staple", "198.51.100.1")
    assert slept == []  # nothing charged: no turn waited for
    assert not hashing.matches(made, "wrong horse", "198.51.100.2")
    assert hashing.matches(made, "correct horse", "198.51.100.1")
    assert len(slept) == 1 and slept[0] > 1  # the wrong one's CPU, at a thousandth of a core, waited for


PROGRAM = """
import app.accounts.hashing  # imported before the patch, as a gunicorn worker's post_fork does
from gevent import monkey
monkey.patch_all()
import json, os, threading
import gevent
from werkzeug.security import generate_password_hash
from app.accounts.hashing import PasswordHashing
from app.core.concurrency import CpuBudget, IdleThreads, off_the_event_loop

def policy():
    thread = threading.get_native_id()
    return {"thread": thread, "policy": os.sched_getscheduler(thread),
            "nice": os.getpriority(os.PRIO_PROCESS, thread)}

hashing = PasswordHashing(waiting=4, cpu_share=1)
made = hashing.make("correct horse", "198.51.100.1")
seen = {"right": hashing.matches(made, "correct horse", "198.51.100.1"),
        "wrong": hashing.matches(made, "wrong horse", "198.51.100.2")}
heavy = IdleThreads(2)
seen["heavy"] = [heavy.run(policy) for _ in range(3)]
seen["other"] = [off_the_event_loop(policy) for _ in range(3)]
seen["caller"] = policy()
budget = CpuBudget(0.5)
budget.charge(0.1, budget.wait_turn())  # the next turn is 0.2 s away
ran = []
gevent.spawn(ran.append, "another greenlet")
budget.wait_turn()
seen["loop_ran_while_waiting"] = ran
print(json.dumps({**seen, "idle": os.SCHED_IDLE}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread policies are Linux's")
def test_under_gevent_hashes_run_in_threads_that_yield_and_the_budget_waits_without_blocking_the_loop():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=120)
    seen = json.loads(out.stdout)
    assert (seen["right"], seen["wrong"]) == (True, False)
    assert {h["policy"] for h in seen["heavy"]} == {seen["idle"]}
    assert all(o["policy"] == os.SCHED_OTHER and o["nice"] == seen["caller"]["nice"] for o in seen["other"])
    assert not {h["thread"] for h in seen["heavy"]} & {o["thread"] for o in seen["other"]}
    assert seen["caller"]["policy"] == os.SCHED_OTHER
    assert seen["loop_ran_while_waiting"] == ["another greenlet"]  # the budget's wait is gevent's sleep
