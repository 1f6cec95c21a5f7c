"""`ops outbox`: the backlog and retained history of the events outbox."""
from __future__ import annotations

import sys

import click

from app.extensions import runtime
from app.ops.common import config, ops
from app.services.outbox import outbox_status


@ops.command("outbox")
@click.option("--max-lag", type=click.FloatRange(min=0), default=None,
              help="Exit 1 when the oldest unpublished event is older than this many seconds.")
def outbox_command(max_lag: float | None) -> None:
    """Counts of unpublished and published events and the age of the oldest unpublished one.

    Published events are kept RELAY_RETENTION_HOURS after the end of their day, then the relay drops
    their day's partition.
    """
    status = outbox_status(runtime().engine, config().relay_mode)
    click.echo(f"outbox: {status.unpublished} unpublished, {status.published} published (retained), "
               f"oldest unpublished {status.oldest_unpublished_age_s:.1f} s old")
    if max_lag is not None and status.oldest_unpublished_age_s > max_lag:
        sys.exit(1)
