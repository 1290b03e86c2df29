"""The notification outbox (notifications.md): subscription state and events, written in the
transaction of the data that raised them, and the dispatcher's claims on them.

- Numbering. Raising an event locks the subscription's state row (PostgreSQL ``FOR UPDATE``; SQLite
  holds the database's write lock), adds one to ``events`` and stores the event under that number:
  gapless per subscription, and a rolled-back write takes its numbers back with it.
- Who gets an event: the tenant's subscriptions to the topic whose status is requested, active or
  error (events wait for the handshake, or for the client to lift an error), whose filter names the
  event's patient or no patient, and whose ``end`` has not passed. ``off`` records nothing.
- Claims. A dispatcher leases a subscription (``lease_until``) in a short transaction, on PostgreSQL
  with ``FOR UPDATE SKIP LOCKED`` so that workers never wait for each other nor take the same one;
  it sends without holding a transaction and records the outcome under the lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
from sqlalchemy import ColumnElement, and_, bindparam, delete, or_, select, true, update
from sqlalchemy.orm import Session

from app.notifications.subscriptions import RaisedEvent, SubscriptionSpec
from app.store.db import insert_later, transaction_info
from app.store.models import ResourceVersion, SubscriptionEventRow, SubscriptionStateRow

RECEIVING = ("requested", "active", "error")


def sync_subscription(session: Session, tenant: str, rid: str, spec: SubscriptionSpec) -> None:
    """Create or refresh the state of a Subscription just written. Status ``requested`` (a new
    subscription, or a client asking for a new handshake) makes a handshake due."""
    _forget_receivers(session, tenant)
    state = session.get(SubscriptionStateRow, (tenant, rid), with_for_update=True)
    fields = {
        "topic": spec.topic,
        "patient_id": spec.patient_id,
        "status": spec.status,
        "endpoint": spec.endpoint,
        "content": spec.content,
        "headers": orjson.dumps(spec.headers).decode(),
        "heartbeat_seconds": spec.heartbeat_seconds,
        "timeout_seconds": spec.timeout_seconds,
        "end_at": spec.end,
    }
    restart = {"handshake_due": True, "attempts": 0, "failing_since": None, "next_attempt_at": None}
    if state is None:
        session.add(
            SubscriptionStateRow(
                tenant=tenant,
                subscription_id=rid,
                events=0,
                delivered=0,
                last_error=None,
                **fields,
                **{**restart, "handshake_due": spec.status == "requested"},
            )
        )
    else:
        for name, value in {**fields, **(restart if spec.status == "requested" else {})}.items():
            setattr(state, name, value)
    session.flush()


def drop_subscription(session: Session, tenant: str, rid: str) -> None:
    """A deleted Subscription takes its state and its events with it."""
    _forget_receivers(session, tenant)
    for model in (SubscriptionEventRow, SubscriptionStateRow):
        session.execute(delete(model).where(model.tenant == tenant, model.subscription_id == rid))


RECEIVERS = "subscription_receivers"  # transaction_info key (with the tenant): its receiving subscriptions
LOCKED = "subscription_locked"  # transaction_info key (with the tenant): state rows locked, by id
_RECEIVERS = select(  # built once: looked up on every write that could raise an event
    SubscriptionStateRow.subscription_id, SubscriptionStateRow.topic, SubscriptionStateRow.patient_id
).where(
    SubscriptionStateRow.tenant == bindparam("tenant"),
    SubscriptionStateRow.status.in_(RECEIVING),
    or_(SubscriptionStateRow.end_at.is_(None), SubscriptionStateRow.end_at > bindparam("now")),
)


def _forget_receivers(session: Session, tenant: str) -> None:
    info = transaction_info(session)
    info.pop(f"{RECEIVERS}:{tenant}", None)
    info.pop(f"{LOCKED}:{tenant}", None)


def _receivers(session: Session, tenant: str, now: datetime) -> list[tuple[str, str, str | None]]:
    """(id, topic, filter patient) of the tenant's subscriptions that receive events, read once per
    transaction (one small query per write; a Subscription written in the transaction resets it)."""
    info = transaction_info(session)
    found: list[tuple[str, str, str | None]] | None = info.get(f"{RECEIVERS}:{tenant}")
    if found is None:
        rows = session.execute(_RECEIVERS, {"tenant": tenant, "now": now})
        found = info[f"{RECEIVERS}:{tenant}"] = [(rid, topic, patient) for rid, topic, patient in rows]
    return found


def receiving_topics(
    session: Session, tenant: str, topics: Sequence[str], patient_id: str, now: datetime
) -> set[str]:
    """Which of ``topics`` some subscription of the tenant would receive for ``patient_id`` (the
    whole-picture topics are computed only then)."""
    return {
        topic
        for _, topic, patient in _receivers(session, tenant, now)
        if topic in topics and patient in (None, patient_id)
    }


def raise_events(session: Session, tenant: str, events: Sequence[RaisedEvent], now: datetime) -> None:
    """Number and store ``events`` for every subscription that receives them. Only the receivers'
    state rows are locked (in id order, one lock order for every writer), and read afresh the first
    time in the transaction: a group commit's later writes number on from the rows it holds, and
    the counts are written once, at commit."""
    receivers = _receivers(session, tenant, now)
    for event in events:
        ids = sorted(
            rid
            for rid, topic, patient in receivers
            if topic == event.topic and patient in (None, event.patient_id)
        )
        if not ids:
            continue
        locked: dict[str, SubscriptionStateRow] = transaction_info(session).setdefault(
            f"{LOCKED}:{tenant}", {}
        )
        missing = [rid for rid in ids if rid not in locked]
        if missing:
            for state in session.scalars(
                select(SubscriptionStateRow)
                .where(
                    SubscriptionStateRow.tenant == tenant, SubscriptionStateRow.subscription_id.in_(missing)
                )
                .order_by(SubscriptionStateRow.subscription_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ):
                locked[state.subscription_id] = state
        for state in (locked[rid] for rid in ids if rid in locked):
            if state.status not in RECEIVING:
                continue  # changed since the transaction looked
            state.events += 1
            if state.attempts == 0:
                state.next_attempt_at = None  # due now (it may have waited for a heartbeat)
            insert_later(
                session,
                SubscriptionEventRow,
                {
                    "tenant": tenant,
                    "subscription_id": state.subscription_id,
                    "number": state.events,
                    "occurred": now,
                    "topic": event.topic,
                    "patient_id": event.patient_id,
                    "focus_type": event.focus_type,
                    "focus_id": event.focus_id,
                    "focus_version": event.focus_version,
                    "context": orjson.dumps(list(event.context)).decode(),
                },
            )


# --------------------------------------------------------------------------- the dispatcher's side


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        or_(SubscriptionStateRow.lease_until.is_(None), SubscriptionStateRow.lease_until < now),
        or_(SubscriptionStateRow.next_attempt_at.is_(None), SubscriptionStateRow.next_attempt_at <= now),
        or_(
            SubscriptionStateRow.handshake_due == true(),
            (SubscriptionStateRow.status == "active")
            & (
                (SubscriptionStateRow.delivered < SubscriptionStateRow.events)
                | SubscriptionStateRow.heartbeat_seconds.is_not(None)
            ),
        ),
    )


def anything_due(session: Session, now: datetime) -> bool:
    """Whether some subscription has work due: a read, so that a quiet poll takes no write lock."""
    return session.scalar(select(SubscriptionStateRow.subscription_id).where(_due(now)).limit(1)) is not None


def claim(session: Session, now: datetime, lease: timedelta, limit: int) -> list[tuple[str, str]]:
    """Lease up to ``limit`` subscriptions with work due (a handshake, an undelivered event, a
    heartbeat), in the caller's (write) transaction; answers their (tenant, id)."""
    due = (
        select(SubscriptionStateRow)
        .where(_due(now))
        .order_by(SubscriptionStateRow.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.scalars(due).all()
    for row in rows:
        row.lease_until = now + lease
    session.flush()
    return [(row.tenant, row.subscription_id) for row in rows]


def state(session: Session, tenant: str, rid: str) -> SubscriptionStateRow | None:
    return session.get(SubscriptionStateRow, (tenant, rid), populate_existing=True)


def states(session: Session, tenant: str, rid: str | None = None) -> list[SubscriptionStateRow]:
    query = select(SubscriptionStateRow).where(SubscriptionStateRow.tenant == tenant)
    if rid is not None:
        query = query.where(SubscriptionStateRow.subscription_id == rid)
    return list(session.scalars(query.order_by(SubscriptionStateRow.subscription_id)).all())


def events_between(
    session: Session, tenant: str, rid: str, first: int, last: int
) -> list[SubscriptionEventRow]:
    """The stored events numbered ``first``..``last`` (inclusive), in order."""
    return list(
        session.scalars(
            select(SubscriptionEventRow)
            .where(
                SubscriptionEventRow.tenant == tenant,
                SubscriptionEventRow.subscription_id == rid,
                SubscriptionEventRow.number >= first,
                SubscriptionEventRow.number <= last,
            )
            .order_by(SubscriptionEventRow.number)
        ).all()
    )


def version_content(session: Session, tenant: str, ref: str, version: int | None = None) -> bytes | None:
    """The stored JSON of ``Type/id`` at ``version`` (its latest when None); None when deleted."""
    rtype, rid = ref.split("/", 1)
    query = select(ResourceVersion.content).where(
        ResourceVersion.tenant == tenant, ResourceVersion.type == rtype, ResourceVersion.id == rid
    )
    if version is not None:
        query = query.where(ResourceVersion.version_id == version)
    content = session.scalar(query.order_by(ResourceVersion.version_id.desc()).limit(1))
    return content.encode() if content else None


def mark_delivered(session: Session, tenant: str, rid: str, number: int, at: datetime) -> None:
    session.execute(
        update(SubscriptionEventRow)
        .where(
            SubscriptionEventRow.tenant == tenant,
            SubscriptionEventRow.subscription_id == rid,
            SubscriptionEventRow.number == number,
        )
        .values(delivered_at=at)
    )


def latest_alerts(
    session: Session, tenant: str, topic: str, patient_ids: Sequence[str]
) -> dict[str, tuple[datetime, datetime | None]]:
    """Per patient, the last ``topic`` event raised (when) and its first delivery to any
    subscriber (when, or None while none has answered 2xx)."""
    rows = session.execute(
        select(
            SubscriptionEventRow.patient_id, SubscriptionEventRow.occurred, SubscriptionEventRow.delivered_at
        )
        .where(
            SubscriptionEventRow.tenant == tenant,
            SubscriptionEventRow.topic == topic,
            SubscriptionEventRow.patient_id.in_(patient_ids),
        )
        .order_by(SubscriptionEventRow.patient_id, SubscriptionEventRow.occurred)
    )
    latest: dict[str, tuple[datetime, datetime | None]] = {}
    for patient_id, occurred, delivered in rows:
        raised, first = latest.get(patient_id, (occurred, None))
        if occurred > raised:
            raised, first = occurred, None
        if delivered is not None and (first is None or delivered < first):
            first = delivered
        latest[patient_id] = (raised, first)
    return latest


def release(session: Session, tenant: str, rid: str, **changes: object) -> None:
    """Record the outcome of a claim and give the lease back (unless ``changes`` renew it)."""
    session.execute(
        update(SubscriptionStateRow)
        .where(SubscriptionStateRow.tenant == tenant, SubscriptionStateRow.subscription_id == rid)
        .values({"lease_until": None, **changes})
    )


def purge(session: Session, before: datetime) -> int:
    """Forget events raised before ``before`` (``COCM_NOTIFY_RETENTION_DAYS``)."""
    result = session.execute(delete(SubscriptionEventRow).where(SubscriptionEventRow.occurred < before))
    return int(getattr(result, "rowcount", 0) or 0)
