"""The live board page in Chromium: seed 001's producer tool feeds a board through Kafka (score ingest,
outbox, relay, worker) and the page's podium and table follow, matching the API; a player is found
and followed; a past period is shown with its final standings. Screenshots, desktop and phone, land
in tests/artifacts/browser/."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from playwright.sync_api import Browser, expect
from sqlalchemy import text

from tests.e2e.test_browser import WAIT_MS, Tab
from tests.helpers import Api, HttpClient, stack_env, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _feed(live_stack, board_id: str, players: int, seed: int) -> None:
    """Seed 001's `kafka-producer -leaderboard -players -rate`, as an operator runs it."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "ops", "produce-scores", "--board",
                           board_id,
                           "--players", str(players), "--rate", "500", "--initial-only", "--seed", str(seed)],
                          cwd=ROOT, env=stack_env(live_stack.config), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _top(http: Api, board_id: str, **query) -> dict:
    return http.get(f"/api/v1/leaderboards/{board_id}/top", expect=200, limit=25, **query).get_json()


def _names(board: dict) -> list[str]:
    return [e["display_name"] or e["player_id"] for e in board["entries"]]


def table(tab: Tab, testid: str):
    """Cells of the page's main table (the found player's window has rows of its own)."""
    return tab.page.locator(f"[data-testid=leaderboard] [data-testid={testid}]")


def _stats_sum(http: Api, board_id: str) -> int:
    return http.get(f"/api/v1/leaderboards/{board_id}/stats", expect=200).get_json()["sum"]


def _sum_in_postgres(engine, board_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT sum(score) FROM leaderboard_entries "
                                       "WHERE leaderboard_id = :b"), {"b": board_id}).scalar()


def _submissions_in_postgres(engine, board_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM score_submissions WHERE leaderboard_id = :b"),
                                  {"b": board_id}).scalar()


def test_the_board_page_follows_scores_fed_through_kafka(live_stack, browser: Browser, engine):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = "page-" + uuid.uuid4().hex[:8]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Arena Cup", "sort_order": "desc",
                                       "update_mode": "increment", "reset_period": "never"},
              token=owner.token, expect=201)
    _feed(live_stack, board_id, players=30, seed=1)
    first = wait_until(lambda: (b := _top(http, board_id))["total"] == 30 and b,
                       "the fed scores never landed")

    desktop = Tab(browser, live_stack.base_url, "board-desktop", {"width": 1366, "height": 900})
    phone = Tab(browser, live_stack.base_url, "board-phone", {"width": 390, "height": 844})
    try:
        for tab in (desktop, phone):
            tab.page.goto(f"/boards/{board_id}")
            expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
            expect(tab.by("board-name")).to_have_text("Arena Cup")
            expect(table(tab, "leaderboard-name")).to_have_text(_names(first), timeout=WAIT_MS)
            expect(tab.by("podium-name")).to_have_text(_names(first)[:3])
            expect(tab.by("next-reset")).to_have_text("Never resets")
        desktop.shot("board-01-live")
        phone.shot("board-01-live")

        # More of the same feed: increments move players around; the page shows what the API shows.
        _feed(live_stack, board_id, players=30, seed=2)
        # Both feeds in PostgreSQL: each message's (derived) submission id is kept with its board.
        wait_until(lambda: _submissions_in_postgres(engine, board_id) == 60,
                   "the ingest never took the second feed")
        settled = wait_until(lambda: (b := _top(http, board_id))["total"] == 30
                             and _stats_sum(http, board_id) == _sum_in_postgres(engine, board_id) and b,
                             "the board never showed the second feed")
        for tab in (desktop, phone):
            expect(table(tab, "leaderboard-name")).to_have_text(_names(settled), timeout=WAIT_MS)
            expect(table(tab, "leaderboard-score")).to_have_text([f"{e['score']:,}"
                                                                  for e in settled["entries"]])
        assert settled["entries"] != first["entries"]

        # Find a player: their window and standing, highlighted; a write to them shows up live.
        someone = settled["entries"][12]["player_id"]
        desktop.by("find-player").fill(someone)
        desktop.by("find-submit").click()
        expect(desktop.by("standing-rank")).to_have_text("13th", timeout=WAIT_MS)
        expect(desktop.page.locator("[data-testid=around] .lb-row.me")).to_have_count(1)
        http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": someone, "score": 100_000},
                  token=owner.token, expect=201)
        expect(desktop.by("standing-rank")).to_have_text("1st", timeout=WAIT_MS)
        expect(desktop.page.locator("[data-testid=podium] .podium-place.me")).to_have_count(1)
        desktop.shot("board-02-found")

        # A reset closes the period: the picker offers it, with its final standings.
        final = _top(http, board_id)
        closed = http.post(f"/api/v1/leaderboards/{board_id}/reset", token=owner.token, expect=200).get_json()
        periods = http.get(f"/api/v1/leaderboards/{board_id}/periods", expect=200).get_json()["periods"]
        opened = next(p for p in periods if p["period"] == closed["current_period"])
        expect(desktop.by("board-period")).to_have_text(opened["label"], timeout=WAIT_MS)
        expect(desktop.by("podium-empty")).to_be_visible(timeout=WAIT_MS)
        desktop.by("period-picker").select_option(final["period"])
        expect(table(desktop, "leaderboard-name")).to_have_text(_names(final), timeout=WAIT_MS)
        expect(desktop.by("view-label")).to_contain_text("Final standings")
        desktop.shot("board-03-past-period")
        desktop.by("back-live").click()
        expect(desktop.by("view-label")).to_contain_text("Live")
        assert desktop.errors == [] and phone.errors == []
    finally:
        desktop.context.close()
        phone.context.close()


def test_an_unknown_board_says_so(live_stack, browser: Browser):
    tab = Tab(browser, live_stack.base_url, "board-missing", {"width": 1024, "height": 700})
    try:
        tab.page.goto("/boards/no-such-board")
        expect(tab.by("board-missing")).to_be_visible(timeout=WAIT_MS)
        assert tab.errors == []
    finally:
        tab.context.close()
