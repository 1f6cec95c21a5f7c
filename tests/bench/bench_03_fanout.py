"""3. Fan-out: 2,000 sockets in one room, then 10,000 across 50 rooms (200 each).

For each: open every socket (player tokens; a minimal asyncio WebSocket client that stamps frames as the
event loop reads them, see rooms_client.py) and wait until the server has admitted each (its snapshot
arrived) or refused it: a socket is held once admitted, not at its handshake, and the changes are made
in a room whose joins are over (the join path has its own benchmark, bench 16). Measure the gunicorn
workers' RSS before and after (resident memory per socket), then
 - latency: changes are made one at a time per room, spaced out: a player answers, then the host
   moves to the next question, which closes this one and puts its points on the board (the moment
   a whole room's screens change at once). The change's instant is the room stream entry of the
   close (when the worker applied it); the time to the last socket is the latest first-arrival,
   over the room's sockets, of a board with version >= the close's (the close's own frame carries it);
 - messages/s: a burst of such changes in every room, counting messages received per second.
The client is one Python process; its CPU use is reported (at 10,000 sockets it can be the bound).
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import requests

from app.core.redis_client import make_redis
from app.quiz.board.rebuild import rebuild_session_board
from tests.bench import report, timeline
from tests.bench.rooms_client import RoomSocket, StreamObserver, close_all, connect_all, wait_joined
from tests.bench.support import (
    CpuMeter,
    HttpPool,
    env_int,
    make_rooms,
    open_next,
    percentiles,
    profiling,
    start_profile,
)

# How long the server may take to join (or refuse) every socket whose handshake is done.
JOIN_WAIT_S = 180


async def _changer(pool: HttpPool, room, first: int, count: int, gap_s: float, offset_s: float) -> int:
    """`count` board changes: question `first + i` gets one answer, then the next question opens (and
    closes it). The room's question `first` must be the open one."""
    await asyncio.sleep(offset_s)
    made = 0
    host = {"Authorization": f"Bearer {room.host_token}"}
    for q in range(first, min(first + count, len(room.question_ids) - 1)):
        began = time.monotonic()
        player = room.players[q % len(room.players)]
        body = json.dumps({"question_id": str(room.question_ids[q]), "choice": room.correct[q]}).encode()
        await pool.request("POST", f"/api/v1/sessions/{room.session_id}/answers", body,
                           {"Authorization": f"Bearer {player.token}"})
        status, _ = await pool.request("POST", f"/api/v1/sessions/{room.session_id}/questions/next", b"",
                                       host)
        made += status == 200
        await asyncio.sleep(max(0.0, gap_s - (time.monotonic() - began)))
    return made


def _arrivals(observer: StreamObserver, sockets_by_room: dict,
              since: float) -> tuple[list[float], list[float], Counter]:
    """Per change, the time to its last socket; for every socket, the time to it; and per (socket, change)
    pair that was not delivered, why (`RoomSocket.missed`)."""
    last, every, missed = [], [], Counter()
    counted = [applied_at for changes in observer.changes.values() for _, applied_at in changes
               if applied_at >= since]
    within_s = time.time() - max(counted, default=time.time())  # the least time any change had
    for session_id, changes in observer.changes.items():
        sockets = sockets_by_room[session_id]
        for version, applied_at in changes:
            if applied_at < since:
                continue
            latest = None
            for sock in sockets:
                arrival = sock.first_arrival(version)
                if arrival is None:
                    missed[sock.missed(applied_at, within_s)] += 1
                    continue
                delta = max(0.0, (arrival - applied_at) * 1000)
                every.append(delta)
                latest = delta if latest is None else max(latest, delta)
            if latest is not None:
                last.append(latest)
    return last, every, missed


