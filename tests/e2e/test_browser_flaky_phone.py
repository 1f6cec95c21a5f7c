"""A player on a flaky phone, in real browsers: the network goes away mid-question and comes back, a
second device takes the place over, a reload happens mid-game. Every screen must say what is true:
the connection pill, "Too late" (never "Wrong") for an answer that arrived after the close, the answer
already given, the board of the last close, the rejoin code. The host drives the game over the API;
each step waits on a state the host or the page reaches, never on the seconds of a question.

Playwright's offline mode holds a socket's frames both ways (as a phone out of coverage does): the
socket never closes, so only the page's own ping can tell. Screenshots land in tests/artifacts/browser/.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from scripts.stack.programs import kind_of
from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, PHONE, ClassTab
from tests.helpers import Api, HttpClient, Player, free_port, sample_questions

# What a browser logs while it is offline (refused requests and sockets); anything else fails the test.
OFFLINE_LOG = re.compile(r"ERR_INTERNET_DISCONNECTED|WebSocket connection to .* failed|ERR_NAME_NOT_RESOLVED")
TIME_LIMIT_S = 120  # longer than any test takes: the host closes each question


class Game:
    """A live session over the API: the host's side of the game."""

    def __init__(self, base_url: str, questions: int = 3):
        self.http = Api(HttpClient(base_url))
        self.host: Player = self.http.host()
        self.session = self.http.live_session(self.host,
                                              sample_questions(questions, time_limit_s=TIME_LIMIT_S))
        self.id = self.session["id"]
        self.questions = self.session["quiz"]["questions"]

    @property
    def link(self) -> str:
        return f"/?code={self.session['join_code']}"

    def next(self) -> dict:
        return self.http.next_question(self.id, self.host)

    def close(self) -> dict:
        return self.http.close_question(self.id, self.host)

    def end(self) -> None:
        self.http.post(f"/api/v1/sessions/{self.id}/end", token=self.host.token, expect=200)


def join(tab: ClassTab, game: Game, nickname: str) -> None:
    tab.page.goto(game.link)
    tab.by("join-nickname").fill(nickname)
    tab.by("join-submit").click()
    expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)


def answers_open(tab: ClassTab, question: dict) -> None:
    expect(tab.by("question-text")).to_have_text(question["text"], timeout=WAIT_MS)
    expect(tab.by("answer-0")).to_be_enabled(timeout=WAIT_MS)


def page_errors(tab: ClassTab) -> list[str]:
    return [e for e in tab.errors if not OFFLINE_LOG.search(e)]


def test_the_rejoin_code_shows_in_the_header_on_a_phone_after_a_late_join(live_stack, browser: Browser):
    game = Game(live_stack.base_url)
    tabs = [ClassTab(browser, live_stack.base_url, "flaky-late-phone", PHONE),
            ClassTab(browser, live_stack.base_url, "flaky-late-desktop", DESKTOP)]
    try:
        game.next()  # the game is under way: a late player never sees the lobby and its note
        for tab, nickname in zip(tabs, ("Lea", "Leo")):
            join(tab, game, nickname)
            answers_open(tab, game.questions[0])
            expect(tab.by("player-rejoin")).to_be_visible()
            expect(tab.by("player-rejoin")).to_have_text(re.compile(r"^[A-Z0-9]{3}-[A-Z0-9]{3}$"))
            tab.check("f01-late-join-code")
            assert page_errors(tab) == []
    finally:
        for tab in tabs:
            tab.context.close()


