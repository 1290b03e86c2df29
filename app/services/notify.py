"""Delivering notifications (notifications.md): the dispatcher that empties the outbox, and the
``$status`` / ``$events`` queries.

The dispatcher runs in every server process (a background task of the app's lifespan, unless
``COCM_NOTIFY_IN_PROCESS=false``) and alone as ``cocm notify``. Each round it leases the
subscriptions with work due (``app.store.outbox.claim``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so several workers share the work and never send for the same subscription at once), then per
subscription, in this order:

- a due handshake: 2xx makes the Subscription ``active``, anything else (or a timeout) ``error``;
- undelivered events, in event-number order, one per notification; a failure stops the subscription
  where it is and retries the same event after 5 s, doubling up to 10 min
  (``COCM_NOTIFY_BACKOFF_SECONDS``, ``COCM_NOTIFY_BACKOFF_CAP_SECONDS``) for
  ``COCM_NOTIFY_RETRY_HOURS``; then the Subscription goes to ``error`` and its events wait (a client
  PUT with status ``requested`` starts a new handshake, then delivery resumes where it stopped);
- a heartbeat when ``heartbeatPeriod`` passed since the last notification.

Status changes are new versions of the Subscription written by the ``system`` actor (audited).
Every send first asks again whether the endpoint's host is public (``endpoints``), follows no
redirect, reads at most 64 KiB of the answer and gives up after the subscription's timeout. Logs
name the subscription and the outcome, never a body or a header.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.domain import Actor
from app.errors import DomainError, InvalidInput, Issue, NotFound
from app.notifications.bundles import EventView, StatusView, notification_bundle, status_parameters
from app.notifications.subscriptions import TOPICS
from app.services.endpoints import endpoint_problem
from app.services.resources import ResourceService
from app.services.uow import transact
from app.settings import Settings
from app.store import outbox
from app.store.db import WRITE_OPTION
from app.store.migrate import current_revision, head_revision
from app.store.models import SubscriptionEventRow, SubscriptionStateRow

log = logging.getLogger("cocm.notify")

NOTIFY_ACTOR = Actor("system:notify")
MAX_RESPONSE_BYTES = 64 * 1024  # notifications.md: responses are read at most 64 KiB
EVENTS_PER_CLAIM = 100  # then the lease is given back so that other subscriptions get a turn
CLAIMS_PER_ROUND = 20
LEASE_MARGIN = timedelta(seconds=5)  # a claim's lease until the first send renews it (timeout + this)
PURGE_EVERY = timedelta(minutes=10)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Due:
    """A leased subscription's state, read in one short transaction."""

    tenant: str
    subscription_id: str
    topic: str
    status: str
    endpoint: str
    content: str
    headers: tuple[tuple[str, str], ...]
    heartbeat_seconds: int | None
    timeout_seconds: int
    end_at: datetime | None
    handshake_due: bool
    events: int
    delivered: int
    attempts: int
    failing_since: datetime | None
    last_sent_at: datetime | None

    @classmethod
    def of(cls, row: SubscriptionStateRow) -> Due:
        return cls(
            row.tenant,
            row.subscription_id,
            row.topic,
            row.status,
            row.endpoint,
            row.content,
            tuple((str(name), str(value)) for name, value in orjson.loads(row.headers)),
            row.heartbeat_seconds,
            row.timeout_seconds,
            row.end_at,
            row.handshake_due,
            row.events,
            row.delivered,
            row.attempts,
            row.failing_since,
            row.last_sent_at,
        )

    def view(self, status: str | None = None) -> StatusView:
        return StatusView(self.subscription_id, self.topic, status or self.status, self.events)


def event_view(session: Session, tenant: str, row: SubscriptionEventRow, content: str) -> EventView:
    """An outbox row as a notification carries it; ``full-resource`` reads the stored bodies (the
    focus at the version that raised the event, the context as it is now)."""
    context = tuple(str(ref) for ref in orjson.loads(row.context))
    focus = f"{row.focus_type}/{row.focus_id}"
    bodies: tuple[bytes, ...] = ()
    if content == "full-resource":
        found = [outbox.version_content(session, tenant, focus, row.focus_version)]
        found += [outbox.version_content(session, tenant, ref) for ref in context]
        bodies = tuple(body for body in found if body is not None)
    return EventView(row.number, row.occurred, focus, row.focus_version, context, bodies)


