"""16. Lobby join storm: 2,000 players joining one room over 30 s, then 50 rooms of 200 over 30 s.

Each room's host socket is open from the start. Each player joins over HTTP (`POST /join`) and then opens
its room socket, as a phone does. Reported: the messages the rooms' sockets received (players' and hosts'
apart), the players' messages per socket per leaderboard interval it was open, and the host's count lag:
from a join's 201 to the host's socket showing that player (p50/p99), and from the last join's 201 to the
host's count showing every player. A lobby that sends every join to every socket receives O(players²)
messages; one that coalesces sends each socket at most one count per interval.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import redis
from sqlalchemy import text

from app.accounts.tokens import Principal, issue_token
from app.web.tickets import issue
from tests.bench import report
from tests.bench.rooms_client import RoomSocket, close_all
from tests.bench.support import CpuMeter, HttpPool, env_int, make_rooms, percentiles

_JOINED = re.compile(rb'"type":"player_joined"')
JOIN_TIMEOUT_S = 60  # a join not answered by then counts as failed (the storm goes on)


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


def _guests(engine, config, n: int) -> list[tuple[uuid.UUID, str]]:
    users = [{"id": uuid.uuid4(), "nickname": f"j{i}"} for i in range(n)]
    with engine.begin() as db:
        db.execute(text("INSERT INTO users (id, nickname, is_guest) VALUES (:id, :nickname, true)"), users)
    return [(u["id"], issue_token(config, u["id"], True)) for u in users]


async def _storm(stack, room, guests, seconds: float, pool: HttpPool, tickets, joined: dict,
                 sockets: list[tuple[RoomSocket, float]], failed: list[int]) -> None:
    """The room's players join at evenly spaced instants over `seconds`, whether the joins before them
    were answered or not (open loop; the pool bounds the requests in flight); each opens its socket once
    in."""
    async def join(user: uuid.UUID, token: str, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        try:
            status, body = await asyncio.wait_for(pool.request(
                "POST", f"/api/v1/sessions/{room.session_id}/join", b"",
                {"Authorization": f"Bearer {token}"}), JOIN_TIMEOUT_S)
        except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            status, body = 0, b""
        if status != 201:
            failed.append(status)
            return
        joined[json.loads(body)["participant_id"]] = time.time()
        sock = RoomSocket(room.session_id)
        sock.task = asyncio.create_task(sock.run(stack.ws_url, tickets(user, room.session_id)))
        sockets.append((sock, time.monotonic()))

    started, gap = time.monotonic(), seconds / len(guests)
    await asyncio.gather(*[join(user, token, started + i * gap) for i, (user, token) in enumerate(guests)])


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
        joined: dict[str, float] = {}
        opened: list[tuple[RoomSocket, float]] = []
        failed: list[int] = []  # the status of each join not answered 201 (0: no answer in time)
        pool = HttpPool("127.0.0.1", stack.port, 64)
        try:
            with CpuMeter() as cpu:
                await asyncio.gather(*[
                    _storm(stack, room, guests[k * per_room:(k + 1) * per_room], seconds, pool, tickets,
                           joined, opened, failed) for k, room in enumerate(rooms)])
                last_join = max(joined.values()) if joined else time.time()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and sum(len(h.seen) for h in hosts) < len(joined):
                    await asyncio.sleep(0.05)
                await asyncio.sleep(3 * interval_s + 1)  # the last counts reach the players
            out["cpu"] = cpu.report("self")
            players = [sock for sock, _ in opened]
            socket_seconds = sum(time.monotonic() - at for _, at in opened)
            lags = [(seen[0] - joined[pid]) * 1000 for h in hosts for pid, seen in h.seen.items()
                    if pid in joined]
            complete = [max(t for t, _ in h.seen.values()) for h in hosts if h.seen]
            out.update({
                "joined": len(joined), "joins_failed": len(failed),
                "players_connected": sum(s.connected for s in players),
                "host_saw": sum(len(h.seen) for h in hosts),
                "host_lag_ms": percentiles(lags),
                "host_count_complete_after_last_join_ms": round((max(complete) - last_join) * 1000, 1)
                if complete else None,
                "messages_to_players": sum(s.messages for s in players),
                "messages_to_hosts": sum(h.messages for h in hosts)})
            out["player_messages_per_join"] = round(out["messages_to_players"] / max(1, len(joined)), 2)
            # Each player socket may get at most one count per interval it was open, and its snapshot.
            out["player_messages_bound"] = round(socket_seconds / interval_s + 2 * len(players))
        finally:
            await pool.close()
            await close_all([*hosts, *(sock for sock, _ in opened)])
        await asyncio.sleep(2)

    asyncio.run(main())
    return out


def bench_join_storm(stack, bench_engine, bench_config):
    seconds = env_int("BENCH_JOIN_S", 30)
    one = _scenario(stack, bench_engine, bench_config, 1, env_int("BENCH_JOIN_ONE", 2000), seconds, 5)
    time.sleep(3)
    per_room = env_int("BENCH_JOIN_ALL", 10_000) // 50
    results = {"one_room": one}
    if per_room:
        results["fifty_rooms"] = _scenario(stack, bench_engine, bench_config, 50, per_room, seconds, 6)
    report.record("join_storm", results)
    for r in results.values():
        label = f"join storm {r['rooms']} x {r['players_per_room']:,} over {seconds} s"
        report.row(f"{label}: messages to players / per join", r["messages_to_players"],
                   f"({r['player_messages_per_join']} per join; hosts {r['messages_to_hosts']:,})",
                   target=f"<= 1 per socket per interval (bound {r['player_messages_bound']:,})",
                   met=r["messages_to_players"] <= r["player_messages_bound"])
        lag = r["host_lag_ms"]
        report.row(f"{label}: host's count lag p50 / p99", lag["p50"],
                   f"ms (p99 {lag['p99']}; {r['host_saw']:,} of {r['joined']:,} joins seen, "
                   f"{r['joins_failed']} failed; the last "
                   f"{r['host_count_complete_after_last_join_ms']} ms after the last)", target="(info)")
