"""Reading boards: one atomic Lua call per read (its entries, version and total belong to one
snapshot), rebuilding from PostgreSQL a period that Redis does not hold.

Which period is current is asked of Redis (the board's cached configuration) and remembered by the
process for a second, so a read is one round trip; a board Redis does not know is looked up in
PostgreSQL (and is 404 when it does not exist or was deleted).
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

from app.core.board import READ_ATTEMPTS
from app.core.errors import NotFound, Unprocessable
from app.core.lua import NEEDS_REBUILD
from app.core.redis_client import node_client
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.rebuild import UnknownBoard, rebuild_period
from app.leaderboards.board.scripts import leaderboard_scripts
from app.leaderboards.spans import PeriodSpans, with_span

PERCENTILES = (50, 90, 99)
_PERIOD_CACHE_S = 1.0
NOT_RANKED = -2


class LeaderboardReader:
    """The reads of one process: its Redis client, its engine (for rebuilds), and the current periods
    it has looked up in the last second."""

    def __init__(self, engine: Engine, redis, *, period_ttl_s: int = 86400):
        self.engine = engine
        self.redis = redis
        self.period_ttl_s = period_ttl_s
        self._current: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._waits = RankWaits(redis)
        self.spans = PeriodSpans(engine)

    # --- which period ---------------------------------------------------------------------------

    def period(self, board_id: str, asked: str | None) -> str:
        """`asked` when given (it must exist), else the board's current period. 404 for no such board."""
        if asked is not None:
            return self._existing_period(board_id, asked)
        with self._lock:
            known = self._current.get(board_id)
        if known and known[1] > time.monotonic():
            return known[0]
        cached = self.redis.hget(LeaderboardKeys(board_id).cfg, "period")
        period = cached.decode() if cached is not None else self._open_period_in_postgres(board_id)
        with self._lock:
            self._current[board_id] = (period, time.monotonic() + _PERIOD_CACHE_S)
        return period

    def _open_period_in_postgres(self, board_id: str) -> str:
        with self.engine.connect() as connection:
            period = connection.execute(text("""
                SELECT p.period FROM leaderboards b JOIN leaderboard_periods p
                  ON p.leaderboard_id = b.id AND p.closed_at IS NULL
                WHERE b.id = :b AND b.deleted_at IS NULL"""), {"b": board_id}).scalar()
        if period is None:
            raise NotFound("not_found", "no such board")
        return period

    def _existing_period(self, board_id: str, period: str) -> str:
        if self.redis.exists(LeaderboardKeys(board_id).period(period).meta):
            return period
        with self.engine.connect() as connection:
            found = connection.execute(text("""
                SELECT count(*) FROM leaderboards b JOIN leaderboard_periods p ON p.leaderboard_id = b.id
                WHERE b.id = :b AND b.deleted_at IS NULL AND p.period = :p"""),
                {"b": board_id, "p": period}).scalar()
        if not found:
            raise NotFound("not_found", "no such board or period")
        return period

    # --- the reads ------------------------------------------------------------------------------

    def _call(self, script_name: str, board_id: str, period: str, args: list[Any]) -> list[Any]:
        script = getattr(leaderboard_scripts(self.redis), script_name)
        keys = LeaderboardKeys(board_id).period(period).read_keys
        for _ in range(READ_ATTEMPTS):
            reply = script(keys, args)
            if reply[0] != NEEDS_REBUILD:
                return reply
            try:
                rebuild_period(self.engine, self.redis, board_id, period, period_ttl_s=self.period_ttl_s)
            except UnknownBoard:
                raise NotFound("not_found", "no such board or period") from None
        raise RuntimeError(f"the period {period} of {board_id} vanished {READ_ATTEMPTS} times "
                           "while being read")

    def page(self, board_id: str, *, period: str | None, offset: int, limit: int) -> dict[str, Any]:
        """Ranks offset + 1 .. offset + limit, with a cursor for the page after."""
        period = self.period(board_id, period)
        reply = self._call("leaderboard_read_range", board_id, period, [offset, limit])
        return with_span(page_of(board_id, period, reply), self.spans.of(board_id, period))

    def page_after(self, board_id: str, cursor: str, limit: int) -> dict[str, Any]:
        """The page after a keyset cursor: an entry that did not change between two pages is on one of
        them."""
        period, score, member = decode_cursor(cursor)
        period = self.period(board_id, period)
        reply = self._call("leaderboard_read_after", board_id, period, [score, member, limit])
        return with_span(page_of(board_id, period, reply), self.spans.of(board_id, period))

    def player(self, board_id: str, player_id: str, *, period: str | None,
               around: int | None = None) -> dict[str, Any]:
        """A player's rank, score and top percent; with `around` (0 included), the window of
        min(2 around + 1, total) ranks around them."""
        period = self.period(board_id, period)
        reply = self._call("leaderboard_read_player", board_id, period, [player_id, around or 0])
        version, total, rank = int(reply[0]), int(reply[1]), int(reply[2])
        if rank == 0:
            raise NotFound("not_found", "no such player on the board")
        standing = {"leaderboard_id": board_id, "period": period, **self.spans.of(board_id, period),
                    "version": version, "total": total,
                    "player_id": player_id, "rank": None if rank == NOT_RANKED else rank,
                    "score": int(reply[3]), "reached_at": _iso(reply[4]),
                    "display_name": _text(reply[5]) or None,
                    "metadata": _metadata(reply[6]),
                    "top_percent": None if rank == NOT_RANKED else round(100 * rank / total, 2)}
        if around is not None:
            standing["entries"] = [] if rank == NOT_RANKED else _entries(reply[7:]) if around else [
                {k: standing[k] for k in ENTRY_FIELDS}]  # the window of range 0 is the player alone
        return standing

    def stats(self, board_id: str, *, period: str | None) -> dict[str, Any]:
        period = self.period(board_id, period)
        reply = self._call("leaderboard_read_stats", board_id, period, list(PERCENTILES))
        count = int(reply[1])

        def number(value) -> int | None:
            return int(value) if count else None

        total = number(reply[4])
        return {"leaderboard_id": board_id, "period": period, **self.spans.of(board_id, period),
                "version": int(reply[0]), "count": count,
                "min": number(reply[2]), "max": number(reply[3]), "sum": total,
                "mean": total / count if count else None,
                **{f"p{p}": number(v) for p, v in zip(PERCENTILES, reply[5:])}}

    def ranks_when_shown(self, results: list[Any], wait_s: float) -> dict[tuple[str, str], int | None]:
        """{(board, player): rank} of score results, each read once the board shows the write (its entry
        version), waiting `wait_s` at most; a result the board does not show by then has no rank.

        The waiting is shared by every request of the process (RankWaits): one pipelined read per tick
        for all the writes not shown yet, not one poll per request. A player named by many results is
        read once, at the newest of their versions."""
        latest: dict[tuple[str, str], Any] = {}
        for r in results:
            held = latest.get((r.leaderboard_id, r.player_id))
            if held is None or (r.version or 0) > (held.version or 0):
                latest[(r.leaderboard_id, r.player_id)] = r
        ranks: dict[tuple[str, str], int | None] = {}
        waiting = []
        for key, r in latest.items():
            if r.version is None:  # unchanged: the board shows its current entry
                ranks[key] = self._rank_now(r)
            else:
                waiting.append(r)
        if waiting:
            for r, rank in zip(waiting, self._waits.wait(waiting, wait_s)):
                ranks[(r.leaderboard_id, r.player_id)] = self._rank_now(r) if rank is _NOT_CACHED else rank
        return ranks

    def _rank_now(self, result: Any) -> int | None:
        try:
            return self.player(result.leaderboard_id, result.player_id, period=result.period)["rank"]
        except NotFound:
            return None

    def forget(self, board_id: str) -> None:
        with self._lock:
            self._current.pop(board_id, None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _iso(reached_ms) -> str:
    return datetime.fromtimestamp(int(reached_ms) / 1000, tz=UTC).isoformat()


ENTRY_FIELDS = ("rank", "player_id", "display_name", "score", "reached_at", "metadata")
_STRIDE = 6  # rank, member, score, reached_ms, display name, metadata of each entry (lua/leaderboard_lib.lua)


def _metadata(raw: bytes | str) -> dict[str, Any] | None:
    """An entry's metadata as Redis holds it: compact JSON of at most METADATA_MAX_BYTES, or '' for none."""
    return json.loads(raw) if raw else None


def _entries(flat: list[Any]) -> list[dict[str, Any]]:
    return [{"rank": int(flat[i]), "player_id": _text(flat[i + 1])[17:],
             "display_name": _text(flat[i + 4]) or None,
             "score": int(flat[i + 2]), "reached_at": _iso(flat[i + 3]), "metadata": _metadata(flat[i + 5])}
            for i in range(0, len(flat), _STRIDE)]


def page_of(board_id: str, period: str, reply: list[Any]) -> dict[str, Any]:
    """A page of entries from the reply of leaderboard_read_range or leaderboard_read_after."""
    flat = reply[2:]
    entries = _entries(flat)
    cursor = None
    if entries:
        member, score = _text(flat[-_STRIDE + 1]), int(flat[-_STRIDE + 2])
        cursor = encode_cursor(period, score, member)
    return {"leaderboard_id": board_id, "period": period, "version": int(reply[0]), "total": int(reply[1]),
            "entries": entries, "next_cursor": cursor}


def encode_cursor(period: str, score: int, member: str) -> str:
    # UTF-8 rather than \u escapes: a cursor of any player id stays under RangeQuery's limit.
    raw = json.dumps({"p": period, "s": score, "m": member}, separators=(",", ":"),
                     ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int, str]:
    """(period, score, member) of the last entry of a page."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        period, score, member = str(data["p"]), int(data["s"]), str(data["m"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Unprocessable("invalid_cursor", "the cursor is not one this service gave") from None
    return period, score, member


_NOT_CACHED = object()  # the period is not in Redis: read it the ordinary way (which rebuilds it)
_NOT_SHOWN = -3  # leaderboard_read_player with at_version: the entry is older than that


class _Wait:
    __slots__ = ("result", "rank", "done")

    def __init__(self, result: Any):
        self.result = result
        self.rank: Any = None
        self.done = threading.Event()


class RankWaits:
    """Score writes waiting for the board to show them, for the rank they answer with. One thread of the
    process reads all of them at once each tick (a pipeline of leaderboard_read_player with at_version), so
    the cost is one round trip per tick, whatever the number of requests waiting."""

    TICK_S = 0.01

    def __init__(self, redis):
        self.redis = redis
        self._pending: list[_Wait] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._thread: threading.Thread | None = None

    def wait(self, results: list[Any], wait_s: float) -> list[Any]:
        """The rank of each result once shown (None: not ranked or not shown within `wait_s`;
        _NOT_CACHED: the period is not in Redis)."""
        waits = [_Wait(r) for r in results]
        with self._lock:
            self._pending.extend(waits)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rank-waits", daemon=True)
                self._thread.start()
        self._arrived.set()
        deadline = time.monotonic() + wait_s
        for w in waits:
            w.done.wait(max(0.0, deadline - time.monotonic()))
        mine = {id(w) for w in waits}
        with self._lock:
            self._pending = [p for p in self._pending if id(p) not in mine]
        return [w.rank if w.done.is_set() else None for w in waits]

    def _run(self) -> None:
        scripts = leaderboard_scripts(self.redis)
        while True:
            self._arrived.wait()
            self._arrived.clear()
            while True:
                with self._lock:
                    pending = [w for w in self._pending if not w.done.is_set()]
                if not pending:
                    break
                replies: list[Any] = [None] * len(pending)
                try:  # one pipeline per node (a cluster's own pipeline refuses scripts)
                    by_node: dict[int, tuple[Any, list[int]]] = {}
                    for index, w in enumerate(pending):
                        keys = LeaderboardKeys(w.result.leaderboard_id).period(w.result.period).read_keys
                        node = node_client(self.redis, keys[0])
                        by_node.setdefault(id(node), (node, []))[1].append(index)
                    for node, indexes in by_node.values():
                        pipe = node.pipeline(transaction=False)
                        for index in indexes:
                            r = pending[index].result
                            keys = LeaderboardKeys(r.leaderboard_id).period(r.period)
                            scripts.leaderboard_read_player(keys.read_keys, [r.player_id, 0, r.version],
                                                            client=pipe)
                        for index, reply in zip(indexes, pipe.execute(raise_on_error=False)):
                            replies[index] = reply
                except Exception:  # Redis away: the requests answer without a rank when their wait ends
                    pass
                for w, reply in zip(pending, replies):
                    if isinstance(reply, Exception) or reply is None:
                        continue
                    if int(reply[0]) == NEEDS_REBUILD:
                        w.rank = _NOT_CACHED
                    elif int(reply[2]) == _NOT_SHOWN:
                        continue
                    else:
                        w.rank = int(reply[2]) if int(reply[2]) > 0 else None
                    w.done.set()
                time.sleep(self.TICK_S)
