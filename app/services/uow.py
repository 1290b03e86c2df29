"""The unit of work: one transaction per use case, or one shared by concurrent ones (group commit).

**Group commit** (``WriteGroup``, used by the single-resource FHIR writes): concurrent
requests queue their work; a writer thread takes every queued item (up to
``COCM_GROUP_COMMIT_LIMIT``) and, holding the writer lock, runs them in one transaction, in
arrival order, on a session of its own bound to a connection it keeps from group to group (each
item keeps its own service: tenant, caller, audit), with one commit; each request answers only
after the commit that holds its rows. A group costs one BEGIN, one INSERT per table (on
PostgreSQL all of them in one round trip, ``app.store.db.flush_inserts``) and one COMMIT instead of
one of each per request.
When any item fails (its client's error, a lost race on a unique key, a row sent and refused), the
whole transaction is rolled back and every item of the group is run again alone, exactly as without
grouping (``transact``): an error answers for its own request only, and nothing is written twice,
since the failed group wrote nothing. Every row is sent before the COMMIT; a COMMIT that fails
(the connection lost: it may have been applied) fails every request of its group (503), never
run again; a group that fails for another reason than a request's own error lets the writer's
connection go (the next group takes a fresh one). A lone item runs alone, on its own session.
Per-transaction caches are keyed by
tenant, so a group of several tenants' requests shares nothing it should not.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from app.errors import Conflict, DomainError, Unavailable
from app.services.resources import ResourceService
from app.store.db import WRITE_OPTION, flush_inserts

WRITE_ATTEMPTS = 3
IDLE = 5.0  # seconds the group-commit writer thread waits for work before it ends

T = TypeVar("T")


def transact(service: ResourceService, work: Callable[[], T]) -> T:
    """Run ``work`` in one transaction, committed at the end. Every request writes (at least its
    audit row), so the transaction is begun as a write. A lost race on a unique key (a concurrent
    retry of the same identifier) is retried: the retry sees the winner's row."""
    with service.write_lock:
        return _alone(service, work)


async def transact_async(service: ResourceService, work: Callable[[], T]) -> T:
    """``transact`` for an ``async`` route, in a transaction that may be shared with concurrent
    requests' (group commit, module docstring) when the service has a ``WriteGroup``; else in the
    thread pool."""
    if service.group is not None:
        group: WriteGroup = service.group
        return await group.run(service, work)
    return await anyio.to_thread.run_sync(partial(transact, service, work))


def _alone(service: ResourceService, work: Callable[[], T]) -> T:
    """``transact`` with the writer lock held (or not needed)."""
    service.attempt = None
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with service.session.begin():
                service.session.connection(execution_options={WRITE_OPTION: True})
                return work()
        except IntegrityError:
            if attempt == WRITE_ATTEMPTS - 1:
                service.audit_failure("4")
                raise Conflict("a concurrent request changed the same resource; retry") from None
        except DomainError as exc:
            service.audit_failure("8" if isinstance(exc, Unavailable) else "4")
            raise
    raise AssertionError("unreachable")


@dataclass(eq=False)
class _Item:
    service: ResourceService
    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop  # where the request awaits ``future``
    future: asyncio.Future[None]
    done: bool = False
    result: Any = None
    error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _Abandon(Exception):
    """An item of a group failed: the group's transaction is rolled back."""


class _CommitFailed(Exception):
    """A group's COMMIT failed (its outcome unknown)."""


