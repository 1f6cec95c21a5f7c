"""Score writes: one function for every path (HTTP single and batch, Kafka ingestion, GraphQL), one
transaction per call, one result (or error) per submission, in order.

In the transaction: each board's open period is locked FOR KEY SHARE (periods.py), then the
submissions' ids are claimed (a retry with the same id and payload gets the original result, another
payload 409 submission_conflict), then the entries are upserted with the mode's math in SQL, one
statement per (mode, sort order) over arrays, each changed entry writing its `entry_changed` event
(its resulting state: score, tie position, version) in the same statement. An entry changes only when
its score does (best: strictly better; replace: different; increment: a non-zero amount), and only
then takes a new tie position from a sequence: who reached a score first ranks first, everywhere.
A submission that changes nothing writes no event, so nothing downstream moves.

Concurrent requests of a web process are committed together (`ScoreBatcher`, app/group_commit.py):
one transaction, one flush, each request still answered with its own results.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from app.events import EntryRemoved
from app.group_commit import CommitFailed, GroupCommit, commit
from app.ids import NEW_ID_SQL
from app.leaderboards.domain import is_exact
from app.leaderboards.periods import lock_open_periods, roll_period
from app.metrics import SCORE_WRITES
from app.services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError, Unprocessable
from app.services.outbox import count_committed, outbox_insert, record_event

# Rolling an ended period and writing again: a write never waits on more than this many boundaries.
_ATTEMPTS = 3


@dataclass(frozen=True)
class Submission:
    leaderboard_id: str
    player_id: str
    score: int
    display_name: str | None = None
    metadata: dict[str, Any] | None = None
    submission_id: str | None = None
    action: str | None = None  # a player's own action (kept in player_activity)

    def fingerprint(self) -> str:
        """What makes two submissions under one submission id the same submission."""
        canonical = json.dumps([self.leaderboard_id, self.player_id, self.score, self.display_name, self.metadata,
                                self.action], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Authority:
    """Who writes: a board's owner (or one of their API keys), a player reporting their own action on
    a board that allows it, or the anonymous clients of seed 000, on `boards` only."""

    owner_id: uuid.UUID | None = None
    self_report: bool = False
    boards: frozenset[str] | None = None

    def check(self, board: Any, submission: Submission) -> None:
        if self.boards is not None and board.id not in self.boards:
            raise Forbidden("forbidden", "this client may only write to " + ", ".join(sorted(self.boards)))
        if self.self_report:
            if board.self_report_max is None:
                raise Forbidden("self_report_not_allowed", "players may not report scores on this board")
            if not 0 <= submission.score <= board.self_report_max:
                raise Unprocessable("invalid_score", f"an action adds 0 to {board.self_report_max} points")
        elif self.owner_id is not None and board.owner_id != self.owner_id:
            raise Forbidden("not_owner", "only the board's owner (or its API keys) can write scores to it")


@dataclass(frozen=True)
class ScoreResult:
    leaderboard_id: str
    period: str
    player_id: str
    outcome: str  # "changed" or "unchanged"
    score: int
    previous_score: int | None
    version: int | None = None  # the entry's version once changed: the board shows it from then on
    replayed: bool = False  # a retry: the original result of this submission id

    def view(self) -> dict[str, Any]:
        return {"leaderboard_id": self.leaderboard_id, "period": self.period, "player_id": self.player_id,
                "outcome": self.outcome, "score": self.score, "previous_score": self.previous_score}


def _upsert_sql(mode: str, sort_order: str):
    """The upsert of one (mode, sort order): the mode's math, and each changed entry's event."""
    new_score = {"increment": "e.score + EXCLUDED.score", "replace": "EXCLUDED.score", "best": "EXCLUDED.score"}[mode]
    better = ">" if sort_order == "desc" else "<"
    changed = {"increment": "EXCLUDED.score <> 0", "replace": "EXCLUDED.score <> e.score",
               "best": f"EXCLUDED.score {better} e.score"}[mode]
    payload = ("jsonb_build_object('period', u.period, 'player_id', u.player_id, 'score', u.score, 'tie_seq', "
               "u.tie_seq, 'version', u.version, 'display_name', u.display_name, 'reached_at', u.reached_at)")
    return text(f"""
        WITH input AS (
            SELECT * FROM unnest(CAST(:boards AS text[]), CAST(:periods AS text[]), CAST(:players AS text[]),
                                 CAST(:scores AS bigint[]), CAST(:names AS text[]), CAST(:metas AS jsonb[]))
                AS t(leaderboard_id, period, player_id, score, display_name, metadata)
        ), upserted AS (
            INSERT INTO leaderboard_entries AS e (leaderboard_id, period, player_id, score, previous_score, tie_seq,
                                                  version, display_name, metadata, reached_at)
            SELECT leaderboard_id, period, player_id, score, NULL, nextval('leaderboard_tie_seq'), 1, display_name,
                   metadata, clock_timestamp()
            FROM input ORDER BY leaderboard_id, player_id
            ON CONFLICT (leaderboard_id, period, player_id) DO UPDATE SET
                previous_score = e.score,
                score = CASE WHEN e.score IS NULL THEN EXCLUDED.score ELSE {new_score} END,
                tie_seq = EXCLUDED.tie_seq, version = e.version + 1, reached_at = EXCLUDED.reached_at,
                display_name = coalesce(EXCLUDED.display_name, e.display_name),
                metadata = coalesce(EXCLUDED.metadata, e.metadata)
            WHERE e.score IS NULL OR {changed}
            RETURNING e.leaderboard_id, e.period, e.player_id, e.score, e.previous_score, e.tie_seq, e.version,
                      e.display_name, e.reached_at
        ), event AS (
            {outbox_insert(NEW_ID_SQL, "u.leaderboard_id", "'entry_changed'", payload, source="upserted u")}
        )
        SELECT leaderboard_id, player_id, score, previous_score, version FROM upserted""")


def _passes(indexes: list[int], submissions: list[Submission]) -> list[list[int]]:
    """Split the writes so that no statement touches one entry twice (the k-th write of each entry in pass k)."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    passes: list[list[int]] = []
    for i in indexes:
        key = (submissions[i].leaderboard_id, submissions[i].player_id)
        if seen[key] == len(passes):
            passes.append([])
        passes[seen[key]].append(i)
        seen[key] += 1
    return passes


