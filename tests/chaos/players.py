"""A player answering as the real player page does, but without ever giving up early.

The API promises that sending the same answer again is safe: a network error, a 503 (not recorded)
or a 504 `outcome_unknown` is followed by the same answer (same question, same choice) until a
201 (recorded), a 200 (the original receipt: it was recorded before) or a definitive 4xx
(`question_closed`: not recorded). The ledger keeps what every attempt got, so the audit can hold
each of those words to PostgreSQL.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from tests.chaos.client import Client, NoResponse, backoff, error_code
from tests.chaos.ledger import ACKED, CONFLICT, GAVE_UP, REFUSED, AnswerRecord, Ledger


@dataclass
class Player:
    user_id: str
    token: str


async def answer(client: Client, ledger: Ledger, player: Player, session_id: str, question_id: str,
                 choice: int, patience_s: float) -> AnswerRecord:
    record = AnswerRecord(session_id, player.user_id, question_id, choice)
    ledger.answers.append(record)
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + patience_s
    body = {"question_id": question_id, "choice": choice}
    path = f"/api/v1/sessions/{session_id}/answers"
    for attempt in itertools.count():
        try:
            status, data = await client.call("answer", "POST", path, body, player.token)
        except NoResponse:
            record.history.append("net")
        else:
            code = error_code(data)
            record.history.append("504u" if status == 504 and code == "outcome_unknown" else str(status))
            if status in (200, 201):
                record.outcome, record.answer_id = ACKED, data["answer_id"]
                return record
            if status == 409 and code == "already_answered":
                record.outcome, record.code = CONFLICT, code
                record.answer_id = (data["error"].get("answer") or {}).get("answer_id")
                return record
            if 400 <= status < 500 and status != 429:
                record.outcome, record.code = REFUSED, code
                return record
        if loop.time() > give_up_at:
            record.outcome = GAVE_UP
            return record
        await backoff(attempt)
    raise AssertionError("unreachable")
