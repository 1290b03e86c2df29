"""Scoring through the FHIR API: fixtures as sent, derived Observations, one measurement each."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Fhir, count_rows, load_fixture


def with_patient(resource: dict[str, Any], pid: str) -> dict[str, Any]:
    """The fixture as sent, pointed at a Patient that exists on this server."""
    body = copy.deepcopy(resource)
    body.pop("id", None)
    body["subject"] = {"reference": f"Patient/{pid}"}
    if "author" in body and body["author"].get("reference", "").startswith("Patient/"):
        body["author"] = {"reference": f"Patient/{pid}"}
    return body


def derived_for(fhir: Fhir, response_id: str) -> list[dict[str, Any]]:
    bundle = fhir.get("Observation", **{"derived-from": f"QuestionnaireResponse/{response_id}"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_us_core_fixture_scores_12_moderate(fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    response = fhir.post(with_patient(load_fixture("us-core-phq9-questionnaireresponse.json"), pid))
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["item"][0]["linkId"] == "/44250-9"  # stored as sent
    [observation] = derived_for(fhir, stored["id"])
    assert observation["valueQuantity"]["value"] == 12
    assert observation["valueQuantity"]["code"] == "{score}"
    assert observation["code"]["coding"][0]["code"] == "44261-6"
    assert observation["effectiveDateTime"] == "2022-11-29T20:50:32.718Z"
    assert observation["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{stored['id']}"}]
    assert observation["subject"] == {"reference": f"Patient/{pid}"}
    assert "moderate" in str(observation.get("interpretation", "")).lower()
    assert count_rows(db, "measurement") == 1
    by_code = fhir.get("Observation", patient=pid, code="http://loinc.org|44261-6").json()
    assert by_code["total"] == 1


def test_cms_access_fixture_scores_7_through_the_map(fhir: Fhir) -> None:
    pid = fhir.patient()
    stored = fhir.create(with_patient(load_fixture("cms-access-phq9-questionnaireresponse.json"), pid))
    [observation] = derived_for(fhir, stored["id"])
    assert observation["valueQuantity"]["value"] == 7


def test_retrying_a_response_never_double_counts(fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    body = with_patient(load_fixture("us-core-phq9-questionnaireresponse.json"), pid)
    body["identifier"] = {"system": "urn:ehr:qr", "value": "q-1"}
    first, second = fhir.post(body), fhir.post(body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert count_rows(db, "measurement") == 1
    assert len(derived_for(fhir, first.json()["id"])) == 1


def test_total_mismatch_comes_back_as_warning(fhir: Fhir) -> None:
    pid = fhir.patient()
    body = with_patient(load_fixture("us-core-phq9-questionnaireresponse.json"), pid)
    body["item"][9]["answer"] = [{"valueDecimal": 13}]
    response = fhir.post(body, Prefer="return=OperationOutcome")
    assert response.status_code == 201
    issues = response.json()["issue"]
    assert any(i["severity"] == "warning" and "13" in i["diagnostics"] for i in issues)


def test_incomplete_response_is_stored_not_scored(fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    body = with_patient(load_fixture("us-core-phq9-questionnaireresponse.json"), pid)
    body["status"] = "in-progress"
    response = fhir.post(body, Prefer="return=OperationOutcome")
    assert response.status_code == 201
    assert any(i["severity"] == "warning" for i in response.json()["issue"])
    assert count_rows(db, "measurement") == 0
    assert fhir.get("QuestionnaireResponse", patient=pid).json()["total"] == 1


def test_update_rescored_and_delete_removes_measurement(fhir: Fhir, db: Any, client: TestClient) -> None:
    pid = fhir.patient()
    stored = fhir.create(with_patient(load_fixture("us-core-phq9-questionnaireresponse.json"), pid))
    rid = stored["id"]
    changed = copy.deepcopy(stored)
    changed["item"][8]["answer"] = [{"valueCoding": {"system": "http://loinc.org", "code": "LA6571-9"}}]
    assert fhir.put(f"QuestionnaireResponse/{rid}", changed).status_code == 200
    [observation] = derived_for(fhir, rid)
    assert observation["valueQuantity"]["value"] == 15
    assert observation["meta"]["versionId"] == "2"
    assert client.delete(f"/fhir/QuestionnaireResponse/{rid}").status_code == 204
    assert count_rows(db, "measurement") == 0
    assert derived_for(fhir, rid) == []


def test_score_observation_sent_directly_counts_once(fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    for value_field in (
        {"valueInteger": 9},
        {"valueString": "9"},
        {"valueDecimal": 9},
        {"valueQuantity": {"value": 9, "unit": "{score}"}},
    ):
        fhir.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "70274-6"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2026-01-05T09:00:00Z",
                **value_field,
            }
        )
    assert count_rows(db, "measurement") == 4


def test_observation_derived_from_a_scored_response_is_not_a_second_measurement(fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    stored = fhir.create(with_patient(load_fixture("us-core-phq9-questionnaireresponse.json"), pid))
    fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2022-11-29T20:50:32Z",
            "valueInteger": 12,
            "derivedFrom": [{"reference": f"QuestionnaireResponse/{stored['id']}"}],
        }
    )
    assert count_rows(db, "measurement") == 1


def test_mii_pro_fixtures_as_sent_score_and_raise_safety_risk(
    fhir: Fhir, client: TestClient, db: Any
) -> None:
    """The MII PRO IG examples, byte for byte: their Patient is made with the id they reference, the
    PHQ-9 (MII linkIds, valueDecimal total 27, item 9 "nearly every day") scores 27 and raises
    safety_risk, the GAD-7 (with a PROMIS T-score item that is not summed) scores 13, and the
    total-score Observation (valueQuantity 27) is a measurement of its own."""
    assert (
        fhir.put(
            "Patient/mii-exa-pro-patient", {"resourceType": "Patient", "id": "mii-exa-pro-patient"}
        ).status_code
        == 201
    )
    phq9 = fhir.post(load_fixture("mii-pro-phq-9-response.json"))
    assert phq9.status_code == 201, phq9.text
    [derived] = derived_for(fhir, phq9.json()["id"])
    assert derived["valueQuantity"]["value"] == 27
    assert derived["component"][0]["valueInteger"] == 3  # item 9
    gad7 = fhir.create(load_fixture("mii-pro-gad-7-response.json"))
    assert derived_for(fhir, gad7["id"])[0]["valueQuantity"]["value"] == 13
    assert fhir.post(load_fixture("mii-pro-phq-9-observation.json")).status_code == 201
    assert count_rows(db, "measurement") == 3
    care = client.get(
        "/api/v1/patients/mii-exa-pro-patient/care-status", params={"as_of": "2024-03-31"}
    ).json()
    assert care["flags"] == ["safety_risk"]  # never enrolled: the safety flag alone
