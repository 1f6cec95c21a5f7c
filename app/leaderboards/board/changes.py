"""The change feed (seed 003): when a board period's top N changed, one message on the change topic.

After a batch is applied, the worker (through the leaderboards' projection, projection.py) reads the
top N of every board period the batch touched (one read each) and compares it with the last top it
announced, kept as a digest in the period's metadata. A different top is produced to `CHANGE_TOPIC`,
keyed by board: {leaderboard_id, period, starts_at, ends_at, label, version, total, entries}. The
digest is stored only once the message is delivered, so a crash in between announces that top again
(consumers keep the newest version per board and period), and a write below the top N announces
nothing.

A period's close is announced too, from its event alone: {leaderboard_id, period, starts_at, ends_at,
label, closed_at, total, entries (its final top)}, with the header type `period_closed`, at least
once (a redelivered close is announced again, the same).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from app.core.errors import NotFound
from app.core.kafka import produce
from app.core.lua import NEEDS_REBUILD
from app.leaderboards.board.keys import LeaderboardKeys
from app.leaderboards.board.reads import page_of
from app.leaderboards.board.scripts import leaderboard_scripts
from app.leaderboards.events import EntryChanged, EntryRemoved, PeriodClosed
from app.leaderboards.spans import PeriodSpans, with_span

DIGEST_FIELD = "top_digest"


@dataclass(frozen=True)
class Announced:
    """A top produced to the change topic: its digest is kept once the producer delivered it."""

    meta_key: str
    digest: str
    client: object

    def remember(self) -> None:
        self.client.hset(self.meta_key, DIGEST_FIELD, self.digest)


def touched_periods(events) -> list[tuple[str, str]]:
    """(board, period) of every entry event of a batch, applied or not (a redelivery may owe an
    announcement)."""
    seen: dict[tuple[str, str], None] = {}
    for envelope, payload in events:
        if isinstance(payload, (EntryChanged, EntryRemoved)):
            seen[(envelope.aggregate_id, payload.period)] = None
    return list(seen)


def announce_changes(periods: list[tuple[str, str]], *, client_for, producer, topic: str, top: int,
                     spans: PeriodSpans) -> list[Announced]:
    """Produce the new top of each period whose top changed since the last announcement; returns what
    to remember once the producer has delivered (see `remember`)."""
    announced = []
    for board_id, period in periods:
        keys = LeaderboardKeys(board_id).period(period)
        client = client_for(keys.board.cfg)
        reply = leaderboard_scripts(client).leaderboard_read_range(keys.read_keys, [0, top])
        if reply[0] == NEEDS_REBUILD:
            continue  # not cached (deleted or expired meanwhile): nothing on show has changed
        page = page_of(board_id, period, reply)
        shown = [(e["player_id"], e["score"], e["display_name"]) for e in page["entries"]]
        digest = hashlib.sha1(json.dumps(shown, separators=(",", ":")).encode()).hexdigest()
        held = client.hget(keys.meta, DIGEST_FIELD)
        if held is not None and held.decode() == digest:
            continue
        try:
            span = spans.of(board_id, period)
        except NotFound:
            continue  # the board is gone from PostgreSQL: nothing on show to announce
        produce(producer, topic, key=board_id.encode(), value=json.dumps(with_span({
            "leaderboard_id": board_id, "period": period, "version": page["version"], "total": page["total"],
            "entries": page["entries"]}, span), separators=(",", ":")).encode(),
            headers=[("type", b"leaderboard_top")])
        announced.append(Announced(keys.meta, digest, client))
    return announced


def announce_closes(events, *, producer, topic: str) -> None:
    """Produce the final standings of every period a batch closed."""
    for envelope, closed in events:
        if type(closed) is PeriodClosed:
            produce(producer, topic, key=envelope.aggregate_id.encode(), value=json.dumps({
                "leaderboard_id": envelope.aggregate_id, "period": closed.period,
                "starts_at": closed.starts_at,
                "ends_at": closed.ends_at, "label": closed.label, "closed_at": closed.closed_at.isoformat(),
                "total": closed.entry_count, "entries": [s.model_dump() for s in closed.top]},
                separators=(",", ":")).encode(), headers=[("type", b"period_closed")])

