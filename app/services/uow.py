"""The unit of work: one transaction per use case, or one shared by concurrent ones (group commit).

**Group commit** (``WriteGroup``, used by the single-resource FHIR interactions): concurrent
requests queue their work; one of their threads (the leader) takes every queued item (up to
``COCM_GROUP_COMMIT_LIMIT``) and, holding the writer lock, runs them in one transaction, in arrival order, on its own
session (each item keeps its own service: tenant, caller, audit), with one commit; each request
answers only after the commit that holds its rows. A group costs one BEGIN, one multi-row INSERT
per table and one COMMIT instead of one of each per request. When any item fails (its client's
error, a lost race on a unique key) or the commit does, the whole transaction is rolled back and
every item of the group is run again alone, exactly as without grouping (``transact``): an
error answers for its own request only, and nothing is written twice, since the failed group
wrote nothing. A lone item runs alone. Per-transaction caches are keyed by tenant, so a group of
several tenants' requests shares nothing it should not.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, DomainError, Unavailable
from app.services.resources import ResourceService
from app.store.db import WRITE_OPTION

WRITE_ATTEMPTS = 3

T = TypeVar("T")


def transact(service: ResourceService, work: Callable[[], T], *, grouped: bool = False) -> T:
    """Run ``work`` in one transaction, committed at the end. Every request writes (at least its
    audit row), so the transaction is begun as a write. A lost race on a unique key (a concurrent
    retry of the same identifier) is retried: the retry sees the winner's row. ``grouped``: the
    transaction may be shared with concurrent requests' (module docstring), when the service has
    a ``WriteGroup``."""
    if grouped and service.group is not None:
        group: WriteGroup = service.group
        return group.run(service, work)
    with service.write_lock:
        return _alone(service, work)


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
    wake: threading.Event = field(default_factory=threading.Event)  # done, or this one leads next
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class _Abandon(Exception):
    """An item of a group failed: the group's transaction is rolled back."""


class WriteGroup:
    """Group commit for one engine (module docstring). ``lock``: the writer lock (SQLite's
    ``write_lock``, so grouped and ungrouped writers queue on the same lock; a lock of its own on
    PostgreSQL); ``limit``: the most items in one transaction.

    One thread leads at a time: it runs groups from the head of the queue until its own item is
    done, then wakes the next waiting item's thread to lead, so no request waits on others'
    beyond its own group and the ones queued before it."""

    def __init__(self, lock: AbstractContextManager[Any], limit: int) -> None:
        self.lock = lock
        self.limit = limit
        self.queue: deque[_Item] = deque()
        self.mutex = threading.Lock()  # guards the queue and ``leading``
        self.leading = False

    def run(self, service: ResourceService, work: Callable[[], T]) -> T:
        item = _Item(service, work)
        with self.mutex:
            self.queue.append(item)
            follow, self.leading = self.leading, True
        if follow:
            item.wake.wait()
        if not item.done:
            self._lead(item)
        if item.error is not None:
            raise item.error
        result: T = item.result
        return result

    def _lead(self, own: _Item) -> None:
        try:
            while not own.done:
                with self.lock:  # then take the queue: what arrived while waiting joins the group
                    with self.mutex:
                        batch = [self.queue.popleft() for _ in range(min(self.limit, len(self.queue)))]
                    self._run(batch)
        finally:
            with self.mutex:
                if self.queue:
                    self.queue[0].wake.set()  # its thread leads next
                else:
                    self.leading = False

    @classmethod
    def _run(cls, batch: list[_Item]) -> None:
        together = len(batch) > 1  # a lone item runs alone
        if together:
            try:
                cls._together(batch)
            except Exception:  # an item failed, or the commit did: nothing of the group was written
                together = False
        for item in batch:
            if not together:
                try:
                    item.result = _alone(item.service, item.work)
                except Exception as exc:  # the request's own error, raised in its own thread
                    item.error = exc
            item.done = True
            item.wake.set()

    @staticmethod
    def _together(batch: list[_Item]) -> None:
        session = batch[0].service.session
        with session.begin():
            session.connection(execution_options={WRITE_OPTION: True})
            for item in batch:
                item.service.attempt = None
                with item.service.sharing(session):
                    try:
                        item.result = item.work()
                    except Exception as exc:
                        raise _Abandon from exc
