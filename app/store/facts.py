"""What a write extracts from a resource, in the same transaction (architecture.md, "Writes
extract facts once").

- Search columns and tokens for every type (``index_values``).
- QuestionnaireResponse: scored by ``app.measures``; a complete PHQ-9/GAD-7/PHQ-2 becomes one
  ``measurement`` row and one derived total-score Observation (tagged ``derived-score``, found with
  ``derived-from``). The response and its derived Observation are one measurement, never two.
- Observation: a total score (44261-6, 70274-6, 55758-7) sent directly is a measurement, unless it
  is derived from a QuestionnaireResponse this server has scored (same measurement); a PHQ-9 total
  keeps its ``44260-8`` component as item 9. An item-level ``44260-8`` Observation is a measurement
  row with item 9 and no score (safety_risk only).
- Encounter: a time entry and any initiating-visit / APCM facts (``app.billing.facts``).
- Consent and EpisodeOfCare: their billing facts.
- Condition: a ``diagnosis_fact`` row when it is coded in a quality value set (``app.quality``).

Fact rows are replaced on every version and removed with the resource. ``extract`` returns a
``FactPlan`` that the repository applies (it never writes itself); ``clear`` removes the old rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.billing import facts as billing_facts
from app.errors import BusinessRuleViolation, Issue
from app.measures.scoring import (
    derived_observation,
    item9_observation,
    score_observation,
    score_questionnaire_response,
)
from app.notifications.subscriptions import MEASUREMENT_RECORDED, SAFETY_RISK
from app.quality.diagnoses import diagnosis
from app.quality.valuesets import ICD10_CM
from app.resources.dates import parse_fhir_date
from app.store.ids import new_id
from app.store.models import (
    Base,
    ConsentFactRow,
    DiagnosisFactRow,
    EpisodeOfCareFactRow,
    MeasurementRow,
    ResourceToken,
    TimeEntryRow,
    VisitFactRow,
)

COCM_TAG_SYSTEM = "http://cocm-api.org/fhir/CodeSystem/cocm-tag"
DERIVED_TAG = "derived-score"
DERIVED_TOKEN = "_cocm-derived-from"  # noqa: S105 (a search-token name, not a secret)  # internal token: the response a derived Observation came from


@dataclass
class FactPlan:
    """What one write extracts, for the repository to apply in the same transaction: fact rows to
    insert, the derived total-score Observation to write (``derived_id``; ``derived_exists``: it is
    an update) and the derived Observations to delete, and the scoring warnings. Building it
    writes nothing, so facts and the repository do not call each other."""

    rows: list[tuple[type[Base], dict[str, Any]]] = field(default_factory=list)
    derived: dict[str, Any] | None = None
    derived_id: str | None = None
    derived_exists: bool = False
    derived_deletes: list[str] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    events: list[PlannedEvent] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedEvent:
    """A notification event the write raises (notifications.md Topics), its focus as (type, id):
    the repository adds the version it writes and the patient."""

    topic: str
    focus: tuple[str, str]
    context: tuple[str, ...] = ()


# What a measurement said before this write: (instrument, score, item 9, effective), or None.
Previous = tuple[str, int | None, int | None, datetime] | None


@dataclass
class IndexValues:
    status: str | None = None
    effective: datetime | None = None
    tokens: list[tuple[str, str, str]] = field(default_factory=list)


def parse_instant(text: Any, zone: ZoneInfo) -> datetime | None:
    """A FHIR date/dateTime/instant as the UTC instant it starts at (a partial date starts its period
    in the clinic zone, and so does a time without an offset); ``None`` when it is none."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_fhir_date(text, zone).start(zone)
    except (ValueError, OverflowError):  # not a date, or at the edge of datetime's range
        return None


def _effective(rtype: str, data: dict[str, Any], zone: ZoneInfo) -> datetime | None:
    """The instant the ``date`` search parameter matches (a period by its start)."""
    if rtype == "QuestionnaireResponse":
        return parse_instant(data.get("authored"), zone)
    if rtype == "Observation":
        period = data.get("effectivePeriod") or {}
        start = data.get("effectiveDateTime") or data.get("effectiveInstant") or period.get("start")
        return parse_instant(start, zone)
    if rtype in {"Encounter", "EpisodeOfCare"}:
        return parse_instant((data.get("period") or {}).get("start"), zone)
    if rtype == "Consent":
        return parse_instant(data.get("dateTime"), zone)
    if rtype == "Condition":
        return parse_instant(data.get("onsetDateTime") or (data.get("onsetPeriod") or {}).get("start"), zone)
    return None