class Dispatcher:
    """Empties the outbox of every tenant through one database (module docstring)."""

    def __init__(
        self,
        sessionmaker: Callable[[], Session],
        settings: Settings,
        *,
        write_lock: AbstractContextManager[object] | None = None,
        head: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.head = head or head_revision()
        self.settings = settings
        self.write_lock: AbstractContextManager[object] = (
            write_lock if write_lock is not None else nullcontext()
        )
        self.last_purge = datetime.min.replace(tzinfo=UTC)
        self.ready = False  # the schema was found at its head revision
        self._client: httpx.AsyncClient | None = None
        self.leases: dict[tuple[str, str], datetime] = {}  # (tenant, id) -> our lease's end

    # ------------------------------------------------------------------ loop
    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: a round, then a pause of ``COCM_NOTIFY_POLL_SECONDS``
        when the round found nothing to do. Nothing runs until the schema is at its head revision
        (``cocm migrate``); a failing round is logged once, not at every poll, until one succeeds."""
        failing = False
        try:
            while not stop.is_set():
                busy = False
                if await asyncio.to_thread(self._schema_ready):
                    try:
                        busy = await self.run_once()
                        if failing:
                            log.info("notification rounds succeed again")
                        failing = False
                    except Exception as exc:
                        if not failing:
                            log.warning("notification round failed: %s", type(exc).__name__)
                        failing = True
                if not busy:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.notify_poll_seconds)
        finally:
            if self._client is not None:
                await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        """Made at the first send (its TLS context costs more than a quiet process should pay)."""
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    def _schema_ready(self) -> bool:
        if self.ready:
            return True
        try:
            with self.sessionmaker() as session:
                self.ready = current_revision(session.get_bind().engine) == self.head
        except SQLAlchemyError:
            return False
        return self.ready

    async def run_once(self) -> bool:
        """One round; whether it found work."""
        now = utcnow()
        claimed = await asyncio.to_thread(self._claim, now)
        for tenant, rid in claimed:
            await self._serve(tenant, rid)
        if now - self.last_purge > PURGE_EVERY:
            self.last_purge = now
            await asyncio.to_thread(self._purge, now)
        return bool(claimed)

    # ------------------------------------------------------ database (threads)
    def _transaction(self, work: Callable[[Session], Any], *, writes: bool = True) -> Any:
        """``work`` in one transaction; a writing one takes the write lock first (SQLite: the
        process's lock and ``BEGIN IMMEDIATE``, so two processes never claim the same row)."""
        with self.write_lock if writes else nullcontext(), self.sessionmaker() as session, session.begin():
            if writes:
                session.connection(execution_options={WRITE_OPTION: True})
            return work(session)

    def _claim(self, now: datetime) -> list[tuple[str, str]]:
        if not self._transaction(lambda s: outbox.anything_due(s, now), writes=False):
            return []
        claimed: list[tuple[str, str]] = self._transaction(
            lambda s: outbox.claim(s, now, LEASE_MARGIN, CLAIMS_PER_ROUND)
        )
        self.leases = dict.fromkeys(claimed, now + LEASE_MARGIN)
        return claimed

    def _purge(self, now: datetime) -> None:
        before = now - timedelta(days=self.settings.notify_retention_days)
        self._transaction(lambda s: outbox.purge(s, before))

    def _load(self, tenant: str, rid: str) -> Due | None:
        def work(session: Session) -> Due | None:
            row = outbox.state(session, tenant, rid)
            return Due.of(row) if row is not None else None

        found: Due | None = self._transaction(work, writes=False)
        return found

    def _events(self, due: Due, first: int, last: int) -> list[EventView]:
        def work(session: Session) -> list[EventView]:
            rows = outbox.events_between(session, due.tenant, due.subscription_id, first, last)
            return [event_view(session, due.tenant, row, due.content) for row in rows]

        found: list[EventView] = self._transaction(work, writes=False)
        return found

    def _release(self, due: Due, **changes: object) -> None:
        self._transaction(lambda s: outbox.release(s, due.tenant, due.subscription_id, **changes))

    def _set_status(self, due: Due, status: str, **changes: object) -> None:
        """A new version of the Subscription with ``status`` (by ``system:notify``), and the state's
        ``changes``, in one transaction; the lease is given back. A client's write since the
        lease was taken wins: then only the lease is given back."""
        with self.sessionmaker() as session:
            service = ResourceService(
                session,
                due.tenant,
                self.settings.zone,
                NOTIFY_ACTOR,
                write_lock=self.write_lock,
                allowed_hosts=self.settings.allowed_hosts,
            )

            def work() -> None:
                current = service.repo.read("Subscription", due.subscription_id)
                assert current.content is not None
                data = orjson.loads(current.content)
                state = outbox.state(session, due.tenant, due.subscription_id)
                if state is None or state.status != due.status or state.handshake_due != due.handshake_due:
                    outbox.release(session, due.tenant, due.subscription_id)
                    return  # the client changed it meanwhile
                if data.get("status") != status:
                    service.update("Subscription", due.subscription_id, {**data, "status": status})
                outbox.release(session, due.tenant, due.subscription_id, status=status, **changes)

            try:
                transact(service, work)
            except DomainError as exc:
                log.warning(
                    "subscription %s: could not record status %s: %s",
                    due.subscription_id,
                    status,
                    exc.issues[0].code,
                )

    # ------------------------------------------------------------------ sends
    async def _serve(self, tenant: str, rid: str) -> None:
        due = await asyncio.to_thread(self._load, tenant, rid)
        if due is None:
            return
        now = utcnow()
        if due.status == "off" or (due.end_at is not None and due.end_at <= now):
            await asyncio.to_thread(self._release, due, handshake_due=False, next_attempt_at=None)
            return
        if due.handshake_due:
            await self._handshake(due)
        elif due.status == "active" and due.delivered < due.events:
            await self._deliver(due)
        elif due.status == "active" and due.heartbeat_seconds is not None:
            await self._heartbeat(due, now)
        else:
            await asyncio.to_thread(self._release, due, next_attempt_at=None)

    async def _handshake(self, due: Due) -> None:
        error = await self._send(due, "handshake", due.view("requested"))
        now = utcnow()
        if error is None:
            log.info("subscription %s: handshake accepted, active", due.subscription_id)
            changes: dict[str, object] = {"handshake_due": False, "last_sent_at": now, "last_error": None}
            await asyncio.to_thread(
                self._set_status, due, "active", next_attempt_at=self._heartbeat_at(due, now), **changes
            )
        else:
            log.warning("subscription %s: handshake failed (%s), error", due.subscription_id, error)
            await asyncio.to_thread(
                self._set_status, due, "error", handshake_due=False, last_error=error, next_attempt_at=None
            )

    async def _deliver(self, due: Due) -> None:
        last = min(due.events, due.delivered + EVENTS_PER_CLAIM)
        events = await asyncio.to_thread(self._events, due, due.delivered + 1, last)
        delivered = due.delivered
        for event in events:
            if event.number != delivered + 1:
                break  # purged by retention: $events can no longer replay it either; skip the gap
            error = await self._send(due, "event-notification", due.view(), [event])
            now = utcnow()
            if error is not None:
                await asyncio.to_thread(self._failed, due, error, now)
                return
            delivered = event.number
            await asyncio.to_thread(self._release_delivered, due, delivered, now)
        if not events and due.delivered < due.events:  # every missing event was purged
            delivered = due.events
        await asyncio.to_thread(
            self._release,
            due,
            delivered=delivered,
            attempts=0,
            failing_since=None,
            next_attempt_at=None if delivered < due.events else self._heartbeat_at(due, utcnow()),
        )

    def _release_delivered(self, due: Due, number: int, now: datetime) -> None:
        """Event ``number`` was delivered; the lease stays (``_send`` renews it when short)."""

        def work(session: Session) -> None:
            outbox.mark_delivered(session, due.tenant, due.subscription_id, number, now)
            outbox.release(
                session,
                due.tenant,
                due.subscription_id,
                delivered=number,
                attempts=0,
                failing_since=None,
                last_sent_at=now,
                last_error=None,
                lease_until=self.leases.get((due.tenant, due.subscription_id), now),
            )

        self._transaction(work)

    def _failed(self, due: Due, error: str, now: datetime) -> None:
        """Back off, or give up after ``COCM_NOTIFY_RETRY_HOURS``: status ``error``."""
        since = due.failing_since or now
        attempts = due.attempts + 1
        if now - since >= timedelta(hours=self.settings.notify_retry_hours):
            log.warning("subscription %s: retries exhausted (%s), error", due.subscription_id, error)
            self._set_status(
                due, "error", attempts=0, failing_since=None, last_error=error, next_attempt_at=None
            )
            return
        delay = min(
            self.settings.notify_backoff_seconds * 2 ** (attempts - 1),
            self.settings.notify_backoff_cap_seconds,
        )
        log.info(
            "subscription %s: delivery failed (%s), retry %d in %.1f s",
            due.subscription_id,
            error,
            attempts,
            delay,
        )
        outcome = {"attempts": attempts, "failing_since": since, "last_error": error}
        self._release(due, next_attempt_at=now + timedelta(seconds=delay), **outcome)

    async def _heartbeat(self, due: Due, now: datetime) -> None:
        assert due.heartbeat_seconds is not None
        due_at = (
            self._heartbeat_at(due, now)
            if due.last_sent_at is None
            else due.last_sent_at + timedelta(seconds=due.heartbeat_seconds)
        )
        if due_at is not None and due_at > now:
            await asyncio.to_thread(self._release, due, next_attempt_at=due_at)
            return
        error = await self._send(due, "heartbeat", due.view())
        sent = utcnow()
        await asyncio.to_thread(
            self._release,
            due,
            last_sent_at=sent if error is None else due.last_sent_at,
            last_error=error,
            next_attempt_at=sent + timedelta(seconds=due.heartbeat_seconds),
        )

    @staticmethod
    def _heartbeat_at(due: Due, now: datetime) -> datetime | None:
        return None if due.heartbeat_seconds is None else now + timedelta(seconds=due.heartbeat_seconds)

    async def _send(
        self,
        due: Due,
        kind: str,
        view: StatusView,
        events: list[EventView] | None = None,
    ) -> str | None:
        """POST one notification; None when the endpoint answered 2xx, else why not. The lease is
        renewed first when less than the send's timeout is left of it (to timeout + 5 s), so no
        other worker sends for this subscription meanwhile, a killed worker's lease runs out soon
        after, and a run of events costs a renewal every few seconds, not one per event."""
        key, now = (due.tenant, due.subscription_id), utcnow()
        timeout = timedelta(seconds=due.timeout_seconds)
        if self.leases.get(key, now) - now < timeout:
            until = self.leases[key] = now + timeout + LEASE_MARGIN
            await asyncio.to_thread(
                self._transaction,
                lambda s: outbox.release(s, due.tenant, due.subscription_id, lease_until=until),
            )
        problem = await asyncio.to_thread(endpoint_problem, due.endpoint, self.settings.allowed_hosts)
        if problem is not None:
            return problem
        body = notification_bundle(self.settings.fhir_base, view, kind, utcnow(), events or [], due.content)
        headers = {**dict(due.headers), "Content-Type": "application/fhir+json"}
        try:
            async with asyncio.timeout(due.timeout_seconds):
                async with self.client.stream(
                    "POST", due.endpoint, content=body, headers=headers
                ) as response:
                    read = 0
                    async for chunk in response.aiter_bytes():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES:
                            break
                    status = response.status_code
        except TimeoutError:
            return "the endpoint did not answer in time"
        except httpx.HTTPError as exc:
            return f"the endpoint could not be reached ({type(exc).__name__})"
        return None if 200 <= status < 300 else f"the endpoint answered {status}"


# ---------------------------------------------------------------------- $status and $events


def status_bundle(service: ResourceService, base: str, rid: str | None) -> bytes:
    """``$status`` of one subscription (``rid``) or of all the caller's: a searchset Bundle of
    status Parameters (type ``query-status``)."""
    service.require("Subscription", "r", rid=rid)
    if rid is not None:
        service.repo.read("Subscription", rid)  # 404 / 410 as for a read
    rows = outbox.states(service.session, service.tenant, rid)
    service.audit("E", "subscription-status", "Subscription", rid)
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": status_parameters(
                base,
                StatusView(row.subscription_id, row.topic, row.status, row.events, row.last_error),
                "query-status",
            ),
            "search": {"mode": "match"},
        }
        for row in rows
    ]
    own = f"{base}/Subscription/{rid + '/' if rid else ''}$status"
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "link": [{"relation": "self", "url": own}],
            "entry": entries,
        }
    )


