"""Diagnoses and demographics as the quality measures read them, from the stored FHIR JSON.

- A ``Condition`` is a diagnosis when one of its ``code`` codings is an ICD-10-CM code (with or
  without the dot) in a value set, or a SNOMED CT code of the shipped map (``valuesets``); the first
  such coding is kept, ICD-10-CM before SNOMED CT. Other Conditions are stored and searched but
  are no diagnosis here.
- Dates are clinic-local dates: onset = ``onsetDateTime`` / ``onsetPeriod.start``, else
  ``recordedDate``; abatement = ``abatementDateTime`` / ``abatementPeriod.start``. A Condition
  without onset and recordedDate has been on the problem list all along (``onset`` None).
- A ``Patient``'s birth date (a partial one: its first day) and death (``deceasedDateTime``'s date;
  ``deceasedBoolean`` true: dead, date unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from zoneinfo import ZoneInfo

from app.domain import Diagnosis, Person
from app.quality.valuesets import ICD10_CM, SNOMED_CT, SNOMED_TO_ICD10, category_of, with_dot
from app.resources.dates import parse_fhir_date

# quality.md: active when clinicalStatus is one of these (or absent); never when verificationStatus
# is one of the others.
ACTIVE_CLINICAL: Final = frozenset({"active", "recurrence", "relapse"})
REFUTED_VERIFICATION: Final = frozenset({"refuted", "entered-in-error"})


def _first_code(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    codes = [c.get("code") for c in concept.get("coding") or [] if isinstance(c, dict)]
    return next((c for c in codes if isinstance(c, str) and c), None)


def _day(value: Any, zone: ZoneInfo) -> Any:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_fhir_date(value, zone).first
    except (ValueError, OverflowError):
        return None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _coded(resource: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(ICD-10-CM code with its dot, display) of the first coding in a value set."""
    code = resource.get("code")
    codings = [c for c in (code.get("coding") or []) if isinstance(c, dict)] if isinstance(code, dict) else []
    for coding in codings:
        value = coding.get("code")
        if coding.get("system") == ICD10_CM and isinstance(value, str) and category_of(value):
            display = coding.get("display")
            return with_dot(value), display if isinstance(display, str) else None
    for coding in codings:
        mapped = SNOMED_TO_ICD10.get(str(coding.get("code"))) if coding.get("system") == SNOMED_CT else None
        if mapped is not None:
            display = coding.get("display")
            return mapped[0], display if isinstance(display, str) else mapped[1]
    return None


def diagnosis(resource: Mapping[str, Any], rid: str, patient_id: str, zone: ZoneInfo) -> Diagnosis | None:
    coded = _coded(resource)
    if coded is None:
        return None
    code, display = coded
    category = category_of(code)
    assert category is not None
    onset_period, abated_period = (_object(resource.get(name)) for name in ("onsetPeriod", "abatementPeriod"))
    onset = _day(resource.get("onsetDateTime"), zone) or _day(onset_period.get("start"), zone)
    clinical = _first_code(resource.get("clinicalStatus"))
    verification = _first_code(resource.get("verificationStatus"))
    return Diagnosis(
        patient_id=patient_id,
        code=code,
        display=display,
        category=category,
        onset=onset or _day(resource.get("recordedDate"), zone),
        abatement=_day(resource.get("abatementDateTime"), zone)
        or _day((abated_period or {}).get("start"), zone),
        clinically_active=clinical is None or clinical in ACTIVE_CLINICAL,
        refuted=verification in REFUTED_VERIFICATION,
        source=f"Condition/{rid}",
    )


def person(patient: Mapping[str, Any], zone: ZoneInfo) -> Person:
    deceased_at = _day(patient.get("deceasedDateTime"), zone)
    return Person(
        birth_date=_day(patient.get("birthDate"), zone),
        deceased=deceased_at is not None or patient.get("deceasedBoolean") is True,
        deceased_on=deceased_at,
    )