def _last_two_segments(reference: str) -> str:
    return "/".join(reference.rstrip("/").split("/")[-2:])


def is_derived(data: dict[str, Any]) -> bool:
    tags = (data.get("meta") or {}).get("tag") or []
    return any(t.get("system") == COCM_TAG_SYSTEM and t.get("code") == DERIVED_TAG for t in tags)


def index_values(rtype: str, data: dict[str, Any], zone: ZoneInfo) -> IndexValues:
    values = IndexValues()
    status = data.get("status")
    values.status = status if isinstance(status, str) else None
    values.effective = _effective(rtype, data, zone)
    if rtype == "Observation":
        for coding in (data.get("code") or {}).get("coding") or []:
            if coding.get("code"):
                values.tokens.append(("code", coding.get("system") or "", coding["code"]))
        for ref in data.get("derivedFrom") or []:
            if isinstance(ref.get("reference"), str):
                target = _last_two_segments(ref["reference"])
                values.tokens.append(("derived-from", "", target))
                if is_derived(data):
                    values.tokens.append((DERIVED_TOKEN, "", target))
    elif rtype == "QuestionnaireResponse" and isinstance(data.get("questionnaire"), str):
        values.tokens.append(("questionnaire", "", data["questionnaire"]))
    elif rtype == "Condition":
        clinical = [c for c in (data.get("clinicalStatus") or {}).get("coding") or [] if c.get("code")]
        values.status = clinical[0]["code"] if clinical else None  # clinical-status searches this
        for coding in (data.get("code") or {}).get("coding") or []:
            if coding.get("code"):
                system, code = coding.get("system") or "", coding["code"]
                values.tokens.append(("code", system, code))
                if system == ICD10_CM and "." in code:  # found with or without the dot
                    values.tokens.append(("code", system, code.replace(".", "")))
    elif rtype == "Subscription":
        endpoint = (data.get("channel") or {}).get("endpoint")
        for param, value in (("url", endpoint), ("criteria", data.get("criteria"))):
            if isinstance(value, str) and value:
                values.tokens.append((param, "", value))
    return values


def clear(session: Session, tenant: str, rtype: str, rid: str) -> list[tuple[str, str]]:
    """Remove the fact rows of a resource; return the resources derived from it (to delete)."""
    derived: list[tuple[str, str]] = []
    if rtype in {"QuestionnaireResponse", "Observation"}:
        session.execute(
            delete(MeasurementRow).where(
                MeasurementRow.tenant == tenant,
                MeasurementRow.source_type == rtype,
                MeasurementRow.source_id == rid,
            )
        )
    if rtype == "QuestionnaireResponse":
        derived = [("Observation", oid) for oid in _derived_ids(session, tenant, rid)]
    elif rtype == "Encounter":
        session.execute(
            delete(TimeEntryRow).where(TimeEntryRow.tenant == tenant, TimeEntryRow.encounter_id == rid)
        )
        session.execute(
            delete(VisitFactRow).where(VisitFactRow.tenant == tenant, VisitFactRow.encounter_id == rid)
        )
    elif rtype == "Consent":
        session.execute(
            delete(ConsentFactRow).where(ConsentFactRow.tenant == tenant, ConsentFactRow.consent_id == rid)
        )
    elif rtype == "EpisodeOfCare":
        session.execute(
            delete(EpisodeOfCareFactRow).where(
                EpisodeOfCareFactRow.tenant == tenant, EpisodeOfCareFactRow.episode_id == rid
            )
        )
    elif rtype == "Condition":
        session.execute(
            delete(DiagnosisFactRow).where(
                DiagnosisFactRow.tenant == tenant, DiagnosisFactRow.condition_id == rid
            )
        )
    return derived


