"""What a period is, wherever it is read: its id as stored, its bounds in the board's time zone (with
their UTC offsets) and a label a person reads, over REST, GraphQL, the outbox's period_closed event and
the change topic."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from app.leaderboards.spans import SPAN_FIELDS, period_span
from tests.helpers import Api
from tests.integration.leaderboard_support import Applier, board, owner, score
from tests.integration.relay.support import read_topic
from tests.integration.test_graphql import data
from tests.integration.test_ops import publish_as_relay
from tests.integration.worker_support import drain, new_worker


@pytest.fixture()
def applier(config, engine, redis_client):
    return Applier(config, engine, redis_client)


def _period_row(engine, reset_period: str, tz: str, at: datetime):
    """The period PostgreSQL opens at `at`, with the board's wall clock at its bounds."""
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT period, starts_at, ends_at, starts_at AT TIME ZONE :tz AS starts_local, "
            "ends_at AT TIME ZONE :tz AS ends_local FROM leaderboard_period(:r, :tz, :at)"),
            {"r": reset_period, "tz": tz, "at": at}).one()
    return SimpleNamespace(**row._asdict(), reset_period=reset_period)


@pytest.mark.parametrize("reset_period, tz, at, period, starts_at, ends_at, label", [
    # Kathmandu is UTC+05:45: its hours run from :15 of the UTC hour the id names.
    ("hourly", "Asia/Kathmandu", datetime(2026, 12, 6, 13, 30, tzinfo=UTC), "2026-12-06T13Z",
     "2026-12-06T19:00:00+05:45", "2026-12-06T20:00:00+05:45", "Sun 6 Dec 2026, 19:00–20:00 UTC+05:45"),
    # Paris leaves summer time on 2026-10-25 at 03:00 local: the hour from 02:00 runs into 02:00 again.
    ("hourly", "Europe/Paris", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "2026-10-25T00Z",
     "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
     "Sun 25 Oct 2026, 02:00 UTC+02:00 – 02:00 UTC+01:00"),
    ("daily", "Europe/Paris", datetime(2026, 10, 25, 12, tzinfo=UTC), "2026-10-25",
     "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", "Sun 25 Oct 2026"),
    ("weekly", "Asia/Kathmandu", datetime(2026, 12, 6, 20, 30, tzinfo=UTC), "2026-W50",
     "2026-12-07T00:00:00+05:45", "2026-12-14T00:00:00+05:45", "Week 50 of 2026, 7 Dec – 13 Dec"),
    ("monthly", "America/New_York", datetime(2026, 12, 15, 12, tzinfo=UTC), "2026-12",
     "2026-12-01T00:00:00-05:00", "2027-01-01T00:00:00-05:00", "December 2026"),
    ("never", "UTC", datetime(2026, 12, 6, 8, tzinfo=UTC), "all", "2026-12-06T08:00:00+00:00", None,
     "All time"),
])
def test_a_periods_span_is_its_bounds_in_the_boards_zone_and_its_label(engine, reset_period, tz, at, period,
                                                                       starts_at, ends_at, label):
    row = _period_row(engine, reset_period, tz, at)
    assert row.period == period  # the stored id, unchanged
    assert period_span(row) == {"starts_at": starts_at, "ends_at": ends_at, "label": label}


def _span(view: dict) -> dict:
    return {k: view[k] for k in SPAN_FIELDS}


