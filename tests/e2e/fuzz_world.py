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
import itertools
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.leaderboards.domain import METADATA_MAX_BYTES
from tests.helpers import Api, Player, sample_questions, wait_until

PASSWORD = "correct horse"  # what tests.helpers.Api.host registers every host with
# The token stand-in generated requests carry until they are sent (see test_fuzz.Bearer).
PLACEHOLDER = "fuzz-actor"
# How often a request keeps its generated (random) id instead of a real one.
RANDOM_ID_SHARE = 0.15
HOSTS = 4  # per-user rate limits (600 API requests a minute) are spread over them
QUESTIONS = 100  # the most a quiz may have: next_question keeps opening ones in long runs
TIME_LIMIT_S = 240  # the longest a question may stay open
# An open question older than this is replaced before an answer is aimed at it: the server
# closes it at its deadline, and a long run (FUZZ_EXAMPLES) outlives one.
FRESH_S = TIME_LIMIT_S - 60

# --- the leaderboard service ----------------------------------------------------------------------
MAX_EXACT = 2 ** 53 - 1  # the scores the document allows (app.leaderboards.domain)
SELF_REPORT_MAX = 100
# The boards every host owns and the fuzzer reads and writes (their players stay on them).
BOARD_KINDS = {
    "best": {"sort_order": "desc", "update_mode": "best", "reset_period": "never", "max_entries": 4},
    "time": {"sort_order": "asc", "update_mode": "replace", "reset_period": "daily",
             "timezone": "Europe/Paris"},
    "game": {"sort_order": "desc", "update_mode": "increment", "reset_period": "weekly",
             "timezone": "America/New_York", "self_report_max": SELF_REPORT_MAX},
}
# Boards reset acts on (reset once here: a past period to read), and spares delete acts on.
RESET_KIND = {"sort_order": "asc", "update_mode": "best", "reset_period": "monthly",
              "timezone": "Asia/Kathmandu"}
SPARE_KIND = {"sort_order": "desc", "update_mode": "replace", "reset_period": "hourly"}
SPARE_BOARDS = 2  # per host at the start; DELETE finds a new one when they are gone
SPARE_KEYS = 2
KEEP_PLAYERS = [f"kp{i}" for i in range(6)]  # on every board; read, written, never removed
DROP_PLAYERS = 2  # per board at the start: what DELETE .../player/{id} removes
GAMERS = 4  # guests who report their own actions on the `game` boards
TIMEZONES = ["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kathmandu", "Australia/Lord_Howe"]
SUBMISSION_IDS = ["fz-retry-1", "fz-retry-2", "fz-retry-3"]  # repeated: replays (200) and conflicts (409)


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
    open_question: str | None = None
    opened_at: float = 0.0


@dataclass(eq=False)
class Board:
    """A leaderboard and what is on it."""
    id: str
    owner: Owner | None  # None: the system's `default`
    self_report_max: int | None = None
    periods: list[str] = field(default_factory=list)  # newest first: the current one, then past ones
    players: dict[str, list[str]] = field(default_factory=dict)  # period -> players nothing removes
    drop: list[str] = field(default_factory=list)  # players of the current period DELETE .../player removes
    cursors: list[str] = field(default_factory=list)  # next_cursor of range reads
    deleted: bool = False

    @property
    def keep(self) -> list[str]:
        return self.players.setdefault(self.periods[0], [])

    def reset(self, period: str) -> None:
        """A new current period, empty; the players of the old one stay readable with ?period=."""
        self.keep.extend(self.drop)
        self.drop = []
        self.periods.insert(0, period)


@dataclass(eq=False)
class Owner:
    """A host as the owner of boards and API keys."""
    host: Player
    keys: list[Player] = field(default_factory=list)  # its API keys as senders (token: the key)
    spare_keys: list[dict] = field(default_factory=list)  # {"id", "key"}: what DELETE /api-keys revokes
    boards: list[Board] = field(default_factory=list)  # read and written, never deleted or reset
    resettable: list[Board] = field(default_factory=list)  # what reset acts on
    spares: list[Board] = field(default_factory=list)  # what delete acts on (with players)
    created: list[Board] = field(default_factory=list)  # what fuzzed requests created: delete acts on them

    @property
    def live(self) -> list[Board]:
        return self.boards + self.resettable + self.spares


