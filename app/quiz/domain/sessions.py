"""States of a live session and the moves between them."""
from __future__ import annotations

import secrets

LOBBY = "lobby"
QUESTION_OPEN = "question_open"
QUESTION_CLOSED = "question_closed"
ENDED = "ended"
STATUSES = (LOBBY, QUESTION_OPEN, QUESTION_CLOSED, ENDED)
# The same predicates as the partial indexes on quiz_sessions (app/quiz/models.py), written out as SQL so
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


# No 0/O, 1/I/L: a rejoin code is read off one screen and typed on another.
REJOIN_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REJOIN_CODE_LENGTH = 6


def new_rejoin_code() -> str:
    return "".join(secrets.choice(REJOIN_ALPHABET) for _ in range(REJOIN_CODE_LENGTH))


def normal_rejoin_code(typed: str) -> str:
    """A rejoin code as typed (any case, spaces or a dash in the middle) as it is stored."""
    return typed.replace(" ", "").replace("-", "").upper()


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
