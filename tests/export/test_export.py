"""Bulk Data ``$export`` end to end over HTTP with the app's own background runner (export.md):
kick-off, polling, the manifest, every file downloaded and validated, the snapshot, ``_since``, the
patient level, the errors, cancelling, tenants and credentials."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.resources.validation import validate_resource
from tests.api.scenario import Clinic
from tests.auth.test_app_auth import smart_app, token  # noqa: F401 (smart_app: the fixture)
from tests.conftest import Fhir
from tests.quality.test_evaluate_http import condition

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def kick_off(
    client: TestClient, path: str = "/fhir/$export", headers: dict[str, str] | None = None, **params: str
) -> Any:
    return client.get(path, params=params, headers={**ASYNC, **(headers or {})})


def wait(client: TestClient, status_url: str, headers: dict[str, str] | None = None) -> Any:
    """Poll as a Bulk Data client does, honouring Retry-After (a little faster: the test is small)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get(status_url, headers=headers or {})
        if response.status_code not in (202, 429):
            return response
        assert "Retry-After" in response.headers
        if response.status_code == 202:
            assert response.headers["X-Progress"]
        time.sleep(0.25)
    pytest.fail("the export did not complete in 30 s")


def download(
    client: TestClient, manifest: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every output file, checked line by line: by type."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        response = client.get(item["url"], headers=headers or {})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = response.text.splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == item["type"]
            assert "\n" not in line and ": " not in line[:40]  # one compact resource per line
            validate_resource(resource)
            found.setdefault(item["type"], []).append(resource)
    return found


def seed(clinic: Clinic) -> str:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40, "initial-assessment")
    clinic.phq9(pid, "2026-01-05T10:00:00Z", [2, 2, 2, 1, 1, 1, 1, 1, 0])
    clinic.fhir.create(condition(pid, "F33.1"))
    clinic.fhir.create({"resourceType": "Practitioner", "name": [{"family": "Hale"}]})
    return pid


def test_export_flow_gives_every_resource_once(clinic: Clinic) -> None:
    client = clinic.fhir.client
    seed(clinic)
    started = kick_off(client)
    assert started.status_code == 202, started.text
    status_url = started.headers["Content-Location"]
    assert status_url.startswith("http://testserver/fhir/$export-status/")
    done = wait(client, status_url)
    assert done.status_code == 200, done.text
    assert done.headers["content-type"].startswith("application/json") and "Expires" in done.headers
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].startswith("http://testserver/fhir/$export")
    assert manifest["transactionTime"].endswith("Z") and manifest["error"] == []
    exported = download(client, manifest)
    for rtype in (
        "Patient",
        "Practitioner",
        "QuestionnaireResponse",
        "Observation",
        "Encounter",
        "Consent",
        "Condition",
    ):
        searched = client.get(f"/fhir/{rtype}", params={"_count": 500}).json()
        assert sorted(r["id"] for r in exported.get(rtype, [])) == sorted(
            e["resource"]["id"] for e in searched.get("entry", [])
        ), rtype
    assert "Subscription" not in exported and "AuditEvent" not in exported  # the trail only when asked


def test_snapshot_and_since(clinic: Clinic) -> None:
    client = clinic.fhir.client
    pid = seed(clinic)
    before = client.get("/fhir/Patient", params={"_id": pid}).json()["entry"][0]["resource"]
    first = kick_off(client)
    # written after the kick-off: none of it is in the first export
    changed = clinic.fhir.put(f"Patient/{pid}", {**before, "gender": "female"})
    assert changed.status_code == 200
    added = clinic.patient("Later")
    gone = client.get("/fhir/Practitioner").json()["entry"][0]["resource"]["id"]
    assert client.delete(f"/fhir/Practitioner/{gone}").status_code in (200, 204)
    manifest = wait(client, first.headers["Content-Location"]).json()
    exported = download(client, manifest)
    patients = {p["id"]: p for p in exported["Patient"]}
    assert added not in patients and "gender" not in patients[pid]  # the version as of transactionTime
    assert [p["id"] for p in exported["Practitioner"]] == [gone]  # deleted after: still in the snapshot

    assert "deleted" not in manifest

    second = kick_off(client, _since=manifest["transactionTime"])
    changes = wait(client, second.headers["Content-Location"]).json()
    later = download(client, changes)
    assert sorted(p["id"] for p in later["Patient"]) == sorted([pid, added])
    assert set(later) == {"Patient"}  # nothing else changed; the deleted Practitioner is not exported
    # ... but listed as deleted (Bulk Data IG 2.0: a transaction Bundle with a DELETE entry)
    assert [(d["type"], d["count"]) for d in changes["deleted"]] == [("Bundle", 1)]
    response = client.get(changes["deleted"][0]["url"])
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    bundle = orjson.loads(response.text)
    validate_resource(bundle)
    assert bundle["entry"] == [{"request": {"method": "DELETE", "url": f"Practitioner/{gone}"}}]