def _derived_ids(session: Session, tenant: str, response_id: str) -> list[str]:
    return list(
        session.scalars(
            select(ResourceToken.resource_id).where(
                ResourceToken.tenant == tenant,
                ResourceToken.type == "Observation",
                ResourceToken.param == DERIVED_TOKEN,
                ResourceToken.value == f"QuestionnaireResponse/{response_id}",
            )
        ).all()
    )


def extract(
    rtype: str,
    rid: str,
    patient_id: str | None,
    data: dict[str, Any],
    zone: ZoneInfo,
    tenant: str,
    *,
    derived_ids: list[str],
    response_scored: Callable[[str], bool],
    previous: Previous = None,
) -> FactPlan:
    """The facts of ``rtype/rid`` from its new content. ``derived_ids``: the Observations derived
    from it so far (``clear`` returned them); ``response_scored(id)``: whether this server holds the
    measurement of QuestionnaireResponse ``id`` (one measurement, never two); ``previous``: the
    measurement its last version held (``previous_measurement``), to raise events only for what
    changed."""
    plan = FactPlan()
    if patient_id is None:
        return plan
    if rtype == "QuestionnaireResponse":
        _extract_response(plan, rid, patient_id, data, zone, tenant, derived_ids)
    elif rtype == "Observation":
        _extract_observation(plan, rid, patient_id, data, zone, tenant, response_scored)
    if rtype in {"QuestionnaireResponse", "Observation"}:
        _plan_events(plan, rtype, rid, patient_id, previous)
    elif rtype == "Encounter":
        entry = billing_facts.time_entry_from_encounter(data, rid, patient_id, zone.key)
        if entry is not None:
            plan.rows.append(
                (
                    TimeEntryRow,
                    {
                        "tenant": tenant,
                        "encounter_id": rid,
                        "patient_id": patient_id,
                        "start": entry.start,
                        "seconds": entry.seconds,
                        "activity": entry.activity,
                        "excluded": entry.excluded,
                    },
                )
            )
        for visit in billing_facts.visit_from_encounter(data, rid, patient_id, zone.key):
            plan.rows.append(
                (
                    VisitFactRow,
                    {
                        "tenant": tenant,
                        "encounter_id": rid,
                        "system": visit.system,
                        "code": visit.code,
                        "patient_id": patient_id,
                        "on_date": visit.on,
                    },
                )
            )
    elif rtype == "Consent":
        consent = billing_facts.consent_fact(data, rid, patient_id, zone.key)
        plan.rows.append(
            (
                ConsentFactRow,
                {
                    "tenant": tenant,
                    "consent_id": rid,
                    "patient_id": patient_id,
                    "active": consent.active,
                    "on_date": consent.on,
                },
            )
        )
    elif rtype == "EpisodeOfCare":
        episode = billing_facts.episode_of_care_fact(data, rid, patient_id, zone.key)
        if episode is not None:
            plan.rows.append(
                (
                    EpisodeOfCareFactRow,
                    {
                        "tenant": tenant,
                        "episode_id": rid,
                        "patient_id": patient_id,
                        "start": episode.start,
                        "end": episode.end,
                        "finished": episode.finished,
                        "program": episode.program,
                    },
                )
            )
    elif rtype == "Condition":
        found = diagnosis(data, rid, patient_id, zone)
        if found is not None:
            plan.rows.append(
                (
                    DiagnosisFactRow,
                    {
                        "tenant": tenant,
                        "condition_id": rid,
                        "patient_id": patient_id,
                        "code": found.code,
                        "display": found.display,
                        "category": found.category,
                        "onset": found.onset,
                        "abatement": found.abatement,
                        "clinically_active": found.clinically_active,
                        "refuted": found.refuted,
                    },
                )
            )
    return plan


