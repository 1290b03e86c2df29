"""Bulk Data export jobs and the snapshot they read (export.md). Persistence only: the service
(``app.services.export``) decides.

The snapshot of a type at ``transaction_time`` is, for every resource of the tenant, its latest
version whose ``last_updated`` is on or before that instant, unless that version is a deletion;
with ``since``, only those whose snapshot version is after ``since``. Versions are never changed,
so a job that runs (or runs again after a restart) later reads the same snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.store.models import ExportJobRow, ResourceVersion

ACTIVE = ("queued", "running")


def job(session: Session, tenant: str, job_id: str) -> ExportJobRow | None:
    """The tenant's job (another tenant's is None), read fresh."""
    row = session.get(ExportJobRow, job_id, populate_existing=True)
    return row if row is not None and row.tenant == tenant else None


def claim(session: Session, now: datetime, lease: timedelta, limit: int) -> list[str]:
    """Lease up to ``limit`` jobs that are queued or whose runner's lease ran out (oldest first), in
    the caller's write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: one runner per job)."""
    due = (
        select(ExportJobRow)
        .where(
            ExportJobRow.status.in_(ACTIVE),
            or_(ExportJobRow.lease_until.is_(None), ExportJobRow.lease_until < now),
        )
        .order_by(ExportJobRow.created)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.scalars(due).all()
    for row in rows:
        row.status = "running"
        row.lease_until = now + lease
    session.flush()
    return [row.id for row in rows]


def anything_due(session: Session, now: datetime) -> bool:
    query = select(ExportJobRow.id).where(
        ExportJobRow.status.in_(ACTIVE),
        or_(ExportJobRow.lease_until.is_(None), ExportJobRow.lease_until < now),
    )
    return session.scalar(query.limit(1)) is not None


def expired(session: Session, now: datetime) -> list[str]:
    """Jobs whose files expired, or that were cancelled and are no longer running."""
    query = select(ExportJobRow.id).where(
        or_(
            ExportJobRow.expires < now,
            (ExportJobRow.status == "cancelled")
            & or_(ExportJobRow.lease_until.is_(None), ExportJobRow.lease_until < now),
        )
    )
    return list(session.scalars(query).all())


def remove(session: Session, job_ids: Sequence[str]) -> None:
    if job_ids:
        session.execute(delete(ExportJobRow).where(ExportJobRow.id.in_(job_ids)))


def _snapshot_filter(
    tenant: str, rtype: str, at: datetime, since: datetime | None
) -> tuple[ColumnElement[bool], ...]:
    newer = aliased(ResourceVersion)
    latest = (
        select(func.max(newer.version_id))
        .where(
            newer.tenant == ResourceVersion.tenant,
            newer.type == ResourceVersion.type,
            newer.id == ResourceVersion.id,
            newer.last_updated <= at,
        )
        .scalar_subquery()
    )
    conditions: tuple[ColumnElement[bool], ...] = (
        ResourceVersion.tenant == tenant,
        ResourceVersion.type == rtype,
        ResourceVersion.last_updated <= at,
        ResourceVersion.version_id == latest,
        ResourceVersion.deleted.is_(False),
    )
    if since is not None:
        conditions += (ResourceVersion.last_updated > since,)
    return conditions


def snapshot_count(session: Session, tenant: str, rtype: str, at: datetime, since: datetime | None) -> int:
    query = (
        select(func.count()).select_from(ResourceVersion).where(*_snapshot_filter(tenant, rtype, at, since))
    )
    return session.scalar(query) or 0


def snapshot_batch(
    session: Session, tenant: str, rtype: str, at: datetime, since: datetime | None, after: str, limit: int
) -> list[tuple[str, str]]:
    """(id, JSON) of the next ``limit`` resources of the snapshot with ids after ``after``, by id."""
    query = (
        select(ResourceVersion.id, ResourceVersion.content)
        .where(*_snapshot_filter(tenant, rtype, at, since), ResourceVersion.id > after)
        .order_by(ResourceVersion.id)
        .limit(limit)
    )
    return [(rid, content) for rid, content in session.execute(query) if content is not None]
