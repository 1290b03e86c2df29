"""Authentication and tenant isolation: every route, walked with a second tenant's credentials."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.scenario import Clinic
from tests.conftest import FHIR_JSON, Fhir, count_rows
from tests.notifications.support import subscription_body

KEYS = "key-a:clinic-a,key-b:clinic-b,key-d"
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
OPEN_PATHS = {
    "/health",
    "/ready",
    "/fhir/metadata",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/.well-known/smart-configuration",
    "/fhir/.well-known/smart-configuration",
    "/auth/token",
}

# process-wide counters and the instrument definitions every tenant shares: no patient data
NOT_TENANT_SCOPED = {
    "/metrics",
    "/fhir/Questionnaire",
    "/fhir/Questionnaire/{rid}",
    "/fhir/Measure",
    "/fhir/Measure/{rid}",
}


class KeyedFhir(Fhir):
    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        super().__init__(client)
        self.headers = headers

    def post(self, body: dict[str, Any], **headers: str) -> Any:
        return super().post(body, **self.headers, **headers)


@pytest.fixture
def keyed(make_client: Any) -> TestClient:
    client: TestClient = make_client(api_keys=KEYS, subscription_allowed_hosts="127.0.0.1")
    return client


def test_missing_or_wrong_key_is_401_with_www_authenticate(keyed: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic a2V5LWE="}):
        response = keyed.get("/fhir/Patient", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
        api = keyed.get("/api/v1/registry", headers=headers)
        assert api.status_code == 401
        assert set(api.json()) == {"error", "detail"}


def test_open_paths_need_no_key(keyed: TestClient) -> None:
    for path in ("/health", "/ready", "/fhir/metadata", "/openapi.json", "/docs"):
        assert keyed.get(path).status_code == 200, path


def test_key_without_tenant_is_the_default_tenant(keyed: TestClient, db: Any) -> None:
    response = keyed.post(
        "/fhir/Patient",
        json={"resourceType": "Patient"},
        headers={"Content-Type": FHIR_JSON, "Authorization": "Bearer key-d"},
    )
    assert response.status_code == 201
    pid = response.json()["id"]
    with db.connect() as conn:
        tenant = conn.execute(text("SELECT tenant FROM resource WHERE id = :id"), {"id": pid}).scalar_one()
    assert tenant == "default"
    assert keyed.get(f"/fhir/Patient/{pid}", headers={"Authorization": "Bearer key-d"}).status_code == 200
    assert keyed.get(f"/fhir/Patient/{pid}", headers=A).status_code == 404


def _seed_tenant_a(client: TestClient) -> dict[str, str]:
    clinic = Clinic(KeyedFhir(client, A))
    pid = clinic.enrolled()
    encounter = clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)["id"]
    response = clinic.phq9(pid, "2026-01-05T10:00:00Z", [1, 1, 1, 1, 1, 1, 1, 1, 1])["id"]
    subscription = client.post(
        "/fhir/Subscription",
        json=subscription_body("http://127.0.0.1:9/hook", patient=pid),
        headers={**A, "Content-Type": FHIR_JSON},
    )
    assert subscription.status_code == 201, subscription.text
    job = client.get("/fhir/$export", headers={**A, "Prefer": "respond-async"})
    assert job.status_code == 202, job.text
    return {
        "Patient": pid,
        "Encounter": encounter,
        "QuestionnaireResponse": response,
        "Subscription": subscription.json()["id"],
        "ExportJob": job.headers["Content-Location"].rsplit("/", 1)[1],
    }


def _requests(ids: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(route path, method, url, json body) for every tenant-scoped route, aimed at tenant A's data."""
    pid, enc = ids["Patient"], ids["Encounter"]
    patient_body = {"resourceType": "Patient", "id": pid, "gender": "other"}
    return [
        ("/fhir/{rtype}", "GET", f"/fhir/Encounter?patient={pid}", None),
        (
            "/fhir/{rtype}",
            "POST",
            "/fhir/Encounter",
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        ),
        ("/fhir/{rtype}", "PUT", "/fhir/Patient?_id=" + pid, patient_body),
        ("/fhir/{rtype}/{rid}", "GET", f"/fhir/Patient/{pid}", None),
        ("/fhir/{rtype}/{rid}", "PUT", f"/fhir/Patient/{pid}", patient_body),
        ("/fhir/{rtype}/{rid}", "DELETE", f"/fhir/Encounter/{enc}", None),
        ("/fhir/{rtype}/{rid}/_history", "GET", f"/fhir/Patient/{pid}/_history", None),
        ("/fhir/{rtype}/{rid}/_history/{vid}", "GET", f"/fhir/Patient/{pid}/_history/1", None),
        (
            "/fhir",
            "POST",
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"request": {"method": "GET", "url": f"Patient/{pid}"}},
                    {"request": {"method": "DELETE", "url": f"Encounter/{enc}"}},
                ],
            },
        ),
        ("/fhir/CarePlan", "GET", f"/fhir/CarePlan?patient={pid}", None),
        ("/fhir/ChargeItem", "GET", f"/fhir/ChargeItem?patient={pid}&occurrence=2026-01", None),
        ("/fhir/AuditEvent", "GET", f"/fhir/AuditEvent?entity=Patient/{pid}", None),
        ("/fhir/Subscription/$status", "GET", "/fhir/Subscription/$status", None),
        (
            "/fhir/Subscription/{rid}/$status",
            "GET",
            f"/fhir/Subscription/{ids['Subscription']}/$status",
            None,
        ),
        (
            "/fhir/Subscription/{rid}/$events",
            "GET",
            f"/fhir/Subscription/{ids['Subscription']}/$events",
            None,
        ),
        ("/fhir/AuditEvent/{event_id}", "GET", "/fhir/AuditEvent/{audit_id}", None),
        (
            "/fhir/Measure/{rid}/$evaluate-measure",
            "GET",
            f"/fhir/Measure/cocm-follow-up-4w/$evaluate-measure?periodStart=2026-01-01&periodEnd=2026-12-31"
            f"&subject=Patient/{pid}",
            None,
        ),
        (
            "/api/v1/patients/{patient_id}/billing",
            "GET",
            f"/api/v1/patients/{pid}/billing?month=2026-01",
            None,
        ),
        ("/api/v1/billing", "GET", "/api/v1/billing?month=2026-01", None),
        ("/api/v1/billing.csv", "GET", "/api/v1/billing.csv?month=2026-01", None),
        ("/api/v1/patients/{patient_id}/care-status", "GET", f"/api/v1/patients/{pid}/care-status", None),
        ("/api/v1/registry", "GET", "/api/v1/registry?as_of=2026-01-31", None),
        ("/registry", "GET", "/registry?as_of=2026-01-31", None),
        ("/registry/billing", "GET", "/registry/billing?month=2026-01", None),
        ("/fhir/$export", "GET", "/fhir/$export", None),
        ("/fhir/$export", "POST", "/fhir/$export", {"resourceType": "Parameters"}),
        ("/fhir/Patient/$export", "GET", "/fhir/Patient/$export", None),
        ("/fhir/Patient/$export", "POST", "/fhir/Patient/$export", {"resourceType": "Parameters"}),
        ("/fhir/$export-status/{job_id}", "GET", f"/fhir/$export-status/{ids['ExportJob']}", None),
        ("/fhir/$export-status/{job_id}", "DELETE", f"/fhir/$export-status/{ids['ExportJob']}", None),
        (
            "/fhir/$export-file/{job_id}/{name}",
            "GET",
            f"/fhir/$export-file/{ids['ExportJob']}/Patient.ndjson",
            None,
        ),
        ("/api/v1/quality", "GET", "/api/v1/quality?period_start=2026-01-01&period_end=2026-12-31", None),
        ("/registry/quality", "GET", "/registry/quality?period_start=2026-01-01&period_end=2026-12-31", None),
        (  # tenant A's patient is in this denominator (an episode starting 2026-01-05): B's is empty
            "/registry/quality/patients",
            "GET",
            "/registry/quality/patients?measure=cocm-follow-up-4w&population=denominator"
            "&period_start=2026-01-01&period_end=2026-12-31",
            None,
        ),
    ]