def test_every_read_of_a_period_shows_its_span_over_rest_and_graphql(api: Api, client, engine, applier):
    who = owner(api)
    board_id = board(api, who, reset_period="hourly", timezone="Asia/Kathmandu")["id"]
    for player, value in (("ann", 30), ("bob", 20), ("cy", 10)):
        score(api, who, board_id, player, value)
    applier.catch_up(board_id)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT period, starts_at, ends_at FROM leaderboard_periods "
                                         "WHERE leaderboard_id = :b"), {"b": board_id}).one()
    kathmandu = ZoneInfo("Asia/Kathmandu")
    expected = {"starts_at": stored.starts_at.astimezone(kathmandu).isoformat(),
                "ends_at": stored.ends_at.astimezone(kathmandu).isoformat()}
    base = f"/api/v1/leaderboards/{board_id}"
    top = api.get(f"{base}/top", expect=200, limit=2).get_json()
    span = _span(top)
    assert {k: span[k] for k in expected} == expected and span["starts_at"].endswith("+05:45")
    local = stored.starts_at.astimezone(kathmandu)
    assert span["label"] == f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}–" \
                            f"{stored.ends_at.astimezone(kathmandu):%H:%M} UTC+05:45"
    reads = {
        "range": api.get(f"{base}/range", expect=200, start=1, end=2).get_json(),
        "range after a cursor": api.get(f"{base}/range", expect=200, cursor=top["next_cursor"]).get_json(),
        "around": api.get(f"{base}/around/bob", expect=200, range=1).get_json(),
        "player": api.get(f"{base}/player/cy", expect=200).get_json(),
        "past period": api.get(f"{base}/top", expect=200, period=stored.period).get_json(),
        "stats": api.get(f"{base}/stats", expect=200).get_json(),
        "periods": api.get(f"{base}/periods", expect=200).get_json()["periods"][0],
        "player's boards": next(b for b in api.get("/api/v1/players/ann/boards",
                                                   expect=200).get_json()["boards"]
                                if b["leaderboard_id"] == board_id),
    }
    assert {name: _span(view) for name, view in reads.items()} == {name: span for name in reads}

    fields = " ".join(SPAN_FIELDS)
    got = data(client, f"""query($b: ID!) {{
        top(board_id: $b) {{ {fields} }} around(board_id: $b, player_id: "bob") {{ {fields} }}
        player(board_id: $b, player_id: "cy") {{ {fields} }} stats(board_id: $b) {{ {fields} }}
        periods(board_id: $b) {{ {fields} }} playerBoards(player_id: "ann") {{ leaderboard_id {fields} }}
    }}""", {"b": board_id})
    assert [got["top"], got["around"], got["player"], got["stats"], got["periods"][0]] == [span] * 5
    assert [_span(b) for b in got["playerBoards"] if b["leaderboard_id"] == board_id] == [span]

    # A reset closes the period now: its event carries the span, and the next period (`~2`) starts now.
    api.post(f"{base}/reset", {}, token=who.token, expect=200)
    periods = api.get(f"{base}/periods", expect=200).get_json()["periods"]
    assert [p["period"] for p in periods] == [f"{stored.period}~2", stored.period]
    assert _span(periods[1]) == span and periods[0]["ends_at"] == span["ends_at"]
    with engine.connect() as connection:
        closed = connection.execute(text("SELECT payload FROM events WHERE aggregate_id = :b "
                                         "AND event_type = 'period_closed'"), {"b": board_id}).scalar_one()
    assert _span(closed) == span and closed["period"] == stored.period


def test_the_change_topic_shows_the_span_of_each_top_and_each_close(api: Api, topics, engine, redis_client):
    worker = new_worker(topics, engine, redis_client)
    try:
        who = owner(api)
        board_id = board(api, who, reset_period="daily", timezone="America/New_York")["id"]
        for player, value in (("ann", 30), ("bob", 20)):
            score(api, who, board_id, player, value)
        drain(worker, publish_as_relay(topics, engine, board_id))
        base = f"/api/v1/leaderboards/{board_id}"
        period = api.get(f"{base}/periods", expect=200).get_json()["periods"][0]
        api.post(f"{base}/reset", {}, token=who.token, expect=200)
        drain(worker, publish_as_relay(topics, engine, board_id))  # the earlier events again, and the close

        messages = [m for m in read_topic(topics.kafka_bootstrap_servers, topics.change_topic)
                    if m.key == board_id.encode()]
        tops = [json.loads(m.value) for m in messages if m.headers.get("type") == b"leaderboard_top"]
        closes = [json.loads(m.value) for m in messages if m.headers.get("type") == b"period_closed"]
        assert tops and {json.dumps(_span(t)) for t in tops} == {json.dumps(_span(period))}
        assert closes and all(c == closes[0] for c in closes)  # at least once, the same each time
        assert closes[0]["period"] == period["period"] and _span(closes[0]) == _span(period)
        assert (closes[0]["total"], [(e["player_id"], e["score"]) for e in closes[0]["entries"]]) == (
            2, [("ann", 30), ("bob", 20)])
    finally:
        worker.close()
