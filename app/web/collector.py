"""Python's cyclic garbage collector in a web worker that holds thousands of sockets.

A full collection walks every object the collector tracks, and while it runs the worker does nothing
else: no socket is written, no request answered. A worker holding 5,000 room sockets tracks about a
million objects (150 to 300 per socket: its greenlets and their frames, the WebSocket's state, its
Connection), and the app itself 150,000: a full pass takes half a second of CPU or more. CPython runs
one whenever a quarter more objects survived since the last, so a lobby filling up ran one every few
seconds, and the questions that follow (the close's frames to every socket) waited behind them: the
tail of bench 3's 50-room fan-out.

Here, what a full collection leaves is frozen (`gc.freeze`): it was all reachable, and the next full
passes walk only what survived since. A frozen object that becomes garbage is still freed when its last
reference goes, unless it is in a reference cycle (a closed socket's greenlet can be): every
THAW_EVERY full collections the frozen objects are thawed first, so that pass walks them all, as every
full pass did before, and frees those cycles.
"""
from __future__ import annotations

import gc

# One full collection in this many walks every object (and frees the cycles frozen since the last such).
THAW_EVERY = 10


class SurvivorFreezer:
    """A gc callback: freezes what each full collection leaves; thaws first every THAW_EVERY-th."""

    def __init__(self, thaw_every: int = THAW_EVERY) -> None:
        self.thaw_every = thaw_every
        self.full_passes = 0

    def __call__(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.full_passes += 1
            if self.full_passes % self.thaw_every == 0:
                gc.unfreeze()
        elif phase == "stop":
            gc.freeze()

    def install(self) -> SurvivorFreezer:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        gc.unfreeze()


def freeze_survivors() -> SurvivorFreezer:
    """Once per worker, with the app loaded: the app's own objects are frozen now (a full collection,
    then the freeze), and what each later full collection leaves."""
    freezer = SurvivorFreezer().install()
    gc.collect()
    return freezer
