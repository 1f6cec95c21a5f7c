"""Instants as the stores keep them: whole milliseconds since 1970, the unit of Redis' scripts and of the
events' times on every board."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def instant_ms(moment: datetime) -> int:
    """Whole milliseconds since 1970 (floor), computed exactly on timedelta integers."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is needed")
    return (moment - _UNIX_EPOCH) // _MS
