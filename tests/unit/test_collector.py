"""The web worker's garbage collector (app/web/collector.py): what a full collection leaves is frozen, so
the next full passes do not walk it again; every THAW_EVERY-th full pass walks everything and frees the
cycles that became garbage while frozen."""
from __future__ import annotations

import gc
import weakref

from app.web.collector import SurvivorFreezer


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_full_collection_freezes_its_survivors_and_a_later_one_frees_the_cycles_frozen_since():
    freezer = SurvivorFreezer(thaw_every=3).install()
    try:
        gc.unfreeze()
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        gc.collect()  # full pass 1: the cycle is reachable, so it is frozen with the rest
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()  # full pass 2: frozen objects are not walked, the garbage cycle stays
        assert gone() is not None
        frozen = gc.get_freeze_count()
        assert frozen > 0
        gc.collect()  # full pass 3: thawed first, walked, the cycle freed; the survivors frozen again
        assert gone() is None
        assert gc.get_freeze_count() > 0
    finally:
        freezer.uninstall()
    assert gc.get_freeze_count() == 0 and freezer not in gc.callbacks
