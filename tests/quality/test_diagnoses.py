"""Diagnosis facts (quality.md, Diagnoses): value sets as data, the SNOMED CT map, the facts a
Condition write extracts (and an update or delete removes), the active CoCM diagnoses in the care
status, registry and CarePlan, and the migration that gives stored Conditions their facts."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from app.quality.diagnoses import diagnosis, person
from app.quality.valuesets import SNOMED_TO_ICD10, VALUE_SETS, category_of
from app.settings import Settings
from app.store.db import make_engine
from app.store.migrate import upgrade
from app.store.models import DiagnosisFactRow, Resource
from tests.api.scenario import Clinic
from tests.quality.test_evaluate_http import ICD10, condition

UTC = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("F32.0", "depression"),
        ("F325", "depression"),  # without the dot
        ("F32.A", "depression"),
        ("f32.a", "depression"),
        ("F32.8", None),  # F32.8x (other depressive episodes) is outside the value set
        ("F33.40", "depression"),
        ("F33.4", None),  # a header code, not F33.40-F33.42
        ("F33.43", None),
        ("F34.1", "depression"),
        ("F34.0", None),
        ("F31.81", "exclusion"),
        ("F60.3", "exclusion"),
        ("F60.9", "exclusion"),
        ("F20.9", "exclusion"),
        ("F29", "exclusion"),
        ("F30.9", None),
        ("F84.0", "exclusion"),
        ("Z51.5", "exclusion"),
        ("Z51.81", None),
        ("F41.1", None),  # anxiety: a CoCM condition, not in these value sets
    ],
)
def test_value_set_membership(code: str, category: str | None) -> None:
    assert category_of(code) == category


def test_every_value_set_names_its_source_and_every_snomed_code_maps_into_one() -> None:
    assert all(vs.source and (vs.codes or vs.prefixes) for vs in VALUE_SETS)
    assert all(category_of(icd) is not None for icd, _ in SNOMED_TO_ICD10.values())


def test_snomed_coding_is_mapped_and_icd10_preferred() -> None:
    snomed_only = {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "66344007"}]}}
    found = diagnosis(snomed_only, "c1", "p1", UTC)
    assert found is not None and (found.code, found.category) == ("F33.9", "depression")
    both = {
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "13746004"},
                {"system": ICD10, "code": "F3110", "display": "Bipolar, current episode manic"},
            ]
        }
    }
    found = diagnosis(both, "c2", "p1", UTC)
    assert found is not None and (found.code, found.display) == ("F31.10", "Bipolar, current episode manic")
    assert diagnosis({"code": {"coding": [{"system": ICD10, "code": "E11.9"}]}}, "c3", "p1", UTC) is None


@pytest.mark.parametrize(
    ("extra", "onset", "abatement", "active", "refuted"),
    [
        ({"onsetDateTime": "2025-03-04T23:30:00-05:00"}, date(2025, 3, 5), None, True, False),  # in UTC
        ({"onsetPeriod": {"start": "2025-03"}}, date(2025, 3, 1), None, True, False),
        ({"recordedDate": "2025-04-01"}, date(2025, 4, 1), None, True, False),
        (
            {"abatementDateTime": "2025-09-01", "clinicalStatus": {"coding": [{"code": "resolved"}]}},
            None,
            date(2025, 9, 1),
            False,
            False,
        ),
        ({"clinicalStatus": {"coding": [{"code": "relapse"}]}}, None, None, True, False),
        ({"verificationStatus": {"coding": [{"code": "entered-in-error"}]}}, None, None, True, True),
    ],
)
def test_condition_dates_and_statuses(
    extra: dict[str, Any], onset: date | None, abatement: date | None, active: bool, refuted: bool
) -> None:
    found = diagnosis({"code": {"coding": [{"system": ICD10, "code": "F33.1"}]}, **extra}, "c", "p", UTC)
    assert found is not None
    assert (found.onset, found.abatement, found.clinically_active, found.refuted) == (
        onset,
        abatement,
        active,
        refuted,
    )


def test_person_birth_and_death() -> None:
    assert person({"birthDate": "1980"}, UTC).birth_date == date(1980, 1, 1)
    dead = person({"deceasedDateTime": "2026-02-03T10:00:00Z"}, UTC)
    assert dead.died_by(date(2026, 2, 3)) and not dead.died_by(date(2026, 2, 2))
    assert person({"deceasedBoolean": True}, UTC).died_by(date(1900, 1, 1))
    assert not person({"deceasedBoolean": False}, UTC).deceased


def test_care_status_registry_and_careplan_show_active_diagnoses(clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40, "initial-assessment")
    active = clinic.fhir.create(condition(pid, "F33.1", onset="2025-06-01"))
    clinic.fhir.create(condition(pid, "F32.9", onset="2026-02-01"))  # not yet on 2026-01-31
    clinic.fhir.create(condition(pid, "E11.9"))  # not a CoCM diagnosis
    status = clinic.fhir.client.get(
        f"/api/v1/patients/{pid}/care-status", params={"as_of": "2026-01-31"}
    ).json()
    assert status["diagnoses"] == [
        {
            "system": ICD10,
            "code": "F33.1",
            "display": "Major depressive disorder, recurrent",
            "category": "depression",
        }
    ]
    registry = clinic.fhir.client.get("/api/v1/registry", params={"as_of": "2026-01-31"}).json()
    assert registry["items"][0]["diagnoses"] == status["diagnoses"]
    plan = clinic.fhir.get("CarePlan", patient=pid, date="2026-01-31").json()["entry"][0]["resource"]
    assert plan["addresses"] == [
        {"reference": f"Condition/{active['id']}", "display": "F33.1 Major depressive disorder, recurrent"}
    ]
    page = clinic.fhir.client.get("/registry", params={"as_of": "2026-01-31"}).text
    assert "F33.1 Major depressive disorder, recurrent" in page


def test_update_and_delete_replace_the_fact(clinic: Clinic, db: Any) -> None:
    pid = clinic.fhir.patient()
    created = clinic.fhir.create(condition(pid, "F33.1"))

    def facts() -> list[tuple[str, str]]:
        with Session(db) as session:
            return [(r.code, r.category) for r in session.scalars(select(DiagnosisFactRow))]

    assert facts() == [("F33.1", "depression")]
    changed = {**created, "code": {"coding": [{"system": ICD10, "code": "F31.9"}]}}
    assert clinic.fhir.put(f"Condition/{created['id']}", changed).status_code == 200
    assert facts() == [("F31.9", "exclusion")]
    assert clinic.fhir.client.delete(f"/fhir/Condition/{created['id']}").status_code in (200, 204)
    assert facts() == []


def test_migration_gives_stored_conditions_their_facts(tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}").sqlalchemy_url)
    upgrade(engine, "522fbfcac793")  # the revision before diagnosis facts
    body = condition("p1", "F32.1", onset="2025-02-03")
    with engine.begin() as conn:
        conn.execute(
            insert(Resource.__table__).values(  # type: ignore[arg-type]
                tenant="default",
                type="Condition",
                id="c1",
                version_id=1,
                last_updated=datetime(2026, 1, 1, tzinfo=UTC),
                deleted=False,
                patient_id="p1",
                status="active",
                effective=None,
                content=orjson.dumps(body).decode(),
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT condition_id, patient_id, code, category, onset FROM diagnosis_fact")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("c1", "p1", "F32.1", "depression", "2025-02-03")]
