"""Answers over the room socket, in process: the handler a player's socket calls (`answers_over_socket`),
on the real PostgreSQL. Bad messages get an `error` with the HTTP path's code, a fault of the write gets
`internal_error` or `unavailable` like the HTTP path's 500 or 503 (the answer is not recorded and the
socket lives on), and a resend after the fault records the answer once. The e2e test drives the
socket itself (tests/e2e/test_socket_answers.py)."""
from __future__ import annotations

import time
import uuid

from sqlalchemy import text

from app.accounts.tokens import Principal
from app.web.rooms.connection import Connection
from app.web.rooms.socket import answers_over_socket
from tests.helpers import Api


def _handler(sid: str, user_id: str):
    """The handler of a socket opened with a ticket of the user's current token."""
    session = uuid.UUID(sid)
    connection = Connection(lambda text: None, session, participant_id=None, max_buffered=8,
                            on_drop=lambda kind: None, on_sent=lambda kind: None)
    return answers_over_socket(session, Principal(uuid.UUID(user_id), is_guest=True,
                                                  issued_at_ms=time.time_ns() // 1_000_000), connection)


def _answers(engine, sid: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM participant_answers WHERE quiz_session_id = :s"),
                            {"s": sid}).scalar()


def _open(api: Api):
    host = api.host()
    sid = api.live_session(host)["id"]
    player = api.join(sid, api.guest())
    question = api.next_question(sid, host)["question_id"]
    return host, sid, player, question


def test_bad_messages_get_the_http_paths_codes_and_record_nothing(app, api: Api, engine):
    _, sid, player, question = _open(api)
    outsider = api.guest()
    with app.app_context():
        handle = _handler(sid, player.user_id)
        assert handle({"type": "shout"})["code"] == "unknown_message"
        missing = handle({"type": "answer", "choice": 1, "ref": 7})
        assert (missing["type"], missing["code"], missing["ref"]) == ("error", "invalid_message", 7)
        assert handle({"type": "answer", "question_id": question,
                       "choice": "two"})["code"] == "invalid_message"
        assert handle({"type": "answer", "question_id": str(uuid.uuid4()), "choice": 1})["type"] == "error"
        stranger = _handler(sid, outsider.user_id)
        assert stranger({"type": "answer", "question_id": question, "choice": 1})["code"] == "not_joined"
    assert _answers(engine, sid) == 0


def test_a_failed_write_is_an_error_reply_and_a_resend_records_the_answer_once(app, api: Api, engine):
    _, sid, player, question = _open(api)
    trigger = f"fail_socket_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                          f"BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$"))
        conn.execute(text(f"CREATE TRIGGER {trigger} BEFORE INSERT ON events FOR EACH ROW "
                          f"WHEN (NEW.payload->>'nickname' = '{player.nickname}') "
                          f"EXECUTE FUNCTION {trigger}()"))
    message = {"type": "answer", "question_id": question, "choice": 2, "ref": "a1"}
    with app.app_context():
        handle = _handler(sid, player.user_id)
        try:
            failed = handle(message)
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"DROP TRIGGER {trigger} ON events"))
                conn.execute(text(f"DROP FUNCTION {trigger}()"))
        assert (failed["type"], failed["code"], failed["ref"]) == ("error", "internal_error", "a1")
        assert _answers(engine, sid) == 0
        recorded = handle(message)
        again = handle(message)
    assert recorded["type"] == again["type"] == "answer_recorded" and recorded["ref"] == "a1"
    assert (recorded["replayed"], again["replayed"]) == (False, True)
    assert recorded["answer_id"] == again["answer_id"]
    assert _answers(engine, sid) == 1
