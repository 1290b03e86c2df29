"""End-to-end FHIR REST interactions through the real app and a migrated database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import FHIR_JSON, Fhir, count_rows


def patient_body(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": "Rivera", "given": ["Ana"]}],
        "gender": "female",
        **extra,
    }


def test_create_answers_201_with_location_etag_and_meta(fhir: Fhir) -> None:
    response = fhir.post(patient_body())
    assert response.status_code == 201
    body = response.json()
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("+00:00")
    assert response.headers["location"] == f"/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert body["name"] == [{"family": "Rivera", "given": ["Ana"]}]


def test_read_returns_the_stored_resource_with_etag(fhir: Fhir) -> None:
    pid = fhir.patient()
    response = fhir.get(f"Patient/{pid}")
    assert response.status_code == 200
    assert response.json()["id"] == pid
    assert response.headers["etag"] == 'W/"1"'


def test_read_unknown_id_is_404_operation_outcome(fhir: Fhir) -> None:
    response = fhir.get("Patient/nope")
    assert response.status_code == 404
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"


def test_unknown_type_is_404_and_read_only_type_write_is_405(fhir: Fhir) -> None:
    assert fhir.get("Medication/1").status_code == 404
    response = fhir.client.post(
        "/fhir/AuditEvent", json={"resourceType": "AuditEvent"}, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_update_creates_new_version_and_vread_keeps_old(fhir: Fhir) -> None:
    pid = fhir.patient(gender="female")
    response = fhir.put(f"Patient/{pid}", patient_body(id=pid, gender="other"), **{"If-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert fhir.get(f"Patient/{pid}/_history/1").json()["gender"] == "female"
    assert fhir.get(f"Patient/{pid}/_history/2").json()["gender"] == "other"
    assert fhir.get(f"Patient/{pid}/_history/3").status_code == 404
    history = fhir.get(f"Patient/{pid}/_history").json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_update_with_stale_if_match_is_412_and_writes_nothing(fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    fhir.put(f"Patient/{pid}", patient_body(id=pid, gender="male"))
    response = fhir.put(f"Patient/{pid}", patient_body(id=pid, gender="other"), **{"If-Match": 'W/"1"'})
    assert response.status_code == 412
    assert fhir.get(f"Patient/{pid}").json()["gender"] == "male"
    assert count_rows(db, "resource_version") == 2


def test_update_as_create_with_client_id_is_201(fhir: Fhir) -> None:
    response = fhir.put("Patient/client-chosen-1", patient_body(id="client-chosen-1"))
    assert response.status_code == 201
    assert response.headers["location"] == "/fhir/Patient/client-chosen-1/_history/1"


def test_update_with_mismatched_body_id_is_400(fhir: Fhir) -> None:
    response = fhir.put("Patient/a1", patient_body(id="b2"))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.id"]


def test_update_with_wrong_resource_type_is_400(fhir: Fhir) -> None:
    response = fhir.put("Patient/a1", {"resourceType": "Practitioner", "id": "a1"})
    assert response.status_code == 400


def test_delete_then_read_is_410_and_history_keeps_it(fhir: Fhir) -> None:
    pid = fhir.patient()
    assert fhir.client.delete(f"/fhir/Patient/{pid}").status_code == 204
    response = fhir.get(f"Patient/{pid}")
    assert response.status_code == 410
    assert response.json()["resourceType"] == "OperationOutcome"
    assert fhir.get(f"Patient/{pid}/_history/1").status_code == 200
    assert fhir.get(f"Patient/{pid}/_history/2").status_code == 410
    assert fhir.client.delete("/fhir/Patient/never-was").status_code == 404


def test_conditional_create_matches_once_then_returns_existing(fhir: Fhir, db: Any) -> None:
    body = patient_body(identifier=[{"system": "urn:mrn", "value": "123"}])
    first = fhir.post(body, **{"If-None-Exist": "identifier=urn:mrn|123"})
    assert first.status_code == 201
    second = fhir.post(
        patient_body(identifier=[{"system": "urn:mrn", "value": "123"}], gender="male"),
        **{"If-None-Exist": "identifier=urn:mrn|123"},
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["gender"] == "female"
    assert count_rows(db, "resource") == 1


def test_conditional_create_with_several_matches_is_412(fhir: Fhir, db: Any) -> None:
    fhir.create(patient_body(identifier=[{"system": "urn:a", "value": "1"}]))
    fhir.create(patient_body(identifier=[{"system": "urn:b", "value": "1"}]))
    response = fhir.post(patient_body(gender="male"), **{"If-None-Exist": "identifier=1"})
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (count_rows(db, "resource"), count_rows(db, "resource_version")) == (2, 2)
    stored = [e["resource"] for e in fhir.get("Patient").json()["entry"]]
    assert [p.get("gender") for p in stored] == ["female", "female"]  # the new body was not written


def test_plain_post_retry_with_same_identifier_is_200_and_different_content_409(fhir: Fhir, db: Any) -> None:
    body = patient_body(identifier=[{"system": "urn:mrn", "value": "77"}])
    first = fhir.post(body)
    retry = fhir.post(body)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == first.json()["id"]
    changed = fhir.post(patient_body(identifier=[{"system": "urn:mrn", "value": "77"}], gender="male"))
    assert changed.status_code == 409
    assert changed.json()["issue"][0]["code"] == "duplicate"
    assert count_rows(db, "resource") == 1


def test_conditional_update_upserts_by_identifier(fhir: Fhir) -> None:
    body = patient_body(identifier=[{"system": "urn:mrn", "value": "9"}])
    created = fhir.put("Patient?identifier=urn:mrn|9", body)
    assert created.status_code == 201
    updated = fhir.put("Patient?identifier=urn:mrn|9", {**body, "gender": "male"})
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"


def test_update_taking_another_resources_identifier_is_409(fhir: Fhir, db: Any) -> None:
    holder = fhir.create(patient_body(identifier=[{"system": "urn:mrn", "value": "1"}]))
    other = fhir.patient()
    response = fhir.put(
        f"Patient/{other}", patient_body(id=other, identifier=[{"system": "urn:mrn", "value": "1"}])
    )
    assert response.status_code == 409
    assert response.json()["issue"][0]["code"] == "duplicate"
    assert count_rows(db, "resource_version") == 2  # no new version of either
    unchanged = fhir.get(f"Patient/{other}").json()
    assert (unchanged["meta"]["versionId"], "identifier" in unchanged) == ("1", False)
    assert fhir.get(f"Patient/{holder['id']}").json() == holder


def test_prefer_return_minimal_and_operation_outcome(fhir: Fhir) -> None:
    minimal = fhir.post(patient_body(), Prefer="return=minimal")
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"].startswith("/fhir/Patient/")
    outcome = fhir.post(patient_body(), Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_patch_is_405(client: TestClient) -> None:
    response = client.patch("/fhir/Patient/1", json={}, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_metadata_lists_the_supported_types(client: TestClient) -> None:
    body = client.get("/fhir/metadata").json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert types == {
        "Patient",
        "QuestionnaireResponse",
        "Observation",
        "Encounter",
        "EpisodeOfCare",
        "Consent",
        "Practitioner",
        "Organization",
        "Subscription",
        "Condition",
        "Questionnaire",
        "Measure",
        "CarePlan",
        "ChargeItem",
        "AuditEvent",
    }
    observation = next(r for r in body["rest"][0]["resource"] if r["type"] == "Observation")
    assert {"code", "derived-from", "patient", "date"} <= {p["name"] for p in observation["searchParam"]}


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_update_with_a_malformed_if_match_is_400_and_writes_nothing(fhir: Fhir, db: Any) -> None:
    pid = fhir.create(patient_body())["id"]
    response = fhir.put(f"Patient/{pid}", patient_body(id=pid, gender="other"), **{"If-Match": "W/one"})
    assert response.status_code == 400
    assert "If-Match must be an ETag" in response.json()["issue"][0]["diagnostics"]
    assert fhir.get(f"Patient/{pid}").json()["gender"] == "female"
    assert count_rows(db, "resource_version") == 1


def test_a_malformed_if_match_is_checked_after_the_body_the_caller_and_the_type(
    make_client: Callable[..., TestClient],
) -> None:
    """api.md's order: content type (415), then credentials (401), then the type (404), and only
    then the If-Match header (400)."""
    client = make_client(api_keys="k1")
    body = patient_body(id="p1")
    bad = {"If-Match": "W/one", "Content-Type": "application/fhir+json"}
    sent = json.dumps(body)
    assert (
        client.put(
            "/fhir/Patient/p1", content=sent, headers={**bad, "Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert client.put("/fhir/Patient/p1", content=sent, headers=bad).status_code == 401
    authorized = {**bad, "Authorization": "Bearer k1"}
    assert client.put("/fhir/NoSuchType/p1", content=sent, headers=authorized).status_code == 404
    assert client.put("/fhir/Patient/p1", content=sent, headers=authorized).status_code == 400
