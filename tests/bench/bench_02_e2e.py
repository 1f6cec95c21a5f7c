"""2. End to end, in the two parts the game has now that points stay hidden until the close:
 a. an answer's 201 -> the answer applied (held) in Redis;
 b. a question's close (committed in PostgreSQL) -> the room's socket showing the board with that
    question's points (the first `leaderboard` message whose version is at least the close's).

Method (see rooms_client.py): one host socket per room records (version, arrival) of every
leaderboard message; a Redis stream observer records when each answer was applied, and each close's
version, commit instant and application instant. Open-loop load: answers are sent on a fixed
schedule (R/s) across 50 rooms x 100 players, whatever the responses do, through 64 keep-alive
connections; when a room's 100 answers are acknowledged, its next question opens (which closes the
previous one, if the timer has not already closed it because everyone answered).
No answer lost: every 201 must be applied, and at the end PostgreSQL's scores equal the Redis
board's, and every acknowledged answer id is in `applied:{S}`.
Per rate, the JSON also has who used the machine's cores meanwhile (`machine_cpu_cores_by_process`:
web, PostgreSQL, Redis, Kafka, relay, worker and this process, the load generator; support.ProcessCpu),
and with BENCH_PROFILE=1 py-spy profiles of the web workers, the relay and the worker at the top rate.
"""
from __future__ import annotations

import asyncio
import json
import time

from sqlalchemy import text

from app.quiz.board.keys import SessionKeys
from app.quiz.board.scores import TIE_SPAN
from tests.bench import report
from tests.bench.rooms_client import RoomSocket, StreamObserver, close_all, connect_all
from tests.bench.support import (
    CpuMeter,
    HttpPool,
    ProcessCpu,
    env_int,
    make_rooms,
    percentiles,
    profiling,
    start_profile,
)

ROOMS, PLAYERS, QUESTIONS = 50, 100, 100
CONNECTIONS = 64


class RoomState:
    def __init__(self, room):
        self.room = room
        self.q = 0
        self.next_player = 0
        self.acked = 0
        self.opening = False


async def _open(pool: HttpPool, state: RoomState) -> None:
    status, _ = await pool.request("POST", f"/api/v1/sessions/{state.room.session_id}/questions/next",
                                   headers={"Authorization": f"Bearer {state.room.host_token}"})
    if status == 200:
        state.q += 1
        state.next_player, state.acked = 0, 0
    state.opening = False


async def _answer(pool: HttpPool, state: RoomState, player, q: int, acks: list, statuses: dict) -> None:
    room = state.room
    body = json.dumps({"question_id": str(room.question_ids[q]), "choice": room.correct[q]}).encode()
    try:
        status, payload = await pool.request("POST", f"/api/v1/sessions/{room.session_id}/answers", body,
                                             {"Authorization": f"Bearer {player.token}"})
    except Exception as exc:  # noqa: BLE001
        statuses[repr(exc)[:60]] = statuses.get(repr(exc)[:60], 0) + 1
        return
    now = time.time()
    statuses[status] = statuses.get(status, 0) + 1
    if status == 201:
        answer_id = json.loads(payload)["answer_id"]
        acks.append((room.session_id, str(player.participant_id), str(room.question_ids[q]), answer_id, now))
        state.acked += 1
        if state.acked == len(room.players) and q + 1 < len(room.question_ids) and not state.opening:
            state.opening = True
            asyncio.create_task(_open(pool, state))


async def _load(stack, states: list[RoomState], rate: int, duration_s: int) -> dict:
    pool = HttpPool("127.0.0.1", stack.port, CONNECTIONS)
    acks: list = []
    statuses: dict = {}
    tasks = set()
    total = rate * duration_s
    started = time.monotonic()
    sent, skipped, cursor = 0, 0, 0
    while sent < total:
        due = started + sent / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for _ in range(len(states)):
            state = states[cursor % len(states)]
            cursor += 1
            if not state.opening and state.next_player < len(state.room.players):
                player = state.room.players[state.next_player]
                state.next_player += 1
                task = asyncio.create_task(_answer(pool, state, player, state.q, acks, statuses))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                break
        else:
            skipped += 1  # every room waits for its next question: the schedule slips by one
            await asyncio.sleep(0.002)
            continue
        sent += 1
    send_s = time.monotonic() - started
    pending = list(tasks)
    cancelled = 0
    if pending:
        _, still = await asyncio.wait(pending, timeout=30)
        cancelled = len(still)
        for task in still:  # bounded: whatever is not answered 30 s after the schedule ends is abandoned
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    await asyncio.sleep(0.5)
    await pool.close()
    return {"acks": acks, "statuses": {str(k): v for k, v in statuses.items()}, "sent": sent,
            "send_seconds": round(send_s, 2), "achieved_per_s": round(sent / send_s, 1), "slips": skipped,
            "acknowledged_per_s": round(len(acks) / send_s, 1), "abandoned_after_30s": cancelled}


def _latencies(acks, observer: StreamObserver, sockets: dict, since: float) -> dict:
    """(a) 201 -> applied in Redis, per answer; (b) close committed -> board on the socket, per close."""
    to_applied, missing = [], 0
    for _session_id, participant, question, _answer_id, acked_at in acks:
        applied_at = observer.answers.get((participant, question))
        if applied_at is None:
            missing += 1
            continue
        to_applied.append(max(0.0, (applied_at - acked_at) * 1000))
    to_socket, to_redis, without_board = [], [], 0
    for (session_id, _question), (version, closed_at, applied_at) in list(observer.closes.items()):
        if closed_at < since:
            continue
        arrival = sockets[session_id].first_arrival(version)
        if arrival is None:
            without_board += 1
            continue
        to_socket.append(max(0.0, (arrival - closed_at) * 1000))
        to_redis.append(max(0.0, (applied_at - closed_at) * 1000))
    return {"201_to_applied_in_redis_ms": percentiles(to_applied), "answers_not_applied": missing,
            "close_to_board_on_socket_ms": percentiles(to_socket),
            "close_to_applied_in_redis_ms": percentiles(to_redis),
            "closes": len(to_socket), "closes_without_board": without_board}


