"""Open sockets counted in Redis across web processes (app/web/rooms/slots.py, lua/slot_*.lua): each
process's count lives under a lease it renews, so a live process's sockets keep counting and a process
that stopped renewing (it was killed) stops counting one lease later."""
from __future__ import annotations

import uuid

from app.web.rooms.slots import SocketSlots
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
