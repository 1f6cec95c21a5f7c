"""A timeline of what held up each process of a benchmark, for `BENCH_TIMELINE=1` (tests/bench/timeline.py).

Python imports a `sitecustomize` module at start-up from its path, so every process the bench starts with
this directory on PYTHONPATH (conftest.py adds it) runs `install()` when BENCH_TIMELINE_FILE is set, and
appends one JSON line per event to that file (one write each, O_APPEND: the processes share the file):
- `gc`: a collection of generation 2, or of any generation that took TIMELINE_MIN_MS or more: its start
  (wall time), its duration, the objects it freed, and how many were frozen when it ended (0 in a web
  worker: the pass walked everything, app/web/collector.py);
- `stall`: in a gevent process (a web worker), a wait of its event loop: a greenlet that sleeps
  STEP_S woke TIMELINE_MIN_MS or more late (every greenlet of the worker waited as long), and the CPU
  its thread used meanwhile (`cpu_ms`; far less than the stall: the process waited for a core);
- `deliver`: in a web worker, a room notification delivered (app/web/rooms/room.py `dispatch`): when it
  began, how long it took (and its thread's CPU), its room and sockets, when the worker applied it
  (`applied_ms`), the close's reads and whether Redis had the results (else PostgreSQL was read).
A gc callback, a greenlet waking 100 times a second and a wrapper per notification: cheap, and only when
asked for. Times are wall times (time.time()), the clock of the stream entries the bench measures from.
"""
from __future__ import annotations

import gc
import json
import os
import time

STEP_S = 0.01
TIMELINE_MIN_MS = 5.0

_fd: int | None = None


def write(record: dict) -> None:
    if _fd is not None:
        os.write(_fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


class _Collections:
    """gc callback: each long or full collection, timed."""

    def __init__(self) -> None:
        self.began = self.wall = self.cpu = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.wall, self.began, self.cpu = time.time(), time.perf_counter(), time.thread_time()
            return
        ms = (time.perf_counter() - self.began) * 1000
        if info["generation"] == 2 or ms >= TIMELINE_MIN_MS:
            write({"kind": "gc", "pid": os.getpid(), "at": self.wall, "ms": round(ms, 2),
                   "cpu_ms": round((time.thread_time() - self.cpu) * 1000, 2),
                   "gen": info["generation"], "collected": info["collected"],
                   "frozen": gc.get_freeze_count()})


def _watch_the_loop() -> None:
    import gevent

    while True:
        began, cpu = time.perf_counter(), time.thread_time()
        gevent.sleep(STEP_S)
        late_ms = (time.perf_counter() - began - STEP_S) * 1000
        if late_ms >= TIMELINE_MIN_MS:
            write({"kind": "stall", "pid": os.getpid(), "at": time.time() - late_ms / 1000 - STEP_S,
                   "ms": round(late_ms, 2), "cpu_ms": round((time.thread_time() - cpu) * 1000, 2)})


def _time_deliveries() -> None:
    """Wrap the room's dispatch and the close's reads (web workers only)."""
    import dataclasses

    import gevent

    from app.quiz.board import reads as board_reads
    from app.web.rooms import room as rooms

    reads_ms: dict[int, dict[str, float]] = {}

    def timed(name: str, read):
        def run(*args, **kwargs):
            began = time.perf_counter()
            try:
                return read(*args, **kwargs)
            finally:
                reads_ms.setdefault(id(gevent.getcurrent()), {})[name] = round(
                    (time.perf_counter() - began) * 1000, 2)
        return run

    init, dispatch = rooms.RoomDelivery.__init__, rooms.RoomDelivery.dispatch
    from_redis = board_reads.question_results

    def results_from_redis(*args, **kwargs):
        found = from_redis(*args, **kwargs)
        reads_ms.setdefault(id(gevent.getcurrent()), {})["results_in_redis"] = found is not None
        return found

    def init_timed(self, reads, *args, **kwargs) -> None:
        init(self, dataclasses.replace(reads, top=timed("top_ms", reads.top),
                                       question_results=timed("results_ms", reads.question_results)),
             *args, **kwargs)

    def dispatch_timed(self, room, note) -> None:
        wall, began, cpu = time.time(), time.perf_counter(), time.thread_time()
        try:
            dispatch(self, room, note)
        finally:
            ms = (time.perf_counter() - began) * 1000
            write({"kind": "deliver", "pid": os.getpid(), "at": wall, "ms": round(ms, 2),
                   "cpu_ms": round((time.thread_time() - cpu) * 1000, 2),
                   "type": note.get("type"), "session_id": str(room.session_id),
                   "version": note.get("version"),
                   "applied_ms": note.get("applied_ms"), "sockets": len(room.connections),
                   **reads_ms.pop(id(gevent.getcurrent()), {})})

    rooms.RoomDelivery.__init__ = init_timed
    board_reads.question_results = results_from_redis  # before app/web/runtime.py imports it
    rooms.RoomDelivery.dispatch = dispatch_timed


def _after_gevent_patched(event) -> None:
    from gevent.events import GeventDidPatchAllEvent

    if isinstance(event, GeventDidPatchAllEvent):
        import gevent

        _time_deliveries()
        gevent.spawn(_watch_the_loop)


def install(path: str) -> None:
    """Record this process's collections (and, once gevent patched it, its loop and deliveries)."""
    global _fd
    if _fd is not None:
        return
    _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    gc.callbacks.insert(0, _Collections())  # before app/web/collector.py's: it sees a thawed pass thawed
    try:
        from zope.event import subscribers
    except ImportError:  # no gevent here: collections only
        return
    subscribers.append(_after_gevent_patched)


if os.environ.get("BENCH_TIMELINE_FILE"):
    install(os.environ["BENCH_TIMELINE_FILE"])