class WriteGroup:
    """Group commit for one engine (module docstring). ``lock``: the writer lock (SQLite's
    ``write_lock``, so grouped and ungrouped writers queue on the same lock; a lock of its own on
    PostgreSQL); ``limit``: the most items in one transaction; ``connect``: a new session bound to
    a connection of its own, for the writer to keep.

    A writer thread of its own runs the groups, in arrival order; each request queues its item
    from the event loop and awaits it (measured against handing the lead from one request's thread
    to the next: 5-8% more requests per second, benchmarks/RESULTS.md "Analysis")."""

    def __init__(self, lock: AbstractContextManager[Any], limit: int, connect: Callable[[], Session]) -> None:
        self.lock = lock
        self.limit = limit
        self.connect = connect
        self.queue: deque[_Item] = deque()
        self.ready = threading.Condition()  # guards the queue; notified when an item is queued
        self.writer: threading.Thread | None = None
        self.closed = False
        self.held: Session | None = None  # the writer thread's own session, on a connection it keeps

    def close(self) -> None:
        """At shutdown: the writer thread finishes what is queued, lets its connection go and ends."""
        with self.ready:
            self.closed = True
            writer = self.writer
            self.ready.notify_all()
        if writer is not None:
            writer.join(IDLE)

    async def run(self, service: ResourceService, work: Callable[[], T]) -> T:
        """From the event loop: queue ``work`` and await its group, with no worker thread between
        (the request's only thread hop is to the writer and back)."""
        loop = asyncio.get_running_loop()
        item = _Item(service, work, loop, loop.create_future())
        self._queue(item)
        with anyio.CancelScope(shield=True):  # a cancelled request still waits: its session is in use
            await item.future
        result: T = item.outcome()
        return result

    def _queue(self, item: _Item) -> None:
        with self.ready:
            self.queue.append(item)
            self.ready.notify()
            if self.writer is None:
                self.writer = threading.Thread(target=self._write, name="cocm-group-commit", daemon=True)
                self.writer.start()

    def _write(self) -> None:
        """The writer thread: runs groups while there is work, and ends after ``IDLE`` seconds
        without any (the next request starts another). Should it end otherwise, every request
        still waiting is answered with the error, and the next request starts a new writer."""
        batch: list[_Item] = []
        try:
            while True:
                with self.ready:
                    if not self.queue and not self.closed:
                        self.ready.wait(IDLE)
                    if not self.queue:
                        self.writer = None
                        held, self.held = self.held, None  # closed below, the queue's lock let go
                        break
                with self.lock:  # then take the queue: what arrived while waiting joins the group
                    with self.ready:
                        batch = [self.queue.popleft() for _ in range(min(self.limit, len(self.queue)))]
                    self._run(batch)
        except BaseException as exc:
            with self.ready:
                self.writer = None
                held, self.held = self.held, None
                stranded = [*batch, *self.queue]
                self.queue.clear()
            for item in stranded:
                if not item.done:
                    item.error, item.done = exc, True
            _answer(stranded)  # answered twice is harmless: a future is resolved once
            _close(held)
            raise
        _close(held)

    def _session(self) -> Session:
        """The groups' session: the writer's own, on a connection it keeps from one group to the
        next (no pool checkout and, on PostgreSQL, no pre-ping per group)."""
        if self.held is None:
            self.held = self.connect()
        return self.held

    def _run(self, batch: list[_Item]) -> None:
        if len(batch) > 1:  # a lone item runs alone
            try:
                self._together(batch)
            except _Abandon as abandoned:  # an item failed: nothing of the group was written
                if not isinstance(abandoned.__cause__, DomainError | IntegrityError):
                    _close(self.held)  # the connection may be what failed: the next group takes a fresh one
                    self.held = None
            except _CommitFailed as failed:  # written or not, nobody knows: never run again
                _close(self.held)
                self.held = None
                for item in batch:
                    item.error, item.done = failed.__cause__, True
                _answer(batch)
                return
            else:
                for item in batch:
                    item.done = True
                _answer(batch)
                return
        for item in batch:  # each alone, answered as soon as it is done
            try:
                item.result = _alone(item.service, item.work)
            except Exception as exc:  # the request's own error, raised on the event loop
                item.error = exc
            item.done = True
            _answer([item])

    def _together(self, batch: list[_Item]) -> None:
        """Every item's work, then every row sent, in one transaction on the writer's session;
        ``_Abandon`` (rolled back) when any of that fails, the session itself included,
        ``_CommitFailed`` when the COMMIT does: a commit whose connection broke may have been
        applied, so its group must not be run again."""
        transaction: SessionTransaction | None = None
        try:
            session = self._session()
            transaction = session.begin()
            session.connection(execution_options={WRITE_OPTION: True})
            for item in batch:
                item.service.attempt = None
                with item.service.sharing(session):
                    item.result = item.work()
            session.flush()
            flush_inserts(session)
        except Exception as exc:
            if transaction is not None:
                with suppress(Exception):  # a lost connection: the writer lets it go (``_run``)
                    transaction.rollback()
            raise _Abandon from exc
        try:
            transaction.commit()
        except Exception as exc:
            with suppress(Exception):  # end it on this side too; the connection goes back clean
                transaction.rollback()
            raise _CommitFailed from exc


def _close(session: Session | None) -> None:
    """Close a writer's session and the connection it is bound to (back to the pool)."""
    if session is None:
        return
    connection = session.bind
    with suppress(Exception):  # a broken connection: closing it below is all that is left
        session.close()
    if isinstance(connection, Connection):
        with suppress(Exception):
            connection.close()


def _answer(items: list[_Item]) -> None:
    """Wake the requests waiting for ``items``: one call into each event loop for all of them (each
    call wakes the loop through its self-pipe: a group of eight costs one, not eight)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for item in items:
        by_loop.setdefault(item.loop, []).append(item.future)
    for loop, futures in by_loop.items():
        with suppress(RuntimeError):  # the event loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, futures)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # the request may have been cancelled; the write stands
            future.set_result(None)
