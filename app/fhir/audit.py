"""``GET /fhir/AuditEvent``: the audit trail as FHIR AuditEvents, read and search only, within the
caller's tenant (search by ``entity``, ``agent``, ``action`` C/R/U/D/E and ``date``).

Rows hold references only (entity type and id, agent name, address), so an AuditEvent never carries
patient data beyond references. Reading the trail is itself audited (action E).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement, func, or_, select

from app.deps import SettingsDep, StoreDep
from app.errors import InvalidInput, Issue, NotFound
from app.fhir.outcome import fhir_base, fhir_response
from app.resources.bundle import searchset
from app.services.uow import transact
from app.store.models import AuditEventRow
from app.store.repository import format_instant
from app.store.search import date_condition, parse_date_range

router = APIRouter(prefix="/fhir", tags=["FHIR audit"])

ACTIONS = {"C", "R", "U", "D", "E"}


def audit_event_resource(row: AuditEventRow) -> dict[str, Any]:
    agent: dict[str, Any] = {"who": {"identifier": {"value": row.agent}}, "requestor": True}
    if row.source_address:
        agent["network"] = {"address": row.source_address, "type": "2"}  # 2 = IP address
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": row.id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": row.interaction}],
        "action": row.action,
        "recorded": format_instant(row.recorded),
        "outcome": row.outcome,
        "agent": [agent],
        "source": {"observer": {"display": "cocm-api"}},
    }
    if row.entity_type:
        what = f"{row.entity_type}/{row.entity_id}" if row.entity_id else row.entity_type
        event["entity"] = [{"what": {"reference": what} if row.entity_id else {"display": what}}]
    return event


def _conditions(params: list[tuple[str, str]], settings: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, value in params:
        options = [v for v in value.split(",") if v]
        if name in {"entity", "agent", "action"} and not options:
            raise InvalidInput(Issue(f"{name} needs a value", "invalid", expression=(name,)))
        if name == "entity":
            alternatives = []
            for option in options:
                parts = option.rstrip("/").split("/")
                if len(parts) < 2:
                    raise InvalidInput(Issue("entity must be Type/id", "invalid", expression=("entity",)))
                rtype, rid = parts[-2], parts[-1]
                alternatives.append((AuditEventRow.entity_type == rtype) & (AuditEventRow.entity_id == rid))
            conditions.append(or_(*alternatives))
        elif name == "agent":
            conditions.append(AuditEventRow.agent.in_(options))
        elif name == "action":
            if not set(options) <= ACTIONS:
                raise InvalidInput(Issue("action must be C, R, U, D or E", "invalid", expression=("action",)))
            conditions.append(AuditEventRow.action.in_(options))
        elif name == "date":
            try:
                prefix, rng = parse_date_range(value, settings.zone)
            except ValueError:
                raise InvalidInput(
                    Issue("date is not a FHIR date", "invalid", expression=("date",))
                ) from None
            conditions.append(date_condition(AuditEventRow.recorded, prefix, rng))
    return conditions


@router.get("/AuditEvent", summary="Search the audit trail")
def search_audit_events(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """AuditEvents of the caller's tenant, newest first; `_count` (default 50, max 500), `_offset`."""
    params = list(request.query_params.multi_items())
    conditions = _conditions(params, settings)
    raw_count = request.query_params.get("_count", str(settings.default_page_size))
    raw_offset = request.query_params.get("_offset", "0")
    if not (raw_count.isdigit() and raw_offset.isdigit()) or max(len(raw_count), len(raw_offset)) > 9:
        raise InvalidInput(Issue("_count and _offset must be whole numbers", "invalid"))
    count, offset = min(int(raw_count), settings.max_page_size), int(raw_offset)

    def work() -> tuple[list[AuditEventRow], int]:
        store.require("AuditEvent", "s")
        where = [AuditEventRow.tenant == store.tenant, *conditions]
        total = store.session.scalar(select(func.count()).select_from(AuditEventRow).where(*where)) or 0
        rows = store.session.scalars(
            select(AuditEventRow)
            .where(*where)
            .order_by(AuditEventRow.recorded.desc(), AuditEventRow.id)
            .offset(offset)
            .limit(count)
        ).all()
        store.audit("E", "search-type", "AuditEvent")
        return list(rows), total

    rows, total = transact(store, work)
    base = fhir_base(request)
    links = [{"relation": "self", "url": str(request.url)}]
    if offset + count < total:
        query = [(k, v) for k, v in params if k != "_offset"] + [("_offset", str(offset + count))]
        links.append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(query)}"})
    entries = [("AuditEvent", row.id, audit_event_resource(row)) for row in rows]
    return fhir_response(searchset(base, entries, total, links))


@router.get("/AuditEvent/{event_id}", summary="Read one AuditEvent")
def read_audit_event(event_id: str, store: StoreDep) -> Response:
    """One AuditEvent of the caller's tenant (404 otherwise)."""

    def work() -> AuditEventRow:
        store.require("AuditEvent", "r")
        row = store.session.get(AuditEventRow, (store.tenant, event_id))
        if row is None:
            raise NotFound(f"AuditEvent/{event_id} is not known")
        store.audit("R", "read", "AuditEvent", event_id)
        return row

    return fhir_response(audit_event_resource(transact(store, work)))
