"""The pages against the real HTTP API, with the room socket played by the test (Playwright's WebSocket
routing).

Needs only PostgreSQL: the app is served in a thread, and every room message is one the protocol
defines, built from the API's own answers. This pins the pages' handling of each message (countdown,
locked-in answer, results, leaderboard, podium, reconnect, refusal) without the relay and worker.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import text
from werkzeug.serving import make_server

from tests.e2e.test_browser import WAIT_MS, Tab
from tests.helpers import WAIT_S, Api, HttpClient, sample_questions


@pytest.fixture(scope="module")
def page_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def now() -> str:
    return datetime.now(UTC).isoformat()


class FakeRoom:
    """Answers every room socket of a context; the test pushes protocol messages to all of them."""

    def __init__(self, tab: Tab, snapshot):
        self.sockets = []
        self.received: list[dict] = []  # what the page sent, pings left out
        self.snapshot = snapshot
        self.refuse = None
        tab.context.route_web_socket(re.compile(r".*/ws/sessions/.*"), self.accept)

    def accept(self, ws) -> None:
        if self.refuse:
            ws.close(code=self.refuse[0], reason=self.refuse[1])
            return
        def receive(message) -> None:
            if "ping" in str(message):
                ws.send(json.dumps({"type": "pong"}))
            else:
                self.received.append(json.loads(message))

        ws.on_message(receive)
        self.sockets.append(ws)
        ws.send(json.dumps(self.snapshot(ws.url)))

    def connected(self, tab: Tab) -> None:
        """Wait until the page has opened a room socket, serving Playwright's events meanwhile (the page
        asks for a socket ticket first, so the socket may open after the page shows the room)."""
        deadline = time.monotonic() + WAIT_S
        while not self.sockets:
            assert time.monotonic() < deadline, "the page never opened its room socket"
            tab.page.wait_for_timeout(50)

    def push(self, message: dict) -> None:
        for ws in self.sockets:
            ws.send(json.dumps(message))

    def drop(self) -> None:
        for ws in self.sockets:
            ws.close(code=1011, reason="server restart")
        self.sockets.clear()


def board_from_postgres(engine, session_id: str, version: int) -> dict:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, nickname, score FROM quiz_session_participants WHERE quiz_session_id = :s "
            "ORDER BY score DESC, joined_at"), {"s": session_id}).all()
    entries = [{"rank": i + 1, "participant_id": str(r.id), "nickname": r.nickname, "score": r.score}
               for i, r in enumerate(rows)]
    return {"version": version, "total_players": len(entries), "entries": entries[:10]}


def test_player_page_follows_the_room(page_server, browser: Browser, engine):
    http = Api(HttpClient(page_server))
    host = http.host()
    session = http.live_session(host, sample_questions(2, time_limit_s=30))
    sid = session["id"]
    rivals = [http.join(sid, http.guest(name)) for name in ("Zed", "Yan")]
    tab = Tab(browser, page_server, "mock-player", {"width": 430, "height": 900})
    version = iter(range(1, 1000))

    def snapshot(url):
        state = http.get(f"/api/v1/sessions/{sid}", token=host.token, expect=200).get_json()
        board = board_from_postgres(engine, sid, next(version))
        message = {"type": "snapshot", "session": state, "leaderboard": board, "server_time": now()}
        me = tab.stored("livequiz.player").get("participant_id")
        mine = next((e for e in board["entries"] if e["participant_id"] == me), None)
        if mine:
            message["you"] = {**mine, "streak": 0}
        return message

    room = FakeRoom(tab, snapshot)
    try:
        tab.page.goto(f"/?code={session['join_code']}")
        expect(tab.by("join-code")).to_have_value(session["join_code"])
        expect(tab.by("join-nickname")).to_be_focused()
        tab.by("join-nickname").fill("Ann")
        tab.by("join-submit").click()
        expect(tab.by("lobby")).to_be_visible(timeout=WAIT_MS)
        expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(tab.by("player-count")).to_have_text("3")
        # A player joins: players learn it from the board's count (names go to the host only).
        rivals.append(http.join(sid, http.guest("Xia")))
        lobby_board = board_from_postgres(engine, sid, next(version))
        room.push({"type": "leaderboard", **lobby_board, "player_count": lobby_board["total_players"]})
        expect(tab.by("player-count")).to_have_text("4")
        tab.shot("mock-01-lobby")

        # A question opens: a countdown from the deadline, choice 1 by keyboard, then locked in.
        opened = http.next_question(sid, host)
        room.push({"type": "question_opened", **opened, "server_time": now()})
        expect(tab.by("question-text")).to_have_text("Question 1?")
        expect(tab.by("countdown")).to_have_text(re.compile(r"^(30|29|28)$"))
        expect(tab.by("answer-0")).to_be_focused()
        tab.shot("mock-02-question")
        tab.page.keyboard.press("1")
        expect(tab.by("answer-status")).to_have_text(re.compile("locked in"), timeout=WAIT_MS)
        expect(tab.by("answer-1")).to_be_disabled()
        # The answer went to the socket first; this room never acknowledges, so the page sent it by
        # HTTP, and it is recorded once.
        assert [m["choice"] for m in room.received if m.get("type") == "answer"] == [0]
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s"),
                             {"s": sid}).scalar() == 1
        http.post(f"/api/v1/sessions/{sid}/answers", {"question_id": opened["question_id"], "choice": 1},
                  token=rivals[0].token, expect=201)
        room.push({"type": "leaderboard", **board_from_postgres(engine, sid, next(version))})
        # Points stay hidden while the question is open, so the board gives nothing away.
        expect(tab.by("leaderboard-score")).to_have_text(["0", "0", "0", "0"])
        tab.shot("mock-03-locked-in")

        closed = http.close_question(sid, host)
        board = board_from_postgres(engine, sid, next(version))
        me = tab.stored("livequiz.player")["participant_id"]
        mine = next(e for e in board["entries"] if e["participant_id"] == me)
        assert mine["score"] > 0
        # One frame: the close, this player's own result and the board after it.
        room.push({"type": "question_closed", **closed,
                   "you": {"correct": True, "points": mine["score"], "score": mine["score"],
                           "rank": mine["rank"], "streak": 1, "streak_bonus": 0, "answered": True,
                           "answer": {"question_id": opened["question_id"], "choice": 0, "correct": True,
                                      "points": mine["score"]}},
                   "leaderboard": {**board, "player_count": board["total_players"]}})
        expect(tab.by("result-verdict")).to_have_text("Correct!")
        expect(tab.by("result-points")).to_have_text(f"+{mine['score']:,} points")
        expect(tab.by("result-correct")).to_have_text("Correct answer: red")
        expect(tab.by("leaderboard-name")).to_have_text([e["nickname"] for e in board["entries"]])
        expect(tab.by("leaderboard-score")).to_have_text([f"{e['score']:,}" for e in board["entries"]])
        expect(tab.by("player-score")).to_have_text(f"{mine['score']:,}")
        tab.shot("mock-04-result")

        # The connection drops: the page says so, reconnects by itself, and gets a fresh snapshot.
        room.drop()
        expect(tab.by("connection")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        tab.shot("mock-05-reconnecting")
        expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(tab.by("result-verdict")).to_have_text("Correct!")

        # The end: the podium and this player's own place.
        http.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
        room.push({"type": "session_ended", "podium": board["entries"][:5]})
        # Only players with points stand on the podium: nobody earns a medal with none.
        expect(tab.by("podium-name")).to_have_text([e["nickname"] for e in board["entries"][:3]
                                                    if e["score"] > 0])
        expect(tab.by("final-place")).to_have_text(re.compile(r"You finished 1st of 4 with [\d,]+ points\."))
        tab.shot("mock-06-podium")

        # A token the room refuses sends the player back to joining, never into a reconnect loop.
        room.refuse = (4401, "token expired")
        room.drop()
        expect(tab.by("refused-reason")).to_have_text(re.compile("expired"), timeout=WAIT_MS)
        assert tab.errors == []
    finally:
        tab.context.close()


def test_host_page_runs_a_room(page_server, browser: Browser, engine):
    http = Api(HttpClient(page_server))
    tab = Tab(browser, page_server, "mock-host", {"width": 1366, "height": 860})
    state = {}

    def snapshot(url):
        state["sid"] = url.split("/ws/sessions/")[1].split("?")[0]
        assert "ticket=" in url and "access_token" not in url
        state["token"] = tab.stored("livequiz.host")["token"]
        session = http.get(f"/api/v1/sessions/{state['sid']}", token=state["token"], expect=200).get_json()
        return {"type": "snapshot", "session": session, "server_time": now(),
                "leaderboard": board_from_postgres(engine, state["sid"], 1)}

    room = FakeRoom(tab, snapshot)
    try:
        tab.page.goto("/host")
        tab.by("host-username").fill("host_" + uuid.uuid4().hex[:10])
        tab.by("host-password").fill("correct horse battery")
        tab.by("host-register").click()
        tab.by("new-quiz-button").click()
        expect(tab.by("quiz-form")).to_be_visible(timeout=WAIT_MS)
        tab.page.get_by_text("Paste a quiz as JSON").click()
        tab.by("quiz-json").fill(json.dumps({"title": "Colours", "questions": sample_questions(2)}))
        tab.by("load-json").click()
        expect(tab.by("question-card")).to_have_count(2)
        expect(tab.by("question-card").nth(1).get_by_test_id("q-correct-1")).to_be_checked()
        tab.by("create-session").click()
        expect(tab.by("join-code")).to_have_text(re.compile(r"^\d{6}$"), timeout=WAIT_MS)
        room.connected(tab)
        assert tab.stored("livequiz.host")["session_id"] == state["sid"]
        expect(tab.by("connection")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        players = []
        for i, name in enumerate(("Ann", "Ben", "Cat")):
            players.append(http.join(state["sid"], http.guest(name)))
            room.push({"type": "player_joined", "nickname": name,
                       "participant_id": players[-1].participant_id, "player_count": i + 1})
        expect(tab.by("arrival")).to_have_text(["Ann", "Ben", "Cat"])
        expect(tab.by("player-count")).to_have_text("3")
        room.push({"type": "leaderboard", **board_from_postgres(engine, state["sid"], 2)})
        tab.shot("mock-01-lobby")

        tab.by("next-question").click()
        expect(tab.by("question-text")).to_have_text("Question 1?", timeout=WAIT_MS)
        expect(tab.by("close-question")).to_be_enabled()
        question_id = http.get(f"/api/v1/sessions/{state['sid']}", token=state["token"]).get_json()[
            "current_question"]["id"]
        # Cat does not answer, so the question stays open until the host closes it.
        for player, choice in zip(players, (0, 2)):
            http.post(f"/api/v1/sessions/{state['sid']}/answers",
                      {"question_id": question_id, "choice": choice}, token=player.token, expect=201)
        tab.shot("mock-02-question")
        tab.by("close-question").click()
        expect(tab.by("choice-count-0")).to_have_text("1", timeout=WAIT_MS)
        expect(tab.by("choice-count-2")).to_have_text("1")
        board = board_from_postgres(engine, state["sid"], 3)
        # The room's close: one frame with the board after it.
        room.push({"type": "question_closed", "question_id": question_id, "position": 0, "correct_choice": 0,
                   "choice_counts": [1, 0, 1, 0], "reason": "host",
                   "leaderboard": {**board, "player_count": board["total_players"]}})
        expect(tab.by("leaderboard-name")).to_have_text([e["nickname"] for e in board["entries"]])
        expect(tab.by("leaderboard-name").last).to_have_text("Cat")
        tab.shot("mock-03-closed")

        tab.by("next-question").click()
        expect(tab.by("question-text")).to_have_text("Question 2?", timeout=WAIT_MS)
        tab.by("close-question").click()
        expect(tab.by("end-session")).to_have_text("Show the podium", timeout=WAIT_MS)
        tab.by("end-session").click()
        room.push({"type": "session_ended", "podium": board["entries"][:5]})
        expect(tab.by("podium-name")).to_have_text([e["nickname"] for e in board["entries"][:3]
                                                    if e["score"] > 0], timeout=WAIT_MS)
        tab.shot("mock-04-podium")
        assert tab.errors == []
    finally:
        tab.context.close()


def test_board_page_subscribes_again_when_the_service_was_briefly_away(page_server, browser: Browser):
    """A subscribe answered `unavailable` (Redis away for a moment) watches nothing: the page asks again."""
    http = Api(HttpClient(page_server))
    owner = http.host()
    board_id = "retry-" + uuid.uuid4().hex[:8]
    board = http.post("/api/v1/leaderboards", {"id": board_id, "name": "Retry Cup", "sort_order": "desc",
                                                "update_mode": "best", "reset_period": "never"},
                      token=owner.token, expect=201).get_json()
    entries = [{"rank": 1, "player_id": "ann", "display_name": "Ann", "score": 30, "reached_at": now()},
               {"rank": 2, "player_id": "ben", "display_name": "Ben", "score": 20, "reached_at": now()}]
    subscribes: list[dict] = []

    def accept(ws) -> None:
        def receive(message) -> None:
            data = json.loads(message)
            if data.get("type") == "ping":
                ws.send(json.dumps({"type": "pong"}))
            elif data.get("type") == "subscribe":
                subscribes.append(data)
                if len(subscribes) == 1:
                    ws.send(json.dumps({"type": "error", "code": "unavailable",
                                        "message": "the service is briefly unavailable; subscribe again"}))
                else:
                    ws.send(json.dumps({"type": "subscribed", "leaderboard_id": board_id}))
                    ws.send(json.dumps({"type": "leaderboard_update", "leaderboard_id": board_id,
                                        "period": board["current_period"], "version": 1, "entries": entries,
                                        "total_players": 2}))

        ws.on_message(receive)

    tab = Tab(browser, page_server, "board-retry", {"width": 1366, "height": 900})
    try:
        tab.context.route_web_socket(re.compile(r".*/ws$"), accept)
        tab.page.goto(f"/boards/{board_id}")
        expect(tab.page.locator("[data-testid=leaderboard] [data-testid=leaderboard-name]")).to_have_text(
            ["Ann", "Ben"])
        assert [s["leaderboard_id"] for s in subscribes] == [board_id, board_id]
        assert tab.errors == []
    finally:
        tab.context.close()
