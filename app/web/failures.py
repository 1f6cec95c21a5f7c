"""What every surface of the web process answers when something fails that is not the caller's doing:
a store down or overloaded (the request was not recorded and may be retried: 503 `unavailable` over
HTTP, an `unavailable` error over a room socket), or a fault of ours (500 `internal_error`)."""
from __future__ import annotations

from redis import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

STORE_UNAVAILABLE = (OperationalError, SQLAlchemyTimeout, RedisError, TimeoutError)
UNAVAILABLE_MESSAGE = "the service is briefly unavailable; try again"
INTERNAL_MESSAGE = "something went wrong on our side"
