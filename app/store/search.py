"""FHIR search parameters (api.md) parsed into SQL conditions on ``resource``.

Supported on every stored type: ``_id``, ``_lastUpdated``, ``identifier``. On the patient-linked
types (QuestionnaireResponse, Observation, Encounter, EpisodeOfCare, Consent): ``patient`` and
``subject`` (``id``, ``Patient/id`` or an absolute URL ending in ``Patient/id``), ``date``
(QuestionnaireResponse.authored, Observation.effective[x], Encounter.period.start,
EpisodeOfCare.period.start, Consent.dateTime) and ``status``. Observation also has ``code`` and
``derived-from``; QuestionnaireResponse ``questionnaire``.

Choices (FHIR search, R4 3.1.1): a comma inside one value means OR, a repeated parameter means AND.
Date values take the prefixes eq (default), ne, gt, lt, ge, le and any precision from a year to an
instant; a value without an offset is read in the clinic time zone; ``date`` compares against the
start instant of the element (a period is matched by its start). Unknown parameters are ignored, as
the specification's default lenient handling says, unless the client sends
``Prefer: handling=strict`` (then 400). Values are always bound parameters, never SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput, Issue
from app.quality.valuesets import ICD10_CM
from app.resources.dates import parse_fhir_date
from app.store.models import Resource, ResourceIdentifier, ResourceToken

PATIENT_LINKED = ("QuestionnaireResponse", "Observation", "Encounter", "EpisodeOfCare", "Consent")
TOKEN_PARAMS: dict[str, tuple[str, ...]] = {
    "Observation": ("code", "derived-from"),
    "QuestionnaireResponse": ("questionnaire",),
    "Subscription": ("url", "criteria"),  # notifications.md: channel.endpoint and the topic
    "Condition": ("code",),  # ICD-10-CM also without its dot (ICD10_CM)
}
REFERENCE_TOKENS = {"derived-from"}
RESULT_PARAMS = {"_count", "_cursor", "_format", "_pretty", "_summary", "_total", "_elements"}

_DATE_RE = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le)?(?P<value>\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?)$"
)


def params_for(rtype: str) -> list[str]:
    """Search parameter names supported on a type (the CapabilityStatement lists these)."""
    names = ["_id", "_lastUpdated", "identifier"]
    if rtype in PATIENT_LINKED:
        names += ["patient", "subject", "date", "status"]
    elif rtype == "Subscription":
        names.append("status")
    elif rtype == "Condition":  # quality.md: patient, code, clinical-status, onset-date
        names += ["patient", "subject", "clinical-status", "onset-date"]
    names += list(TOKEN_PARAMS.get(rtype, ()))
    return names


@dataclass(frozen=True)
class DateRange:
    low: datetime
    high: datetime  # exclusive


def parse_date_range(text: str, zone: ZoneInfo) -> tuple[str, DateRange]:
    """``ge2026-01`` -> ("ge", [2026-01-01, 2026-02-01)) as UTC instants. Raises ValueError, also
    for dates at the edge of the calendar that cannot be converted to UTC."""
    match = _DATE_RE.match(text)
    if match is None:
        raise ValueError("not a FHIR date")
    try:
        value = parse_fhir_date(match.group("value"), zone)
        return match.group("prefix") or "eq", DateRange(value.start(zone), value.end(zone))
    except OverflowError:
        raise ValueError("date out of range") from None


def date_condition(column: InstrumentedAttribute[Any], prefix: str, rng: DateRange) -> ColumnElement[bool]:
    if prefix == "eq":
        return and_(column >= rng.low, column < rng.high)
    if prefix == "ne":
        return or_(column < rng.low, column >= rng.high)
    if prefix == "ge":
        return column >= rng.low
    if prefix == "gt":
        return column >= rng.high
    if prefix == "le":
        return column < rng.high
    return column < rng.low  # lt


def split_token(value: str) -> tuple[str | None, str]:
    """``sys|code`` -> (sys, code); ``|code`` -> ("", code); ``code`` -> (None, code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def reference_id(value: str, target: str) -> str:
    """``p1``, ``Patient/p1`` or ``http://x/fhir/Patient/p1`` -> ``p1``."""
    marker = f"{target}/"
    if marker in value:
        return value.rsplit(marker, 1)[1].split("/", 1)[0]
    return value


@dataclass(frozen=True)
class SearchQuery:
    conditions: list[ColumnElement[bool]]
    applied: list[tuple[str, str]]  # the (name, value) pairs that took effect, for the self link


def build_conditions(
    tenant: str, rtype: str, params: Sequence[tuple[str, str]], zone: ZoneInfo, *, strict: bool = False
) -> SearchQuery:
    supported = set(params_for(rtype))
    conditions: list[ColumnElement[bool]] = []
    applied: list[tuple[str, str]] = []
    for raw_name, raw_value in params:
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMS:
            continue
        if name not in supported or modifier not in {"", "exact"}:
            if strict:
                raise InvalidInput(
                    Issue(
                        f"unknown search parameter {raw_name!r} for {rtype}",
                        "not-supported",
                        expression=(raw_name,),
                    )
                )
            continue
        if "\x00" in raw_value:
            raise InvalidInput(
                Issue(f"search parameter {name!r} contains a NUL character", "invalid", expression=(name,))
            )
        alternatives = [v for v in raw_value.split(",") if v != ""]
        if not alternatives:
            raise InvalidInput(
                Issue(f"search parameter {name!r} has no value", "invalid", expression=(name,))
            )
        builder = _BUILDERS.get(name, _token_condition)
        try:
            conditions.append(or_(*(builder(tenant, rtype, name, v, zone) for v in alternatives)))
        except ValueError as exc:
            raise InvalidInput(
                Issue(f"search parameter {name!r}: {exc}", "invalid", expression=(name,))
            ) from None
        applied.append((raw_name, raw_value))
    return SearchQuery(conditions, applied)


def _id_condition(tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo) -> ColumnElement[bool]:
    return Resource.id == value


def _last_updated_condition(
    tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo
) -> ColumnElement[bool]:
    prefix, rng = parse_date_range(value, zone)
    return date_condition(Resource.last_updated, prefix, rng)


def _date_param_condition(
    tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo
) -> ColumnElement[bool]:
    prefix, rng = parse_date_range(value, zone)
    return date_condition(Resource.effective, prefix, rng)


def _patient_condition(tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo) -> ColumnElement[bool]:
    return Resource.patient_id == reference_id(value, "Patient")


def _status_condition(tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo) -> ColumnElement[bool]:
    return Resource.status == split_token(value)[1]


def _identifier_condition(
    tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo
) -> ColumnElement[bool]:
    system, code = split_token(value)
    clauses = [
        ResourceIdentifier.tenant == tenant,
        ResourceIdentifier.type == rtype,
        ResourceIdentifier.resource_id == Resource.id,
        ResourceIdentifier.value == code,
    ]
    if system is not None:
        clauses.append(ResourceIdentifier.system == system)
    return exists(select(ResourceIdentifier.resource_id).where(*clauses))


def _token_condition(tenant: str, rtype: str, name: str, value: str, zone: ZoneInfo) -> ColumnElement[bool]:
    if name in REFERENCE_TOKENS:  # "QuestionnaireResponse/1" or an absolute URL ending in it
        system, code = None, "/".join(value.rstrip("/").split("/")[-2:])
    else:
        system, code = split_token(value)
    codes = {code}
    if rtype == "Condition" and system in (None, ICD10_CM):
        codes.add(code.replace(".", ""))  # ICD-10-CM with or without the dot (indexed dotless too)
    clauses = [
        ResourceToken.tenant == tenant,
        ResourceToken.type == rtype,
        ResourceToken.resource_id == Resource.id,
        ResourceToken.param == name,
        ResourceToken.value.in_(sorted(codes)),
    ]
    if system is not None:
        clauses.append(ResourceToken.system == system)
    return exists(select(ResourceToken.pk).where(*clauses))


_BUILDERS: dict[str, Callable[[str, str, str, str, ZoneInfo], ColumnElement[bool]]] = {
    "_id": _id_condition,
    "_lastUpdated": _last_updated_condition,
    "date": _date_param_condition,
    "patient": _patient_condition,
    "subject": _patient_condition,
    "status": _status_condition,
    "clinical-status": _status_condition,
    "onset-date": _date_param_condition,
    "identifier": _identifier_condition,
}
