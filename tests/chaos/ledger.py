"""What the clients were told: every answer's outcome and every HTTP status, for the audit to check.

The audit believes PostgreSQL, and checks it against this record of what clients were promised:
an answer is acknowledged only by a 201 (recorded) or a 200 (the original receipt of a recorded
answer), and its answer_id must then be in PostgreSQL.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ACKED = "acknowledged"      # 201 or 200: the receipt's answer_id is recorded
REFUSED = "refused"         # a definitive 4xx such as question_closed: not recorded
CONFLICT = "conflict"       # 409 already_answered: another choice is recorded (the load never sends one)
GAVE_UP = "gave_up"         # no definitive answer within CHAOS_GIVE_UP_S: the client cannot tell


@dataclass
class AnswerRecord:
    session_id: str
    user_id: str
    question_id: str
    choice: int
    outcome: str = ""
    answer_id: str | None = None
    code: str | None = None           # the error code of a refusal
    # What each attempt got: a status ("201", "503", ...), "504u" for outcome_unknown, "net" for none.
    history: list[str] = field(default_factory=list)

    @property
    def saw_unknown(self) -> bool:
        return "504u" in self.history


@dataclass
class Ledger:
    answers: list[AnswerRecord] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)       # (what, status) of every response
    server_errors: Counter = field(default_factory=Counter)  # (status, error code) of every 5xx
    network_errors: Counter = field(default_factory=Counter)  # what -> requests without a response

    def response(self, what: str, status: int, code: str | None) -> None:
        self.statuses[(what, status)] += 1
        if status >= 500:
            self.server_errors[(status, code)] += 1

    def network_error(self, what: str) -> None:
        self.network_errors[what] += 1

    def by_what(self, status: int) -> Counter:
        """How many responses of `status` each kind of request got."""
        return Counter({what: n for (what, s), n in self.statuses.items() if s == status})