def test_patient_level_is_the_patient_compartment(clinic: Clinic) -> None:
    client = clinic.fhir.client
    seed(clinic)
    manifest = wait(client, kick_off(client, "/fhir/Patient/$export").headers["Content-Location"]).json()
    types = {item["type"] for item in manifest["output"]}
    assert "Practitioner" not in types and {"Patient", "Observation", "Encounter", "Condition"} <= types


def test_type_and_post_parameters(clinic: Clinic) -> None:
    client = clinic.fhir.client
    seed(clinic)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "_type", "valueString": "Condition,Patient"}],
    }
    started = client.post("/fhir/$export", json=body, headers=ASYNC)
    assert started.status_code == 202
    manifest = wait(client, started.headers["Content-Location"]).json()
    assert Counter(item["type"] for item in manifest["output"]) == Counter({"Patient": 1, "Condition": 1})


def test_files_split_at_the_line_limit(make_client: Any) -> None:
    client = make_client(export_file_lines=2)
    clinic = Clinic(Fhir(client))
    for n in range(5):
        clinic.patient(f"P{n}")
    manifest = wait(client, kick_off(client, _type="Patient").headers["Content-Location"]).json()
    assert [(item["url"].rsplit("/", 1)[1], item["count"]) for item in manifest["output"]] == [
        ("Patient.ndjson", 2),
        ("Patient-2.ndjson", 2),
        ("Patient-3.ndjson", 1),
    ]


@pytest.mark.parametrize(
    ("params", "headers", "expression"),
    [
        ({}, {"Prefer": ""}, "Prefer"),
        ({"_type": "Patient,Subscription"}, {}, "_type"),
        ({"_type": "Nonsense"}, {}, "_type"),
        ({"_outputFormat": "text/csv"}, {}, "_outputFormat"),
        ({"_since": "last tuesday"}, {}, "_since"),
        ({"_typeFilter": "Observation?code=44261-6"}, {}, "_typeFilter"),
    ],
)
def test_bad_kick_off_is_400(
    client: TestClient, params: dict[str, str], headers: dict[str, str], expression: str
) -> None:
    response = kick_off(client, headers=headers, **params)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [expression]


def test_lenient_drops_unknown_types_into_the_error_file(clinic: Clinic) -> None:
    client = clinic.fhir.client
    seed(clinic)
    started = kick_off(
        client, headers={"Prefer": "respond-async, handling=lenient"}, _type="Patient,Nonsense"
    )
    assert started.status_code == 202
    manifest = wait(client, started.headers["Content-Location"]).json()
    assert [item["type"] for item in manifest["output"]] == ["Patient"]
    assert [(e["type"], e["count"]) for e in manifest["error"]] == [("OperationOutcome", 1)]
    outcome = orjson.loads(client.get(manifest["error"][0]["url"]).text.splitlines()[0])
    assert "Nonsense" in outcome["issue"][0]["diagnostics"]


def test_queued_job_reports_progress_and_polling_too_often_is_429(make_client: Any) -> None:
    client = make_client(export_in_process=False)  # no runner here: the job stays queued
    status_url = kick_off(client).headers["Content-Location"]
    first = client.get(status_url)
    assert (first.status_code, first.headers["X-Progress"], first.headers["Retry-After"]) == (
        202,
        "queued",
        "1",
    )
    again = client.get(status_url)
    assert again.status_code == 429 and again.headers["Retry-After"] == "1"
    time.sleep(0.25)
    assert client.get(status_url).status_code == 202


def test_cancel_removes_the_job_and_its_files(clinic: Clinic) -> None:
    client = clinic.fhir.client
    seed(clinic)
    status_url = kick_off(client).headers["Content-Location"]
    manifest = wait(client, status_url).json()
    file_url = manifest["output"][0]["url"]
    assert client.delete(status_url).status_code == 202
    assert client.get(status_url).status_code == 404
    assert client.get(file_url).status_code == 404
    assert client.delete(status_url).status_code == 404


