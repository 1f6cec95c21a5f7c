"""Background work every web process runs: questions close by themselves at their deadline, or once
every player has answered. A session rule, run on a timer: the session row lock makes each close
happen exactly once, however many processes run this at the same time."""
from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from app.logs import RateLimitedLog
from app.services.sessions import close_due_questions

log = logging.getLogger(__name__)


def run_question_timer(db_sessions, interval_s: float, stopping: threading.Event) -> None:
    errors = RateLimitedLog(log)
    while not stopping.wait(interval_s):
        db = db_sessions()
        try:
            closed = close_due_questions(db)
            if closed:
                log.info("closed %d due question(s)", closed, extra={"count": closed})
        except SQLAlchemyError as exc:
            errors.warning("close", "cannot close due questions: %s", exc)
        except Exception:  # the timer must outlive any one bad session
            log.exception("closing due questions failed")
        finally:
            db.close()


def start_timers(db_sessions, interval_s: float) -> threading.Event:
    """Start the timers on a thread of their own; setting the returned event stops them."""
    stopping = threading.Event()
    threading.Thread(target=run_question_timer, args=(db_sessions, interval_s, stopping), name="question-timer",
                     daemon=True).start()
    return stopping
