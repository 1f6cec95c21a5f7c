"""A host's library and records, through the API: list, edit (in place or as a new version), copy,
delete with every game; a game's report as JSON and CSV; deleting games by hand and by retention."""
from __future__ import annotations

import csv
import io

from sqlalchemy import text

from app.core import redis_keys
from app.quiz.board.keys import SessionKeys
from app.quiz.service.deletion import purge_expired_sessions
from app.quiz.service.reports import spreadsheet_safe
from tests.helpers import Api, sample_questions
from tests.integration.worker_support import drain, event_rows, new_worker, publish


def _error(response) -> str:
    return response.get_json()["error"]["code"]


def _library(api: Api, host) -> list[dict]:
    return api.get("/api/v1/quizzes", token=host.token, expect=200).get_json()["quizzes"]


def _play(api: Api, host, nicknames=("Ada", "Ben", "Cy"), questions=None):
    """A whole game: everyone answers each question (Ada right, the others wrong), then it ends."""
    session = api.live_session(host, questions)
    sid = session["id"]
    players = [api.join_as(sid, api.guest(), n) for n in nicknames]
    for _ in session["quiz"]["questions"]:
        question = api.next_question(sid, host)
        right = question["position"] % 4  # sample_questions' correct choice
        for i, player in enumerate(players):
            api.answer(sid, player, question["question_id"], right if i == 0 else (right + 1) % 4)
        api.close_question(sid, host)
    api.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    return session, players


def test_the_library_lists_a_hosts_quizzes_with_their_games(api: Api):
    host, other = api.host(), api.host()
    first = api.quiz(host)
    second = api.quiz(host, sample_questions(3))
    api.quiz(other)
    live = api.post(f"/api/v1/quizzes/{second['id']}/sessions", token=host.token, expect=201).get_json()
    listed = _library(api, host)
    assert [q["id"] for q in listed] == [second["id"], first["id"]]  # the last changed first
    assert listed[0]["question_count"] == 3 and listed[0]["live_session"]["join_code"] == live["join_code"]
    assert listed[1]["live_session"] is None and listed[1]["games_played"] == 0
    assert _error(api.get("/api/v1/quizzes", token=api.guest().token, expect=403)) == "registered_users_only"


def test_an_unplayed_quiz_changes_in_place_and_a_played_one_becomes_a_new_version(api: Api):
    host = api.host()
    quiz = api.quiz(host)
    edited = api.put(f"/api/v1/quizzes/{quiz['id']}", {"title": "Rivers", "questions": sample_questions(3)},
                     token=host.token, expect=200).get_json()
    assert edited["id"] == quiz["id"] and edited["replaces"] is None and len(edited["questions"]) == 3

    live = api.post(f"/api/v1/quizzes/{quiz['id']}/sessions", token=host.token, expect=201).get_json()
    player = api.join(live["id"], api.guest())
    question = api.next_question(live["id"], host)
    api.answer(live["id"], player, question["question_id"], 0)
    # A running game's quiz does not change under it.
    refused = api.put(f"/api/v1/quizzes/{quiz['id']}", {"title": "Lakes", "questions": sample_questions()},
                      token=host.token, expect=409)
    assert _error(refused) == "quiz_in_use"
    api.post(f"/api/v1/sessions/{live['id']}/end", token=host.token, expect=200)

    version = api.put(f"/api/v1/quizzes/{quiz['id']}", {"title": "Lakes", "questions": sample_questions(2)},
                      token=host.token, expect=200).get_json()
    assert version["id"] != quiz["id"] and version["replaces"] == quiz["id"]
    assert [q["id"] for q in _library(api, host)] == [version["id"]]
    assert _library(api, host)[0]["games_played"] == 1
    # The played game's report keeps the questions it was played with.
    report = api.get(f"/api/v1/sessions/{live['id']}/report", token=host.token, expect=200).get_json()
    assert len(report["questions"]) == 3 and report["session"]["title"] == "Rivers"
    games = api.get(f"/api/v1/quizzes/{version['id']}/sessions", token=host.token, expect=200).get_json()
    assert [g["id"] for g in games["sessions"]] == [live["id"]]


def test_a_copy_is_a_quiz_of_its_own(api: Api):
    host = api.host()
    quiz = api.quiz(host, sample_questions(2))
    copy = api.post(f"/api/v1/quizzes/{quiz['id']}/copy", token=host.token, expect=201).get_json()
    assert copy["id"] != quiz["id"] and copy["title"] == "Capitals (copy)"
    assert [q["text"] for q in copy["questions"]] == [q["text"] for q in quiz["questions"]]
    assert {q["id"] for q in copy["questions"]}.isdisjoint(q["id"] for q in quiz["questions"])
    api.post(f"/api/v1/quizzes/{quiz['id']}/copy", token=api.host().token, expect=404)


