"""What the operator commands share: their groups, the configuration, progress bars, selections."""
from __future__ import annotations

import sys
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.config import Config

ops = AppGroup("ops", help="Inspect and repair the leaderboards, the outbox and the dead letters.")
dlq = AppGroup("dlq", help="Dead-lettered events: list them, send them back to the main topic.")
ops.add_command(dlq)


def config() -> Config:
    return current_app.config["LIVEQUIZ"]


@contextmanager
def progress(items: Iterable[Any], length: int, label: str) -> Iterator[Iterable[Any]]:
    """A progress bar on a terminal; the plain iterable when stdout is a pipe or a file."""
    if sys.stdout.isatty() and length > 0:
        with click.progressbar(items, length=length, label=label) as bar:
            yield bar
    else:
        yield items


def one_selection(session_ids: tuple[uuid.UUID, ...], all_sessions: bool, board_ids: tuple[str, ...] = ()) -> None:
    if bool(session_ids or board_ids) == all_sessions:
        raise click.UsageError("give --session ID or --board ID (repeatable), or --all")


def board_options(command):
    """--board ID (repeatable) and --period P, as the quiz commands take --session."""
    command = click.option("--period", default=None, help="With --board: this period (default: every one Redis "
                           "holds, or the current one).")(command)
    return click.option("--board", "board_ids", multiple=True, help="A leaderboard to act on (repeatable).")(command)
