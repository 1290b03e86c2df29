"""The quality measures of the tenant (quality.md), for every edge: ``$evaluate-measure``, the
dashboard JSON, the quality page and ``cocm quality``.

The patients read are those the registry tracks (a time entry, an EpisodeOfCare or a
measurement; a patient with none is in no measure), with one pass per fact table and one over
their Patient JSON (birth and death), kept per process for the tenant's data version
(``reports.ResultCache``): a page of four measures over a period and its quarters reads the store
once. A report's ``date`` is the time of the latest change to the data it was computed from, so the
same request gives the same report, byte for byte, until the data changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from app.domain import PatientFacts
from app.errors import InvalidInput, Issue, NotFound
from app.quality.measures import MEASURES, MeasureDefinition, MeasureResult, Period, evaluate_all
from app.services.reports import (
    ResultCache,
    collector_paused,
    data_version,
    month_wide_reads,
    require_facts,
    today,
)
from app.services.resources import ResourceService
from app.settings import Settings
from app.store.reads import FactReader


@dataclass(frozen=True)
class QualityFacts:
    """Every patient in care with their facts and demographics, at one data version."""

    patients: dict[str, PatientFacts]
    as_of: datetime  # the latest change to the data read


FACTS: ResultCache[QualityFacts] = ResultCache(size=4)
MAX_PERIOD_DAYS: Final = 3653  # ten years: forty quarters on the page at most
EARLIEST_YEAR: Final = 1900  # the measures look back up to 14 months from the start
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # a report's date when the tenant holds no data


def parse_period(
    start: str | None, end: str | None, names: tuple[str, str], default: Period | None = None
) -> Period:
    """A period from two ``YYYY-MM-DD`` parameters: 400 naming the parameter when one is missing
    (and there is no ``default`` for it) or malformed, or when the period is reversed."""
    days: list[date] = []
    for position, (value, name) in enumerate(zip((start, end), names, strict=True)):
        if value is None and default is not None:
            days.append((default.start, default.end)[position])
            continue
        if value is None:
            raise InvalidInput(Issue(f"{name} is required (YYYY-MM-DD)", "required", expression=(name,)))
        day = _day(value)
        if day is None:
            raise InvalidInput(
                Issue(f"{name} must be a date YYYY-MM-DD, got {value!r}", "invalid", expression=(name,))
            )
        days.append(day)
    if days[1] < days[0]:
        raise InvalidInput(Issue(f"{names[1]} is before {names[0]}", "invalid", expression=names))
    if days[0].year < EARLIEST_YEAR or (days[1] - days[0]).days > MAX_PERIOD_DAYS:
        raise InvalidInput(
            Issue(
                f"the period must start in {EARLIEST_YEAR} or later and span at most ten years",
                "invalid",
                expression=names,
            )
        )
    return Period(days[0], days[1])


def _day(text: str) -> date | None:
    """``YYYY-MM-DD`` only (``date.fromisoformat`` also takes ``YYYYMMDD`` and week dates)."""
    if len(text) != 10 or text[4] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def this_year(settings: Settings) -> Period:
    """The dashboards' default period: the calendar year of today in the clinic time zone."""
    year = today(settings).year
    return Period(date(year, 1, 1), date(year, 12, 31))


def measure(measure_id: str) -> MeasureDefinition:
    found = MEASURES.get(measure_id)
    if found is None:
        raise NotFound(f"Measure/{measure_id} is not known")
    return found


def _read(
    session: Session, tenant: str, settings: Settings, subject: str | None, version: tuple[Any, ...]
) -> QualityFacts:
    """The patients in care (or only ``subject``, when live) with their facts and demographics, at
    the tenant's data ``version``."""
    reader = FactReader(session, tenant)
    stamp = max((v for v in version if v is not None), default=EPOCH)
    ids = reader.patients_in_care() if subject is None else reader.live_patient_ids([subject])
    facts = reader.facts(ids)
    people = reader.people(ids, settings.zone)
    patients = {}
    for pid in ids:
        found = facts.get(pid, PatientFacts())
        found.person = people.get(pid, found.person)
        patients[pid] = found
    return QualityFacts(patients, stamp)


def _facts(service: ResourceService, settings: Settings, subject: str | None) -> QualityFacts:
    """One patient's read from the primary (a client sees its own writes); the whole tenant's from
    the month-wide reads (the replica, when set), cached per data version."""
    if subject is not None:
        version = data_version(service.session, service.tenant)
        return _read(service.session, service.tenant, settings, subject, version)
    with month_wide_reads(service) as session:
        version = data_version(session, service.tenant)
        return FACTS.get(
            service.tenant, version, lambda: _read(session, service.tenant, settings, None, version)
        )


def evaluate_measures(
    service: ResourceService,
    settings: Settings,
    periods: list[Period],
    measures: list[MeasureDefinition],
    subject: str | None = None,
) -> tuple[list[list[MeasureResult]], datetime]:
    """Each period's results of ``measures`` (one list per period), and the data's time. With
    ``subject`` (a patient id) only that patient is evaluated (404 when not a live patient)."""
    require_facts(service, "s")
    if subject is None:
        service.audit("E", "quality")
    else:
        service.audit("R", "quality", "Patient", subject)
    known = _facts(service, settings, subject)
    if subject is not None and subject not in known.patients:
        raise NotFound(f"Patient/{subject} is not known")
    config = settings.quality
    with collector_paused():  # many small acyclic objects over a large heap (reports.collector_paused)
        results = [evaluate_all(measures, period, known.patients, config) for period in periods]
    return results, known.as_of


def result_json(result: MeasureResult, settings: Settings) -> dict[str, Any]:
    """One measure's populations and scores, as the dashboard JSON shows them."""
    target = settings.target(result.measure.id)
    return {
        "id": result.measure.id,
        "title": result.measure.title,
        "follows": result.measure.follows,
        "groups": [
            {
                "code": group.code,
                "populations": [{"code": code, "count": len(ids)} for code, ids in group.subjects.items()],
                "score": None if group.score is None else float(group.score),
                "target": target,
            }
            for group in result.groups
        ],
    }


def quality_json(service: ResourceService, settings: Settings, period: Period) -> dict[str, Any]:
    """quality.md "Dashboard JSON": every measure for the period and each of its quarters."""
    periods = [period, *period.quarters()]
    results, _ = evaluate_measures(service, settings, periods, list(MEASURES.values()))

    def one(p: Period, found: list[MeasureResult]) -> dict[str, Any]:
        return {
            "period_start": p.start.isoformat(),
            "period_end": p.end.isoformat(),
            "measures": [result_json(r, settings) for r in found],
        }

    return {
        **one(period, results[0]),
        "quarters": [one(p, r) for p, r in zip(periods[1:], results[1:], strict=True)],
    }