def _compare_pg_redis(engine, redis_client, rooms, acks) -> dict:
    mismatched, absent = 0, 0
    for room in rooms:
        keys = SessionKeys.of(room.session_id)
        with engine.connect() as db:
            scores = dict(db.execute(text("SELECT id::text, score FROM quiz_session_participants "
                                          "WHERE quiz_session_id = :s"), {"s": room.session_id}).all())
        board = {m.decode(): int(s) // TIE_SPAN
                 for m, s in redis_client.zrange(keys.board, 0, -1, withscores=True)}
        mismatched += sum(1 for pid, score in scores.items() if board.get(pid) != score)
        mine = [f"answer:{a[3]}" for a in acks if a[0] == room.session_id]
        if mine:
            absent += sum(1 for present in redis_client.smismember(keys.applied, mine) if not present)
    return {"players_with_different_score": mismatched, "acknowledged_answers_not_applied": absent}


def _profile(stack, rate: int, seconds: int) -> list:
    """py-spy on each web worker, the relay and the worker while the load of `rate` runs (BENCH_PROFILE=1):
    where the chain's CPU goes when the machine runs out of it."""
    pids = {f"web-{worker.pid}": worker.pid for worker in stack.web_workers()}
    pids.update(relay=stack.processes["relay"].pid, worker=stack.processes["worker"].pid)
    return [start_profile(pid, f"e2e-{rate}-{name}", seconds) for name, pid in pids.items()]


def bench_end_to_end(stack, bench_engine, bench_config, bench_redis):
    rates = [int(r) for r in str(os_rates()).split(",")]
    duration = env_int("BENCH_E2E_S", 20)
    rooms = make_rooms(bench_engine, bench_config, ROOMS, PLAYERS, QUESTIONS, prefix=2)
    observer = StreamObserver(bench_config.redis_url, [r.session_id for r in rooms])
    observer.start()
    results: dict = {"rooms": ROOMS, "players_per_room": PLAYERS, "duration_s_per_rate": duration,
                     "connections": CONNECTIONS, "rates": {}}
    all_acks: list = []

    async def main() -> None:
        pool = HttpPool("127.0.0.1", stack.port, 8)
        states = [RoomState(r) for r in rooms]
        for state in states:
            state.opening = True
        await asyncio.gather(*[_open(pool, s) for s in states])
        for state in states:
            state.q = 0
        sockets = {r.session_id: RoomSocket(r.session_id) for r in rooms}
        try:
            await connect_all(stack.ws_url, bench_config.redis_url,
                              [(sockets[r.session_id], r.host_id) for r in rooms], concurrency=10)
            await asyncio.sleep(2)
            for rate in rates:
                since = time.time()
                profilers = _profile(stack, rate, duration) if rate == max(rates) and profiling() else []
                with ProcessCpu() as by_process, CpuMeter() as cpu:
                    run = await _load(stack, states, rate, duration)
                for profiler in profilers:
                    profiler.wait(60)
                acks = run.pop("acks")
                all_acks.extend(acks)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if all((a[1], a[2]) in observer.answers for a in acks):
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.0)  # the last close's coalesced push
                run.update({**_latencies(acks, observer, sockets, since), "acknowledged": len(acks),
                            "cpu": cpu.report("self"), "machine_cpu_cores_by_process": by_process.cores,
                            "machine_cpu_cores": by_process.total_cores})
                results["rates"][str(rate)] = run
        finally:
            await close_all(list(sockets.values()))

    try:
        asyncio.run(main())
        time.sleep(1)
    finally:
        observer.stop()
    results["lost"] = _compare_pg_redis(bench_engine, bench_redis, rooms, all_acks)
    report.record("e2e", results)
    lost = results["lost"]
    answers_kept = not any(lost.values()) and all(r["answers_not_applied"] == 0
                                                  for r in results["rates"].values())
    none_lost = answers_kept and all(r["closes_without_board"] == 0 for r in results["rates"].values())
    for rate, run in results["rates"].items():
        applied, shown = run["201_to_applied_in_redis_ms"], run["close_to_board_on_socket_ms"]
        target = rate == "1000"
        report.row(f"e2e @{rate}/s: 201 -> applied in Redis p50 / p99", applied["p50"],
                   f"ms (p99 {applied['p99']})", target="(info)")
        met = shown["p50"] is not None and shown["p50"] <= 50 and shown["p99"] <= 150 and none_lost
        report.row(f"e2e @{rate}/s: close -> board on the socket p50 / p99", shown["p50"],
                   f"ms (p99 {shown['p99']}, {run['closes']} closes, "
                   f"{run['closes_without_board']} without a board)",
                   target="p50<=50, p99<=150 ms, none lost" if target else "(info)",
                   met=met if target else None)
        report.row(f"e2e @{rate}/s: acknowledged answers/s", run["acknowledged_per_s"], "/s",
                   baseline=int(rate), baseline_name="offered", target="= offered rate",
                   met=run["acknowledged_per_s"] >= 0.95 * int(rate))
    report.row("e2e: answers lost (PG vs Redis)", sum(lost.values()), "", target="0", met=answers_kept)


def os_rates() -> str:
    import os
    return os.environ.get("BENCH_E2E_RATES", "500,1000")
