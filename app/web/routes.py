"""Server-rendered pages for care managers (Jinja2, autoescaped, no script, no external asset).

- ``GET /registry?as_of=&flag=&status=&cursor=``: the caseload sorted by urgency (the same
  ``sorted_registry`` and ``app.care.registry`` order as ``GET /api/v1/registry``), with flags,
  baseline and latest PHQ-9/GAD-7, an inline SVG trend of the primary instrument, weeks in
  treatment, last contact and the month's counted minutes against the next code threshold.
- ``GET /registry/billing?month=YYYY-MM``: the month's billing rows (``month_billing``, the rows of
  ``GET /api/v1/billing``) with a link to ``/api/v1/billing.csv``.

Same credentials as the API (``ServiceDep`` needs the caller); every read is audited by the service
functions. The pages are not part of the OpenAPI document (``include_in_schema=False``).

Choices:

- **"This month"** is the calendar month of ``as_of``. Its minutes count the time entries dated on
  or before ``as_of`` (clinic time zone), and the engine runs with ``as_of`` as its "today" (episodes
  as known then), so that a page for a past date shows what was known on that date.
- **Next threshold.** The billing engine decides the codes and what is still pending
  (``bill_month``: ``BillingMonth.pending``, nearest first). The nearest is shown as "22 of 36 min
  for 99492", the whole list ("14 more needed for 99492", "21 more for a second 99494") as the
  cell's title; nothing pending (base reached without add-on, or the 99494 cap reached) shows the
  minutes and the codes only.
- **Trend.** The primary instrument (PHQ-9, else GAD-7: measures.md) over every measurement dated
  on or before ``as_of``, x proportional to time, y on the instrument's full range; the dashed line
  is the "not improving" score (``CareConfig.not_improving_min_score``).
- **Errors.** A malformed ``as_of``/``month`` or an unknown flag/status answers 400 with an HTML page
  (the message names the parameter, never patient data).
- **Headers.** ``Cache-Control: no-store`` (the pages carry PHI), a Content-Security-Policy without
  scripts, ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.api.params import parse_as_of, parse_month
from app.billing.engine import bill_month
from app.billing.episodes import local_date
from app.care.registry import registry_page
from app.care.status import FLAGS, STATUSES, CareStatus, MeasureSummary
from app.deps import ServiceDep, SettingsDep
from app.domain import BillingMonth, CodeUnits, Measurement, Month, PatientFacts
from app.errors import InvalidInput
from app.measures.instruments import INSTRUMENTS
from app.services.reports import month_billing, patient_names, patients_facts, safety_alerts, sorted_registry
from app.services.uow import transact
from app.settings import Settings

router = APIRouter(tags=["pages"], include_in_schema=False)

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every value is escaped, whatever the template's name
        undefined=jinja2.StrictUndefined,
    )
)

PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
FLAG_LABELS: Final = {
    "safety_risk": "Safety risk",
    "not_improving": "Not improving",
    "measurement_overdue": "Measurement overdue",
    "no_recent_contact": "No recent contact",
    "case_review_due": "Case review due",
}
STATUS_LABELS: Final = {
    "not_enrolled": "Not enrolled",
    "active": "Active",
    "relapse_prevention": "Relapse prevention",
    "inactive": "Inactive",
    "discharged": "Discharged",
}

AsOf = Annotated[str | None, Query(description="YYYY-MM-DD; default today in the clinic time zone")]
Limit = Annotated[int, Query(ge=1, le=500)]

# Chart geometry (SVG user units).
CHART_WIDTH: Final = 120
CHART_HEIGHT: Final = 36
CHART_PAD: Final = 4


# --- view models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinuteProgress:
    """The month's counted minutes and the next code threshold (module docstring)."""

    minutes: int
    month_kind: str | None
    codes: tuple[CodeUnits, ...]
    target_minutes: int | None  # the next threshold, when something is pending
    target_label: str | None  # "99492", "a second 99494"
    progress: str  # the engine's full progress text ("" when nothing is pending)

    @property
    def text(self) -> str:
        if self.target_minutes is not None and self.target_label is not None:
            return f"{self.minutes} of {self.target_minutes} min for {self.target_label}"
        if self.month_kind is None:
            return f"{self.minutes} min (no episode this month)"
        return f"{self.minutes} min"

    @property
    def percent(self) -> int:
        if not self.target_minutes:
            return 100
        return max(0, min(100, self.minutes * 100 // self.target_minutes))


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    score: int
    day: date


@dataclass(frozen=True)
class Trend:
    instrument: str
    points: tuple[ChartPoint, ...]
    reference_y: float | None  # the dashed "not improving" line
    reference_score: int | None

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def label(self) -> str:
        scores = ", ".join(f"{p.score} on {p.day.isoformat()}" for p in self.points)
        return f"{self.instrument} scores over time: {scores}"


@dataclass(frozen=True)
class RegistryRow:
    patient_id: str
    name: str | None
    status: CareStatus
    phq9: MeasureSummary | None
    gad7: MeasureSummary | None
    trend: Trend | None
    minutes: MinuteProgress
    alert: str | None = None  # safety_risk only: whether and when the alert reached a subscriber


# --- computations --------------------------------------------------------------------------------


def _alert_text(alert: tuple[datetime, datetime | None] | None, settings: Settings) -> str:
    """notifications.md: whether and when the safety alert was delivered, in clinic time."""
    if alert is None:
        return "no alert sent (no subscription)"
    raised, delivered = alert
    if delivered is None:
        return f"alert raised {_clock(raised, settings)}, not yet delivered"
    return f"alert delivered {_clock(delivered, settings)}"


def _clock(instant: datetime, settings: Settings) -> str:
    aware = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
    return aware.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")


def _local_day(instant: datetime, settings: Settings) -> date:
    aware = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
    return aware.astimezone(settings.zone).date()


def score_trend(measurements: Sequence[Measurement], as_of: date, settings: Settings) -> Trend | None:
    """The primary instrument's scores dated on or before ``as_of``, as chart points."""
    dated = sorted(
        ((_local_day(m.effective, settings), m) for m in measurements),
        key=lambda pair: (pair[0], pair[1].effective.replace(tzinfo=pair[1].effective.tzinfo or UTC)),
    )
    for instrument in ("PHQ-9", "GAD-7"):
        series = [
            (day, m.score)
            for day, m in dated
            if m.instrument == instrument and day <= as_of and m.score is not None
        ]
        if series:
            break
    else:
        return None
    top = INSTRUMENTS[instrument].max_score
    first, last = series[0][0], series[-1][0]
    span = max(1, (last - first).days)
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD

    def y_of(score: int) -> float:
        clamped = max(0, min(top, score))
        return CHART_PAD + (1 - clamped / top) * inner_h

    points = tuple(
        ChartPoint(
            CHART_PAD + ((day - first).days / span * inner_w if len(series) > 1 else inner_w / 2),
            y_of(score),
            score,
            day,
        )
        for day, score in series
    )
    reference = settings.care.not_improving_min_score
    has_reference = 0 < reference < top
    return Trend(
        instrument,
        points,
        y_of(reference) if has_reference else None,
        reference if has_reference else None,
    )


def minute_progress(
    patient_id: str, facts: PatientFacts, month: Month, as_of: date, settings: Settings
) -> MinuteProgress:
    """Counted minutes of ``month`` up to ``as_of`` and the next threshold, as the billing engine
    decides them on ``as_of`` (module docstring)."""
    entries = [e for e in facts.entries if local_date(e, settings.zone) <= as_of]
    billed = bill_month(
        patient_id,
        month,
        entries,
        facts.episodes_of_care,
        facts.consents,
        facts.visits,
        settings.billing,
        as_of,
    )
    target = billed.next_threshold
    return MinuteProgress(
        billed.minutes,
        billed.month_kind,
        billed.codes,
        target.minutes if target is not None else None,
        target.label if target is not None else None,
        billed.progress,
    )


def _codes_text(codes: Sequence[CodeUnits]) -> str:
    return ", ".join(code.code if code.units == 1 else f"{code.code} ×{code.units}" for code in codes)


# --- pages ---------------------------------------------------------------------------------------


def render_page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        template,
        {"codes_text": _codes_text, "flag_labels": FLAG_LABELS, "status_labels": STATUS_LABELS, **context},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )
    return response


def bad_request(request: Request, message: str) -> HTMLResponse:
    return render_page(request, "error.html", {"title": "Bad request", "message": message}, 400)


@router.get("/registry", response_class=HTMLResponse)
def registry_view(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    as_of: AsOf = None,
    flag: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: Limit = 200,
) -> HTMLResponse:
    """The caseload page, most urgent first."""
    try:
        day = parse_as_of(as_of or None, settings)
    except InvalidInput as exc:
        return bad_request(request, exc.issues[0].diagnostics)
    flag = flag or None  # an empty select option means "any"
    status = status or None
    try:  # the same checks as the registry itself, before anything is read
        registry_page([], flag=flag, status=status, cursor=cursor, limit=limit)
    except ValueError as exc:  # unknown flag or status, malformed cursor (names the parameter only)
        return bad_request(request, str(exc))
    month = Month.of(day)

    def work() -> tuple[list[RegistryRow], str | None]:
        caseload = sorted_registry(service, settings, day)
        items, next_cursor = caseload.page(flag=flag, status=status, cursor=cursor, limit=limit)
        ids = [s.patient_id for s in items]
        names, facts = patients_facts(service, ids)
        alerts = safety_alerts(service, [s.patient_id for s in items if s.has_flag("safety_risk")])
        rows = []
        for item in items:
            own = facts.get(item.patient_id, PatientFacts())
            rows.append(
                RegistryRow(
                    patient_id=item.patient_id,
                    name=names.get(item.patient_id),
                    status=item,
                    phq9=item.phq9,
                    gad7=item.gad7,
                    trend=score_trend(own.measurements, day, settings),
                    minutes=minute_progress(item.patient_id, own, month, day, settings),
                    alert=_alert_text(alerts.get(item.patient_id), settings)
                    if item.has_flag("safety_risk")
                    else None,
                )
            )
        return rows, next_cursor

    rows, next_cursor = transact(service, work)
    return render_page(
        request,
        "registry.html",
        {
            "title": "CoCM registry",
            "rows": rows,
            "as_of": day,
            "month": month,
            "flag": flag,
            "status": status,
            "flags": FLAGS,
            "statuses": STATUSES,
            "next_cursor": next_cursor,
            "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT},
        },
    )


@router.get("/registry/billing", response_class=HTMLResponse)
def billing_view(
    request: Request, service: ServiceDep, settings: SettingsDep, month: str | None = None
) -> HTMLResponse:
    """The month's billing rows with a link to the CSV for billing staff."""
    try:
        parsed = parse_month(month or None, settings)
    except InvalidInput as exc:
        return bad_request(request, exc.issues[0].diagnostics)

    def work() -> tuple[list[BillingMonth], dict[str, str | None]]:
        months = month_billing(service, settings, parsed)
        names = patient_names(service, [m.patient_id for m in months])
        return months, names

    months, names = transact(service, work)
    totals: dict[str, int] = {}
    for item in months:
        for code in item.codes:
            totals[code.code] = totals.get(code.code, 0) + code.units
    return render_page(
        request,
        "billing.html",
        {
            "title": f"CoCM billing {parsed}",
            "month": parsed,
            "previous": parsed.previous(),
            "following": parsed.next(),
            "rows": months,
            "names": names,
            "totals": dict(sorted(totals.items())),
            "billable_count": sum(1 for m in months if m.billable),
            "csv_url": f"/api/v1/billing.csv?month={parsed}",
        },
    )
