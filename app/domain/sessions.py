"""States of a live session and the moves between them."""
from __future__ import annotations

import secrets

LOBBY = "lobby"
QUESTION_OPEN = "question_open"
QUESTION_CLOSED = "question_closed"
ENDED = "ended"
STATUSES = (LOBBY, QUESTION_OPEN, QUESTION_CLOSED, ENDED)
# The same predicates as the partial indexes on quiz_sessions (app/models.py), written out as SQL so
# the planner can match them (a bound parameter would hide the value from a generic plan).
LIVE_SQL = f"status <> '{ENDED}'"
OPEN_SQL = f"status = '{QUESTION_OPEN}'"


class TransitionError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def new_join_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def check_can_open_next(status: str, next_position: int, question_count: int) -> None:
    if status == ENDED:
        raise TransitionError("session_ended", "the session has ended")
    if next_position >= question_count:
        raise TransitionError("no_more_questions", "the last question has already been asked")


def check_can_close(status: str) -> None:
    if status != QUESTION_OPEN:
        raise TransitionError("no_open_question", "no question is open")


def check_can_join(status: str) -> None:
    if status == ENDED:
        raise TransitionError("session_ended", "the session has ended")


def check_can_end(status: str) -> None:
    if status == ENDED:
        raise TransitionError("session_ended", "the session has already ended")
