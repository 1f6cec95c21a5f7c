"""16. Lobby join storm: 2,000 players joining one room over 30 s, then 50 rooms of 200 over 30 s.

Each room's host socket is open from the start. Each player taps Join at its instant (evenly spaced over
the storm, whether the joins before were answered or not) and then does what the page does
(player_join.js, common.js's reconnectingSocket):
- it POSTs its join and waits for the answer (a browser waits minutes; here ANSWER_WITHIN_S once the
  request is sent). A join not answered, or answered 429 or 5xx, is tapped again after RETAP_S; a
  409 `already_joined` names the player's place, as a 201 does (the page takes it as joined);
- it then opens its room socket with a new ticket. A socket closed with 1013 (the room's join gate had
  no turn for it), lost, or not let in within JOIN_WITHIN_S is opened again after the page's backoff.
A player is in once its socket's snapshot arrived; one not in by the end of the storm plus
PLAYER_WITHIN_S is never in.

Reported per scenario: players in, and never in, of all; what it took (joins tapped again and the
non-201 answers by status, sockets refused with 1013, lost or not let in, all opened again); the wait a
player saw from its tap to the join's answer and to its snapshot (p50/p99/max); the messages the rooms'
sockets received (players' and hosts' apart) against the bound of one count per socket per leaderboard
interval it was open (a lobby sending every join to every socket receives O(players²)); the CPU the web,
the relay and the worker spent per player in (a figure the machine's other load changes little); and the
host's count lag: from a join's 201 to the host's socket showing that player (p50/p99), whether the
hosts saw every player PostgreSQL holds, and from the last join's answer to the host's count showing
every player. With BENCH_PROFILE=1, a py-spy profile of each web worker over the storm
(bench-results/profile-join-storm-<rooms>x<players>-w<n>.txt; tests/bench/profile_summary.py sums them).
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import time
import uuid
from collections import Counter

import redis
from sqlalchemy import text

from app.accounts.tokens import Principal, issue_token
from app.web.tickets import issue
from tests.bench import report
from tests.bench.rooms_client import RoomSocket, close_all
from tests.bench.support import CpuMeter, HttpPool, env_int, make_rooms, percentiles, profiling, start_profile

_JOINED = re.compile(rb'"type":"player_joined"')
_SNAPSHOT = b'{"type":"snapshot"'
ANSWER_WITHIN_S = 120  # a join's answer awaited once sent; then the player taps Join again
RETAP_S = 2.0  # a player taps Join again this long after an answer that was not one
JOIN_WITHIN_S = 65  # common.js JOIN_WITHIN_MS: a socket not let in by then is opened again
# After the storm's end: a player not in by then never is.
PLAYER_WITHIN_S = env_int("BENCH_JOIN_WITHIN_S", 300)
TRY_LATER = 1013
# The joins' HTTP connections: at most this many joins in flight, the others wait their turn in the bench
# (their wait counts from the tap). Phones have a connection each: more makes the server queue them.
CONNECTIONS = env_int("BENCH_JOIN_CONNECTIONS", 64)
# Join answers a player taps again after (0: none within ANSWER_WITHIN_S, or the connection failed).
RETRIED_STATUSES = {0, 429, 500, 502, 503, 504}


class HostSocket(RoomSocket):
    """The host's socket: when each player's join reached it, and the count it showed then."""

    __slots__ = ("seen",)

    def __init__(self, session_id: uuid.UUID):
        super().__init__(session_id)
        self.seen: dict[str, tuple[float, int]] = {}

    def on_message(self, raw: bytes, now: float) -> None:
        self.messages += 1
        if _JOINED.search(raw, 0, 40):
            message = json.loads(raw)
            self.seen[message["participant_id"]] = (now, message["player_count"])


class PlayerSocket(RoomSocket):
    """A player's socket: `decided` is set once it is let in (its snapshot, the first message the room
    sends) or ends."""

    __slots__ = ("decided", "let_in")

    def __init__(self, session_id: uuid.UUID):
        super().__init__(session_id)
        self.decided = asyncio.Event()
        self.let_in = False

    def on_message(self, raw: bytes, now: float) -> None:
        super().on_message(raw, now)
        if not self.decided.is_set():
            self.let_in = raw.startswith(_SNAPSHOT)
            self.decided.set()

    def on_close(self, code: int | None, reason: str, now: float) -> None:
        super().on_close(code, reason, now)
        self.decided.set()

    def on_lost(self, exc: BaseException | None, now: float) -> None:
        super().on_lost(exc, now)
        self.decided.set()

    async def run(self, ws_url: str, ticket: str, ready: asyncio.Semaphore | None = None) -> None:
        try:
            await super().run(ws_url, ticket, ready)
        finally:  # no connection at all (refused, timed out) ends it too
            self.decided.set()


class Joiner:
    """One player of the storm: its taps, its sockets, and when it got in (or why it never did)."""

    __slots__ = ("user", "token", "tap", "taps", "answered", "answered_at", "by_201", "sockets", "in_at",
                 "final")

    def __init__(self, user: uuid.UUID, token: str, tap: float):
        self.user, self.token, self.tap = user, token, tap  # tap: monotonic instant of the first tap
        self.taps = 0
        self.answered: str | None = None  # the participant id the join answered
        self.answered_at = 0.0  # monotonic
        self.by_201 = False
        self.sockets: list[PlayerSocket] = []
        self.in_at: float | None = None  # monotonic instant its snapshot arrived
        self.final = ""  # why it stopped trying, if it did (a refusal that is not "try again")


class Tally:
    """What the storm's players went through, all rooms together."""

    def __init__(self) -> None:
        self.non_201: Counter[int] = Counter()  # join answers other than 201, by status (409 included)
        self.sockets: Counter[str] = Counter()  # socket attempts that did not get in, by why


