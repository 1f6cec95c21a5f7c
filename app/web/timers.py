"""Background work every web process runs, on a timer: questions close by themselves at their deadline
or once every player has answered; board periods close at their boundary even when nobody writes; old
submission ids are forgotten, and ended games deleted, after their retention; the outbox gauges of the
web's metrics are refreshed. Row locks make each close happen exactly once, however many processes run
this at the same time; and one web worker of a deployment (of those that share its database and Redis)
does the looking in each interval (`take_tick`), not every worker of every web process."""
from __future__ import annotations

import logging
import threading
import time
from typing import NamedTuple

from redis.exceptions import RedisError
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from app.core import redis_keys
from app.core.config import Config
from app.core.db import PURGE_BATCH
from app.core.logs import RateLimitedLog
from app.core.metrics import OUTBOX_LAG, OUTBOX_UNPUBLISHED
from app.core.outbox import outbox_lag
from app.leaderboards.service.periods import close_due_periods
from app.quiz.service.deletion import purge_expired_sessions
from app.quiz.service.sessions import close_due_questions

log = logging.getLogger(__name__)
PURGE_EVERY_S = 60.0
# The longest one round of forgetting submission ids runs before the timers close due questions again;
# a round cut short goes on at the next tick. At 2,000 score writes/s a minute's ids are 120,000 rows,
# about a second of deletes on the 2-core test machine.
PURGE_BUDGET_S = 2.0
OUTBOX_GAUGES_EVERY_S = 15.0  # a common scrape interval: one count of the backlog per worker, whoever scrapes


def tick_key(config: Config) -> str:
    """The key of the timers' interval of the deployment using `config`'s database."""
    return redis_keys.key(f"timers-tick:{make_url(config.database_url).database}")


def take_tick(redis, key: str, interval_s: float) -> bool:
    """Whether this worker runs the timers' work this interval: the first worker to ask in an interval
    does (a key set only when absent, expiring after the interval), the others skip it. When Redis
    cannot say, the worker runs it: two workers looking at once close a question once all the same."""
    try:
        return bool(redis.set(key, 1, nx=True, px=max(1, round(interval_s * 1000))))
    except RedisError:
        return True


class Purged(NamedTuple):
    deleted: int
    done: bool  # False: the round's budget ran out before a short batch


def forget_old_submissions(engine: Engine, retention_hours: float,
                           budget_s: float = PURGE_BUDGET_S) -> Purged:
    """Delete submission ids older than their retention, a batch (PURGE_BATCH) per transaction, until a
    batch comes back short or `budget_s` has passed (at least one batch runs)."""
    deleted, ends = 0, time.monotonic() + budget_s
    while True:
        with engine.begin() as connection:
            batch = connection.execute(text("""
                DELETE FROM score_submissions WHERE ctid IN (
                    SELECT ctid FROM score_submissions
                    WHERE created_at < clock_timestamp() - make_interval(secs => :age) LIMIT :n)"""),
                {"age": retention_hours * 3600, "n": PURGE_BATCH}).rowcount
        deleted += batch
        if batch < PURGE_BATCH:
            return Purged(deleted, True)
        if time.monotonic() >= ends:
            return Purged(deleted, False)


def run_timers(db_sessions, engine: Engine, redis, config: Config, stopping: threading.Event) -> None:
    errors = RateLimitedLog(log)
    next_purge = next_gauges = 0.0
    key, interval_s = tick_key(config), config.auto_close_interval_s
    while not stopping.wait(interval_s):
        db = db_sessions()
        try:
            if time.monotonic() >= next_gauges:  # this worker's own gauges
                next_gauges = time.monotonic() + OUTBOX_GAUGES_EVERY_S
                lag_s, unpublished = outbox_lag(engine, config.relay_mode)
                OUTBOX_LAG.set(lag_s)
                OUTBOX_UNPUBLISHED.set(unpublished)
            if not take_tick(redis, key, interval_s):
                continue
            closed = close_due_questions(db)
            if closed:
                log.info("closed %d due question(s)", closed, extra={"count": closed})
            periods = close_due_periods(engine, final_top=config.leaderboard_final_top)
            if periods:
                log.info("closed %d ended board period(s)", periods, extra={"count": periods})
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_EVERY_S
                if not forget_old_submissions(engine, config.score_submission_retention_hours).done:
                    next_purge = 0.0  # the rest at the next tick, once due questions are closed
                purged = purge_expired_sessions(engine, config.session_retention_days)
                if purged:
                    log.info("deleted %d game(s) past their retention", purged, extra={"count": purged})
        except SQLAlchemyError as exc:
            errors.warning("close", "cannot run the timers: %s", exc)
        except Exception:  # the timers must outlive any one bad session or board
            log.exception("the timers failed")
        finally:
            db.close()


def start_timers(db_sessions, engine: Engine, redis, config: Config) -> threading.Event:
    """Start the timers on a thread of their own; setting the returned event stops them."""
    stopping = threading.Event()
    threading.Thread(target=run_timers, args=(db_sessions, engine, redis, config, stopping), name="timers",
                     daemon=True).start()
    return stopping