def _scenario(stack, bench_engine, bench_config, rooms_n: int, players: int, prefix: int,
              latency_changes: int, latency_gap_s: float, burst_gap_s: float, burst_s: int) -> dict:
    rooms = make_rooms(bench_engine, bench_config, rooms_n, players,
                       latency_changes + int(burst_s / burst_gap_s) + 2, prefix=prefix)
    # A game's board exists from its creation (its events build it), so its first open is applied to it and
    # the close after reads each player's result from Redis. These rooms are written with SQL and no events:
    # left to the rebuild their first open triggers, the open question's answers were not tracked, and the
    # first change of every room read 2,000 players' results from PostgreSQL instead (the 1-room p99).
    boards = make_redis(bench_config)
    for room in rooms:
        rebuild_session_board(bench_engine, boards, room.session_id)
    boards.close()
    http = requests.Session()
    for room in rooms:
        assert open_next(http, stack.base_url, room) == 200
    time.sleep(1.5)
    out: dict = {"rooms": rooms_n, "sockets_per_room": players}

    async def main() -> None:
        rss_before = stack.web_rss()
        sockets_by_room = {r.session_id: [RoomSocket(r.session_id) for _ in r.players] for r in rooms}
        pairs = [(sock, p.user_id) for r in rooms
                 for sock, p in zip(sockets_by_room[r.session_id], r.players)]
        everyone = [s for s, _ in pairs]
        observer = StreamObserver(bench_config.redis_url, [r.session_id for r in rooms])
        pool = HttpPool("127.0.0.1", stack.port, 16)
        try:
            with CpuMeter() as connect_cpu:
                out["connect_seconds"] = round(
                    await connect_all(stack.ws_url, bench_config.redis_url, pairs, concurrency=100), 1)
            out["connect_cpu"] = connect_cpu.report("self")
            # Measured from a room whose sockets are all in: the server joins each after its handshake.
            out["join_seconds"] = round(await wait_joined(everyone, JOIN_WAIT_S), 1)
            await asyncio.sleep(3)
            out["handshakes"] = sum(s.connected for s in everyone)
            out["connected"] = sum(s.joined for s in everyone)
            out["errors"] = sum(s.error is not None for s in everyone)
            out["first_error"] = next((s.error for s in everyone if s.error), None)
            # Each socket not held, and why: the server's close code and reason, or what it received.
            out_of = [s for s in everyone if not s.joined]
            within_s = time.time() - max((s.connected_at or 0 for s in out_of), default=0)
            out["not_held"] = dict(Counter(s.admission(within_s) for s in out_of).most_common())
            out["not_held_ended_s_after_handshake"] = percentiles(
                [s.ended_at - s.connected_at for s in out_of if s.ended_at and s.connected_at])
            rss_after = stack.web_rss()
            out["web_rss_mb_before"] = round(rss_before / 2**20, 1)
            out["web_rss_mb_after"] = round(rss_after / 2**20, 1)
            out["rss_kb_per_socket"] = round((rss_after - rss_before) / 1024 / max(1, out["connected"]), 1)

            observer.start()
            if timeline.enabled():  # BENCH_TIMELINE=1: each change joined with what held it up
                worker_of = timeline.worker_of_sockets(everyone, stack.web_workers(), stack.port)
                loop_watched = asyncio.Event()
                watcher = asyncio.create_task(timeline.watch_client_loop(loop_watched))
            # Latency: changes spaced out, rooms staggered.
            profilers = [start_profile(w.pid, f"fanout-{rooms_n}-web-{w.pid}", 25)
                         for w in stack.web_workers()] \
                if profiling() else []
            since = time.time()
            with CpuMeter() as cpu:
                await asyncio.gather(*[
                    _changer(pool, r, 0, latency_changes, latency_gap_s, latency_gap_s * k / len(rooms))
                    for k, r in enumerate(rooms)])
                await asyncio.sleep(1.5)
            last, every, missed = _arrivals(observer, sockets_by_room, since)
            out["latency_phase"] = {"changes_per_room": latency_changes, "gap_s": latency_gap_s,
                                    "cpu": cpu.report("self")}
            out["last_socket_ms"] = percentiles(last)
            out["any_socket_ms"] = percentiles(every)
            out["socket_change_pairs_not_delivered"] = sum(missed.values())
            out["not_delivered"] = dict(missed.most_common())
            if timeline.enabled():
                loop_watched.set()
                await watcher
                out["changes"] = timeline.per_change(observer, sockets_by_room, since, worker_of, os.getpid())
                for change in out["changes"][:3]:
                    print(timeline.describe(change))
            # Burst: messages per second.
            received0 = sum(s.messages for s in everyone)
            with CpuMeter() as cpu:
                started = time.monotonic()
                await asyncio.gather(*[
                    _changer(pool, r, latency_changes, int(burst_s / burst_gap_s), burst_gap_s,
                             burst_gap_s * k / len(rooms)) for k, r in enumerate(rooms)])
                elapsed = time.monotonic() - started
            received = sum(s.messages for s in everyone) - received0
            out["burst"] = {"gap_s": burst_gap_s, "seconds": round(elapsed, 1), "messages": received,
                            "cpu": cpu.report("self")}
            out["messages_per_s"] = round(received / elapsed, 1)
            for profiler in profilers:
                profiler.wait(60)
        finally:
            observer.stopping.set()
            await pool.close()
            await close_all(everyone)
        observer.join(5)
        await asyncio.sleep(2)

    asyncio.run(main())
    return out


def bench_fanout(stack, bench_engine, bench_config):
    one = _scenario(stack, bench_engine, bench_config, 1, env_int("BENCH_FANOUT_ONE", 2000), 3,
                    latency_changes=20, latency_gap_s=0.5, burst_gap_s=0.25, burst_s=8)
    time.sleep(3)
    per_room = env_int("BENCH_FANOUT_ALL", 10_000) // 50
    if per_room == 0:  # BENCH_FANOUT_ALL=0: the one-room scenario only
        report.record("fanout", {"one_room": one})
        return
    fifty = _scenario(stack, bench_engine, bench_config, 50, per_room, 4,
                      latency_changes=5, latency_gap_s=2.0, burst_gap_s=0.25, burst_s=8)
    report.record("fanout", {"one_room": one, "fifty_rooms": fifty})
    for key, label, wanted, target_ms in (
            ("one_room", "fan-out 1 room", one["rooms"] * one["sockets_per_room"], 100),
            ("fifty_rooms", "fan-out 50 rooms", 50 * per_room, 250)):
        r = {"one_room": one, "fifty_rooms": fifty}[key]
        held = r["connected"] >= wanted
        lat = r["last_socket_ms"]
        report.row(f"{label}: sockets held", r["connected"], f"of {wanted:,}", target="all held", met=held)
        for why, count in list(r["not_held"].items())[:3]:
            report.row(f"{label}: not held: {why}", count, "sockets", target="(info)")
        for why, count in list(r["not_delivered"].items())[:3]:
            report.row(f"{label}: change not delivered: {why}", count, "(socket, change) pairs",
                       target="(info)")
        report.row(f"{label}: change -> last socket p50 / p99", lat["p50"], f"ms (p99 {lat['p99']})",
                   target=f"p99 <= {target_ms} ms",
                   met=bool(held and lat["p99"] is not None and lat["p99"] <= target_ms))
        report.row(f"{label}: leaderboard messages/s received", r["messages_per_s"], "/s",
                   target=f"(info; client CPU {r['burst']['cpu']['generator_cpu_cores']} cores)")
        report.row(f"{label}: RSS per socket", r["rss_kb_per_socket"], "KB", target="(info)")
