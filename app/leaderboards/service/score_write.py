"""One attempt of a score write, inside its transaction (`ScoreWrite`, run by scores.py): the submissions
checked, their ids claimed, the entries they name locked and read, each entry's submissions folded in
order by the board's mode (domain.EntryFold), and each changed entry written once with its event."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from app.core.errors import Conflict, Invalid, NotFound, ServiceError, Unavailable, Unprocessable
from app.core.ids import NEW_ID_SQL
from app.core.outbox import outbox_insert
from app.leaderboards.domain import EntryFold, is_exact
from app.leaderboards.events import LEADERBOARD_EVENTS
from app.leaderboards.submissions import Authority, ScoreResult, Submission

# Each entry a write names, locked in one order. DO UPDATE ... WHERE false locks an entry that exists
# without writing it; one that does not is inserted without a score (version 0: no entry has it), which
# this write fills, or deletes when no submission of the write was applied to it.
_LOCK_ENTRIES = text("""
    INSERT INTO leaderboard_entries AS e (leaderboard_id, period, player_id, score, tie_seq, version,
                                          reached_at)
    SELECT b, p, pl, NULL, 0, 0, clock_timestamp()
    FROM unnest(CAST(:boards AS text[]), CAST(:periods AS text[]), CAST(:players AS text[])) AS t(b, p, pl)
    ORDER BY b, pl
    ON CONFLICT (leaderboard_id, period, player_id) DO UPDATE SET version = e.version WHERE false""")

_READ_ENTRIES = text("""
    SELECT e.leaderboard_id, e.player_id, e.score, e.version FROM leaderboard_entries e
    JOIN unnest(CAST(:boards AS text[]), CAST(:periods AS text[]), CAST(:players AS text[])) AS t(b, p, pl)
      ON e.leaderboard_id = t.b AND e.period = t.p AND e.player_id = t.pl""")

_DROP_UNFILLED = text("""
    DELETE FROM leaderboard_entries e
    USING unnest(CAST(:boards AS text[]), CAST(:periods AS text[]), CAST(:players AS text[])) AS t(b, p, pl)
    WHERE e.leaderboard_id = t.b AND e.period = t.p AND e.player_id = t.pl AND e.version = 0""")

# Each changed entry's resulting state, and its event. The tie positions are taken in the order of the
# entries' last changes (nextval runs after the ORDER BY): who reached a score first ranks first.
_PAYLOAD = ("jsonb_build_object('period', u.period, 'player_id', u.player_id, 'score', u.score, 'tie_seq', "
            "u.tie_seq, 'version', u.version, 'display_name', u.display_name, 'reached_at', u.reached_at, "
            "'metadata', u.metadata)")
_WRITE_ENTRIES = text(f"""
    WITH input AS (
        SELECT t.*, nextval('leaderboard_tie_seq') AS tie_seq
        FROM unnest(CAST(:boards AS text[]), CAST(:periods AS text[]), CAST(:players AS text[]),
                    CAST(:scores AS bigint[]), CAST(:previous AS bigint[]), CAST(:versions AS bigint[]),
                    CAST(:names AS text[]), CAST(:metas AS jsonb[]), CAST(:positions AS integer[]),
                    CAST(:traceparents AS text[]))
            AS t(leaderboard_id, period, player_id, score, previous_score, version, display_name, metadata,
                 position, traceparent)
        ORDER BY position
    ), written AS (
        UPDATE leaderboard_entries e SET score = i.score, previous_score = i.previous_score,
            tie_seq = i.tie_seq, version = i.version, display_name = coalesce(i.display_name, e.display_name),
            metadata = coalesce(i.metadata, e.metadata), reached_at = clock_timestamp()
        FROM input i
        WHERE e.leaderboard_id = i.leaderboard_id AND e.period = i.period AND e.player_id = i.player_id
        RETURNING e.leaderboard_id, e.period, e.player_id, e.score, e.tie_seq, e.version, e.display_name,
                  e.reached_at, e.metadata, i.traceparent
    ), event AS (
        {outbox_insert(LEADERBOARD_EVENTS, NEW_ID_SQL, "u.leaderboard_id", "'entry_changed'", _PAYLOAD,
                       traceparent="u.traceparent", source="written u")}
    )
    SELECT count(*) FROM written""")

_OVERFLOW = "the increment would leave the exact range of scores (±(2^53 - 1))"


class ScoreWrite:
    """One attempt of `submit_scores`, inside its transaction."""

    def __init__(self, connection: Connection, submissions: list[Submission], authorities: list[Authority],
                 boards: dict[str, Any]):
        self.connection = connection
        self.submissions = submissions
        self.authorities = authorities
        self.boards = boards
        self.results: list[ScoreResult | ServiceError | None] = [None] * len(submissions)
        self.changed = 0
        self.claimed: set[tuple[str, str]] = set()  # the submission ids this write claimed
        self.holders: dict[tuple[str, str], int] = {}  # of those, the submission that holds each

    def _id_of(self, i: int) -> tuple[str, str] | None:
        submission = self.submissions[i]
        return (submission.leaderboard_id, submission.submission_id) if submission.submission_id else None

    def claim_submission_ids(self, indexes: list[int]) -> list[int]:
        """Claim each submission id; those taken before this write get their original result or a
        conflict. Returns the indexes still to apply (an id this write claimed goes to the first of them
        that is applied: `fold` decides)."""
        first: dict[tuple[str, str], int] = {}
        for i in indexes:
            if (key := self._id_of(i)) is not None:
                first.setdefault(key, i)
        if not first:
            return indexes
        keys = sorted(first)  # one order of claims in every transaction
        self.claimed = {(r.leaderboard_id, r.submission_id) for r in self.connection.execute(text("""
            INSERT INTO score_submissions (leaderboard_id, submission_id, fingerprint, result)
            SELECT * FROM unnest(CAST(:boards AS text[]), CAST(:ids AS text[]), CAST(:prints AS text[]),
                                 CAST(:results AS jsonb[])) ORDER BY 1, 2
            ON CONFLICT DO NOTHING RETURNING leaderboard_id, submission_id"""), {
            "boards": [k[0] for k in keys], "ids": [k[1] for k in keys],
            "prints": [self.submissions[first[k]].fingerprint() for k in keys],
            "results": ["{}"] * len(keys)})}
        taken = [k for k in keys if k not in self.claimed]
        stored = {}
        if taken:
            stored = {(r.leaderboard_id, r.submission_id): r for r in self.connection.execute(text("""
                SELECT s.leaderboard_id, s.submission_id, s.fingerprint, s.result FROM score_submissions s
                JOIN unnest(CAST(:boards AS text[]), CAST(:ids AS text[])) AS t(b, i)
                  ON s.leaderboard_id = t.b AND s.submission_id = t.i"""),
                {"boards": [k[0] for k in taken], "ids": [k[1] for k in taken]})}
        applying = []
        for i in indexes:
            key = self._id_of(i)
            if key is None or key in self.claimed:
                applying.append(i)
            elif key in stored:
                self.results[i] = self._replay(self.submissions[i], stored[key].fingerprint,
                                               stored[key].result)
            else:  # its claim vanished between the two statements (the retention, or a failed write)
                self.results[i] = Unavailable("unavailable", "the submission was not recorded; send it again")
        return applying

    def _replay(self, submission: Submission, fingerprint: str,
                result: dict[str, Any]) -> ScoreResult | ServiceError:
        if fingerprint != submission.fingerprint():
            return Conflict("submission_conflict", "this submission_id was used for another submission")
        return ScoreResult(**result, replayed=True)

    def _entry_params(self, keys: list[tuple[str, str]]) -> dict[str, list]:
        return {"boards": [b for b, _ in keys], "periods": [self.boards[b].period for b, _ in keys],
                "players": [p for _, p in keys]}

    def apply(self, indexes: list[int]) -> None:
        """Lock the entries, fold each one's submissions in order, write each changed entry once."""
        keys = sorted({(self.submissions[i].leaderboard_id, self.submissions[i].player_id) for i in indexes})
        if not keys:
            return
        self.connection.execute(_LOCK_ENTRIES, self._entry_params(keys))
        found = {(r.leaderboard_id, r.player_id): (r.score, r.version)
                 for r in self.connection.execute(_READ_ENTRIES, self._entry_params(keys))}
        entries = self.fold(indexes, found)
        changed = sorted((e.last_change, key) for key, e in entries.items() if e.changed)
        unfilled = [key for key in keys
                    if found[key][1] == 0 and not (key in entries and entries[key].changed)]
        if unfilled:
            self.connection.execute(_DROP_UNFILLED, self._entry_params(unfilled))
        if changed:
            folds = [entries[key] for _, key in changed]
            self.changed = self.connection.execute(_WRITE_ENTRIES, {
                **self._entry_params([key for _, key in changed]), "scores": [e.score for e in folds],
                "previous": [e.previous_score for e in folds], "versions": [e.version for e in folds],
                "names": [e.display_name for e in folds],
                "metas": [json.dumps(e.metadata) if e.metadata is not None else None for e in folds],
                "positions": [position for position, _ in changed],
                # An entry's event is its last change's: that submission's trace.
                "traceparents": [self.submissions[i].traceparent for i, _ in changed]}).scalar_one()

    def fold(self, indexes: list[int], found: dict[tuple[str, str], tuple[int | None, int]]
             ) -> dict[tuple[str, str], EntryFold]:
        """Each submission applied in order to its entry's state (domain.EntryFold), as if one at a time: a
        submission id applied earlier in this write answers its later uses with its result (or a
        conflict), and one whose use left the exact range is free for the next."""
        entries: dict[tuple[str, str], EntryFold] = {}
        for i in indexes:
            submission = self.submissions[i]
            key = self._id_of(i)
            if key in self.holders:
                self.results[i] = self._copy_of(self.holders[key], i)  # type: ignore[index]
                continue
            board = self.boards[submission.leaderboard_id]
            entry_key = (submission.leaderboard_id, submission.player_id)
            if (entry := entries.get(entry_key)) is None:
                entry = entries[entry_key] = EntryFold(board.update_mode, board.sort_order, *found[entry_key])
            step = entry.apply(i, submission.score, submission.display_name, submission.metadata)
            if step is None:
                self.results[i] = Unprocessable("score_overflow", _OVERFLOW)
                continue
            self.results[i] = ScoreResult(submission.leaderboard_id, board.period, submission.player_id,
                                          "changed" if step.changed else "unchanged", step.score,
                                          step.previous_score, step.version)
            if key is not None:
                self.holders[key] = i
        return entries

    def _copy_of(self, holder: int, i: int) -> ScoreResult | ServiceError:
        if self.submissions[i].fingerprint() != self.submissions[holder].fingerprint():
            return Conflict("submission_conflict", "this submission_id was used for another submission")
        return ScoreResult(**self.results[holder].view(), replayed=True)  # type: ignore[union-attr]

    def record_activity(self) -> None:
        """Keep each action applied (changed or not); a retry's action is kept once, by its first use."""
        acted = [i for i, result in enumerate(self.results) if self.submissions[i].action
                 and isinstance(result, ScoreResult) and not result.replayed]
        if acted:
            self.connection.execute(text("""
                INSERT INTO player_activity (leaderboard_id, player_id, action, points)
                SELECT b, p, a, pts FROM unnest(CAST(:boards AS text[]), CAST(:players AS text[]),
                                                CAST(:actions AS text[]), CAST(:points AS bigint[]))
                    WITH ORDINALITY AS t(b, p, a, pts, n) ORDER BY n"""), {
                "boards": [self.submissions[i].leaderboard_id for i in acted],
                "players": [self.submissions[i].player_id for i in acted],
                "actions": [self.submissions[i].action for i in acted],
                "points": [self.submissions[i].score for i in acted]})

    def store_results(self) -> None:
        """Keep, for its retries, the submission that holds each id this write claimed (its fingerprint and
        result); an id no submission could use is freed."""
        held = sorted(key for key in self.claimed if key in self.holders)
        if held:
            self.connection.execute(text("""
                UPDATE score_submissions s SET fingerprint = t.print, result = CAST(t.result AS jsonb)
                FROM unnest(CAST(:boards AS text[]), CAST(:ids AS text[]), CAST(:prints AS text[]),
                            CAST(:results AS text[])) AS t(b, i, print, result)
                WHERE s.leaderboard_id = t.b AND s.submission_id = t.i"""), {
                "boards": [k[0] for k in held], "ids": [k[1] for k in held],
                "prints": [self.submissions[self.holders[k]].fingerprint() for k in held],
                "results": [json.dumps(self.results[self.holders[k]].view()) for k in held]})  # type: ignore[union-attr]
        freed = sorted(key for key in self.claimed if key not in self.holders)
        if freed:
            self.connection.execute(text("""
                DELETE FROM score_submissions s
                USING unnest(CAST(:boards AS text[]), CAST(:ids AS text[])) AS t(b, i)
                WHERE s.leaderboard_id = t.b AND s.submission_id = t.i"""), {
                "boards": [k[0] for k in freed], "ids": [k[1] for k in freed]})


def write_indexes(write: ScoreWrite) -> list[int]:
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