async def _join(joiner: Joiner, session_id: uuid.UUID, pool: HttpPool, tally: Tally, deadline: float) -> None:
    """POST the join until it is answered with the player's place (201, or 409 already_joined)."""
    while time.monotonic() < deadline:
        joiner.taps += 1
        try:
            status, body = await pool.request("POST", f"/api/v1/sessions/{session_id}/join", b"",
                                              {"Authorization": f"Bearer {joiner.token}"}, ANSWER_WITHIN_S)
        except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            status, body = 0, b""
        if status == 201:
            joiner.answered, joiner.by_201 = json.loads(body)["participant_id"], True
            joiner.answered_at = time.monotonic()
            return
        tally.non_201[status] += 1
        error = json.loads(body).get("error", {}) if status == 409 else {}
        if error.get("code") == "already_joined":
            joiner.answered, joiner.answered_at = error["participant_id"], time.monotonic()
            return
        if status not in RETRIED_STATUSES:
            joiner.final = f"join answered {status}"
            return
        await asyncio.sleep(RETAP_S)
    joiner.final = "join not answered in time"


async def _enter(joiner: Joiner, session_id: uuid.UUID, ws_url: str, tickets, tally: Tally,
                 deadline: float) -> None:
    """Open the room socket until it is let in, with the page's backoff after each refusal or loss."""
    attempt = 0
    while time.monotonic() < deadline:
        sock = PlayerSocket(session_id)
        joiner.sockets.append(sock)
        sock.task = asyncio.create_task(sock.run(ws_url, tickets(joiner.user, session_id)))
        try:
            await asyncio.wait_for(sock.decided.wait(), JOIN_WITHIN_S)
        except TimeoutError:
            pass
        if sock.let_in and sock.ended_at is None:
            joiner.in_at = time.monotonic()
            return
        if sock.close_code in (None, TRY_LATER):  # refused for now, lost, or not let in: opened again
            why = ("refused 1013" if sock.close_code == TRY_LATER else
                   "not let in within 65 s" if not sock.decided.is_set() else "lost")
            tally.sockets[why] += 1
            sock.task.cancel()
        else:
            tally.sockets[f"closed {sock.close_code}"] += 1
            joiner.final = f"socket closed {sock.close_code} ({sock.close_reason})"
            return
        attempt += 1
        await asyncio.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25))
    joiner.final = "socket not let in in time"


async def _play(joiner: Joiner, session_id: uuid.UUID, ws_url: str, pool: HttpPool, tickets, tally: Tally,
                deadline: float) -> None:
    await asyncio.sleep(max(0.0, joiner.tap - time.monotonic()))
    await _join(joiner, session_id, pool, tally, deadline)
    if joiner.answered is not None and not joiner.final:
        await _enter(joiner, session_id, ws_url, tickets, tally, deadline)


def _guests(engine, config, n: int) -> list[tuple[uuid.UUID, str]]:
    users = [{"id": uuid.uuid4(), "nickname": f"j{i}"} for i in range(n)]
    with engine.begin() as db:
        db.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, :nickname, true)"), users)
    return [(u["id"], issue_token(config, u["id"], True)) for u in users]


