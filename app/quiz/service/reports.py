"""A game's report for its host: per question, how the room answered (the hardest first); per player,
how they did and what they answered to each asked question. As JSON for the page and a download, and
as CSV for a spreadsheet."""
from __future__ import annotations

import csv
import io
import re
import unicodedata
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.quiz.board.scores import RANK_ORDER_SQL
from app.quiz.service.sessions import lock_for_host

# A spreadsheet runs a cell starting with one of these as a formula; nicknames are players' own text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Where a spreadsheet may start a new cell or row when it reads the file with another list separator
# (`;` or a tab in many locales) and takes our quotes as plain text.
CELL_SEPARATORS = (",", ";", "\t", "\r", "\n")
# A formula start (after optional spaces) at the start of the text or after any separator.
_SEPARATOR_CLASS = re.escape("".join(CELL_SEPARATORS))
_FORMULA_CLASS = re.escape("".join(FORMULA_STARTS))
_FORMULA_AT_A_CELL_START = re.compile(f"(?:^|(?<=[{_SEPARATOR_CLASS}]))(?= *[{_FORMULA_CLASS}])")

_QUESTIONS = text("""
    SELECT q.position, q.kind, q.text, q.choices, q.correct_choice, q.points,
           q.position <= coalesce(cur.position, -1) AS shown,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(a.choice, a.n)), '[]'::jsonb) FROM (
                SELECT a.choice, count(*) AS n FROM participant_answers a
                JOIN quiz_session_participants p
                  ON p.id = a.quiz_session_participant_id AND p.removed_at IS NULL
                WHERE a.quiz_session_id = s.id AND a.question_id = q.id GROUP BY a.choice) a)
             AS answer_counts,
           (SELECT round(avg(a.answered_ms))::int FROM participant_answers a
            JOIN quiz_session_participants p
              ON p.id = a.quiz_session_participant_id AND p.removed_at IS NULL
            WHERE a.quiz_session_id = s.id AND a.question_id = q.id) AS average_answer_ms
    FROM quiz_sessions s JOIN questions q ON q.quiz_id = s.quiz_id
    LEFT JOIN questions cur ON cur.id = s.current_question_id
    WHERE s.id = :s ORDER BY q.position""")

# Players in the board's order (board/scores.py), removed players last.
_PLAYERS = text(f"""
    SELECT p.id, p.nickname, p.score, p.removed_at IS NOT NULL AS removed,
           count(a.id) AS answered, count(a.id) FILTER (WHERE a.correct) AS correct,
           round(avg(a.answered_ms))::int AS average_answer_ms
    FROM quiz_session_participants p JOIN quiz_sessions s ON s.id = p.quiz_session_id
    LEFT JOIN participant_answers a ON a.quiz_session_participant_id = p.id
    WHERE p.quiz_session_id = :s
    GROUP BY p.id, s.id ORDER BY p.removed_at IS NOT NULL, {RANK_ORDER_SQL}""")

# Every answer of the game, by player and question position (removed players' too: the report lists them).
_ANSWERS = text("""
    SELECT a.quiz_session_participant_id AS participant_id, q.position, a.choice, a.correct, a.points,
           a.answered_ms
    FROM participant_answers a JOIN questions q ON q.id = a.question_id
    WHERE a.quiz_session_id = :s""")
# What the report's cells and the CSV show for a question a player did not answer.
NO_ANSWER = "\u2014"


def session_report(db: Session, host_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Any]:
    with db.begin():
        session = lock_for_host(db, host_id, session_id, for_update=False)
        meta = db.execute(text("""
            SELECT s.join_code, s.status, s.created_at, s.ended_at, z.title FROM quiz_sessions s
            JOIN quizzes z ON z.id = s.quiz_id WHERE s.id = :s"""), {"s": session.id}).one()
        questions = db.execute(_QUESTIONS, {"s": session.id}).all()
        players = db.execute(_PLAYERS, {"s": session.id}).all()
        answers = db.execute(_ANSWERS, {"s": session.id}).all()
    asked = [q for q in questions if q.shown]
    shaped = [_question(q) for q in questions]
    return {
        "session": {"id": str(session.id), "title": meta.title, "join_code": meta.join_code,
                    "status": meta.status, "created_at": meta.created_at.isoformat(),
                    "ended_at": meta.ended_at.isoformat() if meta.ended_at else None},
        "questions": shaped,
        "hardest_first": _hardest_first([q for q in shaped if q["shown"]]),
        "players": _ranked(players, asked, answers),
    }


def _question(row) -> dict[str, Any]:
    counts = [0] * len(row.choices)
    for choice, n in row.answer_counts:
        counts[choice] = n
    answered = sum(counts)
    correct = None if row.correct_choice is None else counts[row.correct_choice]
    return {"position": row.position, "kind": row.kind, "text": row.text, "choices": row.choices,
            "correct_choice": row.correct_choice, "shown": row.shown, "answered": answered,
            "correct": correct,
            "correct_rate": round(correct / answered, 4) if correct is not None and answered else None,
            "average_answer_ms": row.average_answer_ms, "choice_counts": counts}


