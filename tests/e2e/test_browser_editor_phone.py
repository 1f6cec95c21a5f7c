"""Writing a quiz on a phone (390 px): the save bar takes one row, choices left empty are dropped, work
not saved is never lost without asking, and "Quiz saved." reads as news, not as an error."""
from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import WAIT_MS, Tab
from tests.e2e.test_browser_classroom import PHONE, ClassTab, _register_host
from tests.helpers import Api, HttpClient


def _start_quiz(host: Tab, title: str) -> None:
    host.by("new-quiz-button").click()
    expect(host.by("quiz-form")).to_be_visible(timeout=WAIT_MS)
    host.by("quiz-title").fill(title)
    card = host.by("question-card").nth(0)
    card.get_by_test_id("q-text").fill("Capital of France?")
    card.get_by_test_id("q-choice-0").fill("Paris")
    card.get_by_test_id("q-choice-1").fill("Rome")
    card.get_by_test_id("q-correct-0").check()


def test_the_save_bar_takes_one_row_on_a_phone(live_stack, browser: Browser):
    host = ClassTab(browser, live_stack.base_url, "editor-phone-bar", PHONE)
    try:
        _register_host(host)
        _start_quiz(host, "One row")
        boxes = [host.by(t).bounding_box() for t in ("editor-cancel", "save-quiz", "create-session")]
        assert all(boxes), boxes
        tops = {round(b["y"]) for b in boxes}
        assert max(tops) - min(tops) <= 2, f"the buttons stand on {len(tops)} rows: {boxes}"
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] for b in boxes), boxes
        bar = host.page.locator(".sticky-actions").bounding_box()
        assert bar["height"] <= 0.12 * PHONE["height"], bar
        host.check("e06-editor-one-row")
        assert host.errors == []
    finally:
        host.context.close()


def test_choices_left_empty_are_dropped_and_saved_reads_as_news(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    host = ClassTab(browser, live_stack.base_url, "editor-phone-save", PHONE)
    try:
        _register_host(host)
        _start_quiz(host, "Two of four")  # choices 3 and 4 stay as the form made them: empty
        host.by("save-quiz").click()
        expect(host.by("library-status")).to_have_text("Quiz saved.", timeout=WAIT_MS)
        expect(host.by("library-status")).to_have_attribute("role", "status")
        expect(host.by("library-error")).to_have_text("")
        token = host.stored("livequiz.host")["token"]
        quizzes = http.get("/api/v1/quizzes", token=token, expect=200).get_json()["quizzes"]
        quiz = http.get(f"/api/v1/quizzes/{quizzes[0]['id']}", token=token, expect=200).get_json()
        assert quiz["questions"][0]["choices"] == ["Paris", "Rome"]
        host.check("e07-editor-saved")
        assert host.errors == []
    finally:
        host.context.close()


def test_back_asks_before_unsaved_work_is_lost(live_stack, browser: Browser):
    # A plain tab: ClassTab accepts every dialog by itself.
    host = Tab(browser, live_stack.base_url, "editor-phone-back", PHONE)
    asked: list[str] = []
    leave = {"answer": False}

    def answer(dialog) -> None:
        asked.append(dialog.message)
        if leave["answer"]:
            dialog.accept()
        else:
            dialog.dismiss()

    host.page.on("dialog", answer)
    try:
        _register_host(host)
        host.by("new-quiz-button").click()
        expect(host.by("quiz-form")).to_be_visible(timeout=WAIT_MS)
        host.by("editor-cancel").click()  # nothing written: nothing to ask about
        expect(host.by("library")).to_be_visible(timeout=WAIT_MS)
        assert asked == []

        _start_quiz(host, "Half written")
        host.by("editor-cancel").click()  # asked, and the host stays
        expect(host.by("quiz-form")).to_be_visible()
        assert len(asked) == 1 and "not saved" in asked[0], asked
        expect(host.by("quiz-title")).to_have_value("Half written")

        leave["answer"] = True
        host.by("editor-cancel").click()  # asked again, and the host leaves
        expect(host.by("library")).to_be_visible(timeout=WAIT_MS)
        assert len(asked) == 2
        assert host.errors == []
    finally:
        host.context.close()