def _made(engine, session_ids: list[uuid.UUID]) -> int:
    """The players PostgreSQL holds in these rooms: every join the server made, answered or not."""
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM quiz_session_participants "
                               "WHERE quiz_session_id = ANY(:s)"), {"s": session_ids}).scalar()


def _ms(seconds: list[float]) -> dict:
    return percentiles([s * 1000 for s in seconds])


def _scenario(stack, bench_engine, bench_config, rooms_n: int, per_room: int, seconds: float,
              prefix: int) -> dict:
    rooms = make_rooms(bench_engine, bench_config, rooms_n, 0, 2, prefix=prefix)
    guests = _guests(bench_engine, bench_config, rooms_n * per_room)
    client = redis.Redis.from_url(bench_config.redis_url)
    interval_s = bench_config.leaderboard_interval_ms / 1000
    out: dict = {"rooms": rooms_n, "players_per_room": per_room, "seconds": seconds}

    def tickets(user: uuid.UUID, session_id: uuid.UUID) -> str:
        return issue(client, Principal(user, True, int(time.time() * 1000)), session_id)

    async def main() -> None:
        hosts = [HostSocket(r.session_id) for r in rooms]
        for host, room in zip(hosts, rooms):
            host.task = asyncio.create_task(host.run(stack.ws_url, tickets(room.host_id, room.session_id)))
        await asyncio.sleep(2)
        tally, pool = Tally(), HttpPool("127.0.0.1", stack.port, CONNECTIONS)
        started = time.monotonic()
        gap, deadline = seconds / per_room, started + seconds + PLAYER_WITHIN_S
        # Room k's i-th player taps at i * gap, the rooms' taps interleaved: rooms_n taps per gap.
        joiners = [(room, Joiner(user, token, started + i * gap + k * gap / rooms_n))
                   for k, room in enumerate(rooms)
                   for i, (user, token) in enumerate(guests[k * per_room:(k + 1) * per_room])]
        players = [j for _, j in joiners]
        processes = ("web", "relay", "worker")
        # BENCH_PROFILE=1: py-spy on each web worker from the first tap until every player is in or out.
        spies = [start_profile(w.pid, f"join-storm-{rooms_n}x{per_room}-w{i}", int(seconds + PLAYER_WITHIN_S))
                 for i, w in enumerate(stack.web_workers())] if profiling() else []
        before = {name: stack.process_cpu(name) for name in processes}
        try:
            with CpuMeter() as cpu:
                await asyncio.gather(*[_play(j, room.session_id, stack.ws_url, pool, tickets, tally, deadline)
                                       for room, j in joiners])
                for spy in spies:  # py-spy writes its profile when interrupted
                    spy.send_signal(signal.SIGINT)
                known = {j.answered for j in players if j.answered}
                until = time.monotonic() + 60
                while time.monotonic() < until and len(known - {p for h in hosts for p in h.seen}) > 0:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(3 * interval_s + 1)  # the last counts reach the players
            for spy in spies:
                spy.wait(60)
            out["cpu"] = cpu.report("self")
            out["process_cpu_s"] = {name: round(stack.process_cpu(name) - before[name], 2)
                                    for name in processes}
            out.update(_figures(players, hosts, tally, started, interval_s))
            out["server_made"] = _made(bench_engine, [r.session_id for r in rooms])
        finally:
            await pool.close()
            await close_all([*hosts, *(s for j in players for s in j.sockets)])
        await asyncio.sleep(2)

    asyncio.run(main())
    return out


