"""A game's report as a teacher reads it: each player's answer to each asked question (choice, correct
or not, time), the questions hardest first, and the same as CSV and as a JSON download."""
from __future__ import annotations

import csv
import io
import re

from tests.helpers import Api, sample_questions

NO_ANSWER = "—"


def _game(api: Api, host):
    """Three asked questions of four (the second the hardest, the third a poll), three players; Zoë
    leaves the second and the poll unanswered."""
    questions = sample_questions(2) + [
        {"kind": "poll", "text": "Best season?", "choices": ["Spring", "Summer", "Autumn"]},
        sample_questions(1)[0]]
    session = api.live_session(host, questions)
    sid = session["id"]
    ada, bo, zoe = (api.join_as(sid, api.guest(), n) for n in ("Ada", "Bo", "Zoë"))
    picks = [((ada, 0), (bo, 0), (zoe, 2)), ((ada, 1), (bo, 3)), ((ada, 2), (bo, 0))]  # right: 0, then 1
    for chosen in picks:
        question = api.next_question(sid, host)
        for player, choice in chosen:
            api.answer(sid, player, question["question_id"], choice)
        api.close_question(sid, host)
    api.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    return sid


def test_the_report_gives_each_players_answer_to_each_asked_question(api: Api):
    host = api.host()
    sid = _game(api, host)
    report = api.get(f"/api/v1/sessions/{sid}/report", token=host.token, expect=200).get_json()
    by_name = {p["nickname"]: p for p in report["players"]}
    ada, zoe = by_name["Ada"], by_name["Zoë"]
    # One entry per asked question, in the quiz's order; the fourth was never asked.
    assert [a["position"] for a in ada["answers"]] == [0, 1, 2]
    first = ada["answers"][0]
    assert (first["choice"], first["choice_text"], first["correct"]) == (0, "red", True)
    assert isinstance(first["answered_ms"], int) and first["answered_ms"] >= 0 and first["points"] > 0
    wrong = by_name["Bo"]["answers"][1]
    assert (wrong["choice"], wrong["choice_text"], wrong["correct"], wrong["points"]) == (3, "gold", False, 0)
    # No answer: no choice, not correct, no time. A poll is neither right nor wrong.
    assert zoe["answers"][1] == {"position": 1, "choice": None, "choice_text": None, "correct": False,
                                 "answered_ms": None, "points": None}
    assert ada["answers"][2]["choice_text"] == "Autumn" and ada["answers"][2]["correct"] is None
    assert zoe["answers"][2]["correct"] is None and zoe["answers"][2]["choice"] is None


def test_the_report_lists_the_hardest_questions_first_with_their_average_time(api: Api):
    host = api.host()
    sid = _game(api, host)
    report = api.get(f"/api/v1/sessions/{sid}/report", token=host.token, expect=200).get_json()
    # Q2: 1 of 2 right; Q1: 2 of 3; the poll last; the unasked question not at all.
    assert report["hardest_first"] == [1, 0, 2]
    questions = report["questions"]
    assert [q["correct_rate"] for q in questions[:2]] == [round(2 / 3, 4), 0.5]
    assert all(isinstance(q["average_answer_ms"], int) for q in questions[:3])
    assert questions[3]["average_answer_ms"] is None and not questions[3]["shown"]


def _sections(body: str) -> list[list[list[str]]]:
    """The CSV's sections (players, questions, answers), split at their blank rows."""
    sections: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(body)):
        if not any(row):
            sections.append([])
        else:
            sections[-1].append(row)
    return sections


def test_the_csv_report_has_a_row_per_player_and_question_and_the_hardest_questions_first(api: Api):
    host = api.host()
    sid = _game(api, host)
    raw = api.get(f"/api/v1/sessions/{sid}/report.csv", token=host.token, expect=200).get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    players, questions, answers = _sections(raw.decode("utf-8-sig"))
    assert questions[0][:2] == ["question", "kind"] and "average answer time (s)" in questions[0]
    assert [row[0] for row in questions[1:]] == ["2", "1", "3"]  # hardest first, the poll last
    header, rows = answers[0], answers[1:]
    assert header == ["nickname", "question", "question text", "answer", "correct", "answer time (s)",
                      "points"]
    assert len(rows) == 3 * 3  # one row per player and asked question
    cells = {(row[0], row[1]): row for row in rows}
    assert cells[("Ada", "1")][3:5] == ["red", "yes"] and float(cells[("Ada", "1")][5]) >= 0
    assert cells[("Bo", "2")][3:5] == ["gold", "no"]
    assert cells[("Zoë", "2")][3:6] == [NO_ANSWER, "no", ""]
    assert cells[("Ada", "3")][3:5] == ["Autumn", "poll"] and cells[("Zoë", "3")][3:5] == [NO_ANSWER, "poll"]
    assert players[0][:3] == ["rank", "nickname", "score"] and len(players) == 1 + 3  # as before


def test_the_json_report_downloads_as_a_file_named_after_the_quiz_and_day(api: Api):
    host = api.host()
    sid = _game(api, host)
    response = api.get(f"/api/v1/sessions/{sid}/report.json", token=host.token, expect=200)
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="capitals-\d{4}-\d{2}-\d{2}\.json"', disposition), disposition
    assert response.mimetype == "application/json"
    shown = api.get(f"/api/v1/sessions/{sid}/report", token=host.token, expect=200).get_json()
    assert response.get_json() == shown
    csv_name = api.get(f"/api/v1/sessions/{sid}/report.csv", token=host.token,
                       expect=200).headers["Content-Disposition"]
    assert csv_name == disposition.replace(".json", ".csv")
    api.get(f"/api/v1/sessions/{sid}/report.json", token=api.host().token, expect=403)
