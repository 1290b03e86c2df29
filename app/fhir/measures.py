"""``Measure``, read only, and ``$evaluate-measure`` (quality.md).

- ``GET /fhir/Measure/{id}``, ``GET /fhir/Measure?url=&_id=``: the four measures
  (``app.quality.fhir``); other search parameters are ignored.
- ``GET /fhir/Measure/{id}/$evaluate-measure?periodStart=&periodEnd=[&reportType=][&subject=]``:
  a ``MeasureReport`` computed from the store as it is. ``reportType`` is ``summary`` (R4's
  ``population`` is read as the same; the default without ``subject``), ``subject-list`` or
  ``subject`` (the default with ``subject``; ``individual`` is read as the same). ``subject`` is
  ``Patient/{id}`` or a bare id and narrows any report type to that patient. 400 for a missing,
  malformed or reversed period, an unknown ``reportType`` or ``reportType=subject`` without a
  subject; 404 for an unknown measure or patient.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.deps import ServiceDep, SettingsDep
from app.errors import InvalidInput, Issue
from app.fhir.canonical import search_served
from app.fhir.outcome import fhir_response
from app.quality.fhir import MEASURE_RESOURCES, REPORT_TYPES, measure_report
from app.services.quality import evaluate_measures, measure, parse_period
from app.services.uow import transact

router = APIRouter(prefix="/fhir/Measure", tags=["FHIR Measure"])


@router.get("", summary="Search the quality measures")
def search_measures(request: Request, service: ServiceDep) -> Response:
    """A `searchset` of the served Measures matching `url` and `_id` (each may repeat or list
    alternatives with commas)."""
    return search_served(request, service, "Measure", MEASURE_RESOURCES.values())


@router.get("/{rid}", summary="Read a quality measure")
def read_measure(rid: str, service: ServiceDep) -> Response:
    """`depression-remission-12m`, `depression-response-6m`, `cocm-follow-up-4w` or
    `cocm-consult-not-improving`; 404 for anything else."""

    def audited() -> None:
        service.require("Measure", "r", rid=rid)
        measure(rid)
        service.audit("R", "read", "Measure", rid)

    transact(service, audited)
    return fhir_response(MEASURE_RESOURCES[rid])


@router.get("/{rid}/$evaluate-measure", summary="Evaluate a quality measure for a period")
def evaluate_measure(
    rid: str,
    service: ServiceDep,
    settings: SettingsDep,
    period_start: Annotated[
        str | None, Query(alias="periodStart", description="YYYY-MM-DD, required")
    ] = None,
    period_end: Annotated[str | None, Query(alias="periodEnd", description="YYYY-MM-DD, required")] = None,
    report_type: Annotated[
        str | None, Query(alias="reportType", description="summary (default), subject-list or subject")
    ] = None,
    subject: Annotated[str | None, Query(description="Patient/{id}: an individual report")] = None,
) -> Response:
    """A `MeasureReport` (quality.md): populations with counts and the measure score;
    `subject-list` adds a contained `List` of the patients of each population; with `subject`,
    an individual report (counts 0 or 1)."""

    def work() -> dict[str, object]:
        definition = measure(rid)
        service.require("Measure", "r", rid=rid)
        period = parse_period(period_start, period_end, ("periodStart", "periodEnd"))
        kind = REPORT_TYPES.get(report_type or ("subject" if subject else "summary"))
        if kind is None:
            raise InvalidInput(
                Issue(
                    f"reportType must be summary, subject-list or subject, got {report_type!r}",
                    "invalid",
                    expression=("reportType",),
                )
            )
        patient_id = None
        if subject is not None:
            patient_id = subject.removeprefix("Patient/")
            if not patient_id or "/" in patient_id:
                raise InvalidInput(Issue("subject must be Patient/{id}", "invalid", expression=("subject",)))
        elif kind == "subject":
            raise InvalidInput(
                Issue("reportType=subject needs a subject", "required", expression=("subject",))
            )
        results, generated = evaluate_measures(service, settings, [period], [definition], patient_id)
        subject_ref = None if patient_id is None else f"Patient/{patient_id}"
        return measure_report(results[0][0], kind, generated, subject_ref)

    return fhir_response(transact(service, work))
