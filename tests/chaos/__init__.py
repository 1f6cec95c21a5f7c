"""`make chaos`: a bounded chaos run that defends the promises the write path makes under failure.

While players answer at the highest rate the machine holds, it SIGKILLs the web (its master and its
workers), the relay and the cache worker, restarts Kafka and Redis (once with Redis's data deleted)
and cuts the services' PostgreSQL connections; then it lets the system converge and audits it
against PostgreSQL: no acknowledged answer lost, none counted twice, every committed event in Kafka,
every board in Redis equal to PostgreSQL. It prints one table and exits 0 only if all of that held.

It owns everything it touches: a database (`quiz_chaos`), a private Redis and a private Kafka broker
on free loopback ports (it kills and wipes them, so the shared ones of `make up` are never used),
and its own web, relay and worker processes. Only the shared PostgreSQL server must be running.

    make chaos                               # 300 s of load (about 7 minutes in all)
    CHAOS_SECONDS=60 make chaos              # a quick one
    .venv/bin/python -m tests.chaos          # the same, without `make services` first

Knobs (settings.py): CHAOS_SECONDS, CHAOS_SESSIONS and CHAOS_PLAYERS (the load's shape),
CHAOS_CONCURRENCY (requests in flight), CHAOS_FAULTS_PER_KIND, CHAOS_SEED (the fault order),
CHAOS_CONVERGE_S (the bound on converging), CHAOS_GIVE_UP_S (a client's patience for one answer),
CHAOS_KEEP=1 (keep the temporary directory). Order of things: run.py.
"""
