"""14. Web CPU per HTTP answer: the CPU time of the gunicorn processes (user + system of the master and
its workers, psutil) over a fixed number of acknowledged answers, so the figure holds on a busy machine.

Beside it, in the same run and the same way: a bare Flask route doing the same SQL through the same
group commit (tests/bench/bare_answer.py, its own gunicorn with the web's worker class and count), and
`/healthz` (the floor of any request: gunicorn, Flask, the request log and headers).

A player of a live game has joined it (and asked for the session) within the last minutes, so the
cache of their revocation instant (app/accounts/users.py, kept 5 minutes) is warm: it is set for each
player before their round, as their join left it.

Each measured set is its own rooms (PLAYERS each, one question, opened with the longest time limit
just before its round): every request is a first answer of a player, so none is a retry or a refusal.
wrk (-t1 -c64) sends them, and stops once as many responses came back (wrk_requests.lua's
stop_after). The rounds alternate (route, bare, route, bare...) so a change of the machine's load
falls on both.
"""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys

import psutil
import requests

from app.accounts.users import revocation_key
from tests.bench import report
from tests.bench.bare_answer import PATH as BARE_PATH
from tests.bench.stack import tree_cpu_s
from tests.bench.support import ROOT, env_int, make_rooms, open_next, profiling, start_profile, wrk
from tests.helpers import free_port, stack_env, wait_until

PLAYERS = 500
CONNECTIONS = 64
TARGET_MS = 0.5
ROUTE = "/api/v1/sessions/<session_id>/answers"


def _answers_file(path, rooms, route: str, bearer) -> int:
    lines = 0
    with open(path, "w") as out:
        for p in range(PLAYERS):
            for room in rooms:
                body = json.dumps({"question_id": str(room.question_ids[0]), "choice": p % 4},
                                  separators=(",", ":"))
                path = route.replace("<session_id>", str(room.session_id))
                out.write(f"{path}\t{bearer(room.players[p])}\t{body}\n")
                lines += 1
    return lines


def _round(base_url: str, master_pid: int, requests_file, count: int, profile: str | None = None) -> dict:
    """One round of `count` requests; `profile` names a py-spy profile of the master's first worker
    during it (BENCH_PROFILE=1)."""
    spy = None
    if profile and profiling():
        spy = start_profile(psutil.Process(master_pid).children()[0].pid, profile, 900)
    cpu0 = tree_cpu_s(master_pid)
    result = wrk(base_url, requests_file, 600, CONNECTIONS, stop_after=count)
    cpu_s = tree_cpu_s(master_pid) - cpu0
    if spy is not None:  # the whole round: py-spy writes its profile when interrupted
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    acknowledged = result["acknowledged"]
    return {"requests": result["requests"], "acknowledged": acknowledged, "non_2xx": result["non_2xx"],
            "statuses": result["statuses"], "first_error": result["first_error"],
            "seconds": result["seconds"],
            "per_s": result["per_s"], "gunicorn_cpu_s": round(cpu_s, 2),
            "cpu_ms_per_request": round(cpu_s * 1000 / max(acknowledged, 1), 3),
            "latency_ms": result["latency_ms"], "machine_cpu_pct": result["cpu"]["machine_cpu_pct"]}


def _start_bare(bench_config, workers: str, tmp_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    settings = tmp_path / "bare_gunicorn.conf.py"  # none: not the web's gunicorn.conf.py of the root
    settings.write_text("")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(settings), "-k", "gevent", "-w", workers,
         "--worker-connections", "12000", "--keep-alive", "30", "--log-level", "warning",
         "-b", f"127.0.0.1:{port}",
         "tests.bench.bare_answer:create_bare_app()"],
        cwd=ROOT, env=stack_env(bench_config), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(url + "/", timeout=1).status_code == 404
        except requests.RequestException:
            return False
    wait_until(answers, "the bare answer app does not answer", 60, every_s=0.2)
    return process, url


