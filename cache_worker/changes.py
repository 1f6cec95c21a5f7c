"""The change feed (seed 003): when a board period's top N changed, one message on the change topic.

After a batch is applied, the worker reads the top N of every board period the batch touched (one
read each) and compares it with the last top it announced, kept as a digest in the period's
metadata. A different top is produced to `CHANGE_TOPIC`, keyed by board: {leaderboard_id, period,
version, total, entries}. The digest is stored only once the message is delivered, so a crash in
between announces that top again (consumers keep the newest version per board and period), and a
write below the top N announces nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from app.events import LEADERBOARD, EntryChanged, EntryRemoved
from app.kafka import produce
from app.leaderboards.keys import BoardKeys
from app.leaderboards.reads import page_of
from app.leaderboards.scripts import board_scripts
from app.lua import NEEDS_REBUILD

DIGEST_FIELD = "top_digest"


@dataclass(frozen=True)
class Announced:
    meta_key: str
    digest: str
    client: object


def touched_periods(pending) -> list[tuple[str, str]]:
    """(board, period) of every entry event of a batch, applied or not (a redelivery may owe an announcement)."""
    seen: dict[tuple[str, str], None] = {}
    for item in pending:
        if item.envelope.aggregate_type == LEADERBOARD and isinstance(item.payload, (EntryChanged, EntryRemoved)):
            seen[(item.envelope.aggregate_id, item.payload.period)] = None
    return list(seen)


def announce_changes(periods: list[tuple[str, str]], *, client_for, producer, topic: str,
                     top: int) -> list[Announced]:
    """Produce the new top of each period whose top changed since the last announcement; returns what
    to remember once the producer has delivered (see `remember`)."""
    announced = []
    for board_id, period in periods:
        keys = BoardKeys(board_id).period(period)
        client = client_for(keys.board.cfg)
        reply = board_scripts(client).lb_read_range(keys.read_keys, [0, top])
        if reply[0] == NEEDS_REBUILD:
            continue  # not cached (deleted or expired meanwhile): nothing on show has changed
        page = page_of(board_id, period, reply)
        shown = [(e["player_id"], e["score"], e["display_name"]) for e in page["entries"]]
        digest = hashlib.sha1(json.dumps(shown, separators=(",", ":")).encode()).hexdigest()
        held = client.hget(keys.meta, DIGEST_FIELD)
        if held is not None and held.decode() == digest:
            continue
        produce(producer, topic, key=board_id.encode(), value=json.dumps({
            "leaderboard_id": board_id, "period": period, "version": page["version"], "total": page["total"],
            "entries": page["entries"]}, separators=(",", ":")).encode(), headers=[("type", b"leaderboard_top")])
        announced.append(Announced(keys.meta, digest, client))
    return announced


def remember(announced: list[Announced]) -> None:
    for item in announced:
        item.client.hset(item.meta_key, DIGEST_FIELD, item.digest)
