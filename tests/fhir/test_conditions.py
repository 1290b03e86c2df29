"""``Condition`` stored and searched (issue 12, quality.md): patient-linked CRUD and history, and
search by ``patient``, ``code`` (ICD-10-CM with or without its dot, SNOMED CT), ``clinical-status``
and ``onset-date``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Fhir

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def condition(
    pid: str, system: str, code: str, status: str = "active", onset: str = "2026-01-05"
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


@pytest.fixture
def seeded(client: TestClient) -> tuple[Fhir, str, dict[str, str]]:
    fhir = Fhir(client)
    pid, other = fhir.patient(), fhir.patient()
    ids = {
        "dotted": fhir.create(condition(pid, ICD10, "F32.1"))["id"],
        "dotless": fhir.create(condition(pid, ICD10, "F331", onset="2025-06-01"))["id"],
        "snomed": fhir.create(condition(pid, SNOMED, "35489007", status="resolved", onset="2024-03-01"))[
            "id"
        ],
        "other": fhir.create(condition(other, ICD10, "F32.1"))["id"],
    }
    return fhir, pid, ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"code": f"{ICD10}|F32.1"}, ["dotted", "other"]),
        ({"code": f"{ICD10}|F321"}, ["dotted", "other"]),  # without the dot
        ({"code": "F32.1"}, ["dotted", "other"]),
        ({"code": f"{ICD10}|F33.1"}, ["dotless"]),  # sent without the dot, asked with it
        ({"code": "F33.1"}, ["dotless"]),
        ({"code": f"{SNOMED}|35489007"}, ["snomed"]),
        ({"code": f"{SNOMED}|F32.1"}, []),  # a dot is only ICD-10-CM's
        ({"clinical-status": "active"}, ["dotless", "dotted", "other"]),
        ({"clinical-status": "resolved"}, ["snomed"]),
        ({"onset-date": "ge2026-01-05"}, ["dotted", "other"]),  # the boundary day included
        ({"onset-date": "lt2026-01-05"}, ["dotless", "snomed"]),
        ({"onset-date": "2025"}, ["dotless"]),
    ],
)
def test_search(seeded: tuple[Fhir, str, dict[str, str]], query: dict[str, str], expected: list[str]) -> None:
    fhir, _, ids = seeded
    names = {rid: name for name, rid in ids.items()}
    found = fhir.get("Condition", **query).json()
    assert sorted(names[e["resource"]["id"]] for e in found.get("entry", [])) == expected


def test_patient_search_and_history(seeded: tuple[Fhir, str, dict[str, str]]) -> None:
    fhir, pid, ids = seeded
    found = fhir.get("Condition", patient=pid).json()
    assert found["total"] == 3
    body = fhir.get(f"Condition/{ids['dotted']}").json()
    abated = {**body, "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "remission"}]}}
    assert fhir.put(f"Condition/{ids['dotted']}", abated).status_code == 200
    history = fhir.get(f"Condition/{ids['dotted']}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert fhir.get("Condition", **{"clinical-status": "remission"}).json()["total"] == 1


def test_a_condition_needs_a_known_patient(client: TestClient) -> None:
    response = Fhir(client).post(condition("nobody", ICD10, "F32.1"))
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Condition.subject"]
