"""12. Answers over the room socket: acknowledged answers/s, beside the HTTP path of bench 1.

Rooms: 50 sessions x 100 players (bench 1's sizes), every player on a room socket (the minimal
asyncio client of the fan-out benchmark). Each socket answers the moment its room's question opens
and counts the acknowledgement (`answer_recorded`, sent after the commit); bench 1's controller opens
a room's next question once all its players' answers are in PostgreSQL. The rate is the
acknowledgements in the measuring window over its length; the HTTP rate is bench 1's in the same run
(or, run alone, no ratio). Unlike bench 1, the question pushes to 5,000 sockets are part of the load,
as in a real game.
"""
from __future__ import annotations

import asyncio
import json
import math
import time

import requests
from sqlalchemy import text

from tests.bench import report
from tests.bench.bench_01_ingest import Controller
from tests.bench.rooms_client import RoomSocket, close_all, connect_all
from tests.bench.support import CpuMeter, ProcessCpu, env_int, make_rooms, open_next, percentiles

ROOMS, PLAYERS = 50, 100


class AnswerSocket(RoomSocket):
    """A player's room socket that answers each question as it opens and stamps the acknowledgements."""

    __slots__ = ("choice", "sent_at", "acks", "refused")

    def __init__(self, session_id, choice: int):
        super().__init__(session_id)
        self.choice = choice
        self.sent_at = 0.0
        self.acks: list[tuple[float, float]] = []  # (acknowledged at, round trip s)
        self.refused: dict[str, int] = {}

    def on_message(self, raw: bytes, now: float) -> None:
        self.messages += 1
        head = raw[:40]  # the hub writes the type first
        if b'"question_opened"' in head:
            question_id = json.loads(raw)["question_id"]
            self.sent_at = time.monotonic()
            self._protocol.send_text(json.dumps({"type": "answer", "question_id": question_id,
                                                 "choice": self.choice}, separators=(",", ":")))
        elif b'"answer_recorded"' in head:
            self.acks.append((now, time.monotonic() - self.sent_at))
        elif b'"error"' in head:
            code = json.loads(raw).get("code", "?")
            self.refused[code] = self.refused.get(code, 0) + 1


def bench_socket_answers(stack, bench_engine, bench_config):
    duration = env_int("BENCH_SOCKET_ANSWERS_S", 30)
    questions = min(100, max(4, math.ceil(duration * 6000 / (ROOMS * PLAYERS))))
    rooms = make_rooms(bench_engine, bench_config, ROOMS, PLAYERS, questions, prefix=9)
    out: dict = {"rooms": ROOMS, "players_per_room": PLAYERS, "questions": questions, "duration_s": duration}

    async def main() -> None:
        sockets = [AnswerSocket(r.session_id, p % 4) for r in rooms for p in range(len(r.players))]
        pairs = [(s, p.user_id) for s, p in zip(sockets, (p for r in rooms for p in r.players))]
        controller = Controller(bench_engine, stack.base_url, rooms)
        try:
            out["connect_seconds"] = round(await connect_all(stack.ws_url, bench_config.redis_url, pairs,
                                                             concurrency=100), 1)
            await asyncio.sleep(2)
            out["connected"] = sum(s.connected and s.error is None for s in sockets)
            http = requests.Session()
            for room in rooms:  # the first questions: every socket answers as they arrive
                assert open_next(http, stack.base_url, room) == 200
            controller.start()
            web_cpu0 = stack.process_cpu("web")
            with ProcessCpu() as by_process, CpuMeter() as cpu:
                started = time.time()
                await asyncio.sleep(duration)
                ended = time.time()
            web_cpu = stack.process_cpu("web") - web_cpu0
        finally:
            controller.stopping.set()
            if controller.is_alive():
                controller.join(5)
            await close_all(sockets)
        out["web_cpu_cores"] = round(web_cpu / duration, 2)
        out["cpu_by_process"] = by_process.cores
        out["client_cpu"] = cpu.report("self")
        acks = [(at, rtt) for s in sockets for at, rtt in s.acks if started <= at < ended]
        out["acknowledged"] = len(acks)
        out["answers_per_s"] = round(len(acks) / (ended - started), 1)
        out["ack_ms"] = percentiles([rtt * 1000 for _, rtt in acks])
        refused: dict[str, int] = {}
        for s in sockets:
            for code, n in s.refused.items():
                refused[code] = refused.get(code, 0) + n
        out["refused"] = refused
        out["questions_opened"] = controller.opened

    asyncio.run(main())
    with bench_engine.connect() as db:
        out["answers_stored_in_pg"] = db.execute(text(
            "SELECT count(*) FROM participant_answers a JOIN quiz_sessions s ON s.id = a.quiz_session_id "
            "WHERE s.join_code LIKE '9%'")).scalar()
    report.record("socket_answers", out)
    http_rate = report.RESULTS["benchmarks"].get("ingest", {}).get("answers_per_s")
    rate = out["answers_per_s"]
    report.row("ingest over the socket: acknowledged answers/s", rate, "/s", baseline=http_rate,
               baseline_name="HTTP answers/s (bench 1)", target=">= 2,500/s and >= 2 x HTTP",
               met=None if http_rate is None else rate >= 2500 and rate >= 2 * http_rate)
    report.row("ingest over the socket: answer -> acknowledgement p50 / p99", out["ack_ms"]["p50"], "ms",
               target=f"(info; p99 {out['ack_ms']['p99']} ms)")
    assert out["connected"] == ROOMS * PLAYERS, out
    assert out["acknowledged"] > 0, out
