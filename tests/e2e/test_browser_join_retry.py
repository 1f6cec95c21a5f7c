"""A join the server refuses for load, in real browsers: the page tries it again by itself, with backoff,
saying "Busy, retrying…" (never that the player is in), until the server lets it through; a player may
stop it. The player's name is never cut on a 360-px phone.

The load is a web of the test's own whose PostgreSQL pool (one connection, and one overflow) is full:
two other players' joins hold both connections while they wait on the game's session row, which the
test locks. Every request of that web that needs PostgreSQL then waits WEB_DB_POOL_TIMEOUT_S (1 s) for
a connection and is refused with 503 `unavailable` and Retry-After, as in a join storm beyond the pool.
Each step waits on a state the page or PostgreSQL reaches. Screenshots land in tests/artifacts/browser/.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from playwright.sync_api import Browser, expect
from sqlalchemy import text

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, ClassTab
from tests.e2e.test_browser_flaky_phone import Game
from tests.e2e.test_browser_join_wait import LONG_NAME, PHONE_360, name_shown_whole, web_beside
from tests.helpers import WAIT_S, Api, HttpClient, Player, wait_until

SMALL_POOL = {"WEB_DB_POOL": "1", "WEB_DB_POOL_TIMEOUT_S": "1", "WEB_WORKERS": "1"}
# What the browser logs for each refusal the test provokes; anything else at error level fails it.
REFUSED_LOG = re.compile(r"status of 503")
RELEASED = "released"  # marks in a page's record where the test let the joins through
# Every screen the page shows from its load on, in order, and the status of each answer of the API: the
# page's own record, so none goes unseen.
RECORD = """() => {
  window.statuses = [];
  const fetched = window.fetch;
  window.fetch = async (...args) => {
    const response = await fetched(...args);
    if (String(args[0]).startsWith("/api/v1/")) window.statuses.push(response.status);
    return response;
  };
  const record = () => {
    window.views = [document.body.dataset.view];
    new MutationObserver(() => window.views.push(document.body.dataset.view))
      .observe(document.body, { attributes: true, attributeFilter: ["data-view"] });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", record);
  else record();
}"""


@pytest.fixture(scope="module")
def busy_web(live_stack) -> Iterator[str]:
    """A web beside the stack's with one pooled PostgreSQL connection (and one overflow), 1 s to wait."""
    with web_beside(live_stack, "web-small-pool", SMALL_POOL) as url:
        yield url


def waiting_on_locks(engine) -> int:
    """Backends of this database waiting for a lock."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar()


@contextmanager
def pool_full(engine, base_url: str, game: Game) -> Iterator[None]:
    """The web's two PostgreSQL connections held until the block ends, by two joins of `game` waiting on
    its session row (locked here); on leaving, the lock goes and both joins are answered 201."""
    players = [Api(HttpClient(base_url)).guest() for _ in range(2)]

    def join(player: Player) -> None:  # a holder refused for load itself (a timer had a connection) retries
        while requests.post(f"{base_url}/api/v1/sessions/{game.id}/join", headers=player.headers,
                            timeout=4 * WAIT_S).status_code == 503:
            pass

    with engine.connect() as lock, ThreadPoolExecutor(len(players)) as threads:
        lock.begin()
        lock.execute(text("SELECT 1 FROM quiz_sessions WHERE id = :id FOR UPDATE"), {"id": game.id})
        try:
            joins = [threads.submit(join, player) for player in players]
            wait_until(lambda: waiting_on_locks(engine) >= len(players),
                       "the holders' joins never waited on the session row")
            yield
        finally:
            lock.rollback()
        for done in joins:
            done.result()
        assert [places(engine, game, p.user_id) for p in players] == [1, 1]


def statuses(tab: ClassTab) -> list[int]:
    return tab.page.evaluate("window.statuses")




def places(engine, game: Game, who: str) -> int:
    """The game's places of the player with the nickname or user id `who`, in PostgreSQL."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM quiz_session_participants "
                                 "WHERE quiz_session_id = :s AND (nickname = :w OR user_id::text = :w)"),
                            {"s": game.id, "w": who}).scalar()


def test_a_join_refused_for_load_is_tried_again_by_itself_and_never_says_in_before_it_is(
        busy_web, engine, browser: Browser):
    game = Game(busy_web)
    phone = ClassTab(browser, busy_web, "join-retry-phone", PHONE_360)
    desk = ClassTab(browser, busy_web, "join-retry-desktop", DESKTOP)
    tabs = [phone, desk]
    try:
        for tab in tabs:
            tab.context.add_init_script(f"({RECORD})()")
            tab.page.goto(game.link)
            expect(tab.by("join-form")).to_be_visible(timeout=WAIT_MS)
        with pool_full(engine, busy_web, game):
            for tab, nickname in ((phone, LONG_NAME), (desk, "Dora")):
                tab.by("join-nickname").fill(nickname)
                tab.by("join-submit").click()
            for tab in tabs:
                wait_until(lambda tab=tab: 503 in statuses(tab), f"{tab.name}: never refused for load")
                expect(tab.by("join-busy")).to_be_visible(timeout=WAIT_MS)
                expect(tab.by("join-busy")).to_contain_text("not in yet")
                expect(tab.by("join-submit")).to_have_text("Busy, retrying…")
                expect(tab.by("join-submit")).to_be_disabled()
                expect(tab.by("connection")).to_have_attribute("data-state", "busy")
                expect(tab.by("connection")).to_contain_text("Busy, retrying…")
                tab.check("jr01-busy-retrying")
            # It keeps trying: refused again after its backoff, never giving up on its own.
            refused = statuses(phone).count(503)
            wait_until(lambda: statuses(phone).count(503) > refused, "the phone did not try again")
            expect(phone.by("join-busy")).to_be_visible()
            # The desktop's player stops: the page says they are not in, and the form is theirs again.
            desk.by("join-stop").click()
            expect(desk.by("join-busy")).to_be_hidden()
            expect(desk.by("join-error")).to_have_text(re.compile("Stopped trying. You're not in the game"))
            expect(desk.by("join-submit")).to_have_text("Enter")
            expect(desk.by("join-submit")).to_be_enabled()
            expect(desk.by("connection")).to_have_attribute("data-state", "closed")
            desk.check("jr02-stopped")
            assert places(engine, game, LONG_NAME) == 0 and places(engine, game, "Dora") == 0
            for tab in tabs:
                tab.page.evaluate(f"window.views.push('{RELEASED}')")
        # The pool is free: the phone's next try gets through, and only then does it say it is in.
        expect(phone.by("lobby")).to_be_visible(timeout=WAIT_MS)
        expect(phone.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(phone.by("join-busy")).to_be_hidden()
        name_shown_whole(phone)
        phone.check("jr03-in-after-retrying")
        # The desktop has stopped for good: it tries again only when its player presses Enter.
        assert "lobby" not in desk.page.evaluate("window.views")
        desk.by("join-submit").click()
        expect(desk.by("lobby")).to_be_visible(timeout=WAIT_MS)
        expect(desk.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        desk.check("jr04-in-after-a-new-tap")
        for tab in tabs:
            views = tab.page.evaluate("window.views")
            assert "lobby" not in views[:views.index(RELEASED)], (tab.name, views)
            assert [e for e in tab.errors if not REFUSED_LOG.search(e)] == [], (tab.name, tab.errors)
        assert places(engine, game, LONG_NAME) == 1 and places(engine, game, "Dora") == 1
    finally:
        for tab in tabs:
            tab.context.close()