def test_a_report_gives_each_question_and_each_player(api: Api):
    host = api.host()
    session, players = _play(api, host)
    sid = session["id"]
    report = api.get(f"/api/v1/sessions/{sid}/report", token=host.token, expect=200).get_json()
    first = report["questions"][0]
    assert first["answered"] == 3 and first["correct"] == 1 and first["correct_rate"] == round(1 / 3, 4)
    assert sum(first["choice_counts"]) == 3 and first["choice_counts"][first["correct_choice"]] == 1
    ada = report["players"][0]
    assert ada["nickname"] == "Ada" and ada["rank"] == 1 and ada["correct"] == ada["answered"] == 2
    assert ada["average_answer_ms"] is not None and ada["score"] > 0
    # Nobody ranks without points.
    assert [p["rank"] for p in report["players"][1:]] == [None, None]
    assert _error(api.get(f"/api/v1/sessions/{sid}/report", token=players[0].token, expect=403)) == "not_host"


def test_the_csv_report_escapes_what_a_spreadsheet_would_run(api: Api):
    host = api.host()
    session, _ = _play(api, host, nicknames=("=HYPERLINK(1)", "+1", "@Cy", "-x", "Dee"))
    response = api.get(f"/api/v1/sessions/{session['id']}/report.csv", token=host.token, expect=200)
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))
    assert rows[0][:3] == ["rank", "nickname", "score"]
    nicknames = {row[1] for row in rows[1:6]}
    assert nicknames == {"'=HYPERLINK(1)", "'+1", "'@Cy", "'-x", "Dee"}
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row if cell)
    api.get(f"/api/v1/sessions/{session['id']}/report.csv", token=api.host().token, expect=403)


def test_the_csv_report_starts_with_a_byte_order_mark_so_a_spreadsheet_reads_accents(api: Api):
    """Excel takes a CSV without a BOM for the machine's code page: "Zoë" would read "ZoÃ«"."""
    host = api.host()
    session, _ = _play(api, host, nicknames=("Zoë", "Ada", "Bo"))
    response = api.get(f"/api/v1/sessions/{session['id']}/report.csv", token=host.token, expect=200)
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf") and not raw[3:].startswith(b"\xef\xbb\xbf")
    assert response.mimetype == "text/csv" and response.mimetype_params.get("charset") == "utf-8"
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][0] == "rank" and "Zoë" in {row[1] for row in rows[1:4]}


def test_the_csv_report_runs_no_formula_whatever_separator_a_spreadsheet_reads_it_with(api: Api):
    """A spreadsheet set to `;` or a tab takes our quotes as text: a cell would start after the separator."""
    host = api.host()
    questions = sample_questions(1)
    questions[0]["text"] = "Which?\t=HYPERLINK(1)"
    questions[0]["choices"][1] = "b,@SUM(1)"
    nicknames = ("x;=cmd|'/C calc'!A0;", "y,+1", "z; -2", 'q"uote')
    session, _ = _play(api, host, nicknames=nicknames, questions=questions)
    body = api.get(f"/api/v1/sessions/{session['id']}/report.csv", token=host.token,
                   expect=200).get_data().decode("utf-8-sig")
    for separator in (",", ";", "\t"):
        cells = [cell for row in csv.reader(io.StringIO(body), delimiter=separator) for cell in row]
        assert not [c for c in cells if c.lstrip(" ").startswith(("=", "+", "-", "@"))], separator
    rows = list(csv.reader(io.StringIO(body)))
    assert {row[1] for row in rows[1:5]} == {"x;'=cmd|'/C calc'!A0;", "y,'+1", "z;' -2", 'q"uote'}
    # Text is quoted; numbers stay bare so a spreadsheet keeps them numbers.
    first_player = body.split("\r\n")[1].split(",")
    assert first_player[0].isdigit() and first_player[1].startswith('"') and first_player[2].isdigit()


def test_spreadsheet_safe_leaves_numbers_and_plain_text():
    assert (spreadsheet_safe(-3) == -3 and spreadsheet_safe("Ada") == "Ada"
            and spreadsheet_safe("\tx") == "'\tx")
    assert spreadsheet_safe("Mary-Jane, 3+4") == "Mary-Jane, 3+4"


def _rows(engine, sid: str) -> dict[str, int]:
    with engine.connect() as c:
        return {table: c.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = :s"),
                                 {"s": sid}).scalar()
                for table, column in (("quiz_session_participants", "quiz_session_id"),
                                      ("participant_answers", "quiz_session_id"),
                                      ("quiz_sessions", "id"))}


