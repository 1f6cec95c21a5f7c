"""What the host does reaches the player's screen, and what the players' devices do reaches the host's,
in real browsers: more time moves the player's timer, a picture's words are its alt text, the host's list
says who is connected, and a nickname already in the game leads to taking the place back with its
rejoin code. Each step waits on a state the page or the API reaches, never on the seconds of a question.

Screenshots land in tests/artifacts/browser/.
"""
from __future__ import annotations

import re

import requests
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, PHONE, ClassTab, _register_host
from tests.helpers import Api, HttpClient, tiny_png, wait_until

TIME_LIMIT_S = 60


def _join(tab: ClassTab, join_code: str, nickname: str) -> None:
    tab.page.goto(f"/?code={join_code}")
    tab.by("join-nickname").fill(nickname)
    tab.by("join-submit").click()
    expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)


def _answers_open(tab: ClassTab, text: str) -> None:
    expect(tab.by("question-text")).to_have_text(text, timeout=WAIT_MS)
    expect(tab.by("answer-0")).to_be_enabled(timeout=WAIT_MS)


def test_more_time_from_the_host_moves_the_players_timer(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    session = http.live_session(host, [{"text": "2 + 2?", "choices": ["4", "5"], "correct_choice": 0,
                                        "time_limit_s": TIME_LIMIT_S}])
    http.join(session["id"], http.guest())  # someone who never answers: the question stays open
    tab = ClassTab(browser, live_stack.base_url, "more-time-player", PHONE)
    try:
        _join(tab, session["join_code"], "Max")
        question = http.next_question(session["id"], host)
        _answers_open(tab, "2 + 2?")
        extended = http.post(f"/api/v1/sessions/{session['id']}/questions/extend",
                             {"seconds": 60, "deadline": question["deadline"]}, token=host.token,
                             expect=200).get_json()
        assert extended["replayed"] is False
        # Only a timer that follows the new deadline can read more than the question's own time limit.
        expect(tab.by("countdown")).to_have_text(re.compile(r"^(6[1-9]|[7-9]\d|1[01]\d|120)$"),
                                                 timeout=WAIT_MS)
        expect(tab.by("answer-0")).to_be_enabled()
        tab.check("h01-more-time-player")
        tab.by("answer-0").click()
        expect(tab.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
        assert tab.errors == [], tab.errors
    finally:
        tab.context.close()


def test_the_player_page_says_what_the_picture_shows(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    picture = requests.post(f"{live_stack.base_url}/api/v1/images", data=tiny_png(40, 30), timeout=30,
                            headers={"Authorization": f"Bearer {host.token}", "Content-Type": "image/png"})
    assert picture.status_code == 201, picture.text
    words = "A map of Europe with Paris circled"
    session = http.live_session(host, [{"text": "Which city is circled?", "choices": ["Paris", "Rome"],
                                        "correct_choice": 0, "time_limit_s": TIME_LIMIT_S,
                                        "image_id": picture.json()["id"], "image_alt": words}])
    http.join(session["id"], http.guest())  # someone who never answers: the question stays open
    tab = ClassTab(browser, live_stack.base_url, "picture-words", DESKTOP)
    try:
        _join(tab, session["join_code"], "Ida")
        http.next_question(session["id"], host)
        _answers_open(tab, "Which city is circled?")
        expect(tab.by("question-image")).to_have_attribute("alt", words)  # as the question opened
        tab.page.reload()
        _answers_open(tab, "Which city is circled?")
        expect(tab.by("question-image")).to_have_attribute("alt", words)  # and from the room's snapshot
        tab.check("h02-picture-words")
        assert tab.errors == [], tab.errors
    finally:
        tab.context.close()


def test_the_hosts_list_says_who_is_connected(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = ClassTab(browser, live_stack.base_url, "presence-host", DESKTOP)
    players = [ClassTab(browser, live_stack.base_url, f"presence-{name}", PHONE) for name in ("ana", "ben")]
    try:
        _register_host(host)
        http.post("/api/v1/quizzes", {"title": "Who is here", "questions": [
            {"text": "2 + 2?", "choices": ["4", "5"], "correct_choice": 0, "time_limit_s": TIME_LIMIT_S}]},
            token=host.stored("livequiz.host")["token"], expect=201)
        host.page.reload()
        host.by("quiz-host").click()
        expect(host.by("join-code")).to_have_text(re.compile(r"^\d{6}$"), timeout=WAIT_MS)
        join_code = host.by("join-code").text_content()
        for tab, nickname in zip(players, ("Ana", "Ben")):
            _join(tab, join_code, nickname)
        expect(host.by("roster-name")).to_have_text(["Ana", "Ben"], timeout=WAIT_MS)
        expect(host.by("roster-presence")).to_have_text(["connected", "connected"], timeout=WAIT_MS)
        host.by("next-question").click()
        expect(host.by("question-status")).to_have_text("Open", timeout=WAIT_MS)
        players[1].context.close()  # Ben's phone is gone
        ben = host.by("roster-player").filter(has_text="Ben")
        expect(ben.get_by_test_id("roster-presence")).to_have_text("away", timeout=WAIT_MS)
        expect(host.by("roster-player").filter(has_text="Ana").get_by_test_id("roster-presence")).to_have_text(
            "connected")
        host.check("h03-who-is-connected")
        assert host.errors == [], host.errors
    finally:
        host.context.close()
        for tab in players:
            tab.context.close()


def test_a_nickname_in_the_game_leads_to_the_rejoin_code_and_the_place_moves(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    session = http.live_session(host, [{"text": f"Question {i + 1}?", "choices": ["4", "5"],
                                        "correct_choice": 0, "time_limit_s": TIME_LIMIT_S} for i in range(2)])
    http.join(session["id"], http.guest())  # someone who never answers: the host closes each question
    old = ClassTab(browser, live_stack.base_url, "rejoin-old-device", DESKTOP)
    new = ClassTab(browser, live_stack.base_url, "rejoin-new-device", PHONE)
    try:
        _join(old, session["join_code"], "Pia")
        code = old.by("rejoin-code-shown").text_content()
        http.next_question(session["id"], host)
        _answers_open(old, "Question 1?")
        old.by("answer-0").click()
        expect(old.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
        http.close_question(session["id"], host)
        expect(old.by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
        score = old.by("player-score").text_content()
        assert score != "0"

        # A new device, the PIN and the same nickname: the page asks for the rejoin code.
        typed = "pia"  # nicknames are the same whatever the case
        new.page.goto(f"/?code={session['join_code']}")
        new.by("join-nickname").fill(typed)
        new.by("join-submit").click()
        expect(new.by("join-error")).to_contain_text("type your rejoin code", timeout=WAIT_MS)
        expect(new.by("rejoin-code")).to_be_focused()
        expect(new.by("rejoin-nickname")).to_have_value(typed)
        new.check("h04-nickname-taken")
        new.by("rejoin-code").fill(code)
        new.by("rejoin-submit").click()
        # The place moves at once with its code: the score comes along, the old device is told.
        expect(new.by("player-score")).to_have_text(score, timeout=WAIT_MS)
        expect(new.by("player-nickname")).to_have_text("Pia")
        expect(old.by("refused-reason")).to_have_text(re.compile("another device"), timeout=WAIT_MS)
        http.next_question(session["id"], host)
        _answers_open(new, "Question 2?")
        assert new.by("player-rejoin").text_content() != code  # a code works once
        new.check("h04-rejoined")
        assert new.errors == [], new.errors
    finally:
        old.context.close()
        new.context.close()


def test_the_result_shows_the_streak_bonus_apart(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    session = http.live_session(host, [{"text": f"Question {i + 1}?", "choices": ["4", "5"],
                                        "correct_choice": 0, "time_limit_s": TIME_LIMIT_S} for i in range(2)])
    http.join(session["id"], http.guest())  # someone who never answers: the host closes each question
    tab = ClassTab(browser, live_stack.base_url, "streak-bonus", PHONE)
    try:
        _join(tab, session["join_code"], "Sam")
        scores = []
        for position in range(2):
            http.next_question(session["id"], host)
            _answers_open(tab, f"Question {position + 1}?")
            tab.by("answer-0").click()
            expect(tab.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
            http.close_question(session["id"], host)
            expect(tab.by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
            before = scores[-1] if scores else 0

            def scored(before=before) -> int:  # the board moves once the worker applied the close
                board = http.get(f"/api/v1/sessions/{session['id']}/leaderboard", token=host.token,
                                 expect=200).get_json()
                score = next(e["score"] for e in board["entries"] if e["nickname"] == "Sam")
                return score if score > before else 0

            scores.append(wait_until(scored, "Sam's points on the board"))
        # The second right answer in a row earns 100 more: shown apart from the answer's own points.
        earned = scores[1] - scores[0]
        expect(tab.by("result-points")).to_have_text(f"+{earned - 100:,} + 100 streak bonus", timeout=WAIT_MS)
        tab.check("h05-streak-bonus")
        assert tab.errors == [], tab.errors
    finally:
        tab.context.close()
