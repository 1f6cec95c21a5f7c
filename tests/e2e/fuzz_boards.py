"""What the API fuzzer aims at in the leaderboard service (fuzz_world.py's World is a BoardsWorld): boards of
several kinds owned by the hosts, with scores on them, the system's `default` board, boards reset once, real
keyset cursors, the players on each board, the players who reported actions, API keys and board/key ids;
score writes sent by the board's owner, its API key, or someone else; submission ids that repeat."""
from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.leaderboards.domain import METADATA_MAX_BYTES
from tests.e2e.fuzz_values import RANDOM_ID_SHARE, integer_within, put_real
from tests.helpers import Player, wait_until

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


class BoardsWorld:
    """The leaderboard service's part of the fuzzed world (its state is set up by `_build_leaderboards`)."""

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
            return put_real(rnd, container, name, value, share)

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
                if integer_within(body.get("score"), -MAX_EXACT, MAX_EXACT) and rnd.random() < 0.7:
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
        put_real(rnd, item, "leaderboard_id", board.id)
        if board.keep or board.drop:
            put_real(rnd, item, "player_id", rnd.choice(board.keep + board.drop), share=0.5)
        put_real(rnd, item, "submission_id", rnd.choice(SUBMISSION_IDS), share=0.2)

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
            put_real(rnd, query, "cursor", rnd.choice(board.cursors))
        start, end = query.get("start"), query.get("end")
        first = rnd.randint(1, 8)
        last = first + rnd.randrange(20)
        if integer_within(start, 1, 10_000_000) and integer_within(end, 1, 10_000_000):
            if rnd.random() < 0.7:
                query["start"], query["end"] = type(start)(first), type(end)(last)
            elif not 0 <= int(end) - int(start) < 100:
                query["end"] = type(end)(int(start) + rnd.randrange(min(100, 10_000_001 - int(start))))


def _fits(metadata: dict) -> bool:
    return len(json.dumps(metadata, separators=(",", ":"),
                          ensure_ascii=False).encode(errors="surrogatepass")) \
        <= METADATA_MAX_BYTES


def within_metadata_bound(body: dict) -> None:
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