def test_a_host_deletes_a_game_with_its_players_answers_and_cache(api: Api, engine, topics, redis_client):
    host = api.host()
    session, players = _play(api, host)
    sid = session["id"]
    live = api.live_session(host)
    api.join(live["id"], api.guest())
    api.next_question(live["id"], host)
    assert _error(api.delete(f"/api/v1/sessions/{live['id']}", token=host.token,
                             expect=409)) == "session_live"
    assert _error(api.delete(f"/api/v1/sessions/{sid}", token=players[0].token, expect=403)) == "not_host"
    worker = new_worker(topics, engine, redis_client)
    try:
        drain(worker, publish(topics, event_rows(engine, sid)))
        assert list(redis_client.scan_iter(match=redis_keys.pattern(f"*{sid}*")))
        api.delete(f"/api/v1/sessions/{sid}", token=host.token, expect=200)
        assert _rows(engine, sid) == {"quiz_session_participants": 0, "participant_answers": 0,
                                      "quiz_sessions": 0}
        remaining = event_rows(engine, sid)
        assert [r.event_type for r in remaining] == ["session_deleted"]  # the others named its players
        drain(worker, publish(topics, remaining))
    finally:
        worker.close()
    room = SessionKeys.of(sid).room.encode()
    # the room goes later
    assert [k for k in redis_client.scan_iter(match=redis_keys.pattern(f"*{sid}*")) if k != room] == []
    api.get(f"/api/v1/sessions/{sid}/report", token=host.token, expect=404)


def test_deleting_a_quiz_deletes_its_versions_and_games(api: Api, engine):
    host = api.host()
    session, _ = _play(api, host)
    quiz_id = session["quiz"]["id"]
    version = api.put(f"/api/v1/quizzes/{quiz_id}", {"title": "Again", "questions": sample_questions()},
                      token=host.token, expect=200).get_json()
    api.delete(f"/api/v1/quizzes/{version['id']}", token=api.host().token, expect=404)
    gone = api.delete(f"/api/v1/quizzes/{version['id']}", token=host.token, expect=200).get_json()
    assert gone["versions"] == 2 and gone["sessions"] == 1
    assert _rows(engine, session["id"])["quiz_sessions"] == 0 and _library(api, host) == []


def test_ended_games_past_their_retention_are_deleted(api: Api, engine):
    host = api.host()
    old, _ = _play(api, host, nicknames=("Ada",))
    recent, _ = _play(api, host, nicknames=("Ben",))
    with engine.begin() as c:
        c.execute(text("UPDATE quiz_sessions SET ended_at = ended_at - interval '31 days' WHERE id = :s"),
                  {"s": old["id"]})
    while purge_expired_sessions(engine, retention_days=30):
        pass
    assert (_rows(engine, old["id"])["quiz_sessions"] == 0
            and _rows(engine, old["id"])["participant_answers"] == 0)
    assert _rows(engine, recent["id"])["quiz_sessions"] == 1


def test_an_archived_version_cannot_be_hosted(api: Api):
    host = api.host()
    session, _ = _play(api, host, nicknames=("Ada",))
    old = session["quiz"]["id"]
    api.put(f"/api/v1/quizzes/{old}", {"title": "New", "questions": sample_questions()}, token=host.token,
            expect=200)
    api.post(f"/api/v1/quizzes/{old}/sessions", token=host.token, expect=404)


def test_a_deleted_quizs_pictures_go_unless_a_copy_shows_them(api: Api, engine):
    from tests.helpers import tiny_png

    host = api.host()

    def picture() -> str:
        response = api.client.post("/api/v1/images", data=tiny_png(), content_type="image/png",
                                   headers={"Authorization": f"Bearer {host.token}"})
        assert response.status_code == 201
        return response.get_json()["id"]

    alone, shared = picture(), picture()
    questions = sample_questions(2)
    questions[0]["image_id"], questions[1]["image_id"] = alone, shared
    quiz = api.quiz(host, questions)
    copy = api.post(f"/api/v1/quizzes/{quiz['id']}/copy", token=host.token, expect=201).get_json()
    api.put(f"/api/v1/quizzes/{copy['id']}", {"title": "Copy", "questions": [
        {**sample_questions(1)[0], "image_id": shared}]}, token=host.token, expect=200)
    api.delete(f"/api/v1/quizzes/{quiz['id']}", token=host.token, expect=200)
    assert api.client.get(f"/images/{alone}").status_code == 404
    assert api.client.get(f"/images/{shared}").status_code == 200


def test_an_abandoned_game_is_kept_from_its_last_question(api: Api, engine):
    host = api.host()
    session = api.live_session(host)
    api.join(session["id"], api.guest())
    api.next_question(session["id"], host)
    with engine.begin() as c:  # created long ago, but a question was shown yesterday: kept
        c.execute(text("UPDATE quiz_sessions SET created_at = created_at - interval '40 days', "
                       "question_shown_at = question_shown_at - interval '1 day' WHERE id = :s"),
                  {"s": session["id"]})
    while purge_expired_sessions(engine, retention_days=30):
        pass
    assert _rows(engine, session["id"])["quiz_sessions"] == 1
