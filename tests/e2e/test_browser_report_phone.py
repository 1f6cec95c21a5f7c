"""A game's report read on a 390 px phone: every cell on the screen (rows stand as cards), and the CSV
downloaded from the page opens in a spreadsheet with its accents ("Zoë")."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import PHONE, ClassTab
from tests.helpers import Api, HttpClient, sample_questions, wait_until


def _played_game(http: Api, host) -> str:
    """A game of two questions, three players, played through the API and ended."""
    questions = sample_questions(2)
    questions[0]["text"] = "Which of these planets has the longest day of all the planets we know of?"
    quiz = http.post("/api/v1/quizzes", {"title": "Report on a phone", "get_ready_s": 0,
                                         "questions": questions}, token=host.token, expect=201).get_json()
    sid = http.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token, expect=201).get_json()["id"]
    players = [http.join_as(sid, http.guest(), name) for name in ("Zoë", "Ada Lovelace-Byron", "Bo")]
    for _ in questions:
        opened = http.next_question(sid, host)
        for i, player in enumerate(players):
            http.answer(sid, player, opened["question_id"], i)
        wait_until(lambda: http.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200)
                   .get_json()["status"] == "question_closed", "the question never closed")
    http.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    return sid


def test_the_report_reads_on_a_phone_and_its_csv_keeps_accents(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    _played_game(http, host)
    tab = ClassTab(browser, live_stack.base_url, "report-phone", PHONE)
    try:
        tab.page.goto("/host")
        tab.page.evaluate("(saved) => localStorage.setItem('livequiz.host', saved)",
                          json.dumps({"token": host.token, "username": host.nickname}))
        tab.page.reload()
        tab.by("quiz-games").first.click()
        tab.by("game-report").first.click()
        expect(tab.by("report-players").locator("tbody tr")).to_have_count(3, timeout=WAIT_MS)
        expect(tab.by("report-questions").locator("tbody tr")).to_have_count(2)
        # Every cell of both tables ends on the screen: nothing cut off, nothing to scroll sideways to.
        rights = tab.page.locator("[data-testid=report] td").evaluate_all(
            "cells => cells.map((c) => c.getBoundingClientRect().right)")
        assert rights and max(rights) <= PHONE["width"], f"a report cell ends at {max(rights)} px"
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        tab.check("e08-report-phone")

        with tab.page.expect_download() as download_info:
            tab.by("report-csv").click()
        raw = Path(download_info.value.path()).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # the byte order mark that tells Excel it is UTF-8
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert "Zoë" in {row[1] for row in rows[1:4]}
        assert tab.errors == []
    finally:
        tab.context.close()
