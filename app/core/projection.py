"""What the cache worker applies events through: an aggregate's projection into Redis (its board).

The worker (cache_worker/worker.py) is given a list of projections and knows nothing else of the
aggregates. It decodes a batch with their event types, groups the events by aggregate and queues each
group on the pipeline of its Redis node (`queue`: runs of apply_batch calls of at most BATCH_CHUNK
events, app/core/lua.py, each answering one reply per event); a deletion, which no script applies,
splits the runs and is finished once the pipeline ran (`settle`). What a script found missing is
rebuilt from PostgreSQL (`rebuild`), and each projection is handed its events of the batch to
announce to other consumers (`announce`: a leaderboard's change feed). `ops verify` compares a
projection's board with PostgreSQL (`verify`), `ops rebuild` rebuilds it.

A quiz session's board: app/quiz/board/projection.py; a leaderboard's: app/leaderboards/board/projection.py.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from app.core.events import Envelope, EventTypes, Payload
from app.core.lua import APPLIED, BATCH_CHUNK, Call, Script, pack_batch

# What `Projection.queue` returns for a deletion: no command of the pipeline answers it (see `settle`).
NO_COMMAND = 0


class UnknownAggregate(LookupError):
    """PostgreSQL has no such session or board (or no such period of it): its events can never be applied."""


class Announcement(Protocol):
    """What a projection announced to other consumers, recorded once the producer delivered it."""

    def remember(self) -> None: ...


class Projection(ABC):
    """One aggregate's board in Redis, as the worker and the operator commands drive it."""

    events: EventTypes  # the events it applies: their aggregate type and payload schemas
    deletion: type[Payload]  # the event that removes the aggregate (no script applies it: `settle` does)
    unknown_reason: str  # the dead letter's reason for an event of an aggregate PostgreSQL lacks

    @property
    @abstractmethod
    def batch(self) -> Script:
        """lua/apply_batch.lua over the aggregate's library: many of its events in one call."""

    @abstractmethod
    def slot_key(self, aggregate_id: str) -> str:
        """A key of the aggregate: every key of it shares this one's Redis Cluster slot."""

    @abstractmethod
    def calls(self, aggregate_id: str, events: list[tuple[Envelope, Any]]) -> list[Call | None]:
        """The script call applying each of the aggregate's events (in order); None for a deletion."""

    @abstractmethod
    def forget(self, client, aggregate_id: str) -> None:
        """Remove every key of a deleted aggregate (its sockets hear it)."""

    @abstractmethod
    def rebuild_target(self, envelope: Envelope, payload: Any) -> tuple[str, ...]:
        """What to rebuild when an event's script answers NEEDS_REBUILD (its aggregate id first)."""

    @abstractmethod
    def rebuild(self, target: tuple[str, ...]) -> Any:
        """Rebuild `target` from PostgreSQL and swap it in; UnknownAggregate when PostgreSQL has none."""

    @abstractmethod
    def verify(self, target: tuple[str, ...]) -> list[Any] | None:
        """The differences between `target` in Redis and PostgreSQL; None when Redis does not hold it."""

    def announce(self, events: list[tuple[Envelope, Any]], producer) -> list[Announcement]:
        """Produce what the batch's events of this aggregate owe other consumers; returns what to
        remember once the producer delivered it. Nothing, unless a projection says otherwise."""
        return []

    def queue(self, pipe, aggregate_id: str, events: list[tuple[Envelope, Any]],
              notes: list[list[str]] | None = None) -> list[int]:
        """Queue on `pipe` what applies `events` (this aggregate's, in order): apply_batch calls of at most
        BATCH_CHUNK events, nothing for a deletion; `notes` are the fields each event's room notes end
        with (its journey). Returns, per step in order, how many events the next reply of the pipeline
        answers for (a list of one reply each), or NO_COMMAND for a deletion."""
        steps: list[int] = []
        run: list[Call] = []
        run_notes: list[list[str]] = []

        def send_run() -> None:
            for start in range(0, len(run), BATCH_CHUNK):
                chunk = run[start:start + BATCH_CHUNK]
                keys, args = pack_batch(chunk, run_notes[start:start + BATCH_CHUNK] if notes else None)
                self.batch(keys, args, client=pipe)
                steps.append(len(chunk))
            run.clear()
            run_notes.clear()

        for index, call in enumerate(self.calls(aggregate_id, events)):
            if call is None:
                send_run()
                steps.append(NO_COMMAND)
            else:
                run.append(call)
                if notes:
                    run_notes.append(notes[index])
        send_run()
        return steps

    def settle(self, client, envelope: Envelope, payload: Any, reply: Any) -> Any:
        """An event's reply once the pipeline ran: a deletion is carried out now."""
        if self.is_deletion(payload):
            self.forget(client, envelope.aggregate_id)
            return APPLIED
        return reply

    def is_deletion(self, payload: Any) -> bool:
        # The exact type, not isinstance: a payload models' negative isinstance goes through ABCMeta,
        # microseconds an event on the worker's path, and payload classes have no subclasses.
        return type(payload) is self.deletion
