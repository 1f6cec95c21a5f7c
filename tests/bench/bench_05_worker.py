"""5. Worker: apply 1,000,000 answer_scored events from a topic, beside redis-benchmark on the same script.

Reuses `python -m cache_worker.bench N` (it produces N synthetic events of one 2,000-player session to
a fresh `bench.<id>.events` topic, then times a CacheWorker applying them: decode + pipelined Lua +
offset store) against the bench database and Redis database, and runs the redis-benchmark command
it prints (EVALSHA of apply_answer_scored with the same KEYS/ARGV shape, -c 50 -P 16).
"""
from __future__ import annotations

import re
import subprocess
import sys

from confluent_kafka.admin import AdminClient

from tests.bench import report
from tests.bench.support import ROOT, CpuMeter, env_int
from tests.helpers import stack_env


def _bench_topics(config) -> set[str]:
    admin = AdminClient({"bootstrap.servers": config.kafka_bootstrap_servers})
    return {t for t in admin.list_topics(timeout=10).topics
            if re.fullmatch(r"bench\.[0-9a-f]{8}\.(events|dlq)", t)}


def _delete_topics(config, created: set[str]) -> None:
    ids = {t.split(".")[1] for t in created}
    if len(created) == 2 and len(ids) == 1:  # exactly its bench.<id>.events and bench.<id>.dlq
        admin = AdminClient({"bootstrap.servers": config.kafka_bootstrap_servers})
        for future in admin.delete_topics(sorted(created), operation_timeout=30).values():
            try:
                future.result()
            except Exception:  # noqa: BLE001
                pass


def bench_worker(stack, bench_config, bench_db):
    count = env_int("BENCH_WORKER_EVENTS", 1_000_000)
    before = _bench_topics(bench_config)
    try:
        with CpuMeter() as cpu:
            out = subprocess.run([sys.executable, "-m", "cache_worker.bench", str(count)], cwd=ROOT,
                                 env=stack_env(bench_config), capture_output=True, text=True, timeout=900)
    finally:
        # The topics cache_worker.bench made for this run (it does not print their names): ~1 GB of log.
        created = _bench_topics(bench_config) - before
        _delete_topics(bench_config, created)
    assert out.returncode == 0, out.stderr[-3000:]
    match = re.search(r"worker: (\d+) events in ([\d.]+)s = ([\d,]+) events/s", out.stdout)
    assert match, out.stdout
    worker_rate = float(match.group(3).replace(",", ""))
    command = next(line for line in out.stdout.splitlines() if line.startswith("redis-benchmark"))
    with CpuMeter() as rb_cpu:
        argv = command.split()
        rb = subprocess.run(argv[:1] + ["-q"] + argv[1:], capture_output=True, text=True, timeout=600)
    rates = re.findall(r"([\d.]+) requests per second", rb.stdout.replace("\r", "\n"))
    assert rates, rb.stdout[-2000:] + rb.stderr[-2000:]
    rb_rate = float(rates[-1])
    report.record("worker", {"events": count, "events_per_s": worker_rate,
                             "worker_seconds": float(match.group(2)), "worker_output": out.stdout.strip(),
                             "cache_worker_bench_cpu": cpu.report("child"),
                             "redis_benchmark_command":
                                 command.replace("redis-benchmark", "redis-benchmark -q", 1),
                             "redis_benchmark_per_s": rb_rate, "redis_benchmark_cpu": rb_cpu.report("child"),
                             "topics_deleted": sorted(created)})
    report.row("worker: events/s applied from Kafka", worker_rate, "/s", baseline=rb_rate,
               baseline_name="redis-benchmark EVALSHA", target=">= 0.5 x redis-benchmark",
               met=worker_rate >= 0.5 * rb_rate)
