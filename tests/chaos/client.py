"""The load's HTTP client: tests/bench's keep-alive HttpPool, with a timeout, JSON and the ledger.

Every response is counted in the ledger by what it was for and its status. A request that gets no
response (refused, reset, timed out) raises NoResponse: the caller cannot know whether the server
acted on it, which is exactly the case the API's retry semantics are for.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any
from urllib.parse import urlsplit

from tests.bench.support import HttpPool
from tests.chaos.ledger import Ledger

# A server that answers nothing for this long is as good as gone; the group commit gives up at 30 s.
REQUEST_TIMEOUT_S = 45.0
# Worth sending again: the store restarts (503), the outcome is unknown (504), something broke (500).
RETRYABLE = frozenset({429, 500, 502, 503, 504})
# Statuses a load balancer sends of its own when the server it chose gave no response (HAProxy: 502 when
# the server closed the connection or sent garbage, 504 when it timed out), with no API error body.
BALANCER_GOT_NOTHING = frozenset({502, 504})


class NoResponse(Exception):
    """The request got no HTTP response."""


class GaveUp(Exception):
    """No definitive response within the client's patience."""


def error_code(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"].get("code")
    return None


class Client:
    def __init__(self, base_url: str, in_flight: int, ledger: Ledger):
        address = urlsplit(base_url)
        self.pool = HttpPool(address.hostname, address.port, in_flight)
        # Waiting for a free slot is not part of a request's timeout: only time on the wire is.
        self.slots = asyncio.Semaphore(in_flight)
        self.ledger = ledger

    async def call(self, what: str, method: str, path: str, body: Any = None,
                   token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        payload = b"" if body is None else json.dumps(body).encode()
        async with self.slots:
            try:
                status, raw = await asyncio.wait_for(self.pool.request(method, path, payload, headers),
                                                     REQUEST_TIMEOUT_S)
            except Exception as exc:  # refused, reset, half a response, timed out: all the same here
                self.ledger.network_error(what)
                raise NoResponse(f"{method} {path}: {type(exc).__name__}") from exc
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status in BALANCER_GOT_NOTHING and error_code(data) is None:
            # Not the API's error but the balancer's (the cluster's HAProxy): the web died or hung
            # before it answered, which a client without a balancer sees as no response at all.
            self.ledger.network_error(what)
            raise NoResponse(f"{method} {path}: {status} from the balancer")
        self.ledger.response(what, status, error_code(data))
        return status, data

    async def definitive(self, what: str, method: str, path: str, body: Any = None, token: str | None = None,
                         patience_s: float = 180.0) -> tuple[int, Any]:
        """Send the request until a response that is not worth retrying, as a real client does."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + patience_s
        for attempt in itertools.count():
            try:
                status, data = await self.call(what, method, path, body, token)
                if status not in RETRYABLE:
                    return status, data
            except NoResponse:
                pass
            if loop.time() > give_up_at:
                raise GaveUp(f"{method} {path}")
            await backoff(attempt)

    async def close(self) -> None:
        await self.pool.close()


async def backoff(attempt: int) -> None:
    """Exponential with jitter, at most about a second: a restart takes seconds, not minutes."""
    await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)) * random.uniform(0.5, 1.5))
