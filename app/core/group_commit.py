"""Group commit: concurrent writes of a process are committed together, in one transaction.

Every transaction that writes an event also notifies the relay (the outbox trigger's NOTIFY), and
PostgreSQL lets one notifying transaction commit at a time: each waits for the previous one's
commit to reach the disk. One transaction per request would cap a process at one request per
flush; a batch pays for one flush. Each request still gets its own result, and only once the
transaction holding it has committed.

The writer (`commit_many`) commits the batch's requests in one transaction and answers one result
(or ServiceError) per request. It raises CommitFailed when the COMMIT itself failed (the outcome is
unknown), any SQLAlchemyError when a statement failed before it (nothing was recorded). A batch that
fails as a whole is retried one request per transaction, so one bad request fails alone; a request
whose outcome is unknown is settled by `recorded`, which reads what PostgreSQL holds for it, and the
caller learns `outcome_unknown` only when even that cannot tell; never that a write that may have
committed was not recorded.

Each batch is bounded: at most `max_batch` requests and `max_cost` units of work (a request's `cost`;
one request above it is committed alone). Requests wait in a fair queue by client (`client_of`): each
client's requests take their turn beside the others', so a request waits for the batch being
committed and about one request of each other busy client, never for a client's whole backlog.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from app.core.errors import OutcomeUnknown, ServiceError, Unavailable

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")


class CommitFailed(Exception):
    """The COMMIT itself failed: the transaction may or may not have committed."""

    def __init__(self, cause: SQLAlchemyError):
        super().__init__(str(cause))
        self.cause = cause


def commit(transaction) -> None:
    """COMMIT a batch's transaction; if the COMMIT itself fails, the outcome is unknown (CommitFailed)."""
    try:
        transaction.commit()
    except SQLAlchemyError as exc:
        raise CommitFailed(exc) from exc


class Pending(Generic[Request, Result]):
    __slots__ = ("request", "done", "result", "uncertain")

    def __init__(self, request: Request):
        self.request = request
        self.done = threading.Event()
        self.result: Result | BaseException | None = None
        # A COMMIT holding this request failed: it may be recorded even though no attempt said so.
        self.uncertain = False


