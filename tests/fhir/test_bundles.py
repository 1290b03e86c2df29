"""Transaction and batch Bundles: urn:uuid rewriting, atomicity, per-entry outcomes."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import FHIR_JSON, count_rows


def post_bundle(client: TestClient, bundle: dict[str, Any]) -> Any:
    return client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


PATIENT_URN = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"


def patient_entry(**extra: Any) -> dict[str, Any]:
    return {
        "fullUrl": PATIENT_URN,
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": "b1"}],
            **extra,
        },
        "request": {"method": "POST", "url": "Patient"},
    }


def encounter_entry(minutes: int = 20, subject: str = PATIENT_URN, **extra: Any) -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:0b3a6a1e-9d1c-4a54-9a53-7cb1c4c9e1aa",
        "resource": {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [
                {
                    "coding": [
                        {"system": "http://cocm-api.org/fhir/CodeSystem/cocm-activity", "code": "outreach"}
                    ]
                }
            ],
            "subject": {"reference": subject},
            "period": {"start": "2026-01-05T10:00:00Z"},
            "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
            **extra,
        },
        "request": {"method": "POST", "url": "Encounter"},
    }


def test_transaction_rewrites_urn_uuid_references(client: TestClient) -> None:
    # The Encounter comes first: the Patient it points at is still created before it.
    response = post_bundle(client, transaction(encounter_entry(), patient_entry()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    encounter_resp, patient_resp = body["entry"]
    assert patient_resp["response"]["status"].startswith("201")
    assert patient_resp["response"]["location"].startswith("Patient/")
    patient_id = patient_resp["resource"]["id"]
    assert encounter_resp["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    found = client.get("/fhir/Encounter", params={"patient": patient_id}).json()
    assert found["total"] == 1


def test_failed_transaction_leaves_nothing_behind(client: TestClient, db: Any) -> None:
    bad = encounter_entry()
    bad["resource"]["status"] = "bogus"
    response = post_bundle(client, transaction(patient_entry(), bad))
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[1]")
    for table in ("resource", "resource_version", "resource_identifier", "time_entry"):
        assert count_rows(db, table) == 0


def test_transaction_with_unresolved_reference_is_422_and_atomic(client: TestClient, db: Any) -> None:
    response = post_bundle(client, transaction(patient_entry(), encounter_entry(subject="Patient/ghost")))
    assert response.status_code == 422
    assert count_rows(db, "resource") == 0


def test_transaction_retry_does_not_double_count(client: TestClient, db: Any) -> None:
    enc = encounter_entry(identifier=[{"system": "urn:ehr:enc", "value": "e-1"}])
    bundle = transaction(
        {
            **patient_entry(),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|b1"},
        },
        enc,
    )
    first = post_bundle(client, bundle)
    assert first.status_code == 200
    second = post_bundle(client, bundle)
    assert second.status_code == 200, second.text
    assert [e["response"]["status"][:3] for e in second.json()["entry"]] == ["200", "200"]
    assert count_rows(db, "time_entry") == 1


def test_batch_processes_entries_independently(client: TestClient, db: Any) -> None:
    good = {
        "resource": {"resourceType": "Practitioner"},
        "request": {"method": "POST", "url": "Practitioner"},
    }
    bad = {
        "resource": {"resourceType": "Patient", "gender": "bogus"},
        "request": {"method": "POST", "url": "Patient"},
    }
    response = post_bundle(client, transaction(good, bad, kind="batch"))
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("201")
    assert entries[1]["response"]["status"].startswith("400")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count_rows(db, "resource") == 1


def test_bundle_put_delete_and_get_entries(client: TestClient) -> None:
    put = {
        "resource": {"resourceType": "Organization", "id": "org-1", "name": "Clinic"},
        "request": {"method": "PUT", "url": "Organization/org-1"},
    }
    assert post_bundle(client, transaction(put)).status_code == 200
    get = {"request": {"method": "GET", "url": "Organization/org-1"}}
    delete = {"request": {"method": "DELETE", "url": "Organization/org-1"}}
    body = post_bundle(client, transaction(get, kind="batch")).json()
    assert body["entry"][0]["resource"]["name"] == "Clinic"
    body = post_bundle(client, transaction(delete)).json()
    assert body["entry"][0]["response"]["status"].startswith("204")
    assert client.get("/fhir/Organization/org-1").status_code == 410


def test_a_patient_deleted_earlier_in_the_transaction_cannot_be_referenced(client: TestClient) -> None:
    """DELETE runs before POST (FHIR http 3.1.0.11.2): the Encounter then names a deleted patient,
    so the whole transaction fails with 422 and the patient is still there."""
    created = post_bundle(client, transaction(patient_entry())).json()
    pid = created["entry"][0]["response"]["location"].split("/")[1]
    delete = {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}
    response = post_bundle(client, transaction(encounter_entry(subject=f"Patient/{pid}"), delete))
    assert response.status_code == 422, response.text
    assert "Bundle.entry[0]" in response.json()["issue"][0]["expression"][0]
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert encounters_of(client, pid) == 0


def encounters_of(client: TestClient, pid: str) -> int:
    return int(client.get("/fhir/Encounter", params={"subject": f"Patient/{pid}"}).json()["total"])


def test_bundle_type_and_size_checks(make_client: Any) -> None:
    client = make_client(max_bundle_entries=2)
    assert post_bundle(client, {"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert post_bundle(client, {"resourceType": "Patient"}).status_code == 400
    entries = [patient_entry() for _ in range(3)]
    assert post_bundle(client, transaction(*entries)).status_code == 413


def test_entry_urls_may_be_absolute(client: TestClient) -> None:
    entry = {
        "resource": {"resourceType": "Organization", "name": "Clinic"},
        "request": {"method": "POST", "url": "http://testserver/fhir/Organization"},
    }
    response = post_bundle(client, transaction(entry))
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"].startswith("201")


def test_transaction_entry_if_match_is_read_and_checked(client: TestClient, db: Any) -> None:
    created = client.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON}
    )
    pid = created.json()["id"]

    def put(if_match: str) -> Any:
        entry = {
            "resource": {"resourceType": "Patient", "id": pid, "gender": "male"},
            "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": if_match},
        }
        return post_bundle(client, transaction(entry))

    malformed = put("one")
    assert malformed.status_code == 400
    assert "Bundle.entry.request.ifMatch must be an ETag" in malformed.json()["issue"][0]["diagnostics"]
    assert put('W/"2"').status_code == 412  # stale: nothing written either
    assert count_rows(db, "resource_version") == 1
    assert put('W/"1"').status_code == 200
    assert count_rows(db, "resource_version") == 2