def test_an_answer_that_arrives_after_the_close_shows_too_late_never_wrong(live_stack, browser: Browser):
    game = Game(live_stack.base_url)
    tab = ClassTab(browser, live_stack.base_url, "flaky-late-answer", PHONE)
    try:
        join(tab, game, "Tia")
        game.next()
        answers_open(tab, game.questions[0])
        tab.context.set_offline(True)
        right = game.questions[0]["correct_choice"]
        tab.by(f"answer-{right}").click()  # the right answer, but the network is gone
        expect(tab.by("connection")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        game.close()  # the host sees the question closed before the answer could arrive
        tab.context.set_offline(False)
        expect(tab.by("result-verdict")).to_have_text("Too late", timeout=WAIT_MS)
        expect(tab.by("result-choice")).to_have_text(f"You picked: {game.questions[0]['choices'][right]}")
        expect(tab.by("result-points")).to_contain_text("did not count")
        expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(tab.by("player-score")).to_have_text("0")
        tab.check("f02-too-late")
        assert page_errors(tab) == []
    finally:
        tab.context.close()


def test_the_pill_tells_a_lost_network_and_the_page_resyncs_to_the_room_on_its_return(live_stack,
                                                                                      browser: Browser):
    game = Game(live_stack.base_url)
    tab = ClassTab(browser, live_stack.base_url, "flaky-offline", PHONE)
    board = ClassTab(browser, live_stack.base_url, "flaky-offline-board", DESKTOP)
    try:
        join(tab, game, "Oli")
        board.page.goto("/boards/default")
        expect(board.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        game.next()
        answers_open(tab, game.questions[0])
        tab.context.set_offline(True)
        board.context.set_offline(True)
        tab.by("answer-1").click()
        # The socket looks open to the browser; the page's own ping finds it dead.
        expect(tab.by("connection")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        expect(board.by("connection")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        tab.shot("f03-offline")
        board.shot("f03-offline")
        game.close()
        game.next()  # the room moves on while the phone is away
        tab.context.set_offline(False)
        board.context.set_offline(False)
        # Back: straight into the room's current question, its answers open as everyone else's.
        answers_open(tab, game.questions[1])
        expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(board.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(tab.by("answer-status")).to_have_text("")
        expect(tab.by("get-ready")).to_be_hidden()
        # And how the question it missed went: the answer tapped offline never arrived in time.
        expect(tab.by("missed-result")).to_have_text(
            "Question 1: Too late: your answer arrived after it closed.")
        assert 0 < int(tab.by("countdown").text_content()) <= TIME_LIMIT_S
        tab.check("f03-back-online")
        # The question goes on as for anyone: an answer counts.
        right = game.questions[1]["correct_choice"]
        tab.by(f"answer-{right}").click()  # the only player: the question closes once they have answered
        expect(tab.by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
        assert page_errors(tab) == [] and page_errors(board) == []
    finally:
        tab.context.close()
        board.context.close()


def test_a_second_device_shows_the_answer_already_given_and_then_its_verdict(live_stack, browser: Browser):
    game = Game(live_stack.base_url)
    first = ClassTab(browser, live_stack.base_url, "flaky-first-device", DESKTOP)
    second = ClassTab(browser, live_stack.base_url, "flaky-second-device", PHONE)
    try:
        game.http.join(game.id, game.http.guest())  # someone who never answers: the question stays open
        join(first, game, "Pia")
        code = first.by("rejoin-code-shown").text_content()
        game.next()
        answers_open(first, game.questions[0])
        wrong = (game.questions[0]["correct_choice"] + 1) % 4
        first.by(f"answer-{wrong}").click()
        expect(first.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
        # The keyboard's focus stays on the question, on what it says now.
        assert first.page.evaluate("document.activeElement.dataset.testid") == "answer-status"

        second.page.goto(game.link)
        second.by("rejoin-box").locator("summary").click()
        second.by("rejoin-nickname").fill("Pia")
        second.by("rejoin-code").fill(code)
        second.by("rejoin-submit").click()
        expect(second.by("question-text")).to_have_text(game.questions[0]["text"], timeout=WAIT_MS)
        expect(second.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
        expect(second.by(f"answer-{wrong}")).to_have_class(re.compile(r"\bchosen\b"))
        for choice in range(4):
            expect(second.by(f"answer-{choice}")).to_be_disabled()
        second.check("f04-second-device")
        game.close()
        expect(second.by("result-verdict")).to_have_text("Wrong", timeout=WAIT_MS)
        expect(second.by("result-choice")).to_have_text(f"You picked: {game.questions[0]['choices'][wrong]}")
        second.page.reload()  # and after a reload on the closed question: the verdict, not "Question closed"
        expect(second.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(second.by("result-verdict")).to_have_text("Wrong", timeout=WAIT_MS)
        assert page_errors(second) == []
    finally:
        first.context.close()
        second.context.close()


def test_the_top_10_and_places_read_right_after_a_reload_mid_game(live_stack, browser: Browser):
    game = Game(live_stack.base_url)
    ada = ClassTab(browser, live_stack.base_url, "flaky-reload", PHONE)
    bob = ClassTab(browser, live_stack.base_url, "flaky-zero", DESKTOP)
    try:
        join(ada, game, "Ada")
        join(bob, game, "Bob")
        game.next()
        answers_open(ada, game.questions[0])
        ada.by(f"answer-{game.questions[0]['correct_choice']}").click()
        expect(ada.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
        game.close()
        expect(ada.by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
        expect(bob.by("result-verdict")).to_have_text("No answer", timeout=WAIT_MS)
        # Read aloud as sentences, with no place on 0 points (never "You are –.").
        expect(bob.page.locator("#announcer")).to_have_text("No answer +0 points.", timeout=WAIT_MS)
        expect(ada.by("leaderboard-name")).to_have_text(["Ada", "Bob"], timeout=WAIT_MS)
        score = ada.by("player-score").text_content()

        game.next()
        answers_open(ada, game.questions[1])
        ada.page.reload()
        answers_open(ada, game.questions[1])
        # The board as of the last close, at once: not "Scores appear after the first question".
        expect(ada.by("leaderboard-name")).to_have_text(["Ada", "Bob"], timeout=WAIT_MS)
        expect(ada.by("leaderboard-score")).to_have_text([score, "0"])
        expect(ada.by("leaderboard-empty")).to_be_hidden()
        ada.check("f05-reload-mid-game")

        game.close()
        expect(bob.by("result-rank")).to_have_text("–", timeout=WAIT_MS)
        game.end()
        # No place on 0 points, as the board and the report say.
        expect(bob.by("final-place")).to_have_text("You scored 0 points.", timeout=WAIT_MS)
        expect(ada.by("final-place")).to_have_text(f"You finished 1st of 2 with {score} points.",
                                                   timeout=WAIT_MS)
        bob.check("f05-zero-points-final")
        assert page_errors(ada) == [] and page_errors(bob) == []
    finally:
        ada.context.close()
        bob.context.close()


def test_a_student_creates_an_account_on_the_player_page_and_plays_as_it(live_stack, browser: Browser):
    game = Game(live_stack.base_url)
    tab = ClassTab(browser, live_stack.base_url, "player-sign-up", PHONE)
    account = {"username": "zoe_" + game.id[:8], "password": "correct horse battery"}
    try:
        tab.page.goto(game.link)
        tab.by("join-nickname").fill("Zoë")
        tab.by("signin-box").locator("summary").click()
        tab.by("player-username").fill(account["username"])
        tab.by("player-password").fill("short")
        tab.by("player-create").check()
        tab.by("join-submit").click()
        expect(tab.by("join-error")).to_contain_text("at least 8 characters")
        tab.by("player-password").fill(account["password"])
        expect(tab.by("join-error")).to_have_text("")  # the error goes once the password is right
        tab.check("f06-sign-up")
        tab.by("join-submit").click()
        expect(tab.by("lobby")).to_be_visible(timeout=WAIT_MS)
        expect(tab.by("lobby-nickname")).to_have_text("Zoë")
        # The account exists and is the one in the game: signing in with it finds its place taken.
        token = game.http.post("/api/v1/auth/login", account, expect=200).get_json()["access_token"]
        refused = game.http.post(f"/api/v1/sessions/{game.id}/join", {"nickname": "Zoe again"}, token=token,
                                 expect=409).get_json()
        assert refused["error"]["code"] == "already_joined"
        assert page_errors(tab) == []
    finally:
        tab.context.close()


def test_a_player_who_moves_up_sees_by_how_much_and_whom_they_trail(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    # Double points on the last two: Bob overtakes Ada on the second, Ada takes the lead back on the third.
    questions = [{"text": f"Question {i + 1}?", "choices": ["red", "green", "blue", "gold"],
                  "correct_choice": 0, "time_limit_s": TIME_LIMIT_S, "points": points}
                 for i, points in enumerate((1000, 2000, 2000))]
    session = http.live_session(host, questions)
    bob = http.join(session["id"], http.guest("Bob"))
    ada = ClassTab(browser, live_stack.base_url, "feedback-moved-up", PHONE)
    try:
        ada.page.goto(f"/?code={session['join_code']}")
        ada.by("join-nickname").fill("Ada")
        ada.by("join-submit").click()
        expect(ada.by("lobby")).to_be_visible(timeout=WAIT_MS)

        def play(ada_choice: int, bob_choice: int) -> dict:
            question = http.next_question(session["id"], host)
            answers_open(ada, {"text": question["text"]})
            http.answer(session["id"], bob, question["question_id"], bob_choice)
            ada.by(f"answer-{ada_choice}").click()  # the last answer: the question closes
            expect(ada.by("result")).to_be_visible(timeout=WAIT_MS)
            return {e["nickname"]: e for e in http.get(f"/api/v1/sessions/{session['id']}/leaderboard",
                                                       token=host.token, expect=200).get_json()["entries"]}

        play(0, 1)  # Ada right, Bob wrong: Ada 1st
        board = play(1, 0)  # Bob right on double points: Ada drops to 2nd, behind Bob
        assert board["Ada"]["rank"] == 2
        behind = board["Bob"]["score"] - board["Ada"]["score"]
        expect(ada.by("result-behind")).to_have_text(f"{behind:,} points behind Bob", timeout=WAIT_MS)
        expect(ada.by("result-moved")).to_be_hidden()
        board = play(0, 1)  # Ada right on double points: back to 1st
        assert board["Ada"]["rank"] == 1
        expect(ada.by("result-moved")).to_have_text("You moved up 1 place!", timeout=WAIT_MS)
        expect(ada.by("result-behind")).to_be_hidden()
        ada.check("f07-moved-up")
        assert page_errors(ada) == []
    finally:
        ada.context.close()


@pytest.fixture(scope="module")
def web_with_get_ready(live_stack):
    """One more web process of the stack whose questions show 3 s before their answers open (the test
    stack opens them at once)."""
    web = next(name for name in live_stack.envs if kind_of(name) == "web")
    env = {**live_stack.envs[web], "QUESTION_GET_READY_S": "3", "WEB_WORKERS": "1",
           "WEB_PORT": str(free_port()), "WEB_METRICS_PORT": str(free_port())}
    live_stack.stack.start("web-get-ready", env)
    try:
        yield f"http://127.0.0.1:{env['WEB_PORT']}"
    finally:
        live_stack.stack.stop("web-get-ready")


def test_while_getting_ready_the_timer_shows_the_whole_time_calmly(web_with_get_ready, browser: Browser):
    game = Game(web_with_get_ready, questions=2)
    game.http.join(game.id, game.http.guest())  # someone who never answers: the host closes each question
    tab = ClassTab(browser, web_with_get_ready, "get-ready", PHONE)
    try:
        join(tab, game, "Gus")
        # Every moment of "Get ready…" is recorded: the timer beside it must never count or alarm.
        tab.page.evaluate("""() => {
          window.readyTimers = [];
          const seen = () => {
            if (!document.querySelector('[data-testid=get-ready]').hidden) {
              window.readyTimers.push([document.querySelector('[data-testid=countdown]').textContent,
                                       document.querySelector('.timer').dataset.urgent]);
            }
          };
          new MutationObserver(seen).observe(document.body, { subtree: true, childList: true,
                                                              attributes: true, characterData: true });
        }""")
        for position in range(2):
            game.next()
            expect(tab.by("get-ready")).to_be_visible(timeout=WAIT_MS)
            tab.check(f"f08-get-ready-{position + 1}")
            answers_open(tab, game.questions[position])
            game.close()
            expect(tab.by("result")).to_be_visible(timeout=WAIT_MS)
        seen = tab.page.evaluate("window.readyTimers")
        assert seen and set(map(tuple, seen)) == {(str(TIME_LIMIT_S), "false")}, sorted(set(map(tuple, seen)))
        assert page_errors(tab) == []
    finally:
        tab.context.close()
