"""Row ids are UUID version 7: time-ordered, so new rows land at the right-hand edge of their indexes."""
from __future__ import annotations

import time
import uuid

from app.core.ids import new_id


def test_ids_are_version_7_variant_rfc_and_carry_their_millisecond():
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ids_made_later_sort_later_and_never_repeat():
    first = new_id()
    time.sleep(0.002)
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(first < later for later in ids)
    assert str(first) < str(ids[0])  # in PostgreSQL's uuid order (bytes) and as text alike
