"""The audit trail: every interaction recorded, readable as FHIR AuditEvents, references only."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.scenario import Clinic
from tests.conftest import FHIR_JSON, Fhir, count_rows


def events(client: TestClient, **params: str) -> list[dict[str, Any]]:
    """The AuditEvents a search finds; a failed search fails the test (never an empty trail)."""
    response = client.get("/fhir/AuditEvent", params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [e["resource"] for e in bundle.get("entry", [])]


def test_create_read_update_delete_and_search_are_audited(client: TestClient, fhir: Fhir) -> None:
    pid = fhir.patient(name=[{"family": "Secretname"}])
    fhir.get(f"Patient/{pid}")
    fhir.put(f"Patient/{pid}", {"resourceType": "Patient", "id": pid, "gender": "male"})
    fhir.get("Patient", _id=pid)
    client.delete(f"/fhir/Patient/{pid}")
    trail = events(client, entity=f"Patient/{pid}")
    assert sorted(e["action"] for e in trail) == ["C", "D", "R", "U"]
    assert all(e["outcome"] == "0" for e in trail)
    assert all(e["agent"][0]["who"]["identifier"]["value"] == "anonymous" for e in trail)
    assert {e["subtype"][0]["code"] for e in trail} == {"create", "read", "update", "delete"}
    searches = events(client, action="E")
    assert any(e["subtype"][0]["code"] == "search-type" for e in searches)
    everything = client.get("/fhir/AuditEvent", params={"_count": "500"})
    assert everything.status_code == 200
    assert everything.json()["total"] >= 5  # the trail is there, and holds no patient content
    assert "Secretname" not in everything.text


def test_failed_write_audits_its_failure_and_writes_nothing_else(client: TestClient, db: Any) -> None:
    before = count_rows(db, "audit_event")
    bad = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "gender": "bogus"},
        headers={"Content-Type": FHIR_JSON},
    )
    assert bad.status_code == 400
    assert count_rows(db, "audit_event") == before + 1  # the failure, in its own transaction
    assert count_rows(db, "resource") == 0
    [failure] = events(client, action="C")
    assert (failure["outcome"], failure["subtype"][0]["code"]) == ("4", "failed")
    assert failure["entity"] == [{"what": {"display": "Patient"}}]
    ok = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON})
    assert ok.status_code == 201
    assert count_rows(db, "audit_event") == before + 3  # + the search above and the create


def test_billing_and_registry_reads_are_audited(client: TestClient, fhir: Fhir) -> None:
    clinic = Clinic(fhir)
    pid = clinic.enrolled()
    client.get(f"/api/v1/patients/{pid}/billing", params={"month": "2026-01"})
    client.get(f"/api/v1/patients/{pid}/care-status")
    client.get("/api/v1/registry")
    client.get("/api/v1/billing", params={"month": "2026-01"})
    codes = {e["subtype"][0]["code"] for e in events(client, _count="500")}
    assert {"billing", "care-status", "registry", "billing-month"} <= codes
    per_patient = events(client, entity=f"Patient/{pid}", action="R")
    assert {e["subtype"][0]["code"] for e in per_patient} >= {"billing", "care-status"}


def test_audit_search_by_agent_date_and_read(make_client: Any) -> None:
    client = make_client(api_keys="secret-key:t1")
    headers = {"Authorization": "Bearer secret-key", "Content-Type": FHIR_JSON}
    client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    bundle = client.get("/fhir/AuditEvent", params={"action": "C"}, headers=headers).json()
    [event] = [e["resource"] for e in bundle["entry"]]
    agent = event["agent"][0]["who"]["identifier"]["value"]
    assert agent.startswith("api-key:")
    trail = client.get("/fhir/AuditEvent", headers=headers)
    assert trail.status_code == 200 and trail.json()["total"] >= 1
    assert "secret-key" not in trail.text
    assert client.get("/fhir/AuditEvent", params={"agent": agent}, headers=headers).json()["total"] >= 1
    assert (
        client.get("/fhir/AuditEvent", params={"agent": "someone-else"}, headers=headers).json()["total"] == 0
    )
    assert (
        client.get(
            "/fhir/AuditEvent", params={"date": "ge2020-01-01", "action": "C"}, headers=headers
        ).json()["total"]
        == 1
    )
    assert (
        client.get("/fhir/AuditEvent", params={"date": "lt2020-01-01"}, headers=headers).json()["total"] == 0
    )
    read = client.get(f"/fhir/AuditEvent/{event['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json()["action"] == "C"
    assert client.get("/fhir/AuditEvent", params={"action": "X"}, headers=headers).status_code == 400


def test_audit_event_is_valid_fhir(client: TestClient, fhir: Fhir) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent

    pid = fhir.patient()
    fhir.get(f"Patient/{pid}")
    trail = events(client)
    assert {e["action"] for e in trail} >= {"C", "R"}
    for event in trail:
        validated = AuditEvent.model_validate(event)
        assert validated.recorded is not None and validated.agent and validated.source is not None