def test_other_tenants_and_missing_credentials(make_client: Any) -> None:
    client = make_client(api_keys="key-a:clinic-a,key-b:clinic-b,key-c:clinic-a")
    clinic = Clinic(_Keyed(client, A))
    clinic.patient()
    started = kick_off(client, headers=A)
    manifest = wait(client, started.headers["Content-Location"], A).json()
    file_url = manifest["output"][0]["url"]
    assert client.get(file_url, headers=A).status_code == 200
    assert client.get(started.headers["Content-Location"], headers=B).status_code == 404
    assert client.get(file_url, headers=B).status_code == 404
    assert client.delete(started.headers["Content-Location"], headers=B).status_code == 404
    assert client.get(file_url).status_code == 401
    other_client = {"Authorization": "Bearer key-c"}  # same tenant, another client: not its job
    assert client.get(started.headers["Content-Location"], headers=other_client).status_code == 404
    assert client.get(file_url, headers=other_client).status_code == 404
    own = wait(client, kick_off(client, headers=B).headers["Content-Location"], B).json()
    assert own["output"] == []  # tenant B has nothing
    audit = client.get("/fhir/AuditEvent", headers=A).json()
    assert (
        Counter(e["resource"]["subtype"][0]["code"] for e in audit["entry"])["export"] >= 2
    )  # kick-off, download


def test_audit_events_when_asked_for_and_readable(smart_app: TestClient) -> None:  # noqa: F811
    """export.md: AuditEvent only when ``_type`` names it and the caller may read the trail; its
    snapshot is every event recorded by transactionTime (a search of the trail up to it)."""
    writer = {"Authorization": f"Bearer {token(smart_app, 'writer', 'system/*.cruds')}"}
    assert (
        smart_app.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=writer).status_code == 201
    )
    started = kick_off(smart_app, headers=writer, _type="Patient,AuditEvent")
    assert started.status_code == 202, started.text
    manifest = wait(smart_app, started.headers["Content-Location"], writer).json()
    exported = download(smart_app, manifest, writer)
    at = manifest["transactionTime"]
    trail = smart_app.get("/fhir/AuditEvent", params={"date": f"le{at}", "_count": 500}, headers=writer)
    assert sorted(e["id"] for e in exported["AuditEvent"]) == sorted(
        e["resource"]["id"] for e in trail.json()["entry"]
    )
    assert any(e["subtype"][0]["code"] == "create" for e in exported["AuditEvent"])
    narrow = {"Authorization": f"Bearer {token(smart_app, 'reader', 'system/Patient.rs')}"}
    assert kick_off(smart_app, headers=narrow, _type="Patient").status_code == 202
    assert kick_off(smart_app, headers=narrow, _type="AuditEvent").status_code == 403
    patient_level = kick_off(smart_app, "/fhir/Patient/$export", headers=writer, _type="AuditEvent")
    assert patient_level.status_code == 400  # the trail is no patient's compartment


class _Keyed(Fhir):
    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        super().__init__(client)
        self.headers = headers

    def post(self, body: dict[str, Any], **headers: str) -> Any:
        return super().post(body, **self.headers, **headers)


def test_capability_statement_lists_the_export_operations(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    assert [op["name"] for op in rest["operation"]] == ["export"]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert patient["operation"][0]["definition"].endswith("/patient-export")


def test_files_and_status_expire(make_client: Any) -> None:
    client = make_client(export_retention_hours=0.0003)  # about a second
    Clinic(Fhir(client)).patient()
    status_url = kick_off(client).headers["Content-Location"]
    manifest = wait(client, status_url).json()
    assert client.get(manifest["output"][0]["url"]).status_code == 200
    time.sleep(1.3)
    assert client.get(status_url).status_code == 404
    assert client.get(manifest["output"][0]["url"]).status_code == 404


def test_a_failed_job_answers_500_with_an_outcome(make_client: Any, tmp_path: Any) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the export folder should be")
    client = make_client(export_dir=str(blocked))
    Clinic(Fhir(client)).patient()
    failed = wait(client, kick_off(client).headers["Content-Location"])
    assert failed.status_code == 500
    assert failed.json()["issue"][0]["diagnostics"] == "the export failed: see the server log"


def test_since_with_an_unencoded_offset(clinic: Clinic) -> None:
    client = clinic.fhir.client
    clinic.patient()
    # "+00:00" sent raw in a query string arrives as " 00:00": read as the offset it was
    started = client.get("/fhir/$export?_type=Patient&_since=2000-01-01T00:00:00+00:00", headers=ASYNC)
    assert started.status_code == 202, started.text
    manifest = wait(client, started.headers["Content-Location"]).json()
    assert [item["count"] for item in manifest["output"]] == [1]
