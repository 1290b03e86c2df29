"""The unit of work: one transaction per use case."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, DomainError, Unavailable
from app.services.resources import ResourceService
from app.store.db import WRITE_OPTION

WRITE_ATTEMPTS = 3

T = TypeVar("T")


def transact(service: ResourceService, work: Callable[[], T]) -> T:
    """Run ``work`` in one transaction, committed at the end. Every request writes (at least its
    audit row), so the transaction is begun as a write. A lost race on a unique key (a concurrent
    retry of the same identifier) is retried: the retry sees the winner's row."""
    service.attempt = None
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with service.write_lock, service.session.begin():
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
