"""Subscription operations (notifications.md "Operations"): ``$status`` and ``$events``. The
Subscription resource itself is served by the generic routes (``app.fhir.routes``); its rules are
``app.notifications.subscriptions``, its delivery ``app.services.notify``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import ServiceDep
from app.fhir.outcome import fhir_base, fhir_response
from app.services.notify import events_bundle, status_bundle
from app.services.uow import transact

router = APIRouter(prefix="/fhir/Subscription", tags=["FHIR Subscriptions"])


@router.get("/$status", summary="Status of every subscription of the caller's tenant")
def all_statuses(request: Request, service: ServiceDep) -> Response:
    """A `searchset` Bundle of status `Parameters` (type `query-status`), one per subscription."""
    base = fhir_base(request)
    return fhir_response(transact(service, lambda: status_bundle(service, base, None)))


@router.get("/{rid}/$status", summary="Status of one subscription")
def one_status(rid: str, request: Request, service: ServiceDep) -> Response:
    """Its status `Parameters` (status, topic, events since the start, the last error) in a
    `searchset` Bundle."""
    base = fhir_base(request)
    return fhir_response(transact(service, lambda: status_bundle(service, base, rid)))


@router.get("/{rid}/$events", summary="Replay a subscription's events")
def events(
    rid: str,
    request: Request,
    service: ServiceDep,
    eventsSinceNumber: str | None = None,
    eventsUntilNumber: str | None = None,
    content: str | None = None,
) -> Response:
    """A `history` Bundle (type `query-event`) with the kept events `eventsSinceNumber` ..
    `eventsUntilNumber` (inclusive), as their notifications carried them; `content` (`empty`,
    `id-only`, `full-resource`) overrides the subscription's payload content."""
    base = fhir_base(request)
    body = transact(
        service, lambda: events_bundle(service, base, rid, eventsSinceNumber, eventsUntilNumber, content)
    )
    return fhir_response(body)