def _extract_response(
    plan: FactPlan,
    rid: str,
    patient_id: str,
    data: dict[str, Any],
    zone: ZoneInfo,
    tenant: str,
    derived_ids: list[str],
) -> None:
    scored = score_questionnaire_response(data)
    plan.warnings += [Issue(w, "informational", "warning") for w in (scored.warnings if scored else ())]
    if scored is None or not scored.complete or scored.total is None:
        plan.derived_deletes += derived_ids
        return
    effective = parse_instant(data.get("authored"), zone)
    if effective is None:
        effective = parse_instant(data["meta"]["lastUpdated"], zone)
        plan.warnings.append(
            Issue(
                "QuestionnaireResponse.authored is missing: the time received is used",
                "informational",
                "warning",
            )
        )
    assert effective is not None
    plan.rows.append(
        (
            MeasurementRow,
            {
                "tenant": tenant,
                "source_type": "QuestionnaireResponse",
                "source_id": rid,
                "patient_id": patient_id,
                "instrument": scored.instrument,
                "score": scored.total,
                "item9": scored.item9,
                "effective": effective,
                "warnings": orjson.dumps([w.diagnostics for w in plan.warnings]).decode(),
            },
        )
    )
    observation = derived_observation(rid, data, scored)
    meta = observation.setdefault("meta", {})
    meta["tag"] = [*meta.get("tag", []), {"system": COCM_TAG_SYSTEM, "code": DERIVED_TAG}]
    plan.derived = observation
    plan.derived_id = derived_ids[0] if derived_ids else new_id()
    plan.derived_exists = bool(derived_ids)
    plan.derived_deletes += derived_ids[1:]


def _extract_observation(
    plan: FactPlan,
    rid: str,
    patient_id: str,
    data: dict[str, Any],
    zone: ZoneInfo,
    tenant: str,
    response_scored: Callable[[str], bool],
) -> None:
    if is_derived(data):
        return  # the response it came from holds the measurement
    score = score_observation(data)
    derived_from = score.derived_from if score is not None else None
    if derived_from is not None and response_scored(derived_from.rsplit("/", 1)[-1]):
        return  # one measurement, never two (measures.md)
    # api.md: item 9 from every representation. An item-level 44260-8 Observation is a PHQ-9 row
    # without a score: it counts for safety_risk only (app.care.status).
    item9 = score.item9 if score is not None else item9_observation(data)
    if score is None and item9 is None:
        return
    effective = _effective("Observation", data, zone)
    if effective is None:
        effective = parse_instant(data.get("issued"), zone)
    if effective is None:
        raise BusinessRuleViolation(
            Issue(
                "a total-score or PHQ-9 item 9 Observation needs effective[x] or issued to place it in time",
                "required",
                expression=("Observation.effective[x]",),
            )
        )
    plan.rows.append(
        (
            MeasurementRow,
            {
                "tenant": tenant,
                "source_type": "Observation",
                "source_id": rid,
                "patient_id": patient_id,
                "instrument": score.instrument if score is not None else "PHQ-9",
                "score": score.score if score is not None else None,
                "item9": item9,
                "effective": effective,
                "warnings": "[]",
            },
        )
    )


def previous_measurement(session: Session, tenant: str, rtype: str, rid: str) -> Previous:
    """The measurement the stored version of ``rtype/rid`` holds (read before ``clear``)."""
    row = session.get(MeasurementRow, (tenant, rtype, rid))
    return None if row is None else (row.instrument, row.score, row.item9, row.effective)


def _plan_events(plan: FactPlan, rtype: str, rid: str, patient_id: str, previous: Previous) -> None:
    """notifications.md Topics. ``safety-risk``: item 9 >= 1 on a new measurement, or on one whose
    item 9 was 0 or absent. ``measurement-recorded``: a total score that is new or says something
    new (instrument, score or time); a retry that repeats it raises nothing."""
    measured = next((values for model, values in plan.rows if model is MeasurementRow), None)
    if measured is None:
        return
    patient = f"Patient/{patient_id}"
    if (measured["item9"] or 0) >= 1 and (previous is None or not (previous[2] or 0) >= 1):
        plan.events.append(PlannedEvent(SAFETY_RISK, (rtype, rid), (patient,)))
    current = (measured["instrument"], measured["score"], measured["effective"])
    focus: tuple[str, str]
    context: tuple[str, ...]
    if measured["score"] is not None and (
        previous is None or (previous[0], previous[1], previous[3]) != current
    ):
        if rtype == "QuestionnaireResponse" and plan.derived_id is not None:
            focus, context = ("Observation", plan.derived_id), (patient, f"QuestionnaireResponse/{rid}")
        else:
            focus, context = (rtype, rid), (patient,)
        plan.events.append(PlannedEvent(MEASUREMENT_RECORDED, focus, context))