def _figures(players: list[Joiner], hosts: list[HostSocket], tally: Tally, started: float,
             interval_s: float) -> dict:
    wall_offset = time.time() - time.monotonic()  # hosts stamp wall time; players' instants are monotonic
    inside = [j for j in players if j.in_at is not None]
    answered = [j for j in players if j.answered]
    by_201 = {j.answered: j.answered_at + wall_offset for j in answered if j.by_201}
    seen = {pid: at for h in hosts for pid, (at, _) in h.seen.items()}
    last_answer = max((j.answered_at for j in answered), default=started) + wall_offset
    attempts = [s for j in players for s in j.sockets]
    # Each socket may get at most one count per interval it was in, its snapshot, and its close.
    socket_seconds = sum(time.monotonic() - j.in_at for j in inside)
    return {
        "players": len(players), "players_in": len(inside), "never_in": len(players) - len(inside),
        "never_in_why": dict(Counter(j.final or "still trying at the end" for j in players
                                     if j.in_at is None).most_common(5)),
        "join_taps": sum(j.taps for j in players), "joins_tapped_again": sum(j.taps > 1 for j in players),
        "join_answers_not_201": {str(k): v for k, v in sorted(tally.non_201.items())},
        "socket_attempts": len(attempts), "sockets_not_in": dict(tally.sockets),
        "tap_to_answer_ms": _ms([j.answered_at - j.tap for j in answered]),
        "answer_to_in_ms": _ms([j.in_at - j.answered_at for j in inside]),
        "tap_to_in_ms": _ms([j.in_at - j.tap for j in inside]),
        "host_saw": len(seen), "phones_know": len(answered),
        "host_lag_ms": _ms([seen[pid] - at for pid, at in by_201.items() if pid in seen]),
        "host_count_complete_after_last_join_ms": round((max(seen.values()) - last_answer) * 1000, 1)
        if seen else None,
        "messages_to_players": sum(s.messages for s in attempts),
        "messages_to_hosts": sum(h.messages for h in hosts),
        "player_messages_bound": round(socket_seconds / interval_s + 2 * len(attempts)),
    }


def bench_join_storm(stack, bench_engine, bench_config):
    seconds = env_int("BENCH_JOIN_S", 30)
    results = {}
    if one := env_int("BENCH_JOIN_ONE", 2000):
        results["one_room"] = _scenario(stack, bench_engine, bench_config, 1, one, seconds, 5)
        time.sleep(3)
    if per_room := env_int("BENCH_JOIN_ALL", 10_000) // 50:
        results["fifty_rooms"] = _scenario(stack, bench_engine, bench_config, 50, per_room, seconds, 6)
    report.record("join_storm", results)
    for r in results.values():
        _rows(r, seconds)


def _rows(r: dict, seconds: float) -> None:
    label = f"join storm {r['rooms']} x {r['players_per_room']:,} over {seconds} s"
    r["player_messages_per_join"] = round(r["messages_to_players"] / max(1, r["phones_know"]), 2)
    report.row(f"{label}: players in (their socket's snapshot arrived)", r["players_in"],
               f"of {r['players']:,} (never in {r['never_in']}: {r['never_in_why']}; joins tapped again "
               f"{r['joins_tapped_again']:,}, answers not 201 {r['join_answers_not_201']}; "
               f"sockets opened again {sum(r['sockets_not_in'].values()):,}: {r['sockets_not_in']})",
               target=f"every player, within {PLAYER_WITHIN_S} s of the storm", met=r["never_in"] == 0)
    wait, post, socket = r["tap_to_in_ms"], r["tap_to_answer_ms"], r["answer_to_in_ms"]
    report.row(f"{label}: tap -> in p50 / p99", wait["p50"],
               f"ms (p99 {wait['p99']}, max {wait['max']}; tap -> join answered p50 {post['p50']} / p99 "
               f"{post['p99']}; answered -> snapshot p50 {socket['p50']} / p99 {socket['p99']})",
               target="(info)")
    report.row(f"{label}: messages to players / per join", r["messages_to_players"],
               f"({r['player_messages_per_join']} per join; hosts {r['messages_to_hosts']:,})",
               target=f"<= 1 per socket per interval (bound {r['player_messages_bound']:,})",
               met=r["messages_to_players"] <= r["player_messages_bound"])
    per_in = {name: round(s * 1000 / max(1, r["players_in"]), 2) for name, s in r["process_cpu_s"].items()}
    report.row(f"{label}: web CPU per player in", per_in["web"],
               f"ms (relay {per_in['relay']} ms, worker {per_in['worker']} ms; the bench's own "
               f"{round(r['cpu']['generator_cpu_s'] * 1000 / max(1, r['players_in']), 2)} ms)",
               target="(info)")
    lag = r["host_lag_ms"]
    report.row(f"{label}: host's count lag p50 / p99", lag["p50"],
               f"ms (p99 {lag['p99']}; the hosts saw {r['host_saw']:,} of the {r['server_made']:,} players "
               f"PostgreSQL holds, {r['phones_know']:,} known to their phones; the last "
               f"{r['host_count_complete_after_last_join_ms']} ms after the last join's answer)",
               target="(info)")
