"""A room socket waiting for its turn, in real browsers: a web lets a few sockets in at once (the join
gate, app/web/rooms/joins.py), so an open socket is not yet in the room. The pill says "Joining…" from
the handshake until the room's snapshot lets the page in, "Busy, retrying…" once the server gave up
on its turn (1013), and "Live" only once it is in: after a lost network, a reload or on a second tab.

The gate is a web of the test's own that lets one socket in at a time and refuses one that waited
2 s (WS_JOIN_WAIT_S). Its one turn is held by another player's socket whose check of its token waits on a lock
the test holds on `users` (its cached revocation instant deleted first; the pages' are cached, so their
requests and tickets go through). Each step waits on a state the page or PostgreSQL reaches.
Screenshots land in tests/artifacts/browser/.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import text

from app.accounts.users import revocation_key
from app.web import tickets
from scripts.stack.programs import kind_of
from tests.e2e.room_client import RoomClient, SocketClient, ticket_for
from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, PHONE, ClassTab
from tests.e2e.test_browser_flaky_phone import Game, join, page_errors
from tests.helpers import free_port, wait_until

GATE = {"WS_JOINS_IN_FLIGHT": "1", "WS_JOIN_WAIT_S": "2", "WEB_WORKERS": "1"}
PHONE_360 = {"width": 360, "height": 740}
LONG_NAME = "Maximiliana Konstantinopoulou"  # 29 characters: wider than a 360-px phone's header leaves
# Every value the pill takes from now on, in order: the page's own record, so no state goes unseen.
RECORD_PILL = """() => {
  const record = () => {
    const pill = document.querySelector("[data-testid=connection]");
    window.pillAtLoad = pill.dataset.state;  // once the page's scripts ran
    window.pillStates = [];
    new MutationObserver(() => window.pillStates.push(pill.dataset.state))
      .observe(pill, { attributes: true, attributeFilter: ["data-state"] });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", record);
  else record();
}"""
RELEASED = "released"  # marks in a page's record where the test let the held socket in


@contextmanager
def web_beside(live_stack, name: str, settings: dict[str, str]) -> Iterator[str]:
    """A web beside the stack's, with `settings` on top of its environment; its base URL."""
    web = next(name for name in live_stack.envs if kind_of(name) == "web")
    env = {**live_stack.envs[web], **settings, "WEB_PORT": str(free_port()),
           "WEB_METRICS_PORT": str(free_port())}
    live_stack.stack.start(name, env)
    try:
        yield f"http://127.0.0.1:{env['WEB_PORT']}"
    finally:
        live_stack.stack.stop(name)


@pytest.fixture(scope="module")
def gated_web(live_stack) -> Iterator[str]:
    """A web beside the stack's that lets one room socket in at a time, and refuses one after 2 s."""
    with web_beside(live_stack, "web-gated", GATE) as url:
        yield url


def pill_states(page: Page) -> list[str]:
    return page.evaluate("window.pillStates ?? []")  # none yet: the page's document is still loading


def waiting_on_lock(engine, table: str) -> bool:
    """Some backend of this database waits for a lock on `table`."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE NOT l.granted AND c.relname = :table AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"table": table}).scalar() > 0


@contextmanager
def turn_held(engine, redis_client, base_url: str, game: Game, pages: list[Page]) -> Iterator[None]:
    """The gate's one turn, held by a player's socket until the block ends (each of `pages` records
    RELEASED then); on leaving, that socket is in the room."""
    ws_url = base_url.replace("http://", "ws://", 1)
    holder = game.http.join(game.id, game.http.guest())
    ticket = ticket_for(ws_url, game.id, holder.token)
    redis_client.delete(revocation_key(uuid.UUID(holder.user_id)))  # its socket asks PostgreSQL
    socket = None
    try:
        with engine.connect() as lock:
            lock.begin()
            lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            try:
                socket = SocketClient(f"{ws_url}/ws/sessions/{game.id}?ticket={ticket}")
                wait_until(lambda: waiting_on_lock(engine, "users"),
                           "the holder's socket never waited on the lock")
                yield
                for page in pages:
                    page.evaluate(f"window.pillStates.push('{RELEASED}')")
            finally:
                lock.rollback()
        socket.wait_type("snapshot")
    finally:
        if socket is not None:
            socket.close()


def name_shown_whole(tab: ClassTab) -> None:
    """The header shows the player's whole name, inside the screen, and nothing scrolls sideways."""
    name = tab.by("player-nickname")
    expect(name).to_have_text(LONG_NAME)
    assert name.evaluate("e => e.scrollWidth <= e.clientWidth && e.scrollHeight <= e.clientHeight"), tab.name
    box = name.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= tab.page.viewport_size["width"], box
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= tab.page.viewport_size["width"]


def waited_truthfully(page: Page, name: str) -> None:
    """Between the page's socket opening and the held turn's release, "Joining…" and "Busy, retrying…",
    never "Live"; "Live" once it is in."""
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    expect(page.get_by_test_id("connection")).to_contain_text("Live")
    states = pill_states(page)
    waiting = states[:states.index(RELEASED)]
    assert "open" not in waiting and "joining" in waiting and "busy" in waiting, (name, states)


def test_after_a_lost_network_the_pill_says_joining_then_room_busy_and_live_only_once_in(
        gated_web, engine, redis_client, browser: Browser):
    game = Game(gated_web)
    tabs = [ClassTab(browser, gated_web, "join-wait-phone", PHONE_360),
            ClassTab(browser, gated_web, "join-wait-desktop", DESKTOP)]
    try:
        for tab, nickname in zip(tabs, (LONG_NAME, "Ben")):
            join(tab, game, nickname)  # the gate is free: in at once
            tab.page.evaluate(RECORD_PILL)
            tab.context.set_offline(True)
        for tab in tabs:  # each page's own ping finds its socket dead; it retries, offline, meanwhile
            expect(tab.by("connection")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        with turn_held(engine, redis_client, gated_web, game, [tab.page for tab in tabs]):
            for tab in tabs:
                tab.context.set_offline(False)  # back online: a new socket, open, at the gate
            for tab in tabs:
                wait_until(lambda tab=tab: {"joining", "open"} & set(pill_states(tab.page)),
                           f"{tab.name}: no socket of the page opened")
                assert "open" not in pill_states(tab.page), (tab.name, pill_states(tab.page))
                tab.shot("jw01-joining")
            for tab in tabs:  # no turn within WS_JOIN_WAIT_S: refused with 1013, and retried
                wait_until(lambda tab=tab: "busy" in pill_states(tab.page), f"{tab.name}: never told busy")
                expect(tab.by("connection")).to_have_attribute("data-state", "busy", timeout=WAIT_MS)
                expect(tab.by("connection")).to_contain_text("Busy, retrying…")
                if tab is tabs[0]:
                    name_shown_whole(tab)  # the pill's words take a row of their own, under the name
                tab.check("jw02-room-busy")
        for tab in tabs:
            waited_truthfully(tab.page, tab.name)
            tab.shot("jw03-live")
            assert page_errors(tab) == []
    finally:
        for tab in tabs:
            tab.context.close()


def test_a_reload_and_a_second_tab_waiting_for_their_turn_never_say_live_before_they_are_in(
        gated_web, engine, redis_client, browser: Browser):
    game = Game(gated_web)
    tab = ClassTab(browser, gated_web, "join-wait-tabs", PHONE)
    try:
        join(tab, game, "Cleo")
        tab.context.add_init_script(f"({RECORD_PILL})()")  # every page of the context, from its next load
        second = tab.context.new_page()
        with turn_held(engine, redis_client, gated_web, game, [tab.page, second]):
            # A second tab of the same player: it waits; the first is still in the room, and says so.
            second.goto("/")
            wait_until(lambda: "busy" in pill_states(second), "the second tab never told the room was busy")
            expect(tab.by("connection")).to_have_attribute("data-state", "open")
            tab.page.reload()  # and a reload of the first: it waits too
            # Reading the room before its socket opens: connecting, never "Offline".
            assert [page.evaluate("window.pillAtLoad") for page in (second, tab.page)] == ["connecting"] * 2
            wait_until(lambda: "busy" in pill_states(tab.page), "the reloaded tab never said busy")
            tab.shot("jw04-reloaded-busy")
        for page in (tab.page, second):  # in turn, both (a player may have WS_MAX_PER_PARTICIPANT sockets)
            waited_truthfully(page, "the reloaded tab" if page is tab.page else "the second tab")
        assert page_errors(tab) == []
    finally:
        tab.context.close()


def test_a_socket_that_left_while_it_waited_gives_its_turn_to_the_next(live_stack, engine, redis_client):
    """A reload or a closed tab leaves a socket waiting at the gate: when its turn comes the socket behind
    it gets in."""
    with web_beside(live_stack, "web-patient", {**GATE, "WS_JOIN_WAIT_S": "600"}) as base_url:
        ws_url = base_url.replace("http://", "ws://", 1)
        game = Game(base_url)
        left, behind = (game.http.join(game.id, game.http.guest()) for _ in range(2))
        with turn_held(engine, redis_client, base_url, game, []):
            ticket = ticket_for(ws_url, game.id, left.token)
            gone = SocketClient(f"{ws_url}/ws/sessions/{game.id}?ticket={ticket}")
            gone.ws.send_close()
            assert gone.wait_closed() == 1000  # the server answered the close: it knows the client left
            waiting = RoomClient(ws_url, game.id, behind.token)
        try:
            waiting.wait_type("snapshot")  # its turn came after the one that left
        finally:
            waiting.close()


def test_a_socket_spends_its_ticket_before_it_waits_for_its_turn(live_stack, engine, redis_client):
    """In a join storm a socket's turn may come after its ticket's minute is over: the ticket is spent
    when the socket opens, so no wait expires it (an expired one is refused with 4401, and the page takes
    that for a signed-out player and forgets their place). A socket without a valid ticket is refused
    at once, whatever the queue."""
    with web_beside(live_stack, "web-patient", {**GATE, "WS_JOIN_WAIT_S": "600"}) as base_url:
        ws_url = base_url.replace("http://", "ws://", 1)
        game = Game(base_url)
        player = game.http.join(game.id, game.http.guest())
        with turn_held(engine, redis_client, base_url, game, []):
            ticket = ticket_for(ws_url, game.id, player.token)
            waiting = SocketClient(f"{ws_url}/ws/sessions/{game.id}?ticket={ticket}")
            wait_until(lambda: not redis_client.exists(tickets._key(ticket)),
                       "the waiting socket's ticket is not spent")
            forged = SocketClient(f"{ws_url}/ws/sessions/{game.id}?ticket=made-up")
            assert forged.wait_closed() == 4401
            assert not waiting.messages  # still waiting for the turn the test holds
        try:
            assert waiting.wait_type("snapshot")["you"]["participant_id"] == player.participant_id
        finally:
            waiting.close()
