"""Bulk Data export jobs and the snapshot they read (export.md). Persistence only: the service
(``app.services.export``) decides.

The snapshot of a type at ``transaction_time`` is, for every resource of the tenant, its latest
version whose ``last_updated`` is on or before that instant, unless that version is a deletion;
with ``since``, only those whose snapshot version is after ``since``. Versions are never changed,
so a job that runs (or runs again after a restart) later reads the same snapshot.

AuditEvents are rows of the append-only trail, not versioned resources: their snapshot is every
event of the tenant recorded on or before ``transaction_time`` (and after ``since``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
from sqlalchemy import ColumnElement, delete, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from app.store import audit_trail
from app.store.models import AuditEventRow, ExportJobRow, ResourceVersion

ACTIVE = ("queued", "running")


def job(session: Session, tenant: str, job_id: str) -> ExportJobRow | None:
    """The tenant's job (another tenant's is None), read fresh."""
    row = session.get(ExportJobRow, job_id, populate_existing=True)
    return row if row is not None and row.tenant == tenant else None


def _due(now: datetime) -> ColumnElement[bool]:
    return ExportJobRow.status.in_(ACTIVE) & or_(
        ExportJobRow.lease_until.is_(None), ExportJobRow.lease_until < now
    )


def claim(session: Session, now: datetime, lease: timedelta, limit: int, owner: str) -> list[str]:
    """Lease up to ``limit`` jobs that are queued or whose runner's lease ran out (oldest first) to
    ``owner``, in the caller's write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
    due = select(ExportJobRow).where(_due(now)).order_by(ExportJobRow.created).limit(limit)
    rows = session.scalars(due.with_for_update(skip_locked=True)).all()
    for row in rows:
        row.status, row.lease_until, row.lease_owner = "running", now + lease, owner
    session.flush()
    return [row.id for row in rows]


def anything_due(session: Session, now: datetime) -> bool:
    return session.scalar(select(ExportJobRow.id).where(_due(now)).limit(1)) is not None


def owned(session: Session, job_id: str, owner: str) -> ExportJobRow | None:
    """The job, locked, while ``owner`` still holds it running; None once cancelled, gone or taken
    over by another runner."""
    row = session.get(ExportJobRow, job_id, with_for_update=True, populate_existing=True)
    return row if row is not None and row.status == "running" and row.lease_owner == owner else None


def expired(session: Session, now: datetime) -> list[str]:
    """Jobs whose files (or failure) expired, or that were cancelled and are no longer running."""
    query = select(ExportJobRow.id).where(
        or_(
            ExportJobRow.expires < now,
            (ExportJobRow.status == "cancelled")
            & or_(ExportJobRow.lease_until.is_(None), ExportJobRow.lease_until < now),
        )
    )  # a failed job expires like a complete one
    return list(session.scalars(query).all())


def remove(session: Session, job_ids: Sequence[str]) -> None:
    if job_ids:
        session.execute(delete(ExportJobRow).where(ExportJobRow.id.in_(job_ids)))


def _snapshot_filter(
    tenant: str, rtype: str, at: datetime, since: datetime | None, deleted: bool = False
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
        ResourceVersion.deleted.is_(deleted),
    )
    if since is not None:
        conditions += (ResourceVersion.last_updated > since,)
    return conditions


def _audit_filter(tenant: str, at: datetime, since: datetime | None) -> tuple[ColumnElement[bool], ...]:
    conditions: tuple[ColumnElement[bool], ...] = (
        AuditEventRow.tenant == tenant,
        AuditEventRow.recorded <= at,
    )
    if since is not None:
        conditions += (AuditEventRow.recorded > since,)
    return conditions


def snapshot_count(session: Session, tenant: str, rtype: str, at: datetime, since: datetime | None) -> int:
    if rtype == "AuditEvent":
        query = select(func.count()).select_from(AuditEventRow).where(*_audit_filter(tenant, at, since))
    else:
        query = (
            select(func.count())
            .select_from(ResourceVersion)
            .where(*_snapshot_filter(tenant, rtype, at, since))
        )
    return session.scalar(query) or 0


def snapshot_batch(
    session: Session,
    tenant: str,
    rtype: str,
    at: datetime,
    since: datetime | None,
    after: str,
    limit: int,
    *,
    deleted: bool = False,
) -> list[tuple[str, str]]:
    """(id, JSON) of the next ``limit`` resources of the snapshot with ids after ``after``, by id;
    ``deleted``: instead (id, "") of those whose version as of ``at`` is a deletion (after ``since``)."""
    if rtype == "AuditEvent":
        events = session.scalars(
            select(AuditEventRow)
            .where(*_audit_filter(tenant, at, since), AuditEventRow.id > after)
            .order_by(AuditEventRow.id)
            .limit(limit)
        )
        return [(row.id, orjson.dumps(audit_trail.resource(row)).decode()) for row in events]
    query = (
        select(ResourceVersion.id, ResourceVersion.content)
        .where(*_snapshot_filter(tenant, rtype, at, since, deleted), ResourceVersion.id > after)
        .order_by(ResourceVersion.id)
        .limit(limit)
    )
    return [(rid, content or "") for rid, content in session.execute(query)]


def writers_open_since(session: Session, at: datetime) -> bool:
    """Whether another transaction that has written and began by ``at`` is still open (PostgreSQL's
    ``pg_stat_activity``; SQLite answers False: its writers run one at a time)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    query = text(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_xid IS NOT NULL AND xact_start <= :at LIMIT 1"
    )
    return session.execute(query, {"at": at}).first() is not None
