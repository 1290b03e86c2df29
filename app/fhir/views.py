"""Computed FHIR views, read only (api.md, "Computed FHIR views"): ``CarePlan`` and ``ChargeItem``.

- ``GET /fhir/CarePlan?patient={id}[&date=YYYY-MM-DD]``: a searchset with the patient's CoCM care
  plan (none for a patient never enrolled). ``status`` is ``active`` in an open episode and
  ``completed`` once it ended (discharged or inactive); ``period`` is the episode; the care status
  (status, weeks in treatment, last contact, flags, per-instrument baseline/latest/change/response/
  remission/severity) is carried as extensions under ``http://cocm-api.org/fhir/StructureDefinition/``
  and summed up in ``description``; ``addresses`` references the active CoCM diagnoses (Condition,
  quality.md). ``date`` is the as-of date (default today).
- ``GET /fhir/ChargeItem?patient={id}&occurrence=YYYY-MM``: one ChargeItem per code of the month:
  ``code`` in CPT (``http://www.ama-assn.org/go/cpt``) or HCPCS, ``quantity.value`` = units,
  ``occurrencePeriod`` = the month, ``status`` ``billable`` or ``planned`` when blocked,
  ``supportingInformation`` = the counted Encounters, ``note`` = the month's notes. Ids are stable
  hashes of (tenant, patient, month, code). ``occurrence`` defaults to the current month.

Both answer 400 without ``patient``, and an empty searchset for a patient that is not known.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.params import parse_as_of, parse_month
from app.care.status import CareStatus, MeasureSummary
from app.deps import ServiceDep, SettingsDep
from app.domain import BillingMonth
from app.errors import InvalidInput, Issue, NotFound
from app.fhir.outcome import fhir_base, fhir_response
from app.resources.bundle import searchset
from app.services.reports import patient_billing, patient_care_status
from app.services.uow import transact
from app.store.search import reference_id

router = APIRouter(prefix="/fhir", tags=["FHIR computed views"])

EXT = "http://cocm-api.org/fhir/StructureDefinition/"


def _required_patient(request: Request) -> str:
    value = request.query_params.get("patient") or request.query_params.get("subject")
    if not value:
        raise InvalidInput(
            Issue("the patient search parameter is required", "required", expression=("patient",))
        )
    return reference_id(value, "Patient")


def _bundle(request: Request, resources: list[dict[str, Any]]) -> Response:
    entries = [(r["resourceType"], r["id"], r) for r in resources]
    links = [{"relation": "self", "url": str(request.url)}]
    return fhir_response(searchset(fhir_base(request), entries, len(resources), links))


def _stable_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


@router.get("/CarePlan", summary="The patient's CoCM care plan (computed)")
def care_plan(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """The care plan with the care status of `date` (default today) as structured content."""
    patient_id = _required_patient(request)
    as_of = parse_as_of(request.query_params.get("date"), settings)

    def work() -> CareStatus | None:
        try:
            return patient_care_status(service, settings, patient_id, as_of)
        except NotFound:
            return None

    status = transact(service, work)
    if status is None or status.episode_start is None:
        return _bundle(request, [])
    return _bundle(request, [care_plan_resource(service.tenant, status)])


def _measure_extension(name: str, summary: MeasureSummary) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "instrument", "valueString": name},
        {"url": "baseline", "valueInteger": summary.baseline.score},
        {"url": "baselineDate", "valueDate": summary.baseline.date.isoformat()},
        {"url": "latest", "valueInteger": summary.latest.score},
        {"url": "latestDate", "valueDate": summary.latest.date.isoformat()},
        {"url": "response", "valueBoolean": summary.response},
        {"url": "remission", "valueBoolean": summary.remission},
        {"url": "count", "valueInteger": summary.count},
    ]
    if summary.change_percent is not None:
        parts.append({"url": "changePercent", "valueDecimal": summary.change_percent})
    if summary.severity is not None:
        parts.append({"url": "severity", "valueString": summary.severity})
    return {"url": EXT + "cocm-measure", "extension": parts}


def care_plan_resource(tenant: str, status: CareStatus) -> dict[str, Any]:
    assert status.episode_start is not None
    open_episode = status.status in {"active", "relapse_prevention"}
    extensions: list[dict[str, Any]] = [
        {"url": EXT + "cocm-care-status", "valueCode": status.status},
        {"url": EXT + "cocm-as-of", "valueDate": status.as_of.isoformat()},
    ]
    if status.weeks_in_treatment is not None:
        extensions.append({"url": EXT + "cocm-weeks-in-treatment", "valueInteger": status.weeks_in_treatment})
    if status.last_contact is not None:
        extensions.append({"url": EXT + "cocm-last-contact", "valueDate": status.last_contact.isoformat()})
    extensions += [{"url": EXT + "cocm-flag", "valueCode": flag} for flag in status.flags]
    extensions += [_measure_extension(name, s) for name, s in status.measures.items() if s is not None]
    period: dict[str, str] = {"start": status.episode_start.isoformat()}
    if status.episode_end is not None and not open_episode:
        period["end"] = status.episode_end.isoformat()
    flags = ", ".join(status.flags) or "none"
    addresses = [  # quality.md: the active CoCM diagnoses
        {"reference": d.source, "display": f"{d.code} {d.display}" if d.display else d.code}
        for d in status.diagnoses
    ]
    return {
        "resourceType": "CarePlan",
        "id": _stable_id(tenant, status.patient_id, "careplan", status.episode_start.isoformat()),
        "extension": extensions,
        "status": "active" if open_episode else "completed",
        "intent": "plan",
        "category": [{"text": "Psychiatric Collaborative Care Model"}],
        "title": "Collaborative Care (CoCM)",
        "description": f"Care status {status.status} as of {status.as_of.isoformat()}; flags: {flags}",
        "subject": {"reference": f"Patient/{status.patient_id}"},
        "period": period,
        **({"addresses": addresses} if addresses else {}),
    }


@router.get("/ChargeItem", summary="The patient's billing codes for a month (computed)")
def charge_items(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """One ChargeItem per code the month supports: `billable`, or `planned` while blocked."""
    patient_id = _required_patient(request)
    occurrence = request.query_params.get("occurrence")
    if occurrence and occurrence.startswith("eq"):
        occurrence = occurrence[2:]
    month = parse_month(occurrence, settings, "occurrence")

    def work() -> BillingMonth | None:
        try:
            return patient_billing(service, settings, patient_id, month)
        except NotFound:
            return None

    result = transact(service, work)
    if result is None:
        return _bundle(request, [])
    return _bundle(request, charge_item_resources(service.tenant, result))


def charge_item_resources(tenant: str, month: BillingMonth) -> list[dict[str, Any]]:
    period = {"start": month.month.first_day.isoformat(), "end": month.month.last_day.isoformat()}
    items = []
    for code in month.codes:
        item: dict[str, Any] = {
            "resourceType": "ChargeItem",
            "id": _stable_id(tenant, month.patient_id, str(month.month), code.code),
            "status": "billable" if month.billable else "planned",
            "code": {"coding": [{"system": code.system, "code": code.code}]},
            "subject": {"reference": f"Patient/{month.patient_id}"},
            "occurrencePeriod": period,
            "quantity": {"value": code.units},
        }
        if month.counted_sources:
            item["supportingInformation"] = [{"reference": source} for source in month.counted_sources]
        if month.notes or month.blockers:
            item["note"] = [
                {"text": text} for text in (*month.notes, *(f"blocked: {b}" for b in month.blockers))
            ]
        items.append(item)
    return items