def _leaks(response: Any, ids: dict[str, str]) -> bool:
    """Tenant A's data in a response to tenant B: the patient's name, or an id B never named."""
    return (
        "Rivera" in response.text
        or ids["QuestionnaireResponse"] in response.text
        or (
            response.request.url.path.endswith("Subscription/$status")
            and ids["Subscription"] in response.text
        )
    )


def test_every_route_is_isolated_by_tenant(keyed: TestClient, db: Any) -> None:
    ids = _seed_tenant_a(keyed)
    audit = keyed.get("/fhir/AuditEvent", params={"entity": f"Patient/{ids['Patient']}"}, headers=A).json()
    audit_id = audit["entry"][0]["resource"]["id"]
    before = {
        table: count_rows(db, table)
        for table in ("resource", "resource_version", "time_entry", "measurement")
    }
    covered = set()
    for route_path, method, template, body in _requests(ids):
        covered.add((route_path, method))
        url = template.replace("{audit_id}", audit_id)
        headers = {**B, "Content-Type": FHIR_JSON, "Prefer": "respond-async"}
        response = keyed.request(method, url, headers=headers, json=body)
        assert response.status_code in (200, 201, 202, 204, 404, 422), (
            method,
            url,
            response.status_code,
            response.text,
        )
        assert response.status_code != 403, (method, url)
        if any(f"{{{name}}}" in route_path for name in ("rid", "patient_id", "event_id", "job_id")):
            assert response.status_code == 404, (method, url, response.text)
        assert not _leaks(response, ids), (method, url, response.text)
    # tenant A's data is untouched (tenant B's own writes are in addition, never instead)
    assert keyed.get(f"/fhir/Patient/{ids['Patient']}", headers=A).json()["meta"]["versionId"] == "1"
    assert keyed.get(f"/fhir/Encounter/{ids['Encounter']}", headers=A).status_code == 200
    after = {table: count_rows(db, table) for table in ("time_entry", "measurement")}
    assert after == {"time_entry": before["time_entry"], "measurement": before["measurement"]}

    app_routes = {
        (context.path, method)
        for context in iter_route_contexts(keyed.app.routes)  # type: ignore[attr-defined]
        if context.path not in OPEN_PATHS | NOT_TENANT_SCOPED
        for method in (context.methods or set()) - {"HEAD"}
    }
    assert len(app_routes) >= 20
    assert app_routes - covered == set(), "a route is not walked by the tenant test"


def test_reference_to_another_tenants_patient_is_rejected(keyed: TestClient, db: Any) -> None:
    ids = _seed_tenant_a(keyed)
    resources, measurements = count_rows(db, "resource"), count_rows(db, "measurement")
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": f"Patient/{ids['Patient']}"},
        "effectiveDateTime": "2026-01-05",
        "valueInteger": 3,
    }
    response = keyed.post("/fhir/Observation", json=body, headers={**B, "Content-Type": FHIR_JSON})
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Observation.subject"]
    assert (count_rows(db, "resource"), count_rows(db, "measurement")) == (resources, measurements)


def test_same_identifier_in_two_tenants_is_two_patients(keyed: TestClient) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}]}
    a = keyed.post("/fhir/Patient", json=body, headers={**A, "Content-Type": FHIR_JSON})
    b = keyed.post("/fhir/Patient", json=body, headers={**B, "Content-Type": FHIR_JSON})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
