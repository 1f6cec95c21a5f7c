"""The group commit's queue: first come, first served for one client; each client in turn for many."""
from __future__ import annotations

from app.core.group_commit import FairQueue, Pending


def _push(queue: FairQueue, client: str, cost: int, name: str) -> None:
    queue.push(Pending(name), client, cost)


def _names(batch: list[Pending]) -> list[str]:
    return [p.request for p in batch]


def test_one_client_is_served_in_order_within_the_bounds():
    queue = FairQueue()
    for n in range(5):
        _push(queue, "only", 1, f"r{n}")
    assert _names(queue.take(max_count=2, max_cost=None)) == ["r0", "r1"]
    assert _names(queue.take(max_count=10, max_cost=2)) == ["r2", "r3"]
    assert _names(queue.take(max_count=10, max_cost=2)) == ["r4"] and len(queue) == 0


def test_a_request_above_the_cost_bound_is_taken_alone():
    queue = FairQueue()
    _push(queue, "big", 1000, "huge")
    _push(queue, "big", 1, "small")
    assert _names(queue.take(max_count=10, max_cost=100)) == ["huge"]
    assert _names(queue.take(max_count=10, max_cost=100)) == ["small"]


def test_a_client_arriving_behind_a_backlog_goes_next():
    queue = FairQueue()
    for n in range(5):
        _push(queue, "flood", 1000, f"f{n}")
    assert _names(queue.take(max_count=100, max_cost=1000)) == ["f0"]
    _push(queue, "other", 1, "mine")
    assert _names(queue.take(max_count=100, max_cost=1000)) == ["mine"]
    assert _names(queue.take(max_count=100, max_cost=1000)) == ["f1"]


def test_busy_clients_share_the_commits_by_cost():
    queue = FairQueue()
    for n in range(6):
        _push(queue, "heavy", 4, f"h{n}")
    for n in range(24):
        _push(queue, "light", 1, f"l{n}")
    order = []
    while len(queue):
        order += _names(queue.take(max_count=100, max_cost=4))
    first_half = order[:len(order) // 2]
    # By the time half the requests are served, each client had about the same work done.
    heavy = 4 * sum(name.startswith("h") for name in first_half)
    light = sum(name.startswith("l") for name in first_half)
    assert abs(heavy - light) <= 4
    assert [n for n in order if n.startswith("h")] == [f"h{n}" for n in range(6)]


def test_a_request_given_up_leaves_the_queue():
    queue = FairQueue()
    waiting = Pending("gone")
    queue.push(waiting, "a", 1)
    _push(queue, "b", 1, "kept")
    assert waiting in queue
    queue.remove(waiting)
    assert waiting not in queue and _names(queue.take(max_count=10, max_cost=None)) == ["kept"]
