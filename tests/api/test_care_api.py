"""Care status, registry and CarePlan end to end."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.scenario import Clinic


def status(client: TestClient, pid: str, as_of: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/patients/{pid}/care-status", params={"as_of": as_of})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_not_improving_patient_from_fhir_scores(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40, "initial-assessment")
    clinic.minutes(pid, "2026-03-20T10:00:00Z", 20)
    clinic.phq9(pid, "2026-01-05T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 2])  # 18
    clinic.score(pid, "2026-03-20T10:00:00Z", 16)
    result = status(client, pid, "2026-03-31")
    assert result["status"] == "active"
    assert result["episode_start"] == "2026-01-05"
    assert result["weeks_in_treatment"] == 12
    assert result["last_contact"] == "2026-03-20"
    phq9 = result["measures"]["PHQ-9"]
    assert phq9["baseline"] == {"score": 18, "date": "2026-01-05"}
    assert phq9["latest"] == {"score": 16, "date": "2026-03-20"}
    assert phq9["change_percent"] == -11.1
    assert (phq9["response"], phq9["remission"]) == (False, False)
    assert phq9["severity"] == "moderately severe"
    assert result["measures"]["GAD-7"] is None
    assert "not_improving" in result["flags"]
    assert "case_review_due" in result["flags"]
    earlier = status(client, pid, "2026-01-31")  # reproducible for any as_of
    assert "not_improving" not in earlier["flags"]
    assert earlier["measures"]["PHQ-9"]["latest"]["score"] == 18


def test_safety_item_flags_and_is_cleared(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)
    clinic.phq9(pid, "2026-01-05T10:00:00Z", [1, 1, 1, 1, 1, 1, 1, 1, 2])
    assert "safety_risk" in status(client, pid, "2026-01-10")["flags"]
    clinic.phq9(pid, "2026-01-20T10:00:00Z", [1, 1, 1, 1, 1, 1, 1, 1, 0])
    assert "safety_risk" not in status(client, pid, "2026-01-25")["flags"]
    assert "safety_risk" in status(client, pid, "2026-01-10")["flags"]


def test_unknown_patient_and_bad_as_of(client: TestClient, clinic: Clinic) -> None:
    assert client.get("/api/v1/patients/ghost/care-status").status_code == 404
    pid = clinic.patient()
    for bad in ("2026-02-30", "03/01/2026", "20260301"):
        response = client.get(f"/api/v1/patients/{pid}/care-status", params={"as_of": bad})
        assert response.status_code == 400
        assert "error" in response.json()
    assert status(client, pid, "2026-03-01")["status"] == "not_enrolled"


def test_registry_orders_by_urgency_filters_and_pages(client: TestClient, clinic: Clinic) -> None:
    calm = clinic.enrolled("Calm")
    clinic.minutes(calm, "2026-01-05T10:00:00Z", 40)
    clinic.minutes(calm, "2026-03-25T10:00:00Z", 20)
    clinic.phq9(calm, "2026-03-25T10:00:00Z", [0, 0, 0, 0, 1, 0, 0, 0, 0])
    risky = clinic.enrolled("Risky")
    clinic.minutes(risky, "2026-03-01T10:00:00Z", 40)
    clinic.phq9(risky, "2026-03-01T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 1])
    stuck = clinic.enrolled("Stuck")
    clinic.minutes(stuck, "2026-01-05T10:00:00Z", 40)
    clinic.minutes(stuck, "2026-03-28T10:00:00Z", 20)
    clinic.phq9(stuck, "2026-01-05T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 0])
    clinic.phq9(stuck, "2026-03-28T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 0])
    clinic.patient("NotInCare")

    body = client.get("/api/v1/registry", params={"as_of": "2026-03-31"}).json()
    assert body["as_of"] == "2026-03-31"
    assert [i["patient_id"] for i in body["items"]] == [risky, stuck, calm]
    assert body["items"][0]["name"] == "Ana Risky"
    assert body["items"][2]["status"] == "relapse_prevention"

    flagged = client.get("/api/v1/registry", params={"as_of": "2026-03-31", "flag": "not_improving"}).json()
    assert [i["patient_id"] for i in flagged["items"]] == [stuck]
    relapse = client.get(
        "/api/v1/registry", params={"as_of": "2026-03-31", "status": "relapse_prevention"}
    ).json()
    assert [i["patient_id"] for i in relapse["items"]] == [calm]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"as_of": "2026-03-31", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/registry", params=params).json()
        seen += [i["patient_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [risky, stuck, calm]


@pytest.mark.parametrize(
    "params", [{"flag": "grumpy"}, {"status": "asleep"}, {"cursor": "@@@"}, {"limit": 0}, {"limit": 501}]
)
def test_registry_bad_parameters_are_400(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/api/v1/registry", params=params)
    assert response.status_code == 400
    assert "error" in response.json()


def test_care_plan_view(client: TestClient, clinic: Clinic) -> None:
    from fhir.resources.R4B.careplan import CarePlan

    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)
    clinic.phq9(pid, "2026-01-05T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 2])
    bundle = client.get("/fhir/CarePlan", params={"patient": pid, "date": "2026-03-31"}).json()
    [entry] = bundle["entry"]
    plan = entry["resource"]
    CarePlan.model_validate(plan)
    assert plan["status"] == "active"
    assert plan["subject"] == {"reference": f"Patient/{pid}"}
    assert plan["period"]["start"] == "2026-01-05"
    flags = [e["valueCode"] for e in plan["extension"] if e["url"].endswith("cocm-flag")]
    assert "not_improving" in flags
    never = clinic.patient("Never")
    assert client.get("/fhir/CarePlan", params={"patient": never}).json()["total"] == 0
