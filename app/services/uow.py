"""The unit of work: one transaction per use case."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, DomainError, Unavailable
from app.store.db import WRITE_OPTION
from app.store.repository import ResourceStore

WRITE_ATTEMPTS = 3

T = TypeVar("T")


def transact(store: ResourceStore, work: Callable[[], T]) -> T:
    """Run ``work`` in one transaction, committed at the end. Every request writes (at least its
    audit row), so the transaction is begun as a write. A lost race on a unique key (a concurrent
    retry of the same identifier) is retried: the retry sees the winner's row."""
    store.attempt = None
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with store.write_lock, store.session.begin():
                store.session.connection(execution_options={WRITE_OPTION: True})
                return work()
        except IntegrityError:
            if attempt == WRITE_ATTEMPTS - 1:
                store.audit_failure("4")
                raise Conflict("a concurrent request changed the same resource; retry") from None
        except DomainError as exc:
            store.audit_failure("8" if isinstance(exc, Unavailable) else "4")
            raise
    raise AssertionError("unreachable")
