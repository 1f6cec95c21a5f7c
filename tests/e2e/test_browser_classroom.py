"""A classroom game in real browsers: a host writes a quiz in the library (a picture question, a
true/false and a poll), players join by the link the QR code carries (guests and a registered player,
phone and desktop), the host removes one, one takes their place back on a second device, and the
host reads the report and downloads it as CSV.

Every page is checked with axe-core (served by the test) and must log no script error and no CSP
violation. Screenshots of each stage land in tests/artifacts/browser/ (git-ignored).
"""
from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.e2e.accessibility import assert_accessible, serve_axe
from tests.e2e.test_browser import WAIT_MS, Tab
from tests.helpers import Api, HttpClient, tiny_png

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 860}
# What a browser logs for an HTTP error answer it was given (expected in the refusals this test
# provokes); anything else at error level fails the test.
HTTP_STATUS_LOG = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


class ClassTab(Tab):
    """A Tab that also records console errors (CSP violations among them) and serves axe-core."""

    def __init__(self, browser: Browser, base_url: str, name: str, viewport: dict):
        super().__init__(browser, base_url, name, viewport)
        serve_axe(self.context)
        # Motion settles at once, so the accessibility check sees each screen as it stays.
        self.page.emulate_media(reduced_motion="reduce")
        self.page.on("console", self._console)
        self.page.on("dialog", lambda dialog: dialog.accept())
        self.http_answers = 0  # answers sent over HTTP rather than the room socket
        self.page.on("request", self._request)

    def _request(self, request) -> None:
        if request.method == "POST" and request.url.endswith("/answers"):
            self.http_answers += 1

    def _console(self, message) -> None:
        if message.type == "error" and not HTTP_STATUS_LOG.search(message.text):
            self.errors.append(message.text)

    def check(self, stage: str) -> None:
        self.shot(stage)
        assert_accessible(self.page, f"{self.name} at {stage}")


def write_classroom_quiz(host: ClassTab, picture: Path) -> None:
    """Three questions that each stay open for the longest time a quiz allows: the game closes them when
    everyone answered, so no step depends on how fast the machine runs its checks."""
    host.by("new-quiz-button").click()
    expect(host.by("quiz-form")).to_be_visible(timeout=WAIT_MS)
    host.by("quiz-title").fill("Science class")
    card = host.by("question-card").nth(0)
    card.get_by_test_id("q-text").fill("Which planet is this?")
    card.get_by_test_id("q-time").fill("240")
    for i, label in enumerate(("Mars", "Venus", "Earth", "Mercury")):
        card.get_by_test_id(f"q-choice-{i}").fill(label)
    card.get_by_test_id("q-correct-0").check()
    card.get_by_test_id("q-image").set_input_files(str(picture))
    expect(host.by("question-card").nth(0).get_by_test_id("q-image-preview")).to_be_visible(timeout=WAIT_MS)

    host.by("add-question").click()
    card = host.by("question-card").nth(1)
    card.get_by_test_id("q-kind").select_option("true_false")
    card = host.by("question-card").nth(1)
    card.get_by_test_id("q-text").fill("The Sun is a star.")
    card.get_by_test_id("q-time").fill("240")
    card.get_by_test_id("q-correct-0").check()

    host.by("add-question").click()
    card = host.by("question-card").nth(2)
    card.get_by_test_id("q-kind").select_option("poll")
    card = host.by("question-card").nth(2)
    card.get_by_test_id("q-text").fill("Which topic next week?")
    card.get_by_test_id("q-time").fill("240")
    for i, label in enumerate(("Volcanoes", "Oceans", "Space")):
        card.get_by_test_id(f"q-choice-{i}").fill(label)
    card.get_by_test_id("q-remove-choice-3").click()


def join(tab: ClassTab, url: str, nickname: str, *, code: str | None = None) -> None:
    tab.page.goto(url)
    if code:
        tab.by("join-code").fill(code)
    tab.by("join-nickname").fill(nickname)
    tab.by("join-submit").click()


def answer(tab: Tab, choice: int) -> None:
    expect(tab.by(f"answer-{choice}")).to_be_enabled(timeout=WAIT_MS)
    tab.by(f"answer-{choice}").click()
    expect(tab.by("answer-status")).to_have_text(re.compile("locked in|Vote"), timeout=WAIT_MS)


