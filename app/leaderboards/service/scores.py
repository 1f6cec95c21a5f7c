"""Score writes: one function for every path (HTTP single and batch, Kafka ingestion, GraphQL), one
transaction per call, one result (or error) per submission, in order.

In the transaction (one attempt: score_write.py): each board's open period is locked FOR KEY SHARE
(periods.py), then the submissions' ids are claimed (a retry with the same id and payload gets the
original result, another payload 409 submission_conflict), then the entries the submissions name are
locked, in one order, and read. Each entry's submissions are folded in order by the board's mode
(domain.EntryFold): every submission gets the result applying them one at a time would give, and the entry
is written once, with its resulting state and one `entry_changed` event (score, tie position, version), by
one statement for the whole write. An entry changes only when its score does (best: strictly better;
replace: different; increment: a non-zero amount), and then takes a new tie position from a sequence, in
the order of the entries' last changes: who reached a score first ranks first, everywhere. A submission
that changes nothing writes no event, so nothing downstream moves. A batch naming one player 1,000 times
is one row written, not 1,000.

Concurrent requests of a web process are committed together (`ScoreBatcher`, batcher.py): one transaction,
one flush, each request still answered with its own results.
"""
from __future__ import annotations

import uuid

from sqlalchemy import Engine, text

from app.core.errors import Conflict, Forbidden, NotFound, ServiceError
from app.core.group_commit import commit
from app.core.metrics import SCORE_WRITES
from app.core.outbox import count_committed, record_event
from app.leaderboards.events import LEADERBOARD_EVENTS, EntryRemoved
from app.leaderboards.service.periods import lock_open_periods, roll_period
from app.leaderboards.service.score_write import ScoreWrite, write_indexes
from app.leaderboards.submissions import Authority, ScoreRequest, ScoreResult, Submission

# Rolling an ended period and writing again: a write never waits on more than this many boundaries.
_BOUNDARIES = 3


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
    for _ in range(_BOUNDARIES):
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                boards = lock_open_periods(connection, [s.leaderboard_id for s in submissions])
                ended = [board.id for board in boards.values() if board.ended]
                if not ended:
                    write = ScoreWrite(connection, submissions, authorities, boards)
                    write.apply(write.claim_submission_ids(write_indexes(write)))
                    write.record_activity()
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


def _outcome(result: ScoreResult | ServiceError) -> str:
    if isinstance(result, ServiceError):
        return "refused"
    return "replayed" if result.replayed else result.outcome


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
        record_event(connection, LEADERBOARD_EVENTS, board_id, "entry_removed",
                     EntryRemoved(period=board.period, player_id=player_id, version=row.version))
