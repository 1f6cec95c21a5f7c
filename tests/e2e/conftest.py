"""Fixtures of the end-to-end tests: two more webs beside the live stack (`web_pair`; the stack itself
is tests/live_stack.py's `live_stack`), and Debian's Chromium for the browser tests.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from scripts.stack.programs import AppStack, kind_of
from tests.helpers import WAIT_S, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class WebPair:
    """Two more web processes beside the stack's (one gunicorn worker each, on its database, Redis keys
    and topics), each on a port of its own, so a test knows which process serves each request. They
    trust one proxy: a test names its client's address in X-Forwarded-For (`as_address`), so what it
    counts per address is its own."""

    envs: list[dict]
    stack: AppStack

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.envs[index]['WEB_PORT']}"

    def ws_url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.envs[index]['WEB_PORT']}"

    def kill(self, index: int) -> None:
        """SIGKILL the process (its gunicorn master and worker): nothing of it runs a `finally`."""
        self.stack.kill(f"web-pair-{index}", group=True)
        self.stack.process(f"web-pair-{index}").wait(WAIT_S)

    def restart(self, index: int) -> None:
        self.stack.stop(f"web-pair-{index}")
        self.stack.start(f"web-pair-{index}", self.envs[index])


def as_address(address: str) -> dict[str, str]:
    """The header that makes a WebPair process take `address` for the client's."""
    return {"X-Forwarded-For": address}


_addresses = itertools.count(1)


def new_address() -> str:
    """A client address no other test uses (for a WebPair process, in X-Forwarded-For)."""
    n = next(_addresses)
    return f"198.51.{n // 250}.{n % 250 + 1}"


# Small limits, so a test reaches them with a handful of sockets, a short lease, so a killed process's
# sockets stop counting soon, and a quick heartbeat, so a silent socket is closed soon. Short, yet many
# pings and renewals long: a process of a loaded machine that gets no CPU for a second or two must still
# renew its leases (every third of one) and read its sockets' pongs in time, or its live sockets would
# stop counting, or be closed as silent, while a test holds them.
WEB_PAIR_SETTINGS = {"WS_MAX_PER_ADDRESS": "3", "WS_MAX_PER_USER": "2", "WS_SLOT_LEASE_S": "6",
                     "WS_PING_INTERVAL_S": "0.3", "WS_SILENT_CLOSE_S": "6",
                     "WEB_TRUSTED_PROXIES": "1", "WEB_WORKERS": "1"}


@pytest.fixture(scope="session")
def web_pair(live_stack) -> Iterator[WebPair]:
    web = next(name for name in live_stack.envs if kind_of(name) == "web")
    envs = [{**live_stack.envs[web], **WEB_PAIR_SETTINGS, "WEB_PORT": str(free_port()),
             "WEB_METRICS_PORT": str(free_port())} for _ in range(2)]
    pair = WebPair(envs, live_stack.stack)
    try:
        for index, env in enumerate(envs):
            pair.stack.start(f"web-pair-{index}", env)
        yield pair
    finally:
        for index in range(2):
            pair.stack.stop(f"web-pair-{index}")


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Debian's Chromium driven by Playwright; no browser is ever downloaded. Every assertion on a page
    waits for its state up to TEST_WAIT_S (Playwright's own default is 5 s: a busy machine can need
    longer to render what a test has already seen through the API)."""
    expect.set_options(timeout=WAIT_S * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