class FairQueue(Generic[Request]):
    """Start-time fair queueing (Goyal, Vin and Cheng, 1996) of requests by client: a request's start tag
    is the later of the queue's virtual time (the start tag of the request taken last) and its client's
    previous request's finish tag (start + cost); requests are taken by start tag, then arrival. A
    client that was idle starts at the virtual time, ahead of the backlog of a busy one; with one
    client it is first come, first served."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Pending]] = []  # (start tag, arrival, cost, pending)
        self._finish: dict[Hashable, int] = {}
        self._virtual = 0
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def __contains__(self, pending: Pending) -> bool:
        return any(queued is pending for *_, queued in self._heap)

    def push(self, pending: Pending, client: Hashable, cost: int) -> None:
        start = max(self._virtual, self._finish.get(client, 0))
        self._finish[client] = start + cost
        heapq.heappush(self._heap, (start, next(self._arrivals), cost, pending))

    def take(self, max_count: int, max_cost: int | None) -> list[Pending]:
        """The next requests in turn, up to `max_count` of them and `max_cost` in all (the first always)."""
        taken: list[Pending] = []
        total = 0
        while self._heap and len(taken) < max_count:
            start, _, cost, pending = self._heap[0]
            if taken and max_cost is not None and total + cost > max_cost:
                break
            heapq.heappop(self._heap)
            self._virtual = start
            taken.append(pending)
            total += cost
        # Forget the idle clients: they start at the virtual time.
        if len(self._finish) > 2 * len(self._heap) + 64:
            self._finish = {c: f for c, f in self._finish.items() if f > self._virtual}
        return taken

    def remove(self, pending: Pending) -> None:
        self._heap = [entry for entry in self._heap if entry[3] is not pending]
        heapq.heapify(self._heap)


class GroupCommit(Generic[Request, Result]):
    """Requests arriving while a batch is being committed go together in the next one.

    Subclasses name what they write (`what`, for error messages) and give `commit_many` and `recorded`."""

    what = "write"
    # Far above any healthy commit: a request never waits forever on a stuck database.
    WAIT_S = 30.0

    def __init__(self, engine, max_batch: int = 200, max_cost: int | None = None):
        self.engine = engine
        self.max_batch = max_batch
        self.max_cost = max_cost
        self._queue: FairQueue[Request] = FairQueue()
        self._arrived = threading.Condition()
        self._committer: threading.Thread | None = None

    def commit_many(self, requests: list[Request]) -> list[Result | ServiceError]:
        raise NotImplementedError

    def recorded(self, request: Request) -> Result | None:
        """What PostgreSQL recorded for a request whose outcome is unknown; None when it cannot tell."""
        raise NotImplementedError

    def retry_is_safe(self, request: Request) -> bool:
        """Whether writing the request again after a COMMIT that may have succeeded records it at most
        once."""
        return True

    def client_of(self, request: Request) -> Hashable:
        """Whose turn the request takes in the queue (one client by default: first come, first served)."""
        return None

    def cost(self, request: Request) -> int:
        """The request's work, counted against `max_cost`."""
        return 1

    def waiting(self) -> int:
        """How many requests wait for a batch (not counting those being committed)."""
        with self._arrived:
            return len(self._queue)

    def submit(self, request: Request) -> Result:
        pending: Pending = Pending(request)
        client, cost = self.client_of(request), self.cost(request)
        with self._arrived:
            self._queue.push(pending, client, cost)
            self._arrived.notify()
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_forever,
                                                   name=f"{self.what}-group-commit", daemon=True)
                self._committer.start()
        if not pending.done.wait(self.WAIT_S):
            with self._arrived:
                never_tried = pending in self._queue
                if never_tried:
                    self._queue.remove(pending)
            if never_tried:
                raise Unavailable("unavailable", f"the {self.what} was not recorded (the service is busy); "
                                  "send it again")
            return self._settle(pending)
        if isinstance(pending.result, BaseException):
            raise pending.result
        return pending.result  # type: ignore[return-value]

    def _settle(self, pending: Pending) -> Result:
        """A transaction holding this request is still running or ended without telling: ask PostgreSQL."""
        try:
            result = self.recorded(pending.request)
        except SQLAlchemyError:
            result = None
        if result is None:
            raise OutcomeUnknown("outcome_unknown", f"the {self.what} may or may not have been recorded; "
                                 f"send the same {self.what} again to learn which")
        return result

    def _commit_forever(self) -> None:
        while True:
            with self._arrived:
                while not self._queue:
                    self._arrived.wait()
                batch = self._queue.take(self.max_batch, self.max_cost)
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave a request waiting, never lose the committer
                log.exception("the %s committer failed", self.what)
                for pending in batch:
                    if not pending.done.is_set():
                        pending.result = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
                        pending.done.set()

    def _commit(self, batch: list[Pending]) -> None:
        try:
            results: list = self.commit_many([p.request for p in batch])
        except (SQLAlchemyError, CommitFailed) as exc:
            uncertain = isinstance(exc, CommitFailed)
            if len(batch) > 1:
                log.warning("a batch of %d %ss failed (%s); committing them one by one", len(batch),
                            self.what, type(exc).__name__)
            for pending in batch:
                pending.uncertain = uncertain
            results = [self._alone(p) for p in batch]
        for pending, result in zip(batch, results):
            pending.result = result
            pending.done.set()

    def _alone(self, pending: Pending) -> Result | BaseException:
        """Retry one request alone: a retry finds a write recorded by a failed COMMIT, or records it."""
        if pending.uncertain and not self.retry_is_safe(pending.request):
            try:
                return self._settle(pending)
            except ServiceError as exc:
                return exc
        try:
            return self.commit_many([pending.request])[0]
        except CommitFailed as exc:
            pending.uncertain = True
            failure: SQLAlchemyError = exc.cause
        except SQLAlchemyError as exc:
            failure = exc
        if not pending.uncertain:
            return failure  # nothing was ever committed: the API says "not recorded, try again"
        try:
            return self._settle(pending)
        except ServiceError as exc:
            return exc
