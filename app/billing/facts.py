"""Facts the billing core reads, extracted from validated FHIR R4 resource dicts (api.md, "What the
service reads from each resource").

The store calls these once when a resource is written and keeps the facts next to the JSON; the engine
never re-reads FHIR. Inputs are plain R4 JSON dicts that already passed structural validation; the
functions still check what billing depends on and raise ``app.errors`` exceptions naming the element.

Choices:

- Time zone. ``tz`` is the clinic's IANA name (``COCM_TIMEZONE``). A dateTime with an offset (or ``Z``)
  is an exact instant. A dateTime without an offset (invalid in R4 but sent by some EHRs) and a date
  without a time are read as clinic-local wall time; a date alone is local midnight. Ambiguous local
  times (the repeated hour when DST ends) take the earlier instant (``fold=0``); non-existent ones
  (the skipped hour) are shifted forward by the gap, as ``zoneinfo`` does. ``TimeEntry.start`` is
  returned in UTC.
- Partial dates. A time entry's ``period.start`` must name at least a day (year or year-month only is a
  BusinessRuleViolation: the entry cannot be put in a month reliably). For dates that only need a local
  date (EpisodeOfCare, Consent, visits), ``YYYY`` / ``YYYY-MM`` mean the first day of that span for a
  start and the last day for an end or a Consent date (the latest date it can mean: consent is never
  assumed earlier than it may have been given).
- Duration. ``length`` wins over ``period`` (api.md). ``length`` must carry a value and a UCUM unit
  ``min`` or ``h`` in ``code`` (or, without a code, in ``unit``; ``minute(s)``/``hour(s)`` spellings of
  ``unit`` are accepted); decimals are allowed; a comparator (``<25 min``) is rejected because it is not a
  measurement. Seconds are rounded to the nearest whole second, halves up. Without ``length``, the
  duration is ``period.end - period.start`` computed on UTC instants (so a DST change inside the period is
  respected); both ends must carry a time. Negative durations are rejected; zero is allowed.
- Activity. The Encounter is a time entry when any coding of ``type[]`` or ``serviceType`` is in the
  activity system with a known code. With several activity codes, ``psychiatric-consultation`` wins
  (it is the one that may not count: never over-count), else the first one sent.
- Exclusion (first that applies): ``not_finished`` (status is not ``finished``: planned, in-progress,
  cancelled, entered-in-error, ...), ``inpatient`` (``class.code`` IMP, ACUTE, NONAC, OBSENC),
  ``separately_billed`` (also typed with a code the rule sets covering its date list as billed on
  its own: ``rules.separately_billed_on``).
- Visits. One VisitFact per distinct initiating or APCM base code on a finished Encounter; the HCPCS
  system is normalised to its https form. A finished, visit-coded Encounter without any period date is a
  BusinessRuleViolation (its date decides the initiating-visit blocker).
- EpisodeOfCare. ``entered-in-error`` and ``cancelled`` episodes never happened: ``None`` (no fact).
  ``period.end`` is read only when the status is ``finished`` (an end on a running episode is a plan,
  not a discharge). Both ``cocm`` and ``general-bhi`` on one resource is a BusinessRuleViolation.
- Consent. ``active`` is ``status == "active"``; ``on`` is ``dateTime`` as a local date, ``None`` when
  absent (such a Consent never satisfies the consent blocker).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from app.billing.codes import (
    ACTIVITY_CODES,
    ACTIVITY_SYSTEM,
    INPATIENT_CLASS_CODES,
    PROGRAM_CODES,
    canonical_system,
)
from app.billing.rules import separately_billed_on, visit_codes_of
from app.domain import PSYCHIATRIC_CONSULTATION, ConsentFact, EpisodeOfCareFact, Program, TimeEntry, VisitFact
from app.errors import BusinessRuleViolation, InvalidInput, Issue
from app.resources.dates import FhirDate, parse_fhir_date

# Encounters with these codes are kept as visit facts: every code some rule set reads.
VISIT_CODES = visit_codes_of()
_UCUM_FACTORS = {"min": Decimal(60), "h": Decimal(3600)}
_UNIT_FACTORS = _UCUM_FACTORS | {
    "minute": Decimal(60),
    "minutes": Decimal(60),
    "hour": Decimal(3600),
    "hours": Decimal(3600),
}


def _rule(message: str, expression: str, code: str = "business-rule") -> BusinessRuleViolation:
    return BusinessRuleViolation(Issue(message, code=code, expression=(expression,)))


# Dates outside these years cannot be moved between time zones (datetime's range is years 1-9999).
MIN_YEAR = 2
MAX_YEAR = 9998


def _parse_when(text: object, zone: ZoneInfo, expression: str) -> FhirDate:
    when = _parse_when_unchecked(text, zone, expression)
    if not MIN_YEAR <= when.first.year <= MAX_YEAR or not MIN_YEAR <= when.last.year <= MAX_YEAR:
        raise _outside_years(expression)
    return when


def _outside_years(expression: str) -> InvalidInput:
    return InvalidInput(
        Issue(
            f"{expression} is outside the years {MIN_YEAR}-{MAX_YEAR} this service handles",
            expression=(expression,),
        )
    )


def _parse_when_unchecked(text: object, zone: ZoneInfo, expression: str) -> FhirDate:
    if not isinstance(text, str):
        raise InvalidInput(Issue(f"{expression} must be a date or dateTime string", expression=(expression,)))
    try:
        return parse_fhir_date(text, zone)
    except OverflowError:  # a time at the very edge of the calendar: outside the years handled
        raise _outside_years(expression) from None
    except ValueError:
        kind = "dateTime" if "T" in text else "date"
        raise InvalidInput(
            Issue(f"{expression} is not a valid {kind}: {text!r}", expression=(expression,))
        ) from None


def _codings(resource: Mapping[str, Any], *elements: str) -> Iterator[tuple[str, str]]:
    """(canonical system, code) of every coding in the named CodeableConcept elements (single or list)."""
    for element in elements:
        value = resource.get(element)
        concepts = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        for concept in concepts:
            if not isinstance(concept, dict):
                continue
            for coding in concept.get("coding") or []:
                if isinstance(coding, dict):
                    system, code = coding.get("system"), coding.get("code")
                    if isinstance(system, str) and isinstance(code, str):
                        yield canonical_system(system), code


def _class_codes(resource: Mapping[str, Any]) -> set[str]:
    # R4: Encounter.class is one Coding. A list of CodeableConcepts (R5 shape) is read too.
    value = resource.get("class")
    if isinstance(value, dict) and isinstance(value.get("code"), str):
        return {value["code"]}
    return {code for _, code in _codings(resource, "class")}


def activity_of(resource: Mapping[str, Any]) -> str | None:
    """The CoCM activity code of an Encounter, or ``None`` when it is not a time entry."""
    found = [code for system, code in _codings(resource, "type", "serviceType") if system == ACTIVITY_SYSTEM]
    known = [code for code in found if code in ACTIVITY_CODES]
    if not known:
        return None
    return PSYCHIATRIC_CONSULTATION if PSYCHIATRIC_CONSULTATION in known else known[0]


def _seconds_from_length(length: object) -> int:
    if not isinstance(length, dict):
        raise _rule("Encounter.length must be a Quantity", "Encounter.length", "invalid")
    if length.get("comparator") is not None:
        raise _rule(
            "Encounter.length must be a measured duration, not a comparator", "Encounter.length", "value"
        )
    raw = length.get("value")
    if raw is None or isinstance(raw, bool):
        raise _rule("Encounter.length has no value", "Encounter.length", "required")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _rule("Encounter.length.value is not a number", "Encounter.length", "value") from None
    code, unit = length.get("code"), length.get("unit")
    if isinstance(code, str):
        factor = _UCUM_FACTORS.get(code)
    elif isinstance(unit, str):
        factor = _UNIT_FACTORS.get(unit.strip().lower())
    else:
        factor = None
    if factor is None:
        raise _rule("Encounter.length must be in UCUM 'min' or 'h'", "Encounter.length", "value")
    if value < 0 or not value.is_finite():
        raise _rule("Encounter.length must not be negative", "Encounter.length", "value")
    return int((value * factor).to_integral_value(rounding=ROUND_HALF_UP))


def time_entry_from_encounter(
    resource: Mapping[str, Any], resource_id: str, patient_id: str, tz: str = "UTC"
) -> TimeEntry | None:
    """The time entry an Encounter carries, or ``None`` when it has no CoCM activity code.

    ``tz`` is the clinic time zone used for local times and dates without an offset (default UTC,
    the default of ``COCM_TIMEZONE``: pass the configured zone).
    """
    activity = activity_of(resource)
    if activity is None:
        return None
    zone = ZoneInfo(tz)
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    assert isinstance(period, dict)
    if period.get("start") is None:
        raise _rule(
            "a CoCM time entry needs Encounter.period.start (it decides the month)",
            "Encounter.period.start",
            "required",
        )
    start = _parse_when(period["start"], zone, "Encounter.period.start")
    if start.precision in {"year", "month"}:
        raise _rule("Encounter.period.start must name at least a day", "Encounter.period.start", "value")
    start_instant = start.instant or datetime.combine(start.first, time(), zone).astimezone(UTC)

    if resource.get("length") is not None:
        seconds = _seconds_from_length(resource["length"])
    elif period.get("end") is not None:
        end = _parse_when(period["end"], zone, "Encounter.period.end")
        if start.instant is None or end.instant is None:
            raise _rule(
                "a CoCM time entry needs Encounter.length, or a period with times on both ends",
                "Encounter.length",
                "required",
            )
        delta = end.instant - start.instant  # both UTC: DST-safe
        if delta < timedelta(0):
            raise _rule("Encounter.period.end is before Encounter.period.start", "Encounter.period", "value")
        seconds = int(
            (
                Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 10**6
            ).to_integral_value(rounding=ROUND_HALF_UP)
        )
    else:
        raise _rule(
            "a CoCM time entry needs Encounter.length or Encounter.period.end", "Encounter.length", "required"
        )

    return TimeEntry(
        patient_id=patient_id,
        start=start_instant,
        seconds=seconds,
        activity=activity,
        source=f"Encounter/{resource_id}",
        excluded=_exclusion(resource, start_instant.astimezone(zone).date()),
    )


def _exclusion(resource: Mapping[str, Any], day: date) -> str | None:
    if resource.get("status") != "finished":
        return "not_finished"
    if _class_codes(resource) & INPATIENT_CLASS_CODES:
        return "inpatient"
    separately_billed = separately_billed_on(day)
    if any(coding in separately_billed for coding in _codings(resource, "type", "serviceType")):
        return "separately_billed"
    return None


def visit_from_encounter(
    resource: Mapping[str, Any], resource_id: str, patient_id: str, tz: str
) -> list[VisitFact]:
    """Initiating visits and APCM base codes of a finished Encounter (one fact per distinct code)."""
    if resource.get("status") != "finished":
        return []
    wanted = VISIT_CODES
    codes: list[tuple[str, str]] = []
    for coding in _codings(resource, "type", "serviceType"):
        if coding in wanted and coding not in codes:
            codes.append(coding)
    if not codes:
        return []
    zone = ZoneInfo(tz)
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    assert isinstance(period, dict)
    if period.get("start") is not None:
        on = _parse_when(period["start"], zone, "Encounter.period.start").first
    elif period.get("end") is not None:
        on = _parse_when(period["end"], zone, "Encounter.period.end").last
    else:
        raise _rule(
            "a finished Encounter typed with a visit code needs Encounter.period (its date)",
            "Encounter.period.start",
            "required",
        )
    source = f"Encounter/{resource_id}"
    return [VisitFact(patient_id, on, system, code, source) for system, code in codes]


def consent_fact(resource: Mapping[str, Any], resource_id: str, patient_id: str, tz: str) -> ConsentFact:
    """The consent fact of a Consent (any scope or category counts: billing.md)."""
    raw = resource.get("dateTime")
    on = None if raw is None else _parse_when(raw, ZoneInfo(tz), "Consent.dateTime").last
    return ConsentFact(patient_id, resource.get("status") == "active", on, f"Consent/{resource_id}")


def episode_of_care_fact(
    resource: Mapping[str, Any], resource_id: str, patient_id: str, tz: str
) -> EpisodeOfCareFact | None:
    """The EpisodeOfCare fact, or ``None`` for an episode that never happened (cancelled,
    entered-in-error)."""
    status = resource.get("status")
    if isinstance(status, str) and status in {"cancelled", "entered-in-error"}:
        return None
    programs = {
        code for system, code in _codings(resource, "type") if system == ACTIVITY_SYSTEM
    } & PROGRAM_CODES
    if len(programs) > 1:
        raise _rule("EpisodeOfCare.type carries both 'cocm' and 'general-bhi'", "EpisodeOfCare.type", "value")
    program: Program = "general-bhi" if programs == {"general-bhi"} else "cocm"
    zone = ZoneInfo(tz)
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    assert isinstance(period, dict)
    start = (
        None
        if period.get("start") is None
        else _parse_when(period["start"], zone, "EpisodeOfCare.period.start").first
    )
    finished = status == "finished"
    end = (
        _parse_when(period["end"], zone, "EpisodeOfCare.period.end").last
        if finished and period.get("end") is not None
        else None
    )
    if start is not None and end is not None and end < start:
        raise _rule(
            "EpisodeOfCare.period.end is before EpisodeOfCare.period.start", "EpisodeOfCare.period", "value"
        )
    return EpisodeOfCareFact(patient_id, start, end, finished, program, f"EpisodeOfCare/{resource_id}")
