"""The synthetic clinic (``app.demo``): deterministic, valid FHIR, realistic, and alive once loaded."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from app.billing.codes import ACTIVITY_SYSTEM, INITIATING_VISIT_CODES
from app.demo import ID_SYSTEM, LoadResult, clinic, demo_service, load, patient_bundle
from app.domain import Month
from app.measures.instruments import ANSWERS, GAD7, PHQ9
from app.measures.scoring import score_questionnaire_response
from app.quality.measures import MEASURES, Period
from app.resources.validation import validate_resource
from app.services.quality import evaluate_measures
from app.services.reports import month_billing, sorted_registry, today
from app.services.uow import transact
from app.settings import Settings
from app.store.db import make_sessionmaker
from tests.conftest import _empty_tables, count_rows

ZONE = ZoneInfo("America/Chicago")
TODAY = date(2026, 3, 18)


def resources(bundles: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for bundle in bundles:
        for entry in bundle["entry"]:
            yield entry["resource"]


def test_the_same_inputs_give_the_same_clinic() -> None:
    assert clinic(TODAY, ZONE, patients=15) == clinic(TODAY, ZONE, patients=15)
    assert clinic(TODAY, ZONE, patients=15, seed=8) != clinic(TODAY, ZONE, patients=15)
    # a patient is the same person whatever the size of the clinic
    assert clinic(TODAY, ZONE, patients=5) == clinic(TODAY, ZONE, patients=12)[:5]
    assert patient_bundle(3, TODAY, ZONE) == clinic(TODAY, ZONE, patients=3)[2]


def test_every_resource_is_valid_fhir_with_a_stable_identifier() -> None:
    bundles = clinic(TODAY, ZONE, patients=60)
    seen: set[tuple[str, str, str]] = set()
    for bundle in bundles:
        assert bundle["type"] == "transaction"
        assert bundle["entry"][0]["resource"]["resourceType"] == "Patient"
        patient_url = bundle["entry"][0]["fullUrl"]
        assert patient_url.startswith("urn:uuid:")
        for entry in bundle["entry"]:
            resource = copy.deepcopy(entry["resource"])
            rtype = resource["resourceType"]
            assert entry["request"] == {"method": "POST", "url": rtype}
            for key in ("subject", "patient"):
                if key in resource:
                    assert resource[key] == {"reference": patient_url}
                    resource[key] = {"reference": "Patient/demo"}  # as the transaction rewrites it
            validate_resource(resource, rtype)
            identifiers = resource["identifier"]
            ident = identifiers if isinstance(identifiers, dict) else identifiers[0]
            assert ident["system"].startswith(f"{ID_SYSTEM}:")
            key = (rtype, ident["system"], ident["value"])
            assert key not in seen
            seen.add(key)


def test_the_clinic_looks_like_a_collaborative_care_caseload() -> None:
    bundles = clinic(TODAY, ZONE, patients=200)
    kinds = Counter(r["resourceType"] for r in resources(bundles))
    assert kinds["Patient"] == 200
    assert kinds["Encounter"] > 2000
    assert kinds["QuestionnaireResponse"] > 800
    assert 170 < kinds["Consent"] < 200  # a few consents missing: the blocker shows up
    assert kinds["EpisodeOfCare"] > 5

    phq9 = gad7 = item9_positive = 0
    totals: list[int] = []
    for response in (r for r in resources(bundles) if r["resourceType"] == "QuestionnaireResponse"):
        links = [item["linkId"] for item in response["item"]]
        codes = {item["answer"][0]["valueCoding"]["code"] for item in response["item"]}
        if links[0] == PHQ9.items[0].loinc:
            phq9 += 1
            assert links == [*PHQ9.item_codes, PHQ9.unscored[0].loinc]
        else:
            gad7 += 1
            assert links == list(GAD7.item_codes)
        assert codes - set(ANSWERS) <= {"LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3"}
        scored = score_questionnaire_response(response)
        assert scored is not None and scored.complete and not scored.warnings
        assert scored.total is not None
        totals.append(scored.total)
        item9_positive += bool(scored.item9)
        authored = datetime.fromisoformat(response["authored"])
        assert authored.tzinfo is not None and authored.date() < TODAY
    assert phq9 > 600 and gad7 > 150
    assert 0 < item9_positive < phq9 // 5
    assert min(totals) < 5 and max(totals) >= 20  # remissions and severe scores

    encounters = [r for r in resources(bundles) if r["resourceType"] == "Encounter"]
    activities = Counter(
        c["code"]
        for e in encounters
        for t in e["type"]
        for c in t["coding"]
        if c["system"] == ACTIVITY_SYSTEM
    )
    assert set(activities) >= {
        "initial-assessment",
        "follow-up",
        "outreach",
        "care-coordination",
        "case-review",
        "brief-intervention",
        "psychiatric-consultation",
    }
    visits = [
        e
        for e in encounters
        if any((c["system"], c["code"]) in INITIATING_VISIT_CODES for t in e["type"] for c in t["coding"])
    ]
    assert 170 < len(visits) < 200
    assert Counter(e["status"] for e in encounters)["cancelled"] > 0
    starts = [datetime.fromisoformat(e["period"]["start"]) for e in encounters]
    assert max(starts).date() < TODAY
    assert min(starts).date() >= TODAY - timedelta(days=220)
    episodes = [r for r in resources(bundles) if r["resourceType"] == "EpisodeOfCare"]
    assert {e["status"] for e in episodes} == {"active", "finished"}


# ------------------------------------------------------------------ loaded


@pytest.fixture(scope="module")
def loaded(database_url: str, migrated_engine: Engine) -> Iterator[tuple[Settings, LoadResult, Engine]]:
    """The 200-patient demo loaded once (today, America/Chicago) for the tests below."""
    _empty_tables(migrated_engine)
    settings = Settings(database_url=database_url, timezone="America/Chicago")
    bundles = clinic(today(settings), settings.zone, patients=200)
    with make_sessionmaker(migrated_engine)() as session:
        result = load(demo_service(session, settings), settings, bundles)
    yield settings, result, migrated_engine
    _empty_tables(migrated_engine)


def test_loading_gives_a_living_registry(loaded: tuple[Settings, LoadResult, Engine]) -> None:
    settings, result, engine = loaded
    assert result == LoadResult(loaded=200, present=0)
    with make_sessionmaker(engine)() as session:
        service = demo_service(session, settings)
        statuses = transact(service, lambda: sorted_registry(service, settings, today(settings))).items
    assert len(statuses) == 200
    by_status = Counter(s.status for s in statuses)
    assert by_status["active"] > 80
    assert by_status["relapse_prevention"] > 10
    assert by_status["discharged"] > 5
    assert by_status["not_enrolled"] > 3
    flags = Counter(flag for s in statuses for flag in s.flags)
    for flag in (
        "safety_risk",
        "not_improving",
        "measurement_overdue",
        "no_recent_contact",
        "case_review_due",
    ):
        assert flags[flag] > 3, flags
    assert sum(1 for s in statuses if s.flags) < 190  # not everybody is flagged


def test_the_last_full_month_bills(loaded: tuple[Settings, LoadResult, Engine]) -> None:
    settings, _, engine = loaded
    month = Month.of(today(settings)).previous()
    with make_sessionmaker(engine)() as session:
        service = demo_service(session, settings)
        months = transact(service, lambda: month_billing(service, settings, month))
    assert len(months) > 100
    totals: Counter[str] = Counter()
    for m in months:
        for code in m.codes:
            totals[code.code] += code.units
    assert {"99493", "99494", "G2214"} <= set(totals)
    assert totals["99492"] > 0  # new patients last month
    assert Counter(m.month_kind for m in months)["initial"] > 0
    billable = [m for m in months if m.billable]
    assert len(months) * 0.8 < len(billable) < len(months)
    blockers = Counter(b for m in months for b in m.blockers)
    assert "month_open" not in blockers
    assert blockers["consent_missing"] > 0
    assert any(not m.codes for m in months)  # some months stay under 16 minutes


def test_loading_twice_writes_nothing(loaded: tuple[Settings, LoadResult, Engine]) -> None:
    settings, _, engine = loaded
    before = {t: count_rows(engine, t) for t in ("resource", "resource_version", "time_entry")}
    with make_sessionmaker(engine)() as session:
        again = load(
            demo_service(session, settings), settings, clinic(today(settings), settings.zone, patients=200)
        )
    assert again == LoadResult(loaded=0, present=200)
    assert {t: count_rows(engine, t) for t in before} == before


def test_the_demo_gives_every_quality_measure_a_denominator(
    database_url: str, migrated_engine: Engine
) -> None:
    """Diagnoses (most depression, a few exclusions) and alumni treated 13-26 months ago: over the
    twelve months to today every measure has patients in and out of its numerator."""
    _empty_tables(migrated_engine)
    settings = Settings(database_url=database_url, timezone="America/Chicago")
    on = today(settings)
    bundles = clinic(on, settings.zone, patients=60, alumni=40)
    conditions = [r for r in resources(bundles) if r["resourceType"] == "Condition"]
    assert len(conditions) > 80
    with make_sessionmaker(migrated_engine)() as session:
        service = demo_service(session, settings)
        load(service, settings, bundles)
        period = Period(on - timedelta(days=365), on)
        results, _ = transact(
            service, lambda: evaluate_measures(service, settings, [period], list(MEASURES.values()))
        )
    _empty_tables(migrated_engine)
    for result in results[0]:
        for group in result.groups:
            assert 0 < group.count("numerator") < group.count("denominator"), (result.measure.id, group)