def bench_answer_cpu(stack, bench_engine, bench_config, bench_redis, tmp_path):
    count = env_int("BENCH_ANSWER_CPU_N", 6_000)
    rounds = env_int("BENCH_ANSWER_CPU_ROUNDS", 2)
    rooms_per_set = max(1, count // PLAYERS)
    count = rooms_per_set * PLAYERS
    http = requests.Session()
    files, sets = {}, {}
    for kind in ("route", "bare"):
        for r in range(rounds):
            rooms = sets[kind, r] = make_rooms(bench_engine, bench_config, rooms_per_set, PLAYERS, 1,
                                               prefix=7)
            files[kind, r] = tmp_path / f"{kind}-{r}.tsv"
            if kind == "route":
                _answers_file(files[kind, r], rooms, ROUTE, lambda p: p.token)
            else:
                _answers_file(files[kind, r], rooms, BARE_PATH, lambda p: str(p.user_id))
    health = tmp_path / "healthz.tsv"
    health.write_text("/healthz\n")
    workers = str(len(stack.web_workers()))
    bare, bare_url = _start_bare(bench_config, workers, tmp_path)
    load_at_start = psutil.getloadavg()
    measured: dict[str, list[dict]] = {"route": [], "bare": [], "healthz": []}

    def open_questions(kind: str, r: int) -> None:  # within 240 s of the round's end on a busy machine
        with bench_redis.pipeline(transaction=False) as warm:
            for room in sets[kind, r]:
                for player in room.players:
                    warm.set(revocation_key(player.user_id), 0, ex=300, nx=True)
            warm.execute()
        for room in sets[kind, r]:
            assert open_next(http, stack.base_url, room) == 200

    try:
        for r in range(rounds):
            web = stack.processes["web"].pid
            open_questions("route", r)
            measured["route"].append(_round(stack.base_url, web, files["route", r], count,
                                            profile="answer-route" if r == 0 else None))
            open_questions("bare", r)
            measured["bare"].append(_round(bare_url, bare.pid, files["bare", r], count,
                                           profile="answer-bare" if r == 0 else None))
            measured["healthz"].append(_round(stack.base_url, web, health, count))
    finally:
        bare.terminate()
        bare.wait(30)

    def median(kind: str) -> float:
        return round(statistics.median(m["cpu_ms_per_request"] for m in measured[kind]), 3)

    def rate(kind: str) -> float:
        return round(statistics.median(m["per_s"] for m in measured[kind]))

    route, floor, healthz = median("route"), median("bare"), median("healthz")
    route_rate, floor_rate, healthz_rate = rate("route"), rate("bare"), rate("healthz")
    report.record("answer_cpu", {
        "answers_per_round": count, "rounds": rounds, "connections": CONNECTIONS, "web_workers": int(workers),
        "load_average_at_start": load_at_start, "load_average_at_end": psutil.getloadavg(),
        "route_ms": route, "bare_ms": floor, "healthz_ms": healthz, "route_per_s": route_rate,
        "bare_per_s": floor_rate, "healthz_per_s": healthz_rate, "rounds_measured": measured})
    report.row("web CPU per HTTP answer (gunicorn, fixed count)", route, "ms", baseline=floor,
               baseline_name="bare Flask route, same SQL", target=f"<= {TARGET_MS} ms",
               met=route <= TARGET_MS)
    report.row("web CPU per /healthz (same way)", healthz, "ms", target="(info)")
    report.row("answers over HTTP: acknowledged/s (fixed count, 64 connections)", route_rate, "/s",
               baseline=healthz_rate, baseline_name="/healthz, same way", target=">= 0.5 x /healthz",
               met=route_rate >= 0.5 * healthz_rate)
    report.row("bare Flask route, same SQL: acknowledged/s", floor_rate, "/s", baseline=healthz_rate,
               baseline_name="/healthz, same way", target="(info)")
    for kind in ("route", "bare"):
        for m in measured[kind]:
            assert m["acknowledged"] >= 0.99 * count, (kind, m)
