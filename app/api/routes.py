"""Dashboard JSON routes under ``/api/v1`` (api.md, "JSON API for dashboards").

Errors are ``{"error": ..., "detail": ...}``: 400 for a malformed ``month``/``as_of``/``cursor``/
filter, 404 for an unknown patient. Lists take ``limit`` (default 100, max 500) and an opaque
``cursor``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from app.api.params import parse_as_of, parse_month
from app.api.render import billing_csv_rows, billing_json
from app.api.schemas import (
    BillingMonthOut,
    BillingPageOut,
    CareStatusOut,
    QualityOut,
    RegistryPageOut,
    documented,
)
from app.deps import ServiceDep, SettingsDep
from app.errors import InvalidInput, Issue
from app.resources import cursor as cursor_codec
from app.services.quality import parse_period, quality_json, this_year
from app.services.reports import (
    begin_month_billing,
    month_billing_run,
    patient_billing,
    patient_care_status,
    patient_names,
    sorted_registry,
    stream_month_billing,
)
from app.services.uow import transact

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

Limit = Annotated[int, Query(ge=1, le=500, description="page size (max 500)")]
MonthParam = Annotated[str, Query(description="calendar month YYYY-MM in the clinic time zone")]
AsOf = Annotated[str | None, Query(description="YYYY-MM-DD; default today in the clinic time zone")]


@router.get(
    "/patients/{patient_id}/billing",
    summary="One patient's billing month",
    response_model=None,
    responses=documented(BillingMonthOut, 400, 404),
)
def patient_billing_month(
    patient_id: str, month: MonthParam, service: ServiceDep, settings: SettingsDep
) -> dict[str, Any]:
    """Codes and units the month's counted minutes support, whether the month is billable, its
    blockers and notes that explain the result."""
    parsed = parse_month(month, settings)
    return billing_json(transact(service, lambda: patient_billing(service, settings, patient_id, parsed)))


def _encode_cursor(patient_id: str) -> str:
    return cursor_codec.encode(patient_id)


def _decode_cursor(cursor: str) -> str:
    try:
        patient_id = cursor_codec.decode(cursor)
    except ValueError:
        patient_id = None
    if not isinstance(patient_id, str):
        raise InvalidInput(Issue("cursor is not a cursor this server issued", "invalid")) from None
    return patient_id


@router.get(
    "/billing",
    summary="Billing month for all patients",
    response_model=None,
    responses=documented(BillingPageOut, 400),
)
def billing(
    month: MonthParam,
    service: ServiceDep,
    settings: SettingsDep,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Every patient with counted minutes in the month, in patient-id order; `totals` sums units per
    code over all of them (all pages, blocked months included)."""
    parsed = parse_month(month, settings)
    run = transact(service, lambda: month_billing_run(service, settings, parsed))
    page, last = run.page_after(_decode_cursor(cursor) if cursor else None, limit)
    return {
        "month": str(parsed),
        "items": [billing_json(m) for m in page],
        "totals": run.totals,
        "next_cursor": _encode_cursor(last) if last else None,
    }


@router.get("/billing.csv", summary="Billing month as CSV", response_class=StreamingResponse)
def billing_csv(
    request: Request, month: MonthParam, service: ServiceDep, settings: SettingsDep
) -> StreamingResponse:
    """The month's billing rows for billing staff: one row per patient and code (a patient whose
    minutes support no code gets one row with an empty code), with minutes, month kind, billable,
    blockers and notes. UTF-8 with a byte-order mark, CRLF lines, formula-safe cells. Streamed:
    computed a few hundred patients at a time while it is sent."""
    parsed = parse_month(month, settings)
    transact(service, lambda: begin_month_billing(service))
    months = stream_month_billing(request.app.state.read_sessionmaker, service.tenant, settings, parsed)
    return StreamingResponse(
        billing_csv_rows(months),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="cocm-billing-{parsed}.csv"'},
    )


@router.get(
    "/patients/{patient_id}/care-status",
    summary="One patient's care status",
    response_model=None,
    responses=documented(CareStatusOut, 400, 404),
)
def care_status(
    patient_id: str, service: ServiceDep, settings: SettingsDep, as_of: AsOf = None
) -> dict[str, Any]:
    """Episode, weeks in treatment, baseline and latest PHQ-9/GAD-7, response, remission, last
    contact, status and flags, reproducible for any `as_of`."""
    day = parse_as_of(as_of, settings)
    result = transact(service, lambda: patient_care_status(service, settings, patient_id, day))
    return result.to_json()


@router.get(
    "/quality",
    summary="The quality measures for a period and its quarters",
    response_model=None,
    responses=documented(QualityOut, 400),
)
def quality(
    service: ServiceDep,
    settings: SettingsDep,
    period_start: Annotated[
        str | None, Query(description="YYYY-MM-DD; default January 1 of this year")
    ] = None,
    period_end: Annotated[
        str | None, Query(description="YYYY-MM-DD; default December 31 of this year")
    ] = None,
) -> dict[str, Any]:
    """Every measure of quality.md (populations, score per group, the program's target) for the
    period, and the same for each calendar quarter it touches (cut to the period): the trend."""
    period = parse_period(period_start, period_end, ("period_start", "period_end"), this_year(settings))
    return transact(service, lambda: quality_json(service, settings, period))


@router.get(
    "/registry",
    summary="The caseload, most urgent first",
    response_model=None,
    responses=documented(RegistryPageOut, 400),
)
def registry(
    service: ServiceDep,
    settings: SettingsDep,
    as_of: AsOf = None,
    flag: str | None = None,
    status: str | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Care status and name of every patient in care, sorted by urgency (safety_risk, then
    not_improving, then the longest without contact), filterable by `flag` and `status`."""
    day = parse_as_of(as_of, settings)

    def work() -> tuple[list[dict[str, Any]], str | None]:
        caseload = sorted_registry(service, settings, day)
        try:
            items, next_cursor = caseload.page(flag=flag, status=status, cursor=cursor, limit=limit)
        except ValueError as exc:
            raise InvalidInput(Issue(str(exc), "invalid")) from None
        names = patient_names(service, [s.patient_id for s in items])
        return [{**s.to_json(), "name": names.get(s.patient_id)} for s in items], next_cursor

    items, next_cursor = transact(service, work)
    return {"as_of": day.isoformat(), "items": items, "next_cursor": next_cursor}
