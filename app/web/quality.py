"""The quality page (quality.md, "Dashboard JSON and page").

- ``GET /registry/quality?period_start=&period_end=``: every measure of ``app.quality`` for the
  period (default: this calendar year): each group's rate as a bar against the program's target
  (``COCM_TARGET_<ID>``), the rate of each calendar quarter as an inline SVG line, and the counts,
  each linking to the patients behind it.
- ``GET /registry/quality/patients?measure=&group=&population=&period_start=&period_end=``: those
  patients, by name and id.

The same data as ``GET /api/v1/quality`` (``app.services.quality``), the same credentials and
headers as the other pages; a malformed parameter answers a 400 page naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.deps import ServiceDep, SettingsDep
from app.errors import InvalidInput
from app.quality.measures import MEASURES, POPULATIONS, MeasureResult, Period
from app.services.quality import evaluate_measures, parse_period, this_year
from app.services.reports import patient_names
from app.services.uow import transact
from app.web.routes import bad_request, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)

TREND_WIDTH: Final = 160
TREND_HEIGHT: Final = 44
TREND_PAD: Final = 5
POPULATION_LABELS: Final = {
    "initial-population": "Initial population",
    "denominator": "Denominator",
    "denominator-exclusion": "Exclusions",
    "numerator": "Numerator",
}


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class GroupRow:
    title: str
    score: Decimal | None
    target: float | None
    counts: list[tuple[str, int, str]]  # label, count, link to the patients
    trend: list[TrendPoint]

    @property
    def percent(self) -> float:
        return 0.0 if self.score is None else float(self.score) * 100

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.trend)


def _trend(quarters: list[Period], results: list[MeasureResult], group: int) -> list[TrendPoint]:
    """One point per quarter with a rate, x by quarter, y from 0% (bottom) to 100% (top)."""
    step = (TREND_WIDTH - 2 * TREND_PAD) / max(len(quarters) - 1, 1)
    points = []
    for position, (quarter, result) in enumerate(zip(quarters, results, strict=True)):
        score = result.groups[group].score
        if score is None:
            continue
        name = f"{quarter.start.year} Q{(quarter.start.month - 1) // 3 + 1}"
        points.append(
            TrendPoint(
                TREND_PAD + position * step,
                TREND_HEIGHT - TREND_PAD - float(score) * (TREND_HEIGHT - 2 * TREND_PAD),
                f"{name}: {float(score) * 100:.1f}%",
            )
        )
    return points


def _link(period: Period, measure: str, group: int, population: str) -> str:
    query = {
        "measure": measure,
        "group": group,
        "population": population,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
    }
    return "/registry/quality/patients?" + urlencode(query)


@router.get("/registry/quality", response_class=HTMLResponse)
def quality_view(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    period_start: str | None = None,
    period_end: str | None = None,
) -> HTMLResponse:
    """Each measure's rate against its target, its quarterly trend and its counts."""
    try:
        period = parse_period(
            period_start or None, period_end or None, ("period_start", "period_end"), this_year(settings)
        )
    except InvalidInput as exc:
        return bad_request(request, exc.issues[0].diagnostics)
    quarters = period.quarters()
    results, _ = transact(
        service, lambda: evaluate_measures(service, settings, [period, *quarters], list(MEASURES.values()))
    )
    sections = []
    for position, result in enumerate(results[0]):
        by_quarter = [found[position] for found in results[1:]]
        rows = [
            GroupRow(
                title=definition.title,
                score=group.score,
                target=settings.target(result.measure.id),
                counts=[
                    (
                        POPULATION_LABELS[code],
                        group.count(code),
                        _link(period, result.measure.id, index, code),
                    )
                    for code in POPULATIONS
                ],
                trend=_trend(quarters, by_quarter, index),
            )
            for index, (group, definition) in enumerate(
                zip(result.groups, result.measure.groups, strict=True)
            )
        ]
        sections.append((result.measure, rows))
    return render_page(
        request,
        "quality.html",
        {
            "title": "CoCM program quality",
            "period": period,
            "quarters": quarters,
            "sections": sections,
            "chart": {"width": TREND_WIDTH, "height": TREND_HEIGHT, "pad": TREND_PAD},
        },
    )


@router.get("/registry/quality/patients", response_class=HTMLResponse)
def quality_patients_view(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    measure: str = "",
    group: str = "0",
    population: str = "",
    period_start: str | None = None,
    period_end: str | None = None,
) -> HTMLResponse:
    """The patients counted in one population of one measure."""
    definition = MEASURES.get(measure)
    index = int(group) if group.isdigit() and len(group) < 3 else -1
    if definition is None or population not in POPULATIONS or not 0 <= index < len(definition.groups):
        return bad_request(request, "measure, group or population is not known")
    try:
        period = parse_period(
            period_start or None, period_end or None, ("period_start", "period_end"), this_year(settings)
        )
    except InvalidInput as exc:
        return bad_request(request, exc.issues[0].diagnostics)

    def work() -> tuple[tuple[str, ...], dict[str, str | None]]:
        results, _ = evaluate_measures(service, settings, [period], [definition])
        ids = results[0][0].groups[index].subjects[population]
        return ids, patient_names(service, list(ids))

    ids, names = transact(service, work)
    return render_page(
        request,
        "quality_patients.html",
        {
            "title": f"{definition.title}: {POPULATION_LABELS[population]}",
            "measure": definition,
            "group_title": definition.groups[index].title,
            "population": POPULATION_LABELS[population],
            "period": period,
            "patients": [(pid, names.get(pid)) for pid in ids],
        },
    )