class _Write:
    """One attempt of `submit_scores`, inside its transaction."""

    def __init__(self, connection: Connection, submissions: list[Submission], authorities: list[Authority],
                 boards: dict[str, Any]):
        self.connection = connection
        self.submissions = submissions
        self.authorities = authorities
        self.boards = boards
        self.results: list[ScoreResult | ServiceError | None] = [None] * len(submissions)
        self.changed = 0
        self.claimed: list[int] = []  # the submissions whose id this write claimed

    def claim_submission_ids(self, indexes: list[int]) -> list[int]:
        """Claim each submission id; those taken already get their original result or a conflict.
        Returns the indexes still to write."""
        claiming = [i for i in indexes if self.submissions[i].submission_id]
        if not claiming:
            return indexes
        first: dict[tuple[str, str], int] = {}
        for i in claiming:
            first.setdefault((self.submissions[i].leaderboard_id, self.submissions[i].submission_id), i)
        keys = list(first)
        claimed = {(r.leaderboard_id, r.submission_id) for r in self.connection.execute(text("""
            INSERT INTO score_submissions (leaderboard_id, submission_id, fingerprint, result)
            SELECT * FROM unnest(CAST(:boards AS text[]), CAST(:ids AS text[]), CAST(:prints AS text[]),
                                 CAST(:results AS jsonb[]))
            ON CONFLICT DO NOTHING RETURNING leaderboard_id, submission_id"""), {
            "boards": [k[0] for k in keys], "ids": [k[1] for k in keys],
            "prints": [self.submissions[first[k]].fingerprint() for k in keys], "results": ["{}"] * len(keys)})}
        taken = [k for k in keys if k not in claimed]
        stored = {}
        if taken:
            stored = {(r.leaderboard_id, r.submission_id): r for r in self.connection.execute(text("""
                SELECT s.leaderboard_id, s.submission_id, s.fingerprint, s.result FROM score_submissions s
                JOIN unnest(CAST(:boards AS text[]), CAST(:ids AS text[])) AS t(b, i)
                  ON s.leaderboard_id = t.b AND s.submission_id = t.i"""),
                {"boards": [k[0] for k in taken], "ids": [k[1] for k in taken]})}
        writing = []
        for i in indexes:
            submission = self.submissions[i]
            key = (submission.leaderboard_id, submission.submission_id)
            if not submission.submission_id:
                writing.append(i)
            elif key in claimed and first[key] == i:
                writing.append(i)
                self.claimed.append(i)
            elif key in stored:
                self.results[i] = self._replay(submission, stored[key].fingerprint, stored[key].result)
            else:  # the same id earlier in this batch: its result, once written
                self.results[i] = ("same_as", first[key])  # type: ignore[assignment]
        return writing

    def _replay(self, submission: Submission, fingerprint: str, result: dict[str, Any]) -> ScoreResult | ServiceError:
        if fingerprint != submission.fingerprint():
            return Conflict("submission_conflict", "this submission_id was used for another submission")
        return ScoreResult(**result, replayed=True)

    def upsert(self, indexes: list[int]) -> None:
        for batch in _passes(indexes, self.submissions):
            groups: dict[tuple[str, str], list[int]] = defaultdict(list)
            for i in batch:
                board = self.boards[self.submissions[i].leaderboard_id]
                groups[(board.update_mode, board.sort_order)].append(i)
            for (mode, order), group in groups.items():
                try:
                    with self.connection.begin_nested():
                        self._upsert(mode, order, group)
                except IntegrityError:  # an increment left the exact range: find which, alone
                    for i in group:
                        try:
                            with self.connection.begin_nested():
                                self._upsert(mode, order, [i])
                        except IntegrityError:
                            self.results[i] = Unprocessable("score_overflow", "the increment would leave the exact "
                                                            "range of scores (±(2^53 - 1))")

    def _upsert(self, mode: str, order: str, group: list[int]) -> None:
        subs = [self.submissions[i] for i in group]
        rows = self.connection.execute(_upsert_sql(mode, order), {
            "boards": [s.leaderboard_id for s in subs],
            "periods": [self.boards[s.leaderboard_id].period for s in subs],
            "players": [s.player_id for s in subs], "scores": [s.score for s in subs],
            "names": [s.display_name for s in subs],
            "metas": [json.dumps(s.metadata) if s.metadata is not None else None for s in subs]}).all()
        written = {(r.leaderboard_id, r.player_id): r for r in rows}
        self.changed += len(rows)
        unchanged = []
        for i, s in zip(group, subs):
            row = written.get((s.leaderboard_id, s.player_id))
            if row is None:
                unchanged.append(i)
            else:
                self.results[i] = ScoreResult(s.leaderboard_id, self.boards[s.leaderboard_id].period, s.player_id,
                                              "changed", row.score, row.previous_score, row.version)
        if unchanged:
            self._read_unchanged(unchanged)

    def _read_unchanged(self, indexes: list[int]) -> None:
        subs = [self.submissions[i] for i in indexes]
        current = {(r.leaderboard_id, r.player_id): r.score for r in self.connection.execute(text("""
            SELECT e.leaderboard_id, e.player_id, e.score FROM leaderboard_entries e
            JOIN unnest(CAST(:boards AS text[]), CAST(:periods AS text[]), CAST(:players AS text[])) AS t(b, p, pl)
              ON e.leaderboard_id = t.b AND e.period = t.p AND e.player_id = t.pl"""), {
            "boards": [s.leaderboard_id for s in subs], "periods": [self.boards[s.leaderboard_id].period for s in subs],
            "players": [s.player_id for s in subs]})}
        for i, s in zip(indexes, subs):
            score = current[(s.leaderboard_id, s.player_id)]
            self.results[i] = ScoreResult(s.leaderboard_id, self.boards[s.leaderboard_id].period, s.player_id,
                                          "unchanged", score, score)

    def record_activity(self, indexes: list[int]) -> None:
        acted = [i for i in indexes if self.submissions[i].action and isinstance(self.results[i], ScoreResult)]
        if acted:
            self.connection.execute(text("""
                INSERT INTO player_activity (leaderboard_id, player_id, action, points)
                SELECT * FROM unnest(CAST(:boards AS text[]), CAST(:players AS text[]), CAST(:actions AS text[]),
                                     CAST(:points AS bigint[]))"""), {
                "boards": [self.submissions[i].leaderboard_id for i in acted],
                "players": [self.submissions[i].player_id for i in acted],
                "actions": [self.submissions[i].action for i in acted],
                "points": [self.submissions[i].score for i in acted]})

    def store_results(self) -> None:
        """Keep the result of each submission id this write claimed, for its retries; an id whose write
        failed is freed."""
        for i, result in enumerate(self.results):
            if isinstance(result, tuple):  # the same id earlier in this batch
                self.results[i] = self._copy_of(self.results[result[1]], self.submissions[i],
                                                self.submissions[result[1]])
        kept = self.claimed
        ok = [i for i in kept if isinstance(self.results[i], ScoreResult)]
        if ok:
            self.connection.execute(text("""
                UPDATE score_submissions s SET result = CAST(t.result AS jsonb)
                FROM unnest(CAST(:boards AS text[]), CAST(:ids AS text[]), CAST(:results AS text[])) AS t(b, i, result)
                WHERE s.leaderboard_id = t.b AND s.submission_id = t.i"""), {
                "boards": [self.submissions[i].leaderboard_id for i in ok],
                "ids": [self.submissions[i].submission_id for i in ok],
                "results": [json.dumps(self.results[i].view()) for i in ok]})
        failed = [i for i in kept if not isinstance(self.results[i], ScoreResult)]
        if failed:
            self.connection.execute(text("""
                DELETE FROM score_submissions s USING unnest(CAST(:boards AS text[]), CAST(:ids AS text[])) AS t(b, i)
                WHERE s.leaderboard_id = t.b AND s.submission_id = t.i"""), {
                "boards": [self.submissions[i].leaderboard_id for i in failed],
                "ids": [self.submissions[i].submission_id for i in failed]})

    def _copy_of(self, original: Any, submission: Submission, first: Submission) -> ScoreResult | ServiceError:
        if not isinstance(original, ScoreResult):
            return original
        if submission.fingerprint() != first.fingerprint():
            return Conflict("submission_conflict", "this submission_id was used for another submission")
        return ScoreResult(**original.view(), replayed=True)


