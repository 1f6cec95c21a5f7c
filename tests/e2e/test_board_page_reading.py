"""The live board page read by a person: a player found by the name on the board, in any case; a player
count that follows every new player; periods by their names; when the board last moved; which way is
better; a header a phone shows whole. Screenshots land in tests/artifacts/browser/."""
from __future__ import annotations

import uuid

from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import ClassTab
from tests.helpers import Api, HttpClient

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def _board(http: Api, owner, *, name: str = "Arena Cup", order: str = "desc", reset: str = "never") -> str:
    board_id = "read-" + uuid.uuid4().hex[:8]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": name, "sort_order": order,
                                       "update_mode": "best", "reset_period": reset},
              token=owner.token, expect=201)
    return board_id


def _score(http: Api, owner, board_id: str, player: str, score: int, name: str | None = None) -> None:
    http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": player, "score": score,
                                 **({"display_name": name} if name else {})}, token=owner.token, expect=201)


def _open(browser: Browser, live_stack, board_id: str, name: str, viewport: dict,
          query: str = "") -> ClassTab:
    """The board page in a tab that checks each screen it shows with axe-core (`check`)."""
    tab = ClassTab(browser, live_stack.base_url, name, viewport)
    tab.page.goto(f"/boards/{board_id}{query}")
    expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    return tab


def test_a_player_is_found_by_their_name_in_any_case(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner)
    _score(http, owner, board_id, "p-17", 40, "Lowly Worm")
    _score(http, owner, board_id, "p-18", 50, "Huckle Cat")
    tab = _open(browser, live_stack, board_id, "board-find", DESKTOP)
    try:
        expect(tab.page.locator("[data-testid=leaderboard] [data-testid=leaderboard-name]")).to_have_count(
            2, timeout=WAIT_MS)
        tab.by("find-player").fill("lowly worm")
        tab.by("find-submit").click()
        expect(tab.by("standing-name")).to_have_text("Lowly Worm", timeout=WAIT_MS)
        expect(tab.by("standing-rank")).to_have_text("2nd")
        tab.by("find-player").fill("p-18")  # the id still finds its player
        tab.by("find-submit").click()
        expect(tab.by("standing-name")).to_have_text("Huckle Cat", timeout=WAIT_MS)
        tab.by("find-player").fill("Nobody Here")
        tab.by("find-submit").click()
        expect(tab.by("find-error")).to_have_text("Nobody Here is not on this board.", timeout=WAIT_MS)
        expect(tab.page.locator("[data-testid=leaderboard] .lb-row.me")).to_have_count(0)  # nobody followed
        tab.check("board-04-found-by-name")
        assert tab.errors == []
    finally:
        tab.context.close()


def test_the_player_count_follows_a_new_player_below_the_top(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner)
    for n, score in enumerate((90, 80, 70)):
        _score(http, owner, board_id, f"p{n}", score)
    tab = _open(browser, live_stack, board_id, "board-count", DESKTOP, "?top=3")
    try:
        expect(tab.by("total-players")).to_have_text("3 players", timeout=WAIT_MS)
        _score(http, owner, board_id, "late", 10)  # 4th: the top 3 does not move
        expect(tab.by("total-players")).to_have_text("4 players", timeout=WAIT_MS)
        assert tab.errors == []
    finally:
        tab.context.close()


def test_periods_are_shown_by_their_names(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner, reset="daily")
    _score(http, owner, board_id, "ann", 5, "Ann")
    http.post(f"/api/v1/leaderboards/{board_id}/reset", token=owner.token, expect=200)
    periods = http.get(f"/api/v1/leaderboards/{board_id}/periods", expect=200).get_json()["periods"]
    current, past = periods[0], periods[1]
    assert "~" in current["period"]  # opened by a reset: its id alone says little to a person
    tab = _open(browser, live_stack, board_id, "board-periods", DESKTOP)
    try:
        expect(tab.by("board-period")).to_have_text(current["label"], timeout=WAIT_MS)
        expect(tab.by("view-label")).to_have_text(f"Live · {current['label']}", timeout=WAIT_MS)
        options = tab.by("period-picker").locator("option")
        expect(options).to_have_text([f"{current['label']} (live)",
                                      f"{past['label']} (final, 1 player)"])
        tab.by("period-picker").select_option(past["period"])
        expect(tab.by("view-label")).to_have_text(f"Final standings · {past['label']}", timeout=WAIT_MS)
        tab.check("board-05-named-periods")
        assert tab.errors == []
    finally:
        tab.context.close()


def test_the_page_says_when_the_board_last_moved(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner)
    _score(http, owner, board_id, "ann", 5, "Ann")
    tab = _open(browser, live_stack, board_id, "board-updated", DESKTOP)
    try:
        expect(tab.by("last-updated")).to_have_text("Updated just now", timeout=WAIT_MS)
        stamp = tab.by("last-updated").get_attribute("data-version")
        _score(http, owner, board_id, "bob", 9, "Bob")
        expect(tab.page.locator("[data-testid=leaderboard] [data-testid=leaderboard-name]")).to_have_text(
            ["Bob", "Ann"], timeout=WAIT_MS)
        expect(tab.by("last-updated")).not_to_have_attribute("data-version", stamp or "", timeout=WAIT_MS)
        expect(tab.by("last-updated")).to_have_text("Updated just now")
        assert tab.errors == []
    finally:
        tab.context.close()


def test_an_ascending_board_says_lower_is_better(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    fastest = _board(http, owner, name="Fastest lap", order="asc")
    highest = _board(http, owner, name="Most points")
    _score(http, owner, fastest, "ann", 61, "Ann")
    _score(http, owner, fastest, "bob", 58, "Bob")
    asc = _open(browser, live_stack, fastest, "board-lower-better", DESKTOP)
    desc = _open(browser, live_stack, highest, "board-higher-better", DESKTOP)
    try:
        expect(asc.by("order-hint")).to_have_text("Lower is better", timeout=WAIT_MS)
        expect(asc.by("order-hint")).to_be_visible()
        expect(desc.by("board-name")).to_have_text("Most points", timeout=WAIT_MS)
        expect(desc.by("order-hint")).to_be_hidden()
        asc.check("board-06-lower-is-better")
        assert asc.errors == [] and desc.errors == []
    finally:
        asc.context.close()
        desc.context.close()


def test_a_phone_shows_the_whole_header(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = _board(http, owner, name="Year 9 Spring Mathematics League", reset="weekly")
    _score(http, owner, board_id, "ann", 5, "Ann")
    tab = _open(browser, live_stack, board_id, "board-header", PHONE)
    try:
        expect(tab.by("board-name")).to_have_text("Year 9 Spring Mathematics League", timeout=WAIT_MS)
        expect(tab.by("board-period")).to_contain_text("Week", timeout=WAIT_MS)
        for testid in ("board-name", "board-period-wrap", "connection"):
            box = tab.by(testid).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], testid
            clipped = tab.by(testid).evaluate("e => e.scrollWidth > e.clientWidth")
            assert not clipped, f"{testid} is cut"
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        tab.check("board-07-header")
        assert tab.errors == []
    finally:
        tab.context.close()
