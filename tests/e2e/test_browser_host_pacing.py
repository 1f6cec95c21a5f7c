"""The host paces a game in a real browser: a quiz written with no get-ready moment, a question
skipped, another given 10 more seconds, and a player removed mid-game and put back from the host's
list of players (which shows who answered, and each player's rejoin code).

Screens are checked with axe-core, phone and desktop; screenshots land in tests/artifacts/browser/.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from playwright.sync_api import Browser, expect
from sqlalchemy import text

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, PHONE, ClassTab, _register_host
from tests.helpers import Api, HttpClient


def _write_quiz(host: ClassTab) -> None:
    host.by("new-quiz-button").click()
    expect(host.by("quiz-form")).to_be_visible(timeout=WAIT_MS)
    host.by("quiz-title").fill("Paced quiz")
    host.by("quiz-get-ready").select_option("0")
    questions = (("2 + 2?", ("4", "5")), ("Capital of France?", ("Paris", "Rome")),
                 ("Largest ocean?", ("Pacific", "Arctic")))
    for index, (asked, choices) in enumerate(questions):
        if index:
            host.by("add-question").click()
        card = host.by("question-card").nth(index)
        card.get_by_test_id("q-text").fill(asked)
        for i, label in enumerate(choices):
            card.get_by_test_id(f"q-choice-{i}").fill(label)
        for extra in (3, 2):
            card.get_by_test_id(f"q-remove-choice-{extra}").click()
        card = host.by("question-card").nth(index)
        card.get_by_test_id("q-correct-0").check()
        card.get_by_test_id("q-time").fill("240")


def _current(http: Api, sid: str, host) -> dict:
    return http.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()


def test_the_host_skips_a_question_adds_time_and_removes_a_player_mid_game(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    tab = ClassTab(browser, live_stack.base_url, "pacing-host", DESKTOP)
    try:
        _register_host(tab)
        _write_quiz(tab)
        tab.check("p01-editor-get-ready")
        tab.by("create-session").click()
        expect(tab.by("join-code")).to_have_text(re.compile(r"^\d{6}$"), timeout=WAIT_MS)
        sid = tab.stored("livequiz.host")["session_id"]
        host = type("HostToken", (), {"token": tab.stored("livequiz.host")["token"]})()
        players = {name: http.join_as(sid, http.guest(), name) for name in ("Ada", "Bo", "Cy")}
        expect(tab.by("roster-name")).to_have_text(["Ada", "Bo", "Cy"], timeout=WAIT_MS)

        # No get-ready: the first question's answers open as it shows.
        tab.by("next-question").click()
        expect(tab.by("question-status")).to_have_text("Open", timeout=WAIT_MS)
        expect(tab.by("get-ready")).to_be_hidden()
        question = _current(http, sid, host)["current_question"]
        assert question["opened_at"] == question["shown_at"]
        http.answer(sid, players["Ada"], question["id"], 0)
        expect(tab.by("roster-player").filter(has_text="Ada").get_by_test_id("roster-state")).to_have_text(
            "answered", timeout=WAIT_MS)
        code = players["Bo"].rejoin_code
        bo = tab.by("roster-player").filter(has_text="Bo")
        expect(bo.get_by_test_id("roster-code")).to_have_count(0)  # a projected screen shows no codes
        bo.get_by_test_id("roster-show-code").click()
        expect(bo.get_by_test_id("roster-code")).to_have_text(f"{code[:3]}-{code[3:]}", timeout=WAIT_MS)
        tab.check("p02-question-roster")

        # Skip the rest of it: the question closes with one answer of three.
        tab.by("close-question").click()
        expect(tab.by("question-status")).to_have_text("Closed", timeout=WAIT_MS)
        expect(tab.by("choice-count-0")).to_have_text("1", timeout=WAIT_MS)
        assert _current(http, sid, host)["status"] == "question_closed"

        # The next question gets 10 more seconds: the deadline every screen and every answer goes by.
        tab.by("next-question").click()
        expect(tab.by("question-status")).to_have_text("Open", timeout=WAIT_MS)
        before = _current(http, sid, host)["current_question"]
        tab.by("add-time").click()
        expect(tab.page.locator("#announcer")).to_have_text("10 more seconds.", timeout=WAIT_MS)
        after = _current(http, sid, host)["current_question"]
        assert datetime.fromisoformat(after["deadline"]) - datetime.fromisoformat(before["deadline"]) == \
            timedelta(seconds=10)
        expect(tab.by("question-status")).to_have_text("Open")

        # Cy is removed mid-game, then put back with the Undo beside their name.
        for name in ("Ada", "Cy"):
            http.answer(sid, players[name], after["id"], 0)
        cy = tab.by("roster-player").filter(has_text="Cy")
        expect(cy.get_by_test_id("roster-state")).to_have_text("answered", timeout=WAIT_MS)
        cy.get_by_test_id("roster-remove").click()
        expect(cy.get_by_test_id("roster-state")).to_have_text("removed", timeout=WAIT_MS)
        expect(tab.by("player-count")).to_have_text("2", timeout=WAIT_MS)
        expect(tab.by("answered")).to_have_text(re.compile("of 2 answered"), timeout=WAIT_MS)
        tab.check("p03-player-removed")
        answer = http.answer(sid, players["Cy"], after["id"], 1, expect=403)
        assert answer.get_json()["error"]["code"] == "removed"
        cy.get_by_test_id("roster-restore").click()
        expect(cy.get_by_test_id("roster-remove")).to_be_visible(timeout=WAIT_MS)
        expect(tab.by("player-count")).to_have_text("3", timeout=WAIT_MS)
        expect(tab.by("leaderboard-name")).to_have_count(3, timeout=WAIT_MS)
        tab.by("close-question").click()
        expect(tab.by("question-status")).to_have_text("Closed", timeout=WAIT_MS)
        # Cy's answer given before the removal counts for nothing: Ada alone scored on this question.
        board = http.get(f"/api/v1/sessions/{sid}/leaderboard", token=host.token, expect=200).get_json()
        scores = {e["nickname"]: e["score"] for e in board["entries"]}
        assert scores["Cy"] == 0 and scores["Ada"] > 0

        tab.page.set_viewport_size(PHONE)
        tab.check("p04-scoreboard-phone")
        assert tab.errors == [], tab.errors
    finally:
        tab.context.close()


def test_the_hosts_screen_says_get_ready_until_the_answers_open(live_stack, browser: Browser, engine):
    http = Api(HttpClient(live_stack.base_url))
    tab = ClassTab(browser, live_stack.base_url, "get-ready-host", PHONE)
    try:
        _register_host(tab)
        token = tab.stored("livequiz.host")["token"]
        http.post("/api/v1/quizzes", {"title": "Ready", "get_ready_s": 5, "questions": [
            {"text": "2 + 2?", "choices": ["4", "5"], "correct_choice": 0, "time_limit_s": 60}]},
            token=token, expect=201).get_json()
        tab.page.reload()
        tab.by("quiz-host").click()
        expect(tab.by("join-code")).to_have_text(re.compile(r"^\d{6}$"), timeout=WAIT_MS)
        sid = tab.stored("livequiz.host")["session_id"]
        http.join(sid, http.guest())
        tab.by("next-question").click()
        expect(tab.by("get-ready")).to_be_visible(timeout=WAIT_MS)
        # The answers open a while later: a state that holds however long the page takes to look.
        with engine.begin() as connection:
            connection.execute(text("""
                UPDATE quiz_sessions SET question_opened_at = question_opened_at + interval '1 hour',
                                         question_deadline = question_deadline + interval '1 hour'
                WHERE id = :s"""),
                               {"s": sid})
        tab.page.reload()
        expect(tab.by("get-ready")).to_be_visible(timeout=WAIT_MS)
        expect(tab.by("question-status")).to_have_text("Get ready")
        expect(tab.by("countdown")).to_be_hidden()
        tab.check("p05-get-ready-phone")
        with engine.begin() as connection:
            connection.execute(text("""
                UPDATE quiz_sessions SET question_opened_at = clock_timestamp(),
                                         question_deadline = clock_timestamp() + interval '60 seconds'
                WHERE id = :s"""),
                               {"s": sid})
        tab.page.reload()
        expect(tab.by("question-status")).to_have_text("Open", timeout=WAIT_MS)
        expect(tab.by("countdown")).to_be_visible()
        expect(tab.by("get-ready")).to_be_hidden()
        assert tab.errors == [], tab.errors
    finally:
        tab.context.close()
