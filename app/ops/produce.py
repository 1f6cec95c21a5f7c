"""`ops produce-scores`: a game server's scores on the score topic, at a steady rate (seed 001's
`kafka-producer -leaderboard -players -rate -duration -topic -brokers`). `make feed` runs it against a
demo board."""
from __future__ import annotations

import random
import time

import click

from app.core.errors import NotFound
from app.core.kafka import DeliveryTracker, make_producer, produce
from app.leaderboards.messages import encode_score
from app.leaderboards.service.boards import create_board, get_board
from app.ops.common import config, database, ops, progress
from app.ops.replay import await_deliveries

DEMO_BOARD = {"name": "Demo", "sort_order": "desc", "update_mode": "increment", "reset_period": "never",
              "timezone": "UTC", "max_entries": None, "self_report_max": None, "metadata": None}


def _board(board_id: str, create: bool) -> dict:
    engine = database()
    try:
        return get_board(engine, board_id)
    except NotFound:
        if not create:
            raise click.ClickException(f"no board {board_id!r}: create it first, or pass --create") from None
        click.echo(f"created board {board_id} (desc, increment, never reset)")
        return create_board(engine, None, {"id": board_id, **DEMO_BOARD})


def _schedule(rng: random.Random, players: int, rate: float, duration: float, initial_only: bool):
    """(player number, due time) of each message: every player once first, then random updates."""
    start = time.monotonic()
    for n in range(players):
        yield n, start + n / rate
    if initial_only:
        return
    sent = players
    while duration <= 0 or sent / rate < players / rate + duration:
        yield rng.randrange(players), start + sent / rate
        sent += 1


@ops.command("produce-scores")
@click.option("--board", "board_id", default="game1", show_default=True, help="The board the scores go to.")
@click.option("--players", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Players: each gets a first score, then random ones update.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=100.0, show_default=True,
              help="Messages a second.")
@click.option("--duration", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds of updates after the first scores (0: until interrupted).")
@click.option("--initial-only", is_flag=True, help="Only the players' first scores.")
@click.option("--create", is_flag=True,
              help="Create the board (desc, increment, never reset) if it does not exist.")
@click.option("--seed", type=int, default=None, help="Random seed, for a repeatable feed.")
@click.option("--topic", default=None, help="The topic to produce to  [default: SCORE_TOPIC]")
@click.option("--bootstrap", "--brokers", "bootstrap", default=None,
              help="Kafka bootstrap servers, host:port,...  [default: KAFKA_BOOTSTRAP_SERVERS]")
def produce_scores_command(board_id: str, players: int, rate: float, duration: float, initial_only: bool,
                           create: bool, seed: int | None, topic: str | None, bootstrap: str | None) -> None:
    """Produce score messages for a board to SCORE_TOPIC, as game servers do.

    Each message is seed 001's {"leaderboard_id", "player_id", "score", "game_id"}, keyed by the
    board; the score ingest commits them (without a submission_id each gets one from its place in
    the log, so a redelivery counts once). On an increment board a message adds 1 to 100 points,
    otherwise it is a score from 0 to 100,000. Ends with a summary of what was delivered.
    """
    settings = config() if bootstrap is None else config().replace(kafka_bootstrap_servers=bootstrap)
    topic = topic or settings.score_topic
    board = _board(board_id, create)
    rng = random.Random(seed)
    increments = board["update_mode"] == "increment"
    producer = make_producer(settings, **{"client.id": "ops-produce-scores", "linger.ms": 20})
    tracker = DeliveryTracker()
    total = players if initial_only else (0 if duration <= 0 else players + int(rate * duration))
    sent, started = 0, time.monotonic()
    try:
        with progress(_schedule(rng, players, rate, duration, initial_only), total,
                      "producing scores") as schedule:
            for player, due in schedule:
                # Paced by the clock: poll returns early whenever it serves a delivery report.
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(wait)
                score = rng.randint(1, 100) if increments else rng.randint(0, 100_000)
                produce(producer, topic, key=board_id.encode(), on_delivery=tracker, headers=None,
                        value=encode_score(leaderboard_id=board_id, player_id=f"player{player + 1}",
                                           score=score, display_name=f"Player {player + 1}",
                                           game_id=f"match{sent // 100 + 1}"))
                sent += 1
    except KeyboardInterrupt:
        click.echo("interrupted: delivering what was produced", err=True)
    await_deliveries(producer, tracker, sent, "produce-scores")
    seconds = max(time.monotonic() - started, 1e-9)
    click.echo(f"produce-scores: {sent} messages for {board_id} ({players} players) delivered to "
               f"{topic} in {seconds:.1f} s ({sent / seconds:.0f}/s)")
