"""Open sockets counted in Redis across web processes (app/web/rooms/slots.py, lua/slot_*.lua): each
process's count lives under a lease it renews, so a live process's sockets keep counting and a process
that stopped renewing (it was killed) stops counting one lease later."""
from __future__ import annotations

import uuid
from contextlib import ExitStack

from app.core import redis_keys
from app.web.rooms.slots import RENEW_BATCH, SocketSlots
from tests.helpers import wait_until

LEASE_S = 2.0


def _slots(redis_client) -> SocketSlots:
    return SocketSlots(redis_client, per_address=2, per_user=1, lease_s=LEASE_S)


def test_a_process_that_stops_renewing_stops_counting_and_a_live_one_keeps_counting(redis_client):
    address = f"test-{uuid.uuid4().hex[:8]}"
    live, killed, other = _slots(redis_client), _slots(redis_client), _slots(redis_client)
    killed.renew = lambda: None  # as if SIGKILLed: its leases are never renewed again
    with live.address(address) as first, killed.address(address) as second:
        assert first and second
        with other.address(address) as third:
            assert not third

        def other_gets_in() -> bool:
            with other.address(address) as taken:
                if taken:  # the killed process's lease ended; the live one's renewed lease still counts
                    with killed.address(address) as beyond:
                        assert not beyond
                return taken

        wait_until(other_gets_in, "the sockets of a process that stopped renewing kept counting")


def test_a_slot_is_given_back_when_its_socket_closes_and_users_count_apart(redis_client):
    slots, elsewhere = _slots(redis_client), _slots(redis_client)
    user = uuid.uuid4()
    with slots.user(user) as taken:
        assert taken
        with elsewhere.user(user) as beyond:
            assert not beyond
        with elsewhere.user(uuid.uuid4()) as someone_else:
            assert someone_else
    with elsewhere.user(user) as again:
        assert again


def test_a_renewal_renews_every_lease_of_a_process_holding_more_than_a_pipeline_carries(redis_client):
    """A process holding thousands of sockets renews their leases a pipeline of RENEW_BATCH at a time
    (its other work runs in between): every lease is renewed, the last batch's as the first's."""
    slots = _slots(redis_client)
    slots._renewing = True  # no renewing thread of its own: only the renewal below moves the leases
    users = [uuid.uuid4() for _ in range(2 * RENEW_BATCH + 7)]
    with ExitStack() as held:
        assert all(held.enter_context(slots.user(user)) for user in users)
        keys = [redis_keys.key(f"ws-slots:u:{user}") for user in users]
        lease_ends = [int(redis_client.hget(key, f"{slots.process}@")) for key in keys]
        taken_by = max(lease_ends) - slots.lease_ms

        def redis_ms() -> int:
            seconds, micros = redis_client.time()
            return int(seconds) * 1000 + int(micros) // 1000
        wait_until(lambda: redis_ms() > taken_by, "Redis's clock did not move", every_s=0.01)
        slots.renew()
        renewed = [int(redis_client.hget(key, f"{slots.process}@")) for key in keys]
        assert [i for i, (before, after) in enumerate(zip(lease_ends, renewed)) if after <= before] == []
        assert [int(redis_client.hget(key, slots.process)) for key in keys] == [1] * len(keys)
