"""``GET /fhir/AuditEvent``: the audit trail as FHIR AuditEvents, read and search only, within the
caller's tenant (search by ``entity``, ``agent``, ``action`` C/R/U/D/E and ``date``).

Rows hold references only (entity type and id, agent name, address), so an AuditEvent never carries
patient data beyond references. Reading the trail is itself audited (action E).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import ServiceDep, SettingsDep
from app.errors import InvalidInput, Issue
from app.fhir.outcome import fhir_base, fhir_response
from app.resources.bundle import searchset
from app.services.uow import transact
from app.store import audit_trail

router = APIRouter(prefix="/fhir", tags=["FHIR audit"])


@router.get("/AuditEvent", summary="Search the audit trail")
def search_audit_events(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """AuditEvents of the caller's tenant, newest first; `_count` (default 50, max 500), `_offset`."""
    params = list(request.query_params.multi_items())
    where = audit_trail.conditions(params, settings.zone)
    raw_count = request.query_params.get("_count", str(settings.default_page_size))
    raw_offset = request.query_params.get("_offset", "0")
    if not (raw_count.isdigit() and raw_offset.isdigit()) or max(len(raw_count), len(raw_offset)) > 9:
        raise InvalidInput(Issue("_count and _offset must be whole numbers", "invalid"))
    count, offset = min(int(raw_count), settings.max_page_size), int(raw_offset)

    rows, total = transact(service, lambda: service.search_audit(where, offset, count))
    base = fhir_base(request)
    links = [{"relation": "self", "url": str(request.url)}]
    if offset + count < total:
        query = [(k, v) for k, v in params if k != "_offset"] + [("_offset", str(offset + count))]
        links.append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(query)}"})
    entries = [("AuditEvent", row.id, audit_trail.resource(row)) for row in rows]
    return fhir_response(searchset(base, entries, total, links))


@router.get("/AuditEvent/{event_id}", summary="Read one AuditEvent")
def read_audit_event(event_id: str, service: ServiceDep) -> Response:
    """One AuditEvent of the caller's tenant (404 otherwise)."""

    return fhir_response(audit_trail.resource(transact(service, lambda: service.read_audit(event_id))))
