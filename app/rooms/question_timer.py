"""Questions close by themselves at their deadline, or once every player has answered."""
from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from app.extensions import Services
from app.logs import RateLimitedLog
from app.services.sessions import close_due_questions

log = logging.getLogger(__name__)


def run_question_timer(live: Services, stopping: threading.Event) -> None:
    """Every web process runs one; the session row lock makes each close happen exactly once."""
    errors = RateLimitedLog(log)
    while not stopping.wait(live.config.auto_close_interval_s):
        db = live.db_sessions()
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


def start_question_timer(live: Services) -> threading.Event:
    stopping = threading.Event()
    threading.Thread(target=run_question_timer, args=(live, stopping), name="question-timer", daemon=True).start()
    return stopping
