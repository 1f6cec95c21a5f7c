"""What the operator commands share: their groups, the configuration and the stores it names, progress
bars, selections. A command runs in a process of its own (the flask CLI) and opens its own connections,
never the web process's runtime."""
from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import Engine

from app.core.config import Config
from app.core.db import get_engine
from app.core.redis_client import Client, make_redis

ops = AppGroup("ops", help="Inspect and repair the leaderboards, the outbox and the dead letters.")
dlq = AppGroup("dlq", help="Dead-lettered events: list them, send them back to the main topic.")
ops.add_command(dlq)


def config() -> Config:
    return current_app.config["LIVEQUIZ"]


def database() -> Engine:
    """PostgreSQL, the truth: one engine per URL and process."""
    return get_engine(config().database_url)


def redis_store() -> Client:
    """Redis (or the Redis Cluster) of the configuration, with its key prefix."""
    return make_redis(config())


@contextmanager
def progress(items: Iterable[Any], length: int, label: str) -> Iterator[Iterable[Any]]:
    """A progress bar on a terminal; the plain iterable when stdout is a pipe or a file."""
    if sys.stdout.isatty() and length > 0:
        with click.progressbar(items, length=length, label=label) as bar:
            yield bar
    else:
        yield items


def one_selection(session_ids: tuple[uuid.UUID, ...], all_sessions: bool,
                  board_ids: tuple[str, ...] = ()) -> None:
    if bool(session_ids or board_ids) == all_sessions:
        raise click.UsageError("give --session ID or --board ID (repeatable), or --all")


def board_options(command):
    """--board ID (repeatable) and --period P, as the quiz commands take --session."""
    command = click.option("--period", default=None, help="With --board: this period (default: every one "
                           "Redis holds, or the current one).")(command)
    return click.option("--board", "board_ids", multiple=True,
                        help="A leaderboard to act on (repeatable).")(command)
