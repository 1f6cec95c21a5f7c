"""The load of the fault tests: sessions played through the balancer, each on a thread of its own.

A game is played one request at a time (players join, then each question is opened, answered by every
player and closed), so a session's events are committed in the order they are written, which the
relay must keep per key. A request that gets no response or a retryable status (the chaos client's
RETRYABLE: a store failing over, a web dying) is sent again, as the player page does, until it is
decided; an answer is acknowledged by a 201 or a 200 (the receipt of one recorded before).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from tests.chaos.client import RETRYABLE
from tests.helpers import WAIT_S, Api, HttpClient, Player, sample_questions

# Questions long enough that none closes at its deadline while a fault slows the game down.
TIME_LIMIT_S = 240


class Undecided(AssertionError):
    """A request still had no definitive answer when the bound ran out."""


class Game:
    def __init__(self, base_url: str, *, players: int = 4, questions: int = 40):
        self.api = Api(HttpClient(base_url))
        self.host = self.api.host()
        self.questions = sample_questions(questions, time_limit_s=TIME_LIMIT_S)
        self.session_id = self.api.live_session(self.host, self.questions)["id"]
        self.players = [self.api.join(self.session_id, self.api.guest()) for _ in range(players)]
        self.acknowledged: set[tuple[str, str]] = set()  # (participant, question) of each acknowledged answer
        self.played = 0  # questions closed
        self.statuses: Counter = Counter()  # every response's status, retried ones included
        self.error: BaseException | None = None

    def _decided(self, path: str, token: str, body: dict | None = None):
        """The first response to POST `path` that is not worth sending again."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                response = self.api.post(path, body, token=token)
                self.statuses[response.status_code] += 1
                if response.status_code not in RETRYABLE:
                    return response
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise Undecided(f"POST {path} undecided after {WAIT_S:.0f} s")
            time.sleep(0.2)

    def _answer(self, player: Player, question_id: str, choice: int) -> None:
        response = self._decided(f"/api/v1/sessions/{self.session_id}/answers", player.token,
                                 {"question_id": question_id, "choice": choice})
        body = response.get_json() or {}
        if response.status_code in (200, 201) or (body.get("error") or {}).get("code") == "already_answered":
            self.acknowledged.add((player.participant_id, question_id))
        else:
            raise AssertionError((response.status_code, body))

    def play(self, stop: threading.Event) -> None:
        try:
            for position, question in enumerate(self.questions):
                if stop.is_set():
                    return
                opened = self._decided(f"/api/v1/sessions/{self.session_id}/questions/next", self.host.token)
                assert opened.status_code == 200, (opened.status_code, opened.get_json())
                for index, player in enumerate(self.players):
                    right = question["correct_choice"]
                    self._answer(player, opened.get_json()["question_id"],
                                 right if index % 2 == 0 else (right + 1) % 4)
                # Every player answered, so the server may have closed it already: one close either way.
                closed = self._decided(f"/api/v1/sessions/{self.session_id}/questions/close", self.host.token)
                assert closed.status_code == 200 or \
                    (closed.get_json().get("error") or {}).get("code") == "no_open_question", \
                    closed.get_json()
                self.played = position + 1
        except BaseException as exc:  # noqa: BLE001 - raised again by `playing`
            self.error = exc


@contextmanager
def playing(games: list[Game]) -> Iterator[threading.Event]:
    """The games played on threads while the block runs; they stop at the end of the question they are
    at when it ends (or when they run out of questions). A game's failure fails the test."""
    stop = threading.Event()
    threads = [threading.Thread(target=game.play, args=(stop,), daemon=True) for game in games]
    for thread in threads:
        thread.start()
    try:
        yield stop
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT_S * 2)
    for game in games:
        if game.error is not None:
            raise game.error
        assert not any(thread.is_alive() for thread in threads), "a game did not stop"