@dataclass(frozen=True)
class ScoreRequest:
    """The submissions of one request (all in one transaction), who sends them and from where."""

    submissions: tuple[Submission, ...]
    authority: Authority
    source: str = "http"  # for score_writes_total: http, batch, self_report, kafka...


def submit_scores(engine: Engine, submissions: list[Submission], authority: Authority, *,
                  final_top: int = 10, source: str = "http") -> list[ScoreResult | ServiceError]:
    """Commit `submissions` in one transaction; each gets its result or the error that refused it."""
    return submit_score_requests(engine, [ScoreRequest(tuple(submissions), authority, source)],
                                 final_top=final_top)[0]


def submit_score_requests(engine: Engine, requests: list[ScoreRequest], *,
                          final_top: int = 10) -> list[list[ScoreResult | ServiceError]]:
    """Commit the submissions of every request in one transaction; each request gets one result (or the
    error that refused it) per submission, in order. `final_top`: the standings carried by the event of a
    period this write finds ended and closes.

    Raises CommitFailed when the COMMIT failed (outcome unknown), SQLAlchemyError when a statement
    failed before it (nothing was recorded)."""
    submissions = [s for r in requests for s in r.submissions]
    authorities = [r.authority for r in requests for _ in r.submissions]
    for _ in range(_ATTEMPTS):
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                boards = lock_open_periods(connection, [s.leaderboard_id for s in submissions])
                ended = [board.id for board in boards.values() if board.ended]
                if not ended:
                    write = _Write(connection, submissions, authorities, boards)
                    indexes = write.claim_submission_ids(write_indexes(write))
                    write.upsert(indexes)
                    write.record_activity(range(len(submissions)))
                    write.store_results()
            except BaseException:
                transaction.rollback()
                raise
            commit(transaction)
        if not ended:
            count_committed("entry_changed", write.changed)
            results: list[list[ScoreResult | ServiceError]] = []
            position = 0
            for request in requests:
                mine = write.results[position:position + len(request.submissions)]
                position += len(request.submissions)
                for result in mine:
                    SCORE_WRITES.labels(_outcome(result), request.source).inc()
                results.append(mine)  # type: ignore[arg-type]
            return results
        for board_id in ended:  # the period ended before this write: count it in the next one
            roll_period(engine, board_id, final_top=final_top)
    raise Conflict("period_busy", "the board's period kept ending during the write; send it again")


