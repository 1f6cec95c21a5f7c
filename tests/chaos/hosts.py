"""The load: hosts running sessions one after another, their players answering every question.

Each lane is one host with one quiz (100 questions, the most a quiz may hold, long time limits)
and its players. It opens a session, the players join, then round after round the host opens the
next question, every player answers it at once, the question closes (by itself once everyone
answered, by the host's close, or by the next question) and the host reads the standings. Some
rounds the host closes the question while answers are still arriving, so `question_closed` races
answers in flight. After the last question the session ends and the lane opens a new one. The load
is closed-loop: it runs as fast as the system answers, with CHAOS_CONCURRENCY requests in flight.

Host requests are not all safe to repeat (a lost `questions/next` may have opened a question), so
after a request without a definitive answer the host reads the session before sending it again,
as the host page does.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from dataclasses import dataclass
from typing import Any

from tests.chaos.client import (
    RETRYABLE,
    Client,
    GaveUp,
    NoResponse,
    backoff,
    error_code,
)
from tests.chaos.ledger import Ledger
from tests.chaos.players import Player, answer
from tests.chaos.settings import Settings

QUESTIONS = 100
CHOICES = ["red", "green", "blue", "gold"]
TIME_LIMIT_S = 240
# Share of rounds the host closes while its players are still answering.
EARLY_CLOSE = 0.15
# Players pick the right choice this often, so streaks (and their bonus) happen.
RIGHT = 0.7


@dataclass
class Lane:
    host_id: str
    host_token: str
    quiz_id: str
    players: list[Player]


def _expect(status: int, data: Any, *wanted: int) -> Any:
    if status not in wanted:
        raise RuntimeError(f"expected {wanted}, got {status}: {data}")
    return data


async def prepare_lane(client: Client, player_count: int) -> Lane:
    """A registered host with a quiz, and guest players: made through the API, before any fault."""
    username = "chaos_" + uuid.uuid4().hex[:12]
    credentials = {"username": username, "password": "chaos horse battery"}
    host = _expect(*await client.definitive("setup", "POST", "/api/v1/auth/register", credentials), 201)
    login = _expect(*await client.definitive("setup", "POST", "/api/v1/auth/login", credentials), 200)
    questions = [{"text": f"Question {i + 1}?", "choices": CHOICES, "correct_choice": i % len(CHOICES),
                  "time_limit_s": TIME_LIMIT_S, "points": 1000 if i % 10 else 2000} for i in range(QUESTIONS)]
    quiz = {"title": "Chaos", "questions": questions}
    quiz = _expect(*await client.definitive("setup", "POST", "/api/v1/quizzes", quiz, login["access_token"]),
                   201)

    async def guest(i: int) -> Player:
        body = {"nickname": f"p{i}"}
        made = _expect(*await client.definitive("setup", "POST", "/api/v1/auth/guest", body), 201)
        return Player(made["user_id"], made["access_token"])

    players = list(await asyncio.gather(*(guest(i) for i in range(player_count))))
    return Lane(host["user_id"], login["access_token"], quiz["id"], players)


class Host:
    def __init__(self, client: Client, ledger: Ledger, lane: Lane, settings: Settings, rng: random.Random,
                 stop_at: float):
        self.client, self.ledger, self.lane, self.settings, self.rng = client, ledger, lane, settings, rng
        self.stop_at = stop_at

    def stopping(self) -> bool:
        return asyncio.get_running_loop().time() >= self.stop_at

    async def run(self) -> None:
        while not self.stopping():
            session_id = await self.open_session()
            await self.play(session_id)
            await self.end(session_id)

    async def open_session(self) -> str:
        status, data = await self.client.definitive(
            "session", "POST", f"/api/v1/quizzes/{self.lane.quiz_id}/sessions", token=self.lane.host_token)
        session_id = _expect(status, data, 201)["id"]

        async def join(player: Player) -> None:
            status, data = await self.client.definitive("join", "POST", f"/api/v1/sessions/{session_id}/join",
                                                        token=player.token)
            if not (status == 201 or status == 409 and error_code(data) == "already_joined"):
                raise RuntimeError(f"join: {status} {data}")

        await asyncio.gather(*(join(p) for p in self.lane.players))
        return session_id

    async def play(self, session_id: str) -> None:
        last: str | None = None
        while not self.stopping():
            opened = await self.open_next(session_id, last)
            if opened is None:
                return
            question_id, position = opened
            right = position % len(CHOICES)
            answers = [asyncio.create_task(answer(
                self.client, self.ledger, p, session_id, question_id,
                right if self.rng.random() < RIGHT else self.rng.randrange(len(CHOICES)),
                self.settings.give_up_s)) for p in self.lane.players]
            if self.rng.random() < EARLY_CLOSE:
                await asyncio.sleep(self.rng.uniform(0, 0.3))
                await self.close(session_id)
            await asyncio.gather(*answers)
            if self.rng.random() < 0.5:
                await self.close(session_id)  # else the next question closes it (or everyone answered)
            await self.read_board(session_id)
            last = question_id

    async def open_next(self, session_id: str, last: str | None) -> tuple[str, int] | None:
        """Open the next question; None when there is none. A lost request may have opened it: look first."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.settings.give_up_s
        path = f"/api/v1/sessions/{session_id}/questions/next"
        for attempt in itertools.count():
            try:
                status, data = await self.client.call("next", "POST", path, token=self.lane.host_token)
            except NoResponse:
                status, data = None, None
            if status == 200:
                return data["question_id"], data["position"]
            if status == 409:  # no_more_questions (or the session ended)
                return None
            if status is not None and status not in RETRYABLE:
                raise RuntimeError(f"questions/next: {status} {data}")
            state = _expect(*await self.client.definitive(
                "session", "GET", f"/api/v1/sessions/{session_id}", token=self.lane.host_token), 200)
            current = state.get("current_question")
            if state["status"] == "question_open" and current and current["id"] != last:
                return current["id"], current["position"]
            if loop.time() > give_up_at:
                raise GaveUp(path)
            await backoff(attempt)
        raise AssertionError("unreachable")

    async def read_board(self, session_id: str) -> None:
        """The host page shows the standings after each question (a missing board is rebuilt by the read)."""
        status, data = await self.client.definitive(
            "board", "GET", f"/api/v1/sessions/{session_id}/leaderboard", token=self.lane.host_token)
        _expect(status, data, 200)

    async def close(self, session_id: str) -> None:
        status, data = await self.client.definitive(
            "close", "POST", f"/api/v1/sessions/{session_id}/questions/close", token=self.lane.host_token)
        _expect(status, data, 200, 409)  # 409 no_open_question: it closed already

    async def end(self, session_id: str) -> None:
        status, data = await self.client.definitive(
            "end", "POST", f"/api/v1/sessions/{session_id}/end", token=self.lane.host_token)
        _expect(status, data, 200, 409)  # 409 session_ended: a lost first try ended it
