"""What the API fuzzer (test_fuzz.py) aims at: real users, quizzes, sessions and players, and the
leaderboard service's boards, scores, periods and API keys.

A generated request mostly gets real ids in place of its generated ones and a real sender, so it
gets past 401 and 404 into the code behind them:

- the quiz: sessions in every state, quizzes, participants, join codes, open questions, a host's
  credentials;
- the leaderboard service: boards of several kinds owned by the hosts (desc/asc; best, replace,
  increment; never, daily, weekly, monthly reset; one with max_entries below its entry count, one
  `increment` board per host that takes players' own actions) with scores on them, the system's
  `default` board, boards reset once (a past period to read with ?period=), real keyset cursors, the
  players on each board (reads, `around`, removal), the players who reported actions (activity), API
  keys (senders of score writes) and board/key ids. Score writes are sent by the board's owner, its
  API key, or someone else (403 not_owner, 401 for a revoked key); submission ids repeat, so retries
  (200) and conflicts (409) happen.

What a request consumes is kept apart from what others read: DELETE .../player/{id} removes players
that are on a board for that purpose only, DELETE /leaderboards/{id} deletes spare boards, reset
resets boards kept for it, DELETE /api-keys/{id} revokes spare keys. Each pool is refilled through
the API when a request finds it empty, and a 2xx moves its target out of it (deleted boards and
revoked keys are still aimed at now and then: 404, and 401 for a revoked key sending scores).

The choices come from a hash of the generated request, so a run is reproducible and a failing
request replays the same way; some requests keep their generated (random) values.
"""
from __future__ import annotations

import collections
import copy
import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.fuzz_boards import BoardsWorld, within_metadata_bound
from tests.e2e.fuzz_values import RANDOM_ID_SHARE, put_real
from tests.helpers import Api, Player, sample_questions

PASSWORD = "correct horse"  # what tests.helpers.Api.host registers every host with
# The token stand-in generated requests carry until they are sent (see test_fuzz.Bearer).
PLACEHOLDER = "fuzz-actor"
HOSTS = 4  # per-user rate limits (600 API requests a minute) are spread over them
QUESTIONS = 100  # the most a quiz may have: next_question keeps opening ones in long runs
TIME_LIMIT_S = 240  # the longest a question may stay open
# An open question older than this is replaced before an answer is aimed at it: the server
# closes it at its deadline, and a long run (FUZZ_EXAMPLES) outlives one.
FRESH_S = TIME_LIMIT_S - 60

@dataclass(eq=False)
class Room:
    """A live session and who is in it."""
    id: str
    join_code: str
    host: Player
    question_ids: list[str]
    players: list[Player] = field(default_factory=list)  # joined players requests may be sent as
    participant_ids: list[str] = field(default_factory=list)  # every participant, silent ones too
    # Places a rejoin moves to another account, and players the host may remove (lobbies only, so no
    # open question closes early for want of them).
    movers: list[Player] = field(default_factory=list)
    removable: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # removed by the fuzzer: the host may put them back
    open_question: str | None = None
    opened_at: float = 0.0


def _move(target: str, source: list[str], to: list[str]) -> None:
    """A player removed (or put back) moves between a room's pools, once."""
    if target in source:
        source.remove(target)
        to.append(target)


def _valid_kind(rnd: random.Random, question: dict) -> None:
    """What a question's kind needs (rules the document cannot state): a true/false has its two choices,
    a poll no right answer and no points, a choice question its choices and a right one."""
    kind = question.get("kind")
    if question.get("image_id") is not None:
        question["image_id"] = None  # the world uploads no pictures
    if kind == "true_false":
        question["choices"] = None
        question["correct_choice"] = rnd.randrange(2)
    elif kind == "poll":
        question["correct_choice"] = None
        question.pop("points", None)
        if not isinstance(question.get("choices"), list):
            question["choices"] = ["Yes", "No"]
    else:
        if not isinstance(question.get("choices"), list):
            question["choices"] = ["A", "B", "C"]
        if not isinstance(question.get("correct_choice"), int):
            question["correct_choice"] = 0