class ScoreBatcher(GroupCommit[ScoreRequest, list]):
    """Group commit of score requests (app/group_commit.py). A request whose every submission has a
    submission_id can be written again safely; one without cannot tell, after a failed COMMIT, whether
    an increment counted, so its outcome is unknown."""

    what = "score"

    def __init__(self, engine: Engine, max_batch: int = 200, final_top: int = 10):
        super().__init__(engine, max_batch)
        self.final_top = final_top

    def commit_many(self, requests: list[ScoreRequest]) -> list[list[ScoreResult | ServiceError]]:
        return submit_score_requests(self.engine, requests, final_top=self.final_top)

    def retry_is_safe(self, request: ScoreRequest) -> bool:
        return all(s.submission_id for s in request.submissions)

    def recorded(self, request: ScoreRequest) -> list[ScoreResult | ServiceError] | None:
        if not self.retry_is_safe(request):
            return None
        try:
            return self.commit_many([request])[0]  # the stored results of its submission ids, or written now
        except CommitFailed:
            return None


def _outcome(result: ScoreResult | ServiceError) -> str:
    if isinstance(result, ServiceError):
        return "refused"
    return "replayed" if result.replayed else result.outcome


def write_indexes(write: _Write) -> list[int]:
    """Check each submission (its board, who writes, its score); the refused get their error."""
    indexes = []
    for i, submission in enumerate(write.submissions):
        board = write.boards.get(submission.leaderboard_id)
        try:
            if board is None:
                raise NotFound("not_found", f"no board {submission.leaderboard_id!r}")
            write.authorities[i].check(board, submission)
            if not is_exact(submission.score):
                raise Invalid("invalid_score", "scores are integers within ±(2^53 - 1)")
        except ServiceError as exc:
            write.results[i] = exc
            continue
        indexes.append(i)
    return indexes


def remove_player(engine: Engine, owner_id: uuid.UUID, board_id: str, player_id: str) -> None:
    """Take a player off the board's current period; the entry keeps its version, so no stale event
    can bring it back, and a later score starts from nothing."""
    with engine.begin() as connection:
        board = lock_open_periods(connection, [board_id]).get(board_id)
        if board is None:
            raise NotFound("not_found", "no such board")
        if board.owner_id != owner_id:
            raise Forbidden("not_owner", "only the board's owner can remove a player")
        row = connection.execute(text("""
            UPDATE leaderboard_entries SET previous_score = score, score = NULL, version = version + 1
            WHERE leaderboard_id = :b AND period = :p AND player_id = :player AND score IS NOT NULL
            RETURNING version"""), {"b": board_id, "p": board.period, "player": player_id}).one_or_none()
        if row is None:
            raise NotFound("not_found", "no such player on the board")
        record_event(connection, board_id, "entry_removed",
                     EntryRemoved(period=board.period, player_id=player_id, version=row.version))
