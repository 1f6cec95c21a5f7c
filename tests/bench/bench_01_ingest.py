"""1. Answer ingest: acknowledged answers/s, beside /healthz (same wrk, same connections) and pgbench.

Rooms: 50 sessions x 100 players, quizzes of up to 100 questions with the longest time limit. wrk
(-t1 -c64) cycles through pre-made answer requests ordered question by question, the rooms split in
two halves that take turns: while half A answers question q, a controller thread opens question q+1
in each room of half B whose 100 answers to q are all in (and vice versa), so a request never meets a
question that is not open yet. Relay and worker run meanwhile, as in production.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import text

from tests.bench import pgbench, report
from tests.bench.support import PY_SPY, RESULTS_DIR, CpuMeter, ProcessCpu, env_int, make_rooms, open_next, wrk

ROOMS, PLAYERS = 50, 100
CONNECTIONS = 64


class Controller(threading.Thread):
    """Opens a room's next question once every player answered the current one."""

    def __init__(self, engine, base_url: str, rooms):
        super().__init__(daemon=True)
        self.engine, self.base_url, self.rooms = engine, base_url, rooms
        self.position = {room.session_id: 0 for room in rooms}
        self.by_id = {room.session_id: room for room in rooms}
        self.stopping = threading.Event()
        self.opened = 0
        self.failed = 0
        self.stalls = 0
        self.seen: dict = {}

    def run(self) -> None:
        ids = list(self.by_id)
        local = threading.local()

        def open_one(room) -> bool:
            if not hasattr(local, "http"):
                local.http = requests.Session()
            return open_next(local.http, self.base_url, room) == 200

        # Opens run in parallel: one after the other, 25 of them under load can outlast the other
        # half's turn, and the late rooms' answers would meet a question not open yet (400).
        with ThreadPoolExecutor(8) as pool:
            while not self.stopping.wait(0.1):
                with self.engine.connect() as db:
                    rows = db.execute(text("""
                        SELECT s.id, (SELECT count(*) FROM participant_answers a
                                      WHERE a.quiz_session_id = s.id
                                        AND a.question_id = s.current_question_id) AS n
                        FROM quiz_sessions s WHERE s.id = ANY(:ids)"""), {"ids": ids}).all()
                now = time.monotonic()
                due = []
                for session_id, answered in rows:
                    room = self.by_id[session_id]
                    if answered != self.seen.get(session_id, (None, 0))[0]:
                        self.seen[session_id] = (answered, now)
                    # All answered; or a stall: answers stopped for 1 s with some missing (one answer
                    # met a question not open yet, so the count would never reach the players).
                    stalled = answered > 0 and now - self.seen[session_id][1] >= 1.0
                    if ((answered >= len(room.players) or stalled)
                            and self.position[session_id] + 1 < len(room.question_ids)):
                        due.append(room)
                        self.stalls += answered < len(room.players)
                for room, opened in zip(due, pool.map(open_one, due)):
                    if opened:
                        self.position[room.session_id] += 1
                        self.opened += 1
                    else:
                        self.failed += 1


def write_answer_requests(path, rooms, questions: int):
    """wrk's requests (wrk_requests.lua): every player's answer, question by question, the rooms in two
    halves that take turns (see the top)."""
    halves = (rooms[: len(rooms) // 2], rooms[len(rooms) // 2:])
    with open(path, "w") as out:
        for q in range(questions):
            for half in halves:
                for p in range(len(rooms[0].players)):
                    for room in half:
                        body = json.dumps({"question_id": str(room.question_ids[q]), "choice": (p + q) % 4},
                                          separators=(",", ":"))
                        out.write(f"/api/v1/sessions/{room.session_id}/answers\t{room.players[p].token}\t{body}\n")
    return path


def bench_ingest(stack, bench_engine, bench_config, tmp_path):
    duration = env_int("BENCH_INGEST_S", 60)
    healthz_duration = env_int("BENCH_HEALTHZ_S", 30)
    questions = min(100, max(4, math.ceil(duration * 4000 / (ROOMS * PLAYERS))))
    rooms = make_rooms(bench_engine, bench_config, ROOMS, PLAYERS, questions, prefix=1)
    http = requests.Session()
    for room in rooms:
        assert open_next(http, stack.base_url, room) == 200
    requests_file = write_answer_requests(tmp_path / "answers.tsv", rooms, questions)
    time.sleep(2)  # the worker's first rebuilds of the fresh rooms
    controller = Controller(bench_engine, stack.base_url, rooms)
    controller.start()
    try:
        web_cpu0 = stack.process_cpu("web")
        profilers = []
        if os.environ.get("BENCH_PROFILE"):  # py-spy on each gunicorn worker while wrk runs
            RESULTS_DIR.mkdir(exist_ok=True)
            for worker in stack.web_workers():
                profilers.append(subprocess.Popen(
                    [PY_SPY, "record", "--pid", str(worker.pid), "--duration", str(min(duration, 30)),
                     "--rate", "50", "--format", "raw",
                     "--output", str(RESULTS_DIR / f"profile-ingest-web-{worker.pid}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with ProcessCpu() as by_process:
            answers = wrk(stack.base_url, requests_file, duration, CONNECTIONS)
        for profiler in profilers:
            profiler.wait(60)
        web_cpu = stack.process_cpu("web") - web_cpu0
    finally:
        controller.stopping.set()
        controller.join(5)
    with bench_engine.connect() as db:
        stored = db.execute(text("SELECT count(*) FROM participant_answers a JOIN quiz_sessions s "
                                 "ON s.id = a.quiz_session_id WHERE s.join_code LIKE '1%'")).scalar()

    health_file = tmp_path / "healthz.tsv"
    health_file.write_text("/healthz\n")
    healthz = wrk(stack.base_url, health_file, healthz_duration, CONNECTIONS)

    pgbench.prepare(bench_engine)
    pgb_clients = env_int("BENCH_PGBENCH_CLIENTS", 16)
    with CpuMeter() as cpu:
        pgb = pgbench.run(bench_config.database_url, tmp_path, pgb_clients, env_int("BENCH_PGBENCH_S", 30))
    pgb["cpu"] = cpu.report("child")

    rate, ceiling = answers["per_s"], healthz["per_s"]
    report.record("ingest", {
        "rooms": ROOMS, "players_per_room": PLAYERS, "questions": questions, "connections": CONNECTIONS,
        "duration_s": duration, "answers": answers, "answers_per_s": rate, "answers_stored_in_pg": stored,
        "questions_opened_during_run": controller.opened, "open_failures": controller.failed,
        "questions_opened_after_a_stall": controller.stalls,
        "web_cpu_cores_during_answers": round(web_cpu / answers["seconds"], 2),
        "machine_cpu_cores_by_process_during_answers": by_process.cores,
        "healthz": healthz, "healthz_per_s": ceiling, "pgbench": pgb, "pgbench_tps": pgb["tps"],
        "wrk_latency_ms": answers["latency_ms"],
    })
    report.row("ingest: acknowledged answers/s", rate, "/s", baseline=ceiling, baseline_name="/healthz",
               target=">= 0.75 x /healthz", met=rate >= 0.75 * ceiling)
    report.row("ingest: answers/s absolute", rate, "/s", baseline=pgb["tps"],
               baseline_name="pgbench same SQL", target=">= 2,500/s", met=rate >= 2500)
    report.row("ingest: wrk CPU (answers)", answers["cpu"]["generator_cpu_cores"], "cores", target="(info)")
    assert answers["acknowledged"] > 0