def _in_range(rnd: random.Random, container: dict, name: str, stop: int) -> None:
    # An index the document cannot bound (it depends on the quiz), made valid most times.
    value = container.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and rnd.random() < 0.7:
        container[name] = rnd.randrange(stop)


class World(BoardsWorld):
    """Users, live sessions in every state and leaderboards, built through the API."""

    def __init__(self, api: Api, seed: int, examples: int):
        self.api = api
        self.seed = seed
        self.hosts = [api.host() for _ in range(HOSTS)]
        # Usernames logins are aimed at: a username may try 10 logins a minute, so a long run
        # gets more of them (each costs one password hash here).
        self.accounts = [host.nickname for host in self.hosts] + [
            self._account() for _ in range(max(0, examples // 25 - HOSTS))]
        self.outsider = api.guest()  # in no session
        self.quizzes: list[tuple[str, Player]] = []
        self.lobby: list[Room] = []    # players joined, no question asked yet
        self.open: list[Room] = []     # a question open; a player who never answers keeps it open
        self.control: list[Room] = []  # what questions/next and questions/close act on
        self.finish: list[Room] = []   # what end acts on
        self.ended: list[Room] = []
        questions = sample_questions(QUESTIONS, time_limit_s=TIME_LIMIT_S)
        for host in self.hosts:
            many = api.quiz(host, questions)
            one = api.quiz(host, questions[:1])
            self.quizzes += [(many["id"], host), (one["id"], host)]
            self.lobby.append(self._room(host, many, players=2))
            self.open.append(self._room(host, many, players=2, silent=1, asked=1))
            self.control.append(self._room(host, many, players=1, silent=1, asked=1))
            self.control.append(self._room(host, one, players=1, silent=1, asked=1))  # no next question
            self.finish.append(self._room(host, many, players=1))
            self.finish.append(self._room(host, many, players=1, silent=1, asked=1))
            ended = self._room(host, many, players=1, asked=1)
            api.post(f"/api/v1/sessions/{ended.id}/end", token=host.token, expect=200)
            self.ended.append(ended)
        self.rooms = self.lobby + self.open + self.control + self.finish + self.ended
        # What edits and deletes of quizzes and games act on, so the rooms above stay as they are:
        # a quiz with no game per host, and an ended game of it; each replaced once deleted.
        self._spare_questions = questions[:2]
        self.spare_quizzes: list[tuple[str, Player]] = [self._spare_quiz(host) for host in self.hosts]
        self.spare_games: list[Room] = [self._spare_game(host) for host in self.hosts]
        self._build_leaderboards()
        # What the fuzzed requests got back: operation label -> status -> count.
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failed: set[str] = set()  # operations with a failing response
        self.sent = 0  # requests the fuzzer sent, probes with undeclared methods included
        # What the request being sent does to the world when it succeeds (see record).
        self._effect: Callable[[Any], None] | None = None

    def _spare_quiz(self, host: Player) -> tuple[str, Player]:
        return self.api.quiz(host, self._spare_questions)["id"], host

    def _spare_game(self, host: Player) -> Room:
        game = self._room(host, self.api.quiz(host, self._spare_questions), players=1)
        self.api.post(f"/api/v1/sessions/{game.id}/end", token=host.token, expect=200)
        return game

    def _account(self) -> str:
        username = "login_" + uuid.uuid4().hex[:12]
        self.api.post("/api/v1/auth/register", {"username": username, "password": PASSWORD}, expect=201)
        return username

    def _room(self, host: Player, quiz: dict, *, players: int, silent: int = 0, asked: int = 0) -> Room:
        session = self.api.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token,
                                expect=201).get_json()
        room = Room(session["id"], session["join_code"], host, [q["id"] for q in quiz["questions"]])
        for i in range(players + silent):
            player = self.api.join(room.id, self.api.guest())
            room.participant_ids.append(player.participant_id)
            if i < players:
                room.players.append(player)
        if not asked:
            for _ in range(2):
                mover = self.api.join(room.id, self.api.guest())
                room.movers.append(mover)
                removable = self.api.join(room.id, self.api.guest())
                room.removable.append(removable.participant_id)
                room.participant_ids += [mover.participant_id, removable.participant_id]
            gone = self.api.join(room.id, self.api.guest())  # removed already: for the host to put back
            self.api.delete(f"/api/v1/sessions/{room.id}/participants/{gone.participant_id}",
                            token=host.token, expect=200)
            room.removed.append(gone.participant_id)
            room.participant_ids.append(gone.participant_id)
        for _ in range(asked):
            self._ask(room)
        return room

    def _ask(self, room: Room) -> None:
        room.open_question = self.api.next_question(room.id, room.host)["question_id"]
        room.opened_at = time.monotonic()

    # --- the leaderboard service ------------------------------------------------------------------


    # --- aiming -----------------------------------------------------------------------------------

    def prepare(self, case) -> None:
        """Aim `case` at real things and give it its sender's token, just before it is sent."""
        digest = hashlib.sha256(f"{self.seed}|{case.operation.label}|{case!r}".encode()).digest()
        self._effect = None
        sender = self._aim(case, random.Random(digest))
        if case.headers.get("Authorization") == f"Bearer {PLACEHOLDER}":
            case.headers = {**case.headers, "Authorization": f"Bearer {sender().token}"}

    def record(self, case, response) -> None:
        self.sent += 1
        if case.method.upper() == case.operation.method.upper():  # not a probe with another method
            self.statuses[case.operation.label][response.status_code] += 1
            if self._effect is not None and 200 <= response.status_code < 300:
                self._effect(response)
        self._effect = None

    def _aim(self, case, rnd: random.Random) -> Callable[[], Player]:
        """Put real values into `case` in place of most generated ones; return who sends it."""
        path = case.operation.path
        path_parameters = dict(case.path_parameters or {})
        query = dict(case.query or {})
        body = copy.deepcopy(case.body) if isinstance(case.body, dict) else None

        if path.startswith(("/api/v1/leaderboards", "/api/v1/scores", "/api/v1/games/", "/api/v1/players/",
                            "/api/v1/api-keys")):
            sender = self._aim_leaderboards(case.operation.method.upper(), path, path_parameters, query, body,
                                            rnd)
        else:
            sender = self._aim_quiz(case.operation.method.upper(), path, path_parameters, query, body, rnd)
        if body is not None:
            within_metadata_bound(body)
        # New containers rather than edits in place: schemathesis then re-labels the request as
        # valid or invalid by what is actually sent.
        case.path_parameters = path_parameters
        case.query = query
        if body is not None:
            case.body = body
        return sender

    def _aim_quiz(self, method: str, path: str, path_parameters: dict, query: dict, body: dict | None,
                  rnd: random.Random) -> Callable[[], Player]:
        def real(container: dict, name: str, value: Any, share: float = 1 - RANDOM_ID_SHARE) -> bool:
            return put_real(rnd, container, name, value, share)

        if path.endswith(("/questions/next", "/questions/close", "/lock")):
            pool = self.control  # a locked room refuses joins: never one that joins are aimed at
        elif path.endswith("/end"):
            pool = self.finish + self.ended
        elif path.endswith("/answers"):
            pool = self.open * 7 + self.rooms  # mostly a room with a question open
        elif path.endswith("/join"):
            pool = self.lobby + self.open + self.ended
        elif path.endswith("/rejoin") or "participant_id" in path_parameters:
            pool = self.lobby
        elif method == "DELETE" and path == "/api/v1/sessions/{session_id}":
            pool = self.spare_games
        else:
            pool = self.rooms
        room = rnd.choice(pool)
        if pool is self.spare_games:
            def replaced(response, game=room) -> None:
                if game in self.spare_games:
                    self.spare_games[self.spare_games.index(game)] = self._spare_game(game.host)
            self._effect = replaced

        if "quiz_id" in path_parameters:
            spare = method in ("PUT", "DELETE") and path == "/api/v1/quizzes/{quiz_id}"
            quiz_id, owner = rnd.choice(self.spare_quizzes if spare else self.quizzes)
            real(path_parameters, "quiz_id", quiz_id)
            room = next(r for r in self.rooms if r.host is owner)
            if spare and method == "DELETE":
                def replaced_quiz(response, quiz=(quiz_id, owner)) -> None:
                    if quiz in self.spare_quizzes:
                        self.spare_quizzes[self.spare_quizzes.index(quiz)] = self._spare_quiz(quiz[1])
                self._effect = replaced_quiz
        if "session_id" in path_parameters:
            real(path_parameters, "session_id", room.id)
        if "participant_id" in path_parameters:
            elsewhere = rnd.choice(self.rooms)
            restoring = path.endswith("/restore")
            pool = room.removed if restoring else room.removable
            target = (rnd.choice(pool) if pool and rnd.random() < 0.85
                      else rnd.choice(elsewhere.participant_ids))
            # Only a removal uses a player up: a read of the player's place (GET .../leaderboard/{id})
            # answers 200 and leaves them in the room, still there to remove.
            aimed = real(path_parameters, "participant_id", target)
            if aimed and method == "DELETE" and target in room.removable:
                self._effect = lambda response, room=room, target=target: _move(
                    target, room.removable, room.removed)
            elif aimed and restoring and target in room.removed:
                self._effect = lambda response, room=room, target=target: _move(
                    target, room.removed, room.removable)
        if path == "/api/v1/sessions" and re.fullmatch(r"[0-9]{6}", str(query.get("join_code"))):
            live = [r for r in self.rooms if r not in self.ended]
            real(query, "join_code", rnd.choice(live if rnd.random() < 0.85 else self.ended).join_code)
        if body is not None:
            if path.endswith("/answers"):
                if room in self.open and time.monotonic() - room.opened_at > FRESH_S:
                    self._ask(room)
                question = room.open_question if rnd.random() < 0.8 else None
                real(body, "question_id", question or rnd.choice(room.question_ids))
                _in_range(rnd, body, "choice", 4)
            elif path.startswith("/api/v1/quizzes") and isinstance(body.get("questions"), list):
                for question in body["questions"]:
                    if isinstance(question, dict) and rnd.random() < 0.85:
                        _valid_kind(rnd, question)
                    if isinstance(question, dict) and isinstance(question.get("choices"), list):
                        _in_range(rnd, question, "correct_choice", max(1, len(question["choices"])))
            elif path.endswith("/rejoin") and room.movers:
                mover = rnd.choice(room.movers)
                named = real(body, "nickname", mover.nickname)
                if real(body, "rejoin_code", mover.rejoin_code or "", 1) and named:
                    def moved(response, mover=mover) -> None:
                        mover.rejoin_code = response.json()["rejoin_code"]
                    self._effect = moved
            elif path == "/api/v1/ws-tickets":
                real(body, "session_id", room.id)
            elif path == "/api/v1/auth/login" and rnd.random() < 0.5:
                real(body, "username", rnd.choice(self.accounts), share=1)
                real(body, "password", PASSWORD, share=0.8)
            elif path == "/api/v1/auth/register":
                real(body, "username", rnd.choice(self.hosts).nickname, share=0.1)  # taken

        others = [host for host in self.hosts if host is not room.host]
        senders: dict[str, Callable[[], Player]] = {
            "host": lambda: room.host,
            "other_host": lambda: rnd.choice(others),
            "player": lambda: rnd.choice(room.players),
            "outsider": lambda: self.outsider,
            "new_guest": self.api.guest,
        }
        if path in ("/api/v1/auth/logout", "/api/v1/sessions"):
            weights = {"new_guest": 1}  # a logout revokes its sender; join-code misses count per user
        elif path.endswith("/join"):
            weights = {"new_guest": 6, "player": 2, "host": 2}
        elif path.endswith("/rejoin"):
            weights = {"new_guest": 8, "player": 1, "host": 1}
        elif path.endswith("/lock") or "participant_id" in path_parameters:
            weights = {"host": 7, "other_host": 1, "player": 1, "outsider": 1}
        elif path.endswith("/answers"):
            weights = {"player": 8, "host": 1, "outsider": 1}
        elif (path.startswith(("/api/v1/quizzes", "/api/v1/images"))
              or path.endswith(("/next", "/close", "/end"))):
            weights = {"host": 7, "other_host": 2, "player": 1, "outsider": 1}
        else:
            weights = {"host": 3, "player": 4, "other_host": 1, "outsider": 2}
        return senders[rnd.choices(list(weights), list(weights.values()))[0]]


