"""CPU-heavy calls (password hashing) run off a gevent worker's loop in threads of their own that yield
the CPU to everything else (app/core/concurrency.py `Bounded`); gevent's own pool keeps the usual
priority. Run in a process of its own: the check needs the standard library patched, as a web worker is."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROGRAM = """
from gevent import monkey
monkey.patch_all()
import json, os, threading
from app.core.concurrency import Bounded, off_the_event_loop

def policy():
    thread = threading.get_native_id()
    return {"thread": thread, "policy": os.sched_getscheduler(thread),
            "nice": os.getpriority(os.PRIO_PROCESS, thread)}

hashing = Bounded(2)
heavy = [hashing.run(policy) for _ in range(3)]
other = [off_the_event_loop(policy) for _ in range(3)]
print(json.dumps({"heavy": heavy, "other": other, "caller": policy(), "idle": os.SCHED_IDLE}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread policies are Linux's")
def test_heavy_calls_run_in_threads_that_yield_and_other_blocking_calls_do_not():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    seen = json.loads(out.stdout)
    assert {h["policy"] for h in seen["heavy"]} == {seen["idle"]}
    assert all(o["policy"] == os.SCHED_OTHER and o["nice"] == seen["caller"]["nice"] for o in seen["other"])
    assert not {h["thread"] for h in seen["heavy"]} & {o["thread"] for o in seen["other"]}
    assert seen["caller"]["policy"] == os.SCHED_OTHER