def _real(rnd: random.Random, container: dict, name: str, value: Any,
          share: float = 1 - RANDOM_ID_SHARE) -> bool:
    """Put `value` in place of a generated string (a value of the documented type), most times; so a
    request generated to break the document still does."""
    if isinstance(container.get(name), str) and rnd.random() < share:
        container[name] = value
        return True
    return False


def _integer(value: Any, low: int, high: int) -> bool:
    """Whether `value` is an integer within low..high; in a query, also as the text of one (the
    coverage phase sends query values as text)."""
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,15}|0", value):
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


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


class World:
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
        for _ in range(asked):
            self._ask(room)
        return room

    def _ask(self, room: Room) -> None:
        room.open_question = self.api.next_question(room.id, room.host)["question_id"]
        room.opened_at = time.monotonic()

    # --- the leaderboard service ------------------------------------------------------------------

    def _build_leaderboards(self) -> None:
        self.run = uuid.uuid4().hex[:8]  # board ids are never used twice, even after a delete
        self._serial = itertools.count()
        self.owners = [Owner(host) for host in self.hosts]
        default = self.api.get("/api/v1/leaderboards/default", expect=200).get_json()
        self.default = Board("default", None, periods=[default["current_period"]])
        self.gone: list[Board] = []  # deleted boards
        self.revoked: list[dict] = []  # revoked API keys {"id", "key"}
        for owner in self.owners:
            for name in ("server", "backup"):
                key = self._new_key(owner, name)
                owner.keys.append(Player(key["key"], owner.host.user_id, f"key {name}"))
            owner.spare_keys += [self._new_key(owner, "spare") for _ in range(SPARE_KEYS)]
            for kind, settings in BOARD_KINDS.items():
                owner.boards.append(self._board(owner, kind, settings))
            board = self._board(owner, "reset", RESET_KIND)
            board.reset(self.api.post(f"/api/v1/leaderboards/{board.id}/reset", token=owner.host.token,
                                      expect=200).get_json()["current_period"])
            board.keep.extend(KEEP_PLAYERS[:3])
            board.drop = [f"dp{next(self._serial)}" for _ in range(DROP_PLAYERS)]
            self._scores(board, owner.keys[0], board.keep + board.drop, base=7)  # the new period's
            owner.resettable.append(board)
            owner.spares += [self._board(owner, "spare", SPARE_KIND) for _ in range(SPARE_BOARDS)]
        self.game_boards = [owner.boards[list(BOARD_KINDS).index("game")] for owner in self.owners]
        # Players reporting their own actions: on the game boards, with activity to read.
        self.gamers = [self.api.guest() for _ in range(GAMERS)]
        for i, gamer in enumerate(self.gamers):
            board = self.game_boards[i % len(self.game_boards)]
            self.api.post(f"/api/v1/games/{board.id}/scores", {"action": "level_up", "score": 10 + i},
                          token=gamer.token, expect=201)
            board.keep.append(gamer.user_id)
        # The reads below, and most fuzzed ones, need the scores in Redis (the worker puts them there).
        for board in self._boards():
            last = (board.drop or board.keep)[-1]
            wait_until(lambda board=board, last=last: self.api.get(
                f"/api/v1/leaderboards/{board.id}/player/{last}").status_code == 200,
                f"the scores of {board.id} never reached the board")
            for period in board.periods:
                page = self.api.get(f"/api/v1/leaderboards/{board.id}/range", expect=200, start=1, end=2,
                                    period=period).get_json()
                if page.get("next_cursor"):
                    board.cursors.append(page["next_cursor"])
        self.players = sorted({p for board in self._boards() for ps in board.players.values() for p in ps})

    def _new_key(self, owner: Owner, name: str) -> dict:
        key = self.api.post("/api/v1/api-keys", {"name": name}, token=owner.host.token, expect=201).get_json()
        return {"id": key["id"], "key": key["key"]}

    def _board(self, owner: Owner, kind: str, settings: dict) -> Board:
        """A board of `owner` with players on it (its API key sends their scores)."""
        board_id = f"fz-{self.run}-{next(self._serial)}-{kind}"
        created = self.api.post("/api/v1/leaderboards", {"id": board_id, "name": f"Fuzz {kind}", **settings},
                                token=owner.host.token, expect=201).get_json()
        board = Board(board_id, owner, settings.get("self_report_max"), periods=[created["current_period"]])
        board.keep.extend(KEEP_PLAYERS)
        board.drop = [f"dp{next(self._serial)}" for _ in range(DROP_PLAYERS)]
        self._scores(board, owner.keys[0], board.keep + board.drop)
        return board

    def _scores(self, board: Board, sender: Player, players: list[str], base: int = 0) -> None:
        """One batch of scores (ties among them), and display names for some."""
        scores = [{"leaderboard_id": board.id, "player_id": player, "score": base + 10 * (i // 2),
                   **({"display_name": f"Player {i}"} if i % 3 == 0 else {})}
                  for i, player in enumerate(players)]
        results = self.api.post("/api/v1/scores/batch", {"scores": scores}, token=sender.token,
                                expect=200).get_json()["results"]
        assert all("error" not in r for r in results), results

    def _boards(self) -> list[Board]:
        return [board for owner in self.owners for board in owner.live]

    def _spare_board(self, owner: Owner, rnd: random.Random) -> Board:
        if not owner.spares:  # the fuzzer deleted them all: another one, with players
            owner.spares.append(self._board(owner, "spare", SPARE_KIND))
        return rnd.choice(owner.spares * 2 + owner.created)

    def _spare_key(self, owner: Owner, rnd: random.Random) -> dict:
        if not owner.spare_keys:
            owner.spare_keys.append(self._new_key(owner, "spare"))
        return rnd.choice(owner.spare_keys)

    def _drop_player(self, board: Board, rnd: random.Random) -> str:
        if not board.drop:  # the fuzzer removed them all: another one
            player = f"dp{next(self._serial)}"
            self.api.post("/api/v1/scores", {"leaderboard_id": board.id, "player_id": player, "score": 1},
                          token=board.owner.host.token, expect=201)
            board.drop.append(player)
        return rnd.choice(board.drop)

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
            _within_metadata_bound(body)
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
            return _real(rnd, container, name, value, share)

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
            target = (rnd.choice(room.removable) if room.removable and rnd.random() < 0.85
                      else rnd.choice(elsewhere.participant_ids))
            # Only a removal uses a player up: a read of the player's place (GET .../leaderboard/{id})
            # answers 200 and leaves them in the room, still there to remove.
            aimed = real(path_parameters, "participant_id", target)
            if aimed and method == "DELETE" and target in room.removable:
                self._effect = lambda response, room=room, target=target: (
                    target in room.removable and room.removable.remove(target))
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

    def _read_board(self, rnd: random.Random) -> Board:
        """What a read is aimed at: mostly a board with players, now and then `default` or a deleted one."""
        roll = rnd.random()
        if roll < 0.05:
            return self.default
        if roll < 0.1 and self.gone:
            return rnd.choice(self.gone)
        owner = rnd.choice(self.owners)
        return rnd.choice(owner.boards * 3 + owner.resettable + owner.spares)

    def _aim_leaderboards(self, method: str, path: str, path_parameters: dict, query: dict, body: dict | None,
                          rnd: random.Random) -> Callable[[], Player]:
        """The leaderboard service: boards, players, periods, cursors, API keys and their senders."""
        def real(container: dict, name: str, value: Any, share: float = 1 - RANDOM_ID_SHARE) -> bool:
            return _real(rnd, container, name, value, share)

        owner = rnd.choice(self.owners)  # whose boards and keys, unless a board says otherwise
        board: Board | None = None
        tail = path.split("{board_id}", 1)[1] if "{board_id}" in path else None

        if path == "/api/v1/api-keys/{key_id}":
            again = self.revoked and rnd.random() < 0.1  # a key revoked already: 404
            key = rnd.choice(self.revoked) if again else self._spare_key(owner, rnd)
            if real(path_parameters, "key_id", key["id"]) and key in owner.spare_keys:
                def revoked(response, key=key, owner=owner) -> None:
                    if key in owner.spare_keys:
                        owner.spare_keys.remove(key)
                        self.revoked.append(key)
                self._effect = revoked
        elif path == "/api/v1/leaderboards" and method == "POST" and body is not None:
            if not real(body, "id", rnd.choice([b.id for b in self._boards()] + ["default"]), share=0.1):
                # A new id, else mostly board_exists: generated ids are short and repeat.
                real(body, "id", f"fz-{self.run}-{next(self._serial)}-new", share=0.6)
            real(body, "timezone", rnd.choice(TIMEZONES), share=0.5)

            def created(response) -> None:  # a board nobody reads: a spare for delete
                made = response.json()
                spender = next((o for o in self.owners if o.host.user_id == made.get("owner_id")), None)
                if spender is not None:
                    spender.created.append(Board(made["id"], spender, made.get("self_report_max"),
                                                periods=[made["current_period"]]))
            self._effect = created
        elif path == "/api/v1/leaderboards" and method == "GET":
            real(query, "after", rnd.choice(self._boards()).id, share=0.5)
        elif tail is not None and path.startswith("/api/v1/leaderboards/"):
            if tail == "" and method == "DELETE":
                roll = rnd.random()
                board = (self.default if roll < 0.05 else rnd.choice(self.gone) if roll < 0.1 and self.gone
                         else self._spare_board(owner, rnd))
            elif tail == "/reset":
                roll = rnd.random()
                board = (self.default if roll < 0.05 else rnd.choice(self.gone) if roll < 0.1 and self.gone
                         else rnd.choice(owner.resettable))
            elif tail == "" and method == "PATCH":
                board = self.default if rnd.random() < 0.05 else rnd.choice(owner.live)
            elif method == "DELETE":  # /player/{player_id}
                board = rnd.choice(owner.live)
            else:
                board = self._read_board(rnd)
            aimed = real(path_parameters, "board_id", board.id)
            # A read's period: mostly the current one (also when none is given), now and then a past one.
            if board.periods:
                past = [p for p in board.periods[1:] if board.players.get(p)] or board.periods
                real(query, "period", rnd.choice(past) if rnd.random() < 0.3 else board.periods[0])
            period = query["period"] if isinstance(query.get("period"), str) else board.periods[0]
            if "player_id" in path_parameters:
                if method == "DELETE":
                    player = self._drop_player(board, rnd)
                    if real(path_parameters, "player_id", player) and aimed:
                        self._effect = lambda response, board=board, player=player: (
                            board.drop.remove(player) if player in board.drop else None)
                else:
                    current = period == board.periods[0]
                    players = board.players.get(period, []) + (board.drop if current else [])
                    if rnd.random() > 0.85 or not players:  # a player of another board
                        players = rnd.choice(self._boards()).keep or self.players
                    real(path_parameters, "player_id", rnd.choice(players))
            if aimed and tail == "" and method == "DELETE" and board.owner is not None:
                def deleted(response, board=board) -> None:
                    board.deleted = True
                    for pool in (board.owner.spares, board.owner.created):
                        if board in pool:
                            pool.remove(board)
                    self.gone.append(board)
                self._effect = deleted
            if aimed and tail == "/reset":
                self._effect = lambda response, board=board: board.reset(response.json()["current_period"])
            if tail == "/range":
                self._aim_range(query, board, rnd)
        elif path == "/api/v1/scores" and body is not None:
            self._aim_score(body, owner, rnd)
        elif path == "/api/v1/scores/batch" and body is not None and isinstance(body.get("scores"), list):
            for item in body["scores"]:
                if isinstance(item, dict):
                    self._aim_score(item, owner, rnd)
        elif path == "/api/v1/games/{board_id}/scores":
            board = rnd.choice(self.game_boards) if rnd.random() < 0.8 else rnd.choice(owner.live)
            real(path_parameters, "board_id", board.id)
            if body is not None:
                if _integer(body.get("score"), -MAX_EXACT, MAX_EXACT) and rnd.random() < 0.7:
                    body["score"] = rnd.randint(0, board.self_report_max or SELF_REPORT_MAX)
                real(body, "submission_id", rnd.choice(SUBMISSION_IDS), share=0.3)
        elif path == "/api/v1/players/{player_id}/boards":
            real(path_parameters, "player_id", rnd.choice(self.players))
        elif path == "/api/v1/players/{player_id}/activity":
            gamer = rnd.choice(self.gamers)
            real(path_parameters, "player_id", gamer.user_id)

        if board is not None and board.owner is not None:
            owner = board.owner
        others = [o for o in self.owners if o is not owner]
        senders: dict[str, Callable[[], Player]] = {
            "owner": lambda: owner.host,
            "owner_key": lambda: rnd.choice(owner.keys),
            "other_host": lambda: rnd.choice(others).host,
            "other_key": lambda: rnd.choice(rnd.choice(others).keys),
            "revoked_key": lambda: Player(rnd.choice(self.revoked)["key"] if self.revoked else "lbk_0_0",
                                          "", "revoked key"),
            "gamer": lambda: rnd.choice(self.gamers),
            "outsider": lambda: self.outsider,
        }
        if path.startswith("/api/v1/scores"):  # game servers (API keys) and their owners
            weights = {"owner": 3, "owner_key": 4, "other_host": 1, "other_key": 1, "gamer": 0.5,
                       "revoked_key": 0.5}
        elif path == "/api/v1/games/{board_id}/scores":  # players, for themselves
            weights = {"gamer": 6, "owner": 1, "other_host": 1, "outsider": 1, "owner_key": 0.5}
        elif path == "/api/v1/players/{player_id}/activity":  # the player, or the owner of the boards
            gamer_id = path_parameters.get("player_id")
            senders["gamer"] = lambda: next((g for g in self.gamers if g.user_id == gamer_id),
                                            rnd.choice(self.gamers))
            weights = {"gamer": 4, "owner": 3, "outsider": 1, "owner_key": 0.5}
        else:  # owners mostly; others (403 not_owner), guests (403 registered_users_only), keys (403)
            weights = {"owner": 7, "other_host": 2, "outsider": 1, "owner_key": 0.3}
        return senders[rnd.choices(list(weights), list(weights.values()))[0]]

    def _aim_score(self, item: dict, owner: Owner, rnd: random.Random) -> None:
        """A score for one of the sender's boards, mostly: a player on it now and then, a repeated
        submission id now and then."""
        board = rnd.choice(owner.live) if rnd.random() < 0.9 else self._read_board(rnd)
        _real(rnd, item, "leaderboard_id", board.id)
        if board.keep or board.drop:
            _real(rnd, item, "player_id", rnd.choice(board.keep + board.drop), share=0.5)
        _real(rnd, item, "submission_id", rnd.choice(SUBMISSION_IDS), share=0.2)

    def _aim_range(self, query: dict, board: Board, rnd: random.Random) -> None:
        """Ranks start..end, or a cursor (the document states which go together). How far end may be
        from start (at most 99 on) it says in words only, so a valid-looking request keeps to it: the
        fuzzer's acceptance check would take a refusal of it for the document's fault."""
        # Nothing that makes a request the document refuses valid: schemathesis re-reads the start, end
        # and cursor sent as the one object parameter they are, which it cannot match to what it
        # generated, so it would take such a request for a refused one that was accepted. A cursor of
        # the documented length becomes a real one.
        given = query.get("cursor")
        if board.cursors and isinstance(given, str) and 1 <= len(given) <= 1024 and "\x00" not in given:
            _real(rnd, query, "cursor", rnd.choice(board.cursors))
        start, end = query.get("start"), query.get("end")
        first = rnd.randint(1, 8)
        last = first + rnd.randrange(20)
        if _integer(start, 1, 10_000_000) and _integer(end, 1, 10_000_000):
            if rnd.random() < 0.7:
                query["start"], query["end"] = type(start)(first), type(end)(last)
            elif not 0 <= int(end) - int(start) < 100:
                query["end"] = type(end)(int(start) + rnd.randrange(min(100, 10_000_001 - int(start))))


def _fits(metadata: dict) -> bool:
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode(errors="surrogatepass")) \
        <= METADATA_MAX_BYTES


def _within_metadata_bound(body: dict) -> None:
    """Metadata kept to METADATA_MAX_BYTES, which the document states in words only (JSON Schema has no
    keyword for an encoding's size): the fuzzer's acceptance check would take its refusal for the
    document's fault. Trimming never changes whether the document calls the request valid."""
    items = [body, *(item for item in body.get("scores") or [] if isinstance(item, dict))]
    for item in items:
        metadata = item.get("metadata")
        if isinstance(metadata, dict) and not _fits(metadata):
            kept: dict = {}
            for key, value in metadata.items():
                if _fits({**kept, key: value}):
                    kept[key] = value
            item["metadata"] = kept