def _hardest_first(asked: list[dict[str, Any]]) -> list[int]:
    """The asked questions' positions by share of correct answers, lowest first; a question nobody
    answered after those, polls (nothing to get wrong) last; ties in the quiz's order."""
    def difficulty(q: dict[str, Any]) -> tuple:
        return (q["kind"] == "poll", q["correct_rate"] is None, q["correct_rate"] or 0, q["position"])
    return [q["position"] for q in sorted(asked, key=difficulty)]


def _ranked(rows, asked, answers) -> list[dict[str, Any]]:
    """Ranked as the board ranks them (score, then who got there first); nobody ranks before scoring.
    Each with their answer to every asked question, in the quiz's order."""
    given = {(a.participant_id, a.position): a for a in answers}
    return [{"rank": position if not row.removed and row.score > 0 else None, "nickname": row.nickname,
             "score": row.score, "correct": row.correct, "answered": row.answered,
             "average_answer_ms": row.average_answer_ms, "removed": row.removed,
             "answers": [_answer(q, given.get((row.id, q.position))) for q in asked]}
            for position, row in enumerate(rows, start=1)]


def _answer(question, given) -> dict[str, Any]:
    """A player's answer to one asked question: `correct` is null for a poll, false when unanswered."""
    scored = question.kind != "poll"
    if given is None:
        return {"position": question.position, "choice": None, "choice_text": None,
                "correct": False if scored else None, "answered_ms": None, "points": None}
    return {"position": question.position, "choice": given.choice,
            "choice_text": question.choices[given.choice], "correct": given.correct if scored else None,
            "answered_ms": given.answered_ms, "points": given.points}


def report_filename(report: dict[str, Any], extension: str) -> str:
    """A download's name: the quiz's title in plain ASCII and the day the game was played."""
    ascii_title = unicodedata.normalize("NFKD", report["session"]["title"]).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60].rstrip("-") or "quiz"
    return f"{slug}-{report['session']['created_at'][:10]}.{extension}"


def spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet could run as a formula, made plain text (OWASP's CSV injection advice): a `'`
    before every formula start that begins the text or follows a separator, since a reader splitting on
    `;` or a tab would start a cell there. Numbers stay numbers."""
    if isinstance(value, str):
        return _FORMULA_AT_A_CELL_START.sub("'", value)
    return value


def _seconds(ms: int | None, digits: int) -> float | None:
    return None if ms is None else round(ms / 1000, digits)


def report_csv(report: dict[str, Any]) -> str:
    """Players first (what a teacher looks for), then the questions hardest first, then every player's
    answer to every asked question, one row each: a long list sorts, filters and pivots in a spreadsheet
    with one value a cell, where a grid would need three columns (answer, correct, time) a question.
    It begins with a UTF-8 byte order mark: without one, Excel reads the file in the machine's code page
    ("ZoÃ«")."""
    out = io.StringIO()
    out.write("\ufeff")
    # Every text cell quoted, numbers bare so a spreadsheet keeps them numeric.
    sheet = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)

    def row(*cells: Any) -> None:
        sheet.writerow([spreadsheet_safe("" if c is None else c) for c in cells])

    row("rank", "nickname", "score", "correct answers", "questions answered", "average answer time (s)",
        "removed")
    for p in report["players"]:
        row(p["rank"], p["nickname"], p["score"], p["correct"], p["answered"],
            _seconds(p["average_answer_ms"], 2), "yes" if p["removed"] else "")
    row()
    questions = {q["position"]: q for q in report["questions"]}
    choices = max((len(q["choices"]) for q in report["questions"]), default=0)
    row("question", "kind", "text", "correct answer", "answered", "correct", "correct rate",
        "average answer time (s)", *(f"choice {i + 1}" for i in range(choices)))
    for q in (questions[position] for position in report["hardest_first"]):
        correct = "" if q["correct_choice"] is None else q["choices"][q["correct_choice"]]
        rate = "" if q["correct_rate"] is None else f"{q['correct_rate']:.0%}"
        row(q["position"] + 1, q["kind"], q["text"], correct, q["answered"], q["correct"], rate,
            _seconds(q["average_answer_ms"], 2),
            *(f"{text} ({n})" for text, n in zip(q["choices"], q["choice_counts"])))
    row()
    row("nickname", "question", "question text", "answer", "correct", "answer time (s)", "points")
    for p in report["players"]:
        for a in p["answers"]:
            verdict = "poll" if a["correct"] is None else "yes" if a["correct"] else "no"
            row(p["nickname"], a["position"] + 1, questions[a["position"]]["text"],
                NO_ANSWER if a["choice"] is None else a["choice_text"], verdict,
                _seconds(a["answered_ms"], 3), a["points"])
    return out.getvalue()
