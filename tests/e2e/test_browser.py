"""A whole quiz in real browsers: one host and three players, two questions, to the podium.

Drives Debian's Chromium through Playwright against the running stack (`live_stack`: gunicorn,
relay and worker). Each page's scores are checked against the leaderboard API and PostgreSQL.
Screenshots of every stage land in tests/artifacts/browser/ (git-ignored).
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import text

from tests.helpers import WAIT_S, Api, HttpClient

ARTIFACTS = Path(__file__).resolve().parents[2] / "tests" / "artifacts" / "browser"
WAIT_MS = int(WAIT_S * 1000)  # a bound against hanging, never a timing assertion

QUESTIONS = [
    {"text": "Which planet is known as the Red Planet?", "choices": ["Mars", "Venus", "Jupiter", "Saturn"],
     "correct": 0, "points": "1000"},
    {"text": "How many continents are there?", "choices": ["Five", "Seven", "Six", "Eight"],
     "correct": 1, "points": "2000"},
]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def points(n: int) -> str:
    return f"{n:,}"


class Tab:
    """One browser context (its own localStorage) with one page, recording script errors."""

    def __init__(self, browser: Browser, base_url: str, name: str, viewport: dict):
        self.name = name
        self.context = browser.new_context(base_url=base_url, viewport=viewport)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def by(self, testid: str):
        return self.page.get_by_test_id(testid)

    def stored(self, key: str) -> dict:
        return json.loads(self.page.evaluate(f"localStorage.getItem({json.dumps(key)})") or "{}")

    def shot(self, stage: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{stage}-{self.name}.png"), full_page=True,
                             animations="disabled")


def write_quiz(host: Tab) -> None:
    host.by("quiz-title").fill("Planet quiz")
    for index, question in enumerate(QUESTIONS):
        if index:
            host.by("add-question").click()
        card = host.by("question-card").nth(index)
        card.get_by_test_id("q-text").fill(question["text"])
        for choice, label in enumerate(question["choices"]):
            card.get_by_test_id(f"q-choice-{choice}").fill(label)
        card.get_by_test_id(f"q-correct-{question['correct']}").check()
        card.get_by_test_id("q-time").fill("30")
        card.get_by_test_id("q-points").select_option(question["points"])


def leaderboard(http: Api, session_id: str, token: str) -> list[dict]:
    return http.get(f"/api/v1/sessions/{session_id}/leaderboard", token=token, expect=200,
                    limit=10).get_json()["entries"]


def scores_in_postgres(engine, session_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        return {str(pid): score for pid, score in connection.execute(text(
            "SELECT id, score FROM quiz_session_participants WHERE quiz_session_id = :s"), {"s": session_id})}


def check_boards(host: Tab, players: dict[str, Tab], http: Api, engine, session_id: str,
                 token: str) -> list[dict]:
    """Every page shows the scores that the leaderboard API and PostgreSQL hold."""
    truth = scores_in_postgres(engine, session_id)
    # The worker applies answers to Redis asynchronously: wait until it agrees (serving the pages' events).
    deadline = time.monotonic() + WAIT_S
    expected = leaderboard(http, session_id, token)
    while {e["participant_id"]: e["score"] for e in expected} != truth and time.monotonic() < deadline:
        host.page.wait_for_timeout(100)
        expected = leaderboard(http, session_id, token)
    assert {e["participant_id"]: e["score"] for e in expected} == truth
    names = [e["nickname"] for e in expected]
    scores = [points(e["score"]) for e in expected]
    for tab in [host, *players.values()]:
        expect(tab.by("leaderboard-name")).to_have_text(names, timeout=WAIT_MS)
        expect(tab.by("leaderboard-score")).to_have_text(scores, timeout=WAIT_MS)
    for tab in players.values():
        mine = next(e for e in expected
                    if e["participant_id"] == tab.stored("livequiz.player")["participant_id"])
        expect(tab.by("player-score")).to_have_text(points(mine["score"]), timeout=WAIT_MS)
        if mine["score"] > 0:  # nobody has a place on 0 points
            expect(tab.by("player-rank")).to_have_text(ordinal(mine["rank"]), timeout=WAIT_MS)
        else:
            expect(tab.by("player-rank-wrap")).to_be_hidden(timeout=WAIT_MS)
    return expected


def answer(tab: Tab, choice: int, *, keyboard: bool = False) -> None:
    expect(tab.by(f"answer-{choice}")).to_be_enabled(timeout=WAIT_MS)
    if keyboard:
        tab.page.keyboard.press(str(choice + 1))
    else:
        tab.by(f"answer-{choice}").click()
    expect(tab.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)


def test_host_and_three_players_play_to_the_podium(live_stack, browser: Browser, engine):
    http = Api(HttpClient(live_stack.base_url))
    host = Tab(browser, live_stack.base_url, "host", {"width": 1366, "height": 860})
    players = {name: Tab(browser, live_stack.base_url, name.lower(), {"width": 430, "height": 900})
               for name in ("Ann", "Ben", "Cat")}
    tabs = [host, *players.values()]
    try:
        # The host registers, writes two questions in the form and opens a room.
        host.page.goto("/host")
        host.shot("01-sign-in")
        host.by("host-username").fill("host_" + uuid.uuid4().hex[:10])
        host.by("host-password").fill("correct horse battery")
        host.by("host-register").click()
        expect(host.by("library-empty")).to_be_visible(timeout=WAIT_MS)  # the library, empty
        host.by("new-quiz-button").click()
        expect(host.by("quiz-form")).to_be_visible(timeout=WAIT_MS)
        write_quiz(host)
        host.shot("02-quiz-form")
        host.by("create-session").click()
        expect(host.by("join-code")).to_have_text(re.compile(r"^\d{6}$"), timeout=WAIT_MS)
        expect(host.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        code = host.by("join-code").text_content()
        session_id = host.stored("livequiz.host")["session_id"]
        token = host.stored("livequiz.host")["token"]

        # Three players join with the PIN; the host sees each arrive.
        for name, tab in players.items():
            tab.page.goto("/")
            if name == "Ann":
                tab.shot("03-join")
            tab.by("join-code").fill(code)
            tab.by("join-nickname").fill(name)
            tab.by("join-submit").click()
            expect(tab.by("lobby")).to_be_visible(timeout=WAIT_MS)
            expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(host.by("player-count")).to_have_text("3", timeout=WAIT_MS)
        expect(host.by("arrival")).to_have_text(["Ann", "Ben", "Cat"], timeout=WAIT_MS)
        expect(host.by("roster-empty")).to_be_hidden()  # never "Nobody has joined yet" beside 3 players
        expect(host.by("roster-name")).to_have_text(["Ann", "Ben", "Cat"], timeout=WAIT_MS)
        host.shot("04-lobby")
        players["Ann"].shot("04-lobby")

        # Question 1: Ann and Ben (by keyboard) are right, Cat is wrong; it closes once all have answered.
        host.by("next-question").click()
        for tab in players.values():
            expect(tab.by("question-text")).to_have_text(QUESTIONS[0]["text"], timeout=WAIT_MS)
            expect(tab.by("answer-3")).to_be_visible()
        players["Ann"].shot("05-question")
        host.shot("05-question")
        answer(players["Ann"], 0)
        players["Ann"].shot("06-locked-in")
        answer(players["Ben"], 0, keyboard=True)
        answer(players["Cat"], 2)
        expect(host.by("question-status")).to_have_text("Closed", timeout=WAIT_MS)
        expect(host.by("choice-count-0")).to_have_text("2", timeout=WAIT_MS)
        expect(host.by("choice-count-2")).to_have_text("1")
        for name, verdict in (("Ann", "Correct!"), ("Ben", "Correct!"), ("Cat", "Wrong")):
            expect(players[name].by("result-verdict")).to_have_text(verdict, timeout=WAIT_MS)
        expect(players["Cat"].by("result-points")).to_have_text("+0 points")
        expect(players["Ann"].by("result-correct")).to_have_text("Correct answer: Mars")
        board = check_boards(host, players, http, engine, session_id, token)
        assert {e["nickname"] for e in board if e["score"] > 0} == {"Ann", "Ben"}
        first, second = sorted((e for e in board if e["score"] > 0), key=lambda e: e["rank"])
        # Answer time counts, so a tie is possible: never "0 points behind".
        gap, leader = first["score"] - second["score"], first["nickname"]
        behind = (f"Tied on points with {leader}" if gap == 0
                  else f"{gap:,} point{'' if gap == 1 else 's'} behind {leader}")
        expect(players[second["nickname"]].by("result-behind")).to_have_text(behind, timeout=WAIT_MS)
        for tab in players.values():
            tab.shot("07-result-q1")
        host.shot("07-result-q1")

        # A reload drops the socket: the player is straight back in the room with the same score.
        before = players["Cat"].by("player-score").text_content()
        players["Cat"].page.reload()
        expect(players["Cat"].by("result")).to_be_visible(timeout=WAIT_MS)
        expect(players["Cat"].by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(players["Cat"].by("player-score")).to_have_text(before)

        # Question 2 (double points): Ben is right again (a streak), Ann is wrong, Cat does not answer;
        # the host closes it.
        host.by("next-question").click()
        for tab in players.values():
            expect(tab.by("question-text")).to_have_text(QUESTIONS[1]["text"], timeout=WAIT_MS)
        answer(players["Ben"], 1, keyboard=True)
        answer(players["Ann"], 3)
        host.by("close-question").click()
        expect(host.by("question-status")).to_have_text("Closed", timeout=WAIT_MS)
        expect(host.by("choice-count-1")).to_have_text("1", timeout=WAIT_MS)
        expect(players["Ben"].by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
        expect(players["Ben"].by("result-streak")).to_have_text("2 🔥")
        expect(players["Ann"].by("result-verdict")).to_have_text("Wrong", timeout=WAIT_MS)
        expect(players["Cat"].by("result-verdict")).to_have_text("No answer", timeout=WAIT_MS)
        board = check_boards(host, players, http, engine, session_id, token)
        assert [e["nickname"] for e in board] == ["Ben", "Ann", "Cat"]
        players["Ben"].shot("08-result-q2")
        host.shot("08-result-q2")

        # The last question is done: the host shows the podium, every player sees it and their place.
        expect(host.by("end-session")).to_have_text("Show the podium")
        host.by("end-session").click()
        podium = [e for e in board[:3] if e["score"] > 0]  # no medal without points
        podium_names = [e["nickname"] for e in podium]
        podium_scores = [f"{points(e['score'])} pts" for e in podium]
        for tab in tabs:
            expect(tab.by("podium-name")).to_have_text(podium_names, timeout=WAIT_MS)
            expect(tab.by("podium-score")).to_have_text(podium_scores)
        for e in board:
            tab = players[e["nickname"]]
            # Nobody has a place on 0 points, as on the board.
            place = (f"You finished {ordinal(e['rank'])} of 3 with {points(e['score'])} points."
                     if e["score"] > 0 else "You scored 0 points.")
            expect(tab.by("final-place")).to_have_text(place, timeout=WAIT_MS)
        host.shot("09-podium")
        for tab in players.values():
            tab.shot("09-podium")

        for tab in tabs:
            assert tab.errors == [], (tab.name, tab.errors)
    finally:
        for tab in tabs:
            tab.context.close()