def test_a_classroom_game_from_the_library_to_the_csv_report(live_stack, browser: Browser, tmp_path):
    http = Api(HttpClient(live_stack.base_url))
    picture = tmp_path / "planet.png"
    picture.write_bytes(tiny_png(320, 180))
    ben_account = {"username": "ben_" + uuid.uuid4().hex[:8], "password": "correct horse battery"}
    http.post("/api/v1/auth/register", ben_account, expect=201)

    host = ClassTab(browser, live_stack.base_url, "classroom-host", DESKTOP)
    tabs = {"host": host}
    for name, viewport in (("ann", PHONE), ("ben", DESKTOP), ("cat", PHONE), ("dan", PHONE),
                           ("cat2", DESKTOP), ("copycat", PHONE)):
        tabs[name] = ClassTab(browser, live_stack.base_url, f"classroom-{name}", viewport)
    ann, ben, cat, dan, cat2, copycat = (tabs[n] for n in ("ann", "ben", "cat", "dan", "cat2", "copycat"))
    try:
        # The host registers and lands on an empty library; writes a quiz with three kinds of question.
        host.page.goto("/host")
        host.by("host-username").fill("teacher_" + uuid.uuid4().hex[:8])
        host.by("host-password").fill("correct horse battery")
        host.by("host-register").click()
        expect(host.by("library-empty")).to_be_visible(timeout=WAIT_MS)
        host.check("c01-library-empty")
        write_classroom_quiz(host, picture)
        host.check("c02-editor")
        host.by("save-quiz").click()
        expect(host.by("quiz-item")).to_have_count(1, timeout=WAIT_MS)
        expect(host.by("quiz-item-title")).to_have_text(["Science class"])

        # Duplicate, then delete the copy: the library keeps one quiz.
        host.by("quiz-copy").click()
        expect(host.by("quiz-item-title")).to_have_text(["Science class (copy)", "Science class"],
                                                        timeout=WAIT_MS)
        host.check("c03-library")
        host.by("quiz-item").filter(has_text="(copy)").get_by_test_id("quiz-delete").click()
        expect(host.by("quiz-item-title")).to_have_text(["Science class"], timeout=WAIT_MS)

        # Host it: the room shows a PIN, the join link with the PIN in it, and a QR code of that link.
        host.by("quiz-host").click()
        expect(host.by("join-code")).to_have_text(re.compile(r"^\d{6}$"), timeout=WAIT_MS)
        code = host.by("join-code").text_content()
        link = f"{live_stack.base_url}/?code={code}"
        expect(host.by("join-link")).to_have_text(link.removeprefix("http://"))
        expect(host.by("join-qr")).to_have_attribute("src", f"/join/{code}.svg")
        host.page.wait_for_function("() => document.querySelector('[data-testid=join-qr]').naturalWidth > 0")
        served = http.get(f"/join/{code}.svg", expect=200)
        assert served.headers["Content-Type"].startswith("image/svg+xml") and "<script" not in served.text
        host.check("c04-room")

        # Players open the link: the PIN is filled in already. Ben signs in with his account.
        join(ann, link, "Ann")
        expect(ann.by("lobby")).to_be_visible(timeout=WAIT_MS)
        expect(ann.by("rejoin-code-shown")).to_have_text(re.compile(r"^[A-Z0-9]{3}-[A-Z0-9]{3}$"))
        ann.check("c05-lobby")
        ben.page.goto(link)
        expect(ben.by("join-code")).to_have_value(code)
        ben.page.get_by_text("Play with an account: sign in").click()
        ben.by("player-username").fill(ben_account["username"])
        ben.by("player-password").fill(ben_account["password"])
        ben.by("join-nickname").fill("Ben")
        ben.check("c05-join-signin")
        ben.by("join-submit").click()
        expect(ben.by("lobby")).to_be_visible(timeout=WAIT_MS)
        join(cat, link, "Cat")
        join(dan, link, "Dan")
        for tab in (cat, dan):
            expect(tab.by("lobby")).to_be_visible(timeout=WAIT_MS)
        # A second "ann" is refused, and told why.
        join(copycat, link, " ann ")
        expect(copycat.by("join-error")).to_have_text(re.compile("already has that nickname"),
                                                      timeout=WAIT_MS)
        copycat.check("c06-nickname-taken")

        # The host removes Dan; Dan's screen says so, and Dan cannot come back.
        expect(host.by("arrival")).to_have_text(["Ann", "Ben", "Cat", "Dan"], timeout=WAIT_MS)
        host.by("remove-player").filter(has_text="Dan").click()
        expect(host.by("arrival")).to_have_text(["Ann", "Ben", "Cat"], timeout=WAIT_MS)
        expect(host.by("player-count")).to_have_text("3")
        expect(dan.by("refused-reason")).to_have_text(re.compile("removed"), timeout=WAIT_MS)
        dan.check("c07-removed")
        dan_in_list = host.by("roster-player").filter(has_text="Dan")
        expect(dan_in_list.get_by_test_id("roster-state")).to_have_text("removed", timeout=WAIT_MS)
        expect(dan_in_list.get_by_test_id("roster-restore")).to_be_visible()
        host.check("c07-lobby")

        # Question 1, with its picture on every screen; the host sees answers come in.
        host.by("next-question").click()
        for tab in (host, ann, ben, cat):
            expect(tab.by("question-image")).to_be_visible(timeout=WAIT_MS)
            tab.page.wait_for_function(
                "() => { const i = document.querySelector('[data-testid=question-image]'); "
                "return i.complete && i.naturalWidth > 0; }")
        expect(ann.by("answer-3")).to_be_visible()
        ann.check("c08-question-picture")
        answer(ann, 0)
        answer(ben, 1)
        expect(host.by("answered")).to_have_text("2 of 3 answered", timeout=WAIT_MS)
        host.check("c08-question")
        # A reload of the host's page mid-question shows the same screen again.
        host.page.reload()
        expect(host.by("answered")).to_have_text("2 of 3 answered", timeout=WAIT_MS)
        expect(host.by("leaderboard-name")).to_have_count(3, timeout=WAIT_MS)
        answer(cat, 0)
        expect(host.by("question-status")).to_have_text("Closed", timeout=WAIT_MS)
        expect(host.by("choice-count-0")).to_have_text("2", timeout=WAIT_MS)
        expect(ann.by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
        expect(ben.by("result-choice")).to_have_text(re.compile("Venus"))
        expect(ben.by("dist-count-0")).to_have_text("2")
        ben.check("c09-result")
        host.check("c09-scoreboard")
        host.page.reload()  # after the close, the counts come back too
        expect(host.by("choice-count-0")).to_have_text("2", timeout=WAIT_MS)
        expect(host.by("choice-count-1")).to_have_text("1")

        # Cat loses her phone: on a second device she takes her place back with her rejoin code.
        cat_code = cat.by("player-rejoin").text_content()
        cat_score = cat.by("player-score").text_content()
        cat2.page.goto(link)
        cat2.page.get_by_text("Lost your place?").click()
        cat2.by("rejoin-nickname").fill("cat")
        cat2.by("rejoin-code").fill(cat_code.lower())
        cat2.by("rejoin-submit").click()
        expect(cat2.by("result")).to_be_visible(timeout=WAIT_MS)
        expect(cat2.by("player-score")).to_have_text(cat_score, timeout=WAIT_MS)
        expect(cat.by("refused-reason")).to_have_text(re.compile("another"), timeout=WAIT_MS)
        cat2.check("c10-rejoined")

        # Question 2, true or false.
        host.by("next-question").click()
        expect(ann.by("answer-1")).to_have_text(re.compile("False"), timeout=WAIT_MS)
        expect(ann.by("answer-2")).to_have_count(0)
        answer(ann, 0)
        answer(ben, 0)
        answer(cat2, 1)
        expect(cat2.by("result-verdict")).to_have_text("Wrong", timeout=WAIT_MS)
        cat2.check("c11-true-false-result")

        # Question 3, a poll: no right answer, no points, everyone sees how the room voted.
        host.by("next-question").click()
        expect(ann.by("answer-2")).to_have_text(re.compile("Space"), timeout=WAIT_MS)
        ann.check("c12-poll")
        answer(ann, 2)
        answer(ben, 2)
        answer(cat2, 0)
        for tab in (ann, ben, cat2):
            expect(tab.by("result-verdict")).to_have_text("Thanks for voting!", timeout=WAIT_MS)
            expect(tab.by("dist-count-2")).to_have_text("2")
        expect(ann.by("result-points")).to_have_text("")
        expect(ann.by("result-next")).to_have_text(re.compile("last question"))
        ann.check("c13-poll-result")

        # The podium: only players with points stand on it; each player learns their place.
        expect(host.by("end-session")).to_have_text("Show the podium", timeout=WAIT_MS)
        host.by("end-session").click()
        expect(host.by("podium-name")).to_have_count(3, timeout=WAIT_MS)  # Ann, and Ben and Cat with one each
        expect(host.by("podium-name").first).to_have_text("Ann")
        expect(ann.by("final-place")).to_have_text(re.compile(r"You finished 1st of 3"), timeout=WAIT_MS)
        expect(cat2.by("final-place")).to_have_text(re.compile(r"of 3"), timeout=WAIT_MS)
        host.check("c14-podium")
        ann.check("c14-podium")

        # The report: per player and per question, and as a CSV file.
        host.by("open-report").click()
        expect(host.by("report-players").locator("tbody tr")).to_have_count(4, timeout=WAIT_MS)
        expect(host.by("report-questions").locator("tbody tr")).to_have_count(3)
        host.check("c15-report")
        with host.page.expect_download() as download_info:
            host.by("report-csv").click()
        raw = Path(download_info.value.path()).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # the byte order mark that tells Excel it is UTF-8
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert rows[0][:3] == ["rank", "nickname", "score"]
        assert rows[1][:2] == ["1", "Ann"] and {r[1] for r in rows[2:4]} == {"Ben", "Cat"}
        assert rows[4][1] == "Dan" and rows[4][0] == "" and rows[4][6] == "yes"  # removed: no rank

        for name, tab in tabs.items():
            assert tab.errors == [], (name, tab.errors)
            assert tab.http_answers == 0, name  # the socket was open: every answer went over it
    finally:
        for tab in tabs.values():
            tab.context.close()


def _inside(inner: dict, outer: dict) -> bool:
    return (inner["x"] >= outer["x"] - 1 and inner["y"] >= outer["y"] - 1
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 1)


def _register_host(tab: ClassTab) -> None:
    tab.page.goto("/host")
    tab.by("host-username").fill("teacher_" + uuid.uuid4().hex[:8])
    tab.by("host-password").fill("correct horse battery")
    tab.by("host-register").click()
    expect(tab.by("library")).to_be_visible(timeout=WAIT_MS)


def test_the_rough_edges_a_classroom_hit_first(live_stack, browser: Browser):
    """The defects found playing on phones and desktops, each checked where a player or host saw it."""
    http = Api(HttpClient(live_stack.base_url))
    host = ClassTab(browser, live_stack.base_url, "edges-host", PHONE)
    tabs = [host]
    try:
        # The host's header stays on one line on a phone.
        _register_host(host)
        bar = host.page.locator("header").bounding_box()
        assert bar["height"] <= 72, bar

        # The editor marks no answer correct by itself, says so in words, and never shows an API path
        # or a JSON parser's message.
        host.by("new-quiz-button").click()
        card = host.by("question-card").nth(0)
        for i in range(4):
            expect(card.get_by_test_id(f"q-correct-{i}")).not_to_be_checked()
        host.by("quiz-title").fill("Edges")
        card.get_by_test_id("q-text").fill("Pick one")
        for i in range(4):
            card.get_by_test_id(f"q-choice-{i}").fill(f"Answer {i + 1}")
        host.by("save-quiz").click()
        expect(host.by("quiz-error")).to_have_text("Question 1: select the correct answer.")
        host.page.get_by_text("Paste a quiz as JSON").click()
        host.by("quiz-json").fill('{"title": "Broken", questions: [')
        host.by("load-json").click()
        expect(host.by("quiz-error")).to_have_text(re.compile("not a quiz"))
        assert "/api/" not in host.page.locator("main").inner_text()
        host.check("e01-editor-phone")

        # A room nobody joined ends with a message, not a blank podium.
        token = host.stored("livequiz.host")["token"]
        quiz = http.post("/api/v1/quizzes", {"title": "Edges", "questions": [
            {"text": "Q " + "how long can a question be on a small phone screen? " * 9, "choices":
             ["First answer", "Second answer", "Third answer", "Fourth answer"], "correct_choice": 0,
             "time_limit_s": 60, "points": 1000}]}, token=token, expect=201).get_json()
        empty = http.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=token, expect=201).get_json()
        host.page.reload()
        expect(host.by("quiz-form")).to_be_visible(timeout=WAIT_MS)  # a reload keeps the draft open
        host.by("editor-cancel").click()
        host.by("quiz-resume").click()
        expect(host.by("join-code")).to_have_text(empty["join_code"], timeout=WAIT_MS)
        host.by("end-session").click()
        expect(host.by("podium-empty")).to_have_text(re.compile("Nobody"), timeout=WAIT_MS)
        host.shot("e02-empty-podium-phone")

        # A lone player whose game ends in the lobby is not told they finished first.
        lone = ClassTab(browser, live_stack.base_url, "edges-lone", PHONE)
        tabs.append(lone)
        game = http.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=token, expect=201).get_json()
        join(lone, f"/?code={game['join_code']}", "Lone")
        expect(lone.by("lobby")).to_be_visible(timeout=WAIT_MS)
        # Nobody has a rank or a medal on 0 points, and the board is there from the start.
        expect(lone.by("leaderboard-rank")).to_have_text(["–"], timeout=WAIT_MS)
        expect(lone.by("leaderboard-empty")).to_be_hidden()
        expect(lone.by("player-rank-wrap")).to_be_hidden()
        http.post(f"/api/v1/sessions/{game['id']}/end", token=token, expect=200)
        expect(lone.by("final-place")).to_have_text("The game ended before it started.", timeout=WAIT_MS)
        lone.shot("e03-ended-in-lobby-phone")

        # An ended game's PIN says the game ended (not "no such game"); the player page links to hosting.
        late = ClassTab(browser, live_stack.base_url, "edges-late", PHONE)
        tabs.append(late)
        join(late, "/", "Late", code=game["join_code"])
        expect(late.by("join-error")).to_have_text(re.compile("has ended"), timeout=WAIT_MS)
        expect(late.by("host-link")).to_have_attribute("href", "/host")

        # A long question keeps its answers and its timer on a phone's screen; five players with
        # points fit on the podium.
        game = http.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=token, expect=201).get_json()
        phone = ClassTab(browser, live_stack.base_url, "edges-phone", PHONE)
        tabs.append(phone)
        join(phone, f"/?code={game['join_code']}", "Phoebe")
        expect(phone.by("lobby")).to_be_visible(timeout=WAIT_MS)
        others = [http.join_as(game["id"], http.guest(), name) for name in ("Ann", "Ben", "Cy", "Dee")]
        question = http.post(f"/api/v1/sessions/{game['id']}/questions/next", token=token,
                             expect=200).get_json()
        expect(phone.by("answer-3")).to_be_visible(timeout=WAIT_MS)
        height = PHONE["height"]
        for testid in ("answer-3", "countdown"):
            box = phone.by(testid).bounding_box()
            assert box["y"] + box["height"] <= height, (testid, box)
        phone.check("e04-long-question-phone")
        for player in others:
            http.answer(game["id"], player, question["question_id"], 0)
        answer(phone, 0)
        expect(phone.by("result-verdict")).to_have_text("Correct!", timeout=WAIT_MS)
        http.post(f"/api/v1/sessions/{game['id']}/end", token=token, expect=200)
        expect(phone.by("podium-entry")).to_have_count(5, timeout=WAIT_MS)
        podium = phone.by("podium").bounding_box()
        for i in range(5):
            assert _inside(phone.by("podium-entry").nth(i).bounding_box(), podium), i
        phone.check("e05-podium-phone")

        for tab in tabs:
            assert tab.errors == [], (tab.name, tab.errors)
    finally:
        for tab in tabs:
            tab.context.close()