def events_bundle(
    service: ResourceService,
    base: str,
    rid: str,
    since: str | None,
    until: str | None,
    content: str | None,
) -> bytes:
    """``$events``: a history Bundle (type ``query-event``) with events ``since``..``until`` (both
    inclusive, default all that are kept), as the notification carried them (``content`` may ask
    for less or more than the subscription's)."""
    service.require("Subscription", "r", rid=rid)
    service.repo.read("Subscription", rid)
    row = outbox.state(service.session, service.tenant, rid)
    if row is None:
        raise NotFound(f"Subscription/{rid} is not known")
    first = _event_number(since, "eventsSinceNumber", 1)
    last = min(_event_number(until, "eventsUntilNumber", row.events), row.events)
    chosen = content or row.content
    if chosen not in {"empty", "id-only", "full-resource"}:
        raise InvalidInput(
            Issue("content must be empty, id-only or full-resource", "invalid", expression=("content",))
        )
    if chosen == "full-resource":  # the stored focus and context: read scope on what they are
        for rtype in (*TOPICS.get(row.topic, ()), "Patient", "QuestionnaireResponse"):
            service.require(rtype, "r")
    events = [
        event_view(service.session, service.tenant, event, chosen)
        for event in outbox.events_between(service.session, service.tenant, rid, first, last)
    ]
    service.audit("E", "subscription-events", "Subscription", rid)
    view = StatusView(rid, row.topic, row.status, row.events, row.last_error)
    return notification_bundle(base, view, "query-event", utcnow(), events, chosen)


def _event_number(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise InvalidInput(Issue(f"{name} must be a whole number", "invalid", expression=(name,)))
    return int(text)
