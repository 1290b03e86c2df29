"""The audit trail's reads: search conditions, the queries behind ``GET /fhir/AuditEvent`` and a row
as a FHIR AuditEvent (the rows are written by ``Repository.record_audit``)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, Issue
from app.store.models import AuditEventRow
from app.store.repository import format_instant
from app.store.search import date_condition, parse_date_range

ACTIONS = {"C", "R", "U", "D", "E"}


def conditions(params: list[tuple[str, str]], zone: ZoneInfo) -> list[ColumnElement[bool]]:
    """The search parameters ``entity``, ``agent``, ``action`` and ``date`` as conditions on the
    trail (other parameters are ignored); ``InvalidInput`` naming a malformed one."""
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
                prefix, rng = parse_date_range(value, zone)
            except ValueError:
                raise InvalidInput(
                    Issue("date is not a FHIR date", "invalid", expression=("date",))
                ) from None
            conditions.append(date_condition(AuditEventRow.recorded, prefix, rng))
    return conditions


def search(
    session: Session, tenant: str, where: list[ColumnElement[bool]], offset: int, count: int
) -> tuple[list[AuditEventRow], int]:
    """A page of the tenant's trail matching ``where``, newest first, and how many match."""
    conditions = [AuditEventRow.tenant == tenant, *where]
    total = session.scalar(select(func.count()).select_from(AuditEventRow).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEventRow)
        .where(*conditions)
        .order_by(AuditEventRow.recorded.desc(), AuditEventRow.id)
        .offset(offset)
        .limit(count)
    ).all()
    return list(rows), total


def resource(row: AuditEventRow) -> dict[str, Any]:
    """The row as a FHIR AuditEvent (references only: the row holds nothing else)."""
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
