"""A short game hosted from the host's page and its report read on a 390 px phone: every cell on the
screen (rows stand as cards, each player's answers listed under their name), the questions hardest
first, and the CSV ("Zoë" kept by its byte order mark) and the JSON downloaded from the page and read
back. Screens are checked with axe-core, phone and desktop; screenshots land in tests/artifacts/browser/."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, PHONE, ClassTab
from tests.helpers import Api, HttpClient, sample_questions

TITLE = "Report on a phone"
# Who picks what: the first question right 0 (2 of 3 right), the second right 1 (1 of 2: the hardest),
# then a poll; Bo leaves the last two unanswered.
ADA = "Ada Lovelace-Byron"
PICKS = ({"Zoë": 0, ADA: 1, "Bo": 0}, {"Zoë": 0, ADA: 1}, {"Zoë": 2, ADA: 0})


def _quiz(http: Api, host) -> str:
    questions = sample_questions(2, time_limit_s=240)
    questions[0]["text"] = "Which of these planets has the longest day of all the planets we know of?"
    questions.append({"kind": "poll", "text": "Best season?", "choices": ["Spring", "Summer", "Autumn"],
                      "time_limit_s": 240})
    quiz = http.post("/api/v1/quizzes", {"title": TITLE, "get_ready_s": 0, "questions": questions},
                     token=host.token, expect=201).get_json()
    return http.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token, expect=201).get_json()["id"]


def _download(tab: ClassTab, testid: str) -> tuple[str, bytes]:
    with tab.page.expect_download() as download_info:
        tab.by(testid).click()
    download = download_info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def _host_the_game(tab: ClassTab, http: Api, host, sid: str) -> None:
    """The host runs the game from the page; the players answer through the API."""
    players = {name: http.join_as(sid, http.guest(), name) for name in ("Zoë", ADA, "Bo", "Rex")}
    expect(tab.by("arrival")).to_have_count(4, timeout=WAIT_MS)
    # Removing a player from the lobby can be undone, and the confirmation says so.
    asked: list[str] = []
    tab.page.on("dialog", lambda dialog: asked.append(dialog.message))
    tab.by("remove-player").filter(has_text="Rex").click()
    expect(tab.by("roster-player").filter(has_text="Rex").get_by_test_id("roster-state")).to_have_text(
        "removed", timeout=WAIT_MS)
    assert asked and "undo" in asked[0] and "cannot join it again" not in asked[0], asked
    for picks in PICKS:
        tab.by("next-question").click()
        expect(tab.by("question-status")).to_have_text("Open", timeout=WAIT_MS)
        shown = http.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()
        question = shown["current_question"]
        for name, choice in picks.items():
            http.answer(sid, players[name], question["id"], choice)
        if len(picks) < 3:  # a question every player answered closes by itself
            expect(tab.by("answered")).to_have_text(f"{len(picks)} of 3 answered", timeout=WAIT_MS)
            tab.by("close-question").click()
        expect(tab.by("question-status")).to_have_text("Closed", timeout=WAIT_MS)
    tab.by("end-session").click()
    tab.by("open-report").click()


def test_the_report_reads_on_a_phone_and_downloads_as_csv_and_json(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    sid = _quiz(http, host)
    tab = ClassTab(browser, live_stack.base_url, "report-phone", PHONE)
    try:
        tab.page.goto("/host")
        tab.page.evaluate("(saved) => localStorage.setItem('livequiz.host', saved)",
                          json.dumps({"token": host.token, "username": host.nickname, "session_id": sid}))
        tab.page.reload()
        _host_the_game(tab, http, host, sid)

        expect(tab.by("report-players").locator("tbody tr")).to_have_count(4, timeout=WAIT_MS)
        # The hardest question first, with its share correct and average time; the poll last.
        rows = tab.by("report-questions").locator("tbody tr")
        expect(rows.locator("td:first-child")).to_have_text(["2", "1", "3"])
        expect(rows.first.locator("td").nth(3)).to_have_text("50%")
        expect(rows.first.locator("td").nth(4)).to_have_text(re.compile(r"^\d+\.\d s$"))
        # Each player's card lists their answers: right, wrong, a poll, none.
        answers = tab.by("report-answers").locator("tbody tr")
        expect(answers).to_have_count(4)
        def player_row(nickname: str):
            return answers.filter(has=tab.page.locator("th", has_text=re.compile(f"^{re.escape(nickname)}")))

        zoe = player_row("Zoë").locator("td")
        expect(zoe).to_have_count(3)
        assert [zoe.nth(i).get_attribute("data-verdict") for i in range(3)] == ["correct", "wrong", "poll"]
        expect(zoe.nth(0)).to_have_text(re.compile(r"correct: red · \d+\.\d s$"))
        expect(zoe.nth(2)).to_have_text(re.compile(r"^Autumn \(poll\)"))
        bo = player_row("Bo").locator("td")
        assert [bo.nth(i).get_attribute("data-verdict") for i in range(3)] == ["correct", "none", "none"]
        expect(player_row("Rex").locator("th")).to_have_text("Rex (removed)")
        # Every cell of every table ends on the screen: nothing cut off, nothing to scroll sideways to.
        rights = tab.page.locator("[data-testid=report] td, [data-testid=report] tbody th").evaluate_all(
            "cells => cells.map((c) => c.getBoundingClientRect().right)")
        assert rights and max(rights) <= PHONE["width"], f"a report cell ends at {max(rights)} px"
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        tab.check("e08-report-phone")

        name, raw = _download(tab, "report-csv")
        assert re.fullmatch(r"report-on-a-phone-\d{4}-\d{2}-\d{2}\.csv", name), name
        assert raw.startswith(b"\xef\xbb\xbf")  # the byte order mark that tells Excel it is UTF-8
        sheet = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert "Zoë" in {row[1] for row in sheet[1:5]}
        by_cell = {(row[0], row[1]): row[3:5] for row in sheet if len(row) == 7 and row[1].isdigit()}
        assert by_cell[("Zoë", "1")] == ["red", "yes"] and by_cell[("Bo", "2")] == ["—", "no"]
        assert by_cell[("Zoë", "3")] == ["Autumn", "poll"] and len(by_cell) == 4 * 3

        name, raw = _download(tab, "report-json")
        assert re.fullmatch(r"report-on-a-phone-\d{4}-\d{2}-\d{2}\.json", name), name
        report = json.loads(raw)
        assert report["session"]["title"] == TITLE and report["hardest_first"] == [1, 0, 2]
        zoe_answers = next(p for p in report["players"] if p["nickname"] == "Zoë")["answers"]
        assert [(a["choice_text"], a["correct"]) for a in zoe_answers] == [("red", True), ("red", False),
                                                                            ("Autumn", None)]

        tab.page.set_viewport_size(DESKTOP)
        expect(tab.by("report-answers").locator("thead th")).to_have_count(4)
        tab.check("e08-report-desktop")
        assert tab.errors == []
    finally:
        tab.context.close()
