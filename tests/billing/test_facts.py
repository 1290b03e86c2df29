"""Extraction of billing facts from FHIR R4 resource dicts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from app.billing.codes import ACTIVITY_SYSTEM, CPT, HCPCS, HCPCS_HTTP
from app.billing.facts import (
    consent_fact,
    episode_of_care_fact,
    time_entry_from_encounter,
    visit_from_encounter,
)
from app.domain import ConsentFact, EpisodeOfCareFact, VisitFact
from app.errors import BusinessRuleViolation

CHICAGO = "America/Chicago"


def encounter(
    *codes: tuple[str, str],
    status: str = "finished",
    period: dict[str, str] | None = None,
    length: dict[str, Any] | None = None,
    klass: str = "AMB",
    service_type: tuple[str, str] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": "Patient/p1"},
        "type": [{"coding": [{"system": system, "code": code}]} for system, code in codes],
    }
    if service_type is not None:
        resource["serviceType"] = {"coding": [{"system": service_type[0], "code": service_type[1]}]}
    if period is not None:
        resource["period"] = period
    if length is not None:
        resource["length"] = length
    return resource


FOLLOW_UP = (ACTIVITY_SYSTEM, "follow-up")
START = {"start": "2026-01-05T10:00:00-06:00"}


def minutes(value: float, code: str | None = "min", unit: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "system": "http://unitsofmeasure.org"}
    if code is not None:
        quantity["code"] = code
    if unit is not None:
        quantity["unit"] = unit
    return quantity


def test_time_entry_from_length_in_minutes() -> None:
    entry = time_entry_from_encounter(encounter(FOLLOW_UP, period=START, length=minutes(25)), "e1", "p1")
    assert entry is not None
    assert entry.seconds == 1500
    assert entry.activity == "follow-up"
    assert entry.source == "Encounter/e1"
    assert entry.patient_id == "p1"
    assert entry.excluded is None
    assert entry.start == datetime(2026, 1, 5, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("quantity", "seconds"),
    [
        (minutes(10.5), 630),
        (minutes(0.25, code="h"), 900),
        (minutes(1.5, code=None, unit="h"), 5400),
        (minutes(20, code=None, unit="minutes"), 1200),
        (minutes(0.0083), 0),  # 0.498 s rounds to 0
        (minutes(0.0084), 1),  # 0.504 s rounds to 1
        (minutes(0.025), 2),  # 1.5 s: halves round up
        (minutes(0), 0),
    ],
)
def test_length_units_and_rounding(quantity: dict[str, Any], seconds: int) -> None:
    entry = time_entry_from_encounter(encounter(FOLLOW_UP, period=START, length=quantity), "e1", "p1")
    assert entry is not None
    assert entry.seconds == seconds


def test_length_wins_over_period() -> None:
    period = {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T11:00:00Z"}
    entry = time_entry_from_encounter(encounter(FOLLOW_UP, period=period, length=minutes(20)), "e1", "p1")
    assert entry is not None
    assert entry.seconds == 1200


def test_duration_from_period() -> None:
    period = {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T10:31:30.6Z"}
    entry = time_entry_from_encounter(encounter(FOLLOW_UP, period=period), "e1", "p1")
    assert entry is not None
    assert entry.seconds == 31 * 60 + 31


def test_duration_from_period_across_dst_change_uses_real_elapsed_time() -> None:
    # 2026-03-08 02:00 America/Chicago jumps to 03:00: 01:30 CST to 03:30 CDT is one hour.
    period = {"start": "2026-03-08T01:30:00", "end": "2026-03-08T03:30:00"}
    entry = time_entry_from_encounter(encounter(FOLLOW_UP, period=period), "e1", "p1", CHICAGO)
    assert entry is not None
    assert entry.seconds == 3600
    period = {"start": "2026-03-08T01:30:00-06:00", "end": "2026-03-08T03:30:00-05:00"}
    entry = time_entry_from_encounter(encounter(FOLLOW_UP, period=period), "e1", "p1", CHICAGO)
    assert entry is not None
    assert entry.seconds == 3600


def test_start_without_offset_is_clinic_local() -> None:
    entry = time_entry_from_encounter(
        encounter(FOLLOW_UP, period={"start": "2026-01-31T23:30:00"}, length=minutes(20)), "e1", "p1", CHICAGO
    )
    assert entry is not None
    assert entry.start == datetime(2026, 2, 1, 5, 30, tzinfo=UTC)


def test_date_only_start_is_clinic_local_midnight() -> None:
    entry = time_entry_from_encounter(
        encounter(FOLLOW_UP, period={"start": "2026-01-31"}, length=minutes(20)), "e1", "p1", CHICAGO
    )
    assert entry is not None
    assert entry.start == datetime(2026, 1, 31, 6, 0, tzinfo=UTC)


def test_service_type_carries_activity() -> None:
    resource = encounter(period=START, length=minutes(5), service_type=(ACTIVITY_SYSTEM, "outreach"))
    entry = time_entry_from_encounter(resource, "e1", "p1")
    assert entry is not None
    assert entry.activity == "outreach"


@pytest.mark.parametrize(
    "codes",
    [
        (),
        ((ACTIVITY_SYSTEM, "unknown-activity"),),
        (("http://example.org/other", "follow-up"),),
        ((CPT, "99214"),),
    ],
)
def test_not_a_time_entry(codes: tuple[tuple[str, str], ...]) -> None:
    assert time_entry_from_encounter(encounter(*codes, period=START, length=minutes(5)), "e1", "p1") is None


def test_consultant_code_wins_when_several_activities() -> None:
    resource = encounter(
        FOLLOW_UP, (ACTIVITY_SYSTEM, "psychiatric-consultation"), period=START, length=minutes(5)
    )
    entry = time_entry_from_encounter(resource, "e1", "p1")
    assert entry is not None
    assert entry.activity == "psychiatric-consultation"


@pytest.mark.parametrize(
    ("kwargs", "extra", "excluded"),
    [
        ({"status": "planned"}, (), "not_finished"),
        ({"status": "cancelled"}, (), "not_finished"),
        ({"status": "entered-in-error"}, (), "not_finished"),
        ({"status": "in-progress"}, (), "not_finished"),
        ({"klass": "IMP"}, (), "inpatient"),
        ({"klass": "ACUTE"}, (), "inpatient"),
        ({"klass": "NONAC"}, (), "inpatient"),
        ({"klass": "OBSENC"}, (), "inpatient"),
        ({"klass": "VR"}, (), None),
        ({}, ((CPT, "99214"),), "separately_billed"),
        ({}, ((CPT, "90834"),), "separately_billed"),
        ({}, ((CPT, "90837"),), "separately_billed"),
        ({}, ((HCPCS_HTTP, "G0439"),), "separately_billed"),
        ({}, ((HCPCS, "G0556"),), None),  # APCM base code carries no time
        ({}, (("http://example.org/cpt", "99214"),), None),
        ({"status": "cancelled", "klass": "IMP"}, ((CPT, "99214"),), "not_finished"),
    ],
)
def test_exclusion_reasons(
    kwargs: dict[str, Any], extra: tuple[tuple[str, str], ...], excluded: str | None
) -> None:
    entry = time_entry_from_encounter(
        encounter(FOLLOW_UP, *extra, period=START, length=minutes(5), **kwargs), "e", "p"
    )
    assert entry is not None
    assert entry.excluded == excluded


def _violation(resource: dict[str, Any]) -> BusinessRuleViolation:
    with pytest.raises(BusinessRuleViolation) as caught:
        time_entry_from_encounter(resource, "e1", "p1")
    return caught.value


def test_missing_start_names_period_start() -> None:
    error = _violation(encounter(FOLLOW_UP, length=minutes(5)))
    assert error.issues[0].expression == ("Encounter.period.start",)
    error = _violation(encounter(FOLLOW_UP, period={"end": "2026-01-05T10:00:00Z"}, length=minutes(5)))
    assert error.issues[0].expression == ("Encounter.period.start",)


@pytest.mark.parametrize(
    "resource",
    [
        encounter(FOLLOW_UP, period=START),
        encounter(FOLLOW_UP, period={"start": "2026-01-05", "end": "2026-01-06"}),
        encounter(FOLLOW_UP, period=START, length={"unit": "min"}),
        encounter(FOLLOW_UP, period=START, length=minutes(5, code="s")),
        encounter(FOLLOW_UP, period=START, length=minutes(5, code=None, unit="d")),
        encounter(FOLLOW_UP, period=START, length=minutes(-5)),
        encounter(FOLLOW_UP, period=START, length={**minutes(5), "comparator": "<"}),
    ],
)
def test_unusable_duration_names_length(resource: dict[str, Any]) -> None:
    assert _violation(resource).issues[0].expression == ("Encounter.length",)


def test_negative_period_is_rejected() -> None:
    period = {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T09:00:00Z"}
    error = _violation(encounter(FOLLOW_UP, period=period))
    assert error.issues[0].expression == ("Encounter.period",)


def test_month_precision_start_is_rejected() -> None:
    error = _violation(encounter(FOLLOW_UP, period={"start": "2026-01"}, length=minutes(5)))
    assert error.issues[0].expression == ("Encounter.period.start",)


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (CPT, "99202"),
        (CPT, "99205"),
        (CPT, "99212"),
        (CPT, "99215"),
        (CPT, "99495"),
        (CPT, "99496"),
        (HCPCS, "G0402"),
        (HCPCS, "G0438"),
        (HCPCS, "G0439"),
        (HCPCS, "G0556"),
        (HCPCS, "G0557"),
        (HCPCS, "G0558"),
    ],
)
def test_visit_codes(system: str, code: str) -> None:
    resource = encounter((system, code), period={"start": "2026-01-31T23:30:00-06:00"})
    assert visit_from_encounter(resource, "v1", "p1", CHICAGO) == [
        VisitFact("p1", date(2026, 1, 31), system, code, "Encounter/v1")
    ]
    # the same instant is already February in New York
    assert visit_from_encounter(resource, "v1", "p1", "America/New_York")[0].on == date(2026, 2, 1)


@pytest.mark.parametrize(
    "codes",
    [((CPT, "99211"),), ((CPT, "99201"),), ((CPT, "90834"),), ((HCPCS, "99214"),), ((CPT, "G0438"),)],
)
def test_not_visit_codes(codes: tuple[tuple[str, str], ...]) -> None:
    assert visit_from_encounter(encounter(*codes, period=START), "v1", "p1", CHICAGO) == []


def test_visit_http_hcpcs_is_normalised_and_codes_are_distinct() -> None:
    resource = encounter((HCPCS_HTTP, "G0438"), (HCPCS, "G0438"), (CPT, "99214"), period=START)
    visits = visit_from_encounter(resource, "v1", "p1", CHICAGO)
    assert [(visit.system, visit.code) for visit in visits] == [(HCPCS, "G0438"), (CPT, "99214")]


def test_visit_needs_finished_status() -> None:
    assert (
        visit_from_encounter(encounter((CPT, "99214"), status="planned", period=START), "v", "p", CHICAGO)
        == []
    )


def test_visit_date_falls_back_to_period_end() -> None:
    resource = encounter((CPT, "99214"), period={"end": "2026-02-03T09:00:00Z"})
    assert visit_from_encounter(resource, "v", "p", "UTC")[0].on == date(2026, 2, 3)


def test_visit_without_date_is_rejected() -> None:
    with pytest.raises(BusinessRuleViolation):
        visit_from_encounter(encounter((CPT, "99214")), "v", "p", "UTC")


def test_visit_and_time_entry_from_one_encounter() -> None:
    resource = encounter(FOLLOW_UP, (CPT, "99214"), period=START, length=minutes(30))
    entry = time_entry_from_encounter(resource, "e", "p")
    assert entry is not None
    assert entry.excluded == "separately_billed"
    assert len(visit_from_encounter(resource, "e", "p", "UTC")) == 1


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            {"status": "active", "dateTime": "2026-01-31T23:30:00-06:00"},
            ConsentFact("p1", True, date(2026, 1, 31), "Consent/c1"),
        ),
        (
            {"status": "active", "dateTime": "2026-02-01T04:30:00Z"},
            ConsentFact("p1", True, date(2026, 1, 31), "Consent/c1"),
        ),
        (
            {"status": "active", "dateTime": "2026-01"},
            ConsentFact("p1", True, date(2026, 1, 31), "Consent/c1"),
        ),
        ({"status": "active"}, ConsentFact("p1", True, None, "Consent/c1")),
        (
            {"status": "inactive", "dateTime": "2026-01-05"},
            ConsentFact("p1", False, date(2026, 1, 5), "Consent/c1"),
        ),
        (
            {"status": "draft", "dateTime": "2026-01-05"},
            ConsentFact("p1", False, date(2026, 1, 5), "Consent/c1"),
        ),
    ],
)
def test_consent_fact(resource: dict[str, Any], expected: ConsentFact) -> None:
    assert consent_fact({"resourceType": "Consent", **resource}, "c1", "p1", CHICAGO) == expected


def _episode_of_care(status: str, period: dict[str, str], *codes: str) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "status": status,
        "patient": {"reference": "Patient/p1"},
        "period": period,
        "type": [{"coding": [{"system": ACTIVITY_SYSTEM, "code": code}]} for code in codes],
    }


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            _episode_of_care("active", {"start": "2026-01-05"}),
            EpisodeOfCareFact("p1", date(2026, 1, 5), None, False, "cocm", "EpisodeOfCare/x"),
        ),
        (
            _episode_of_care("active", {"start": "2026-01-05"}, "general-bhi"),
            EpisodeOfCareFact("p1", date(2026, 1, 5), None, False, "general-bhi", "EpisodeOfCare/x"),
        ),
        (
            _episode_of_care("finished", {"start": "2026-01-05", "end": "2026-04-01T02:00:00Z"}, "cocm"),
            EpisodeOfCareFact("p1", date(2026, 1, 5), date(2026, 3, 31), True, "cocm", "EpisodeOfCare/x"),
        ),
        (
            _episode_of_care("active", {"start": "2026-01-05", "end": "2026-06-30"}),
            EpisodeOfCareFact("p1", date(2026, 1, 5), None, False, "cocm", "EpisodeOfCare/x"),
        ),
        (
            _episode_of_care("finished", {}),
            EpisodeOfCareFact("p1", None, None, True, "cocm", "EpisodeOfCare/x"),
        ),
    ],
)
def test_episode_of_care_fact(resource: dict[str, Any], expected: EpisodeOfCareFact) -> None:
    assert episode_of_care_fact(resource, "x", "p1", CHICAGO) == expected


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_episode_of_care_that_never_happened_has_no_fact(status: str) -> None:
    assert episode_of_care_fact(_episode_of_care(status, {"start": "2026-01-05"}), "x", "p1", CHICAGO) is None


def test_episode_of_care_with_both_programs_is_rejected() -> None:
    with pytest.raises(BusinessRuleViolation):
        episode_of_care_fact(_episode_of_care("active", {}, "cocm", "general-bhi"), "x", "p1", CHICAGO)
