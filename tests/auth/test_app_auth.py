"""SMART Backend Services through the real app: token, scopes per route, tenants, 401/403."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth.test_smart import EC_KEY, RSA_KEY, SECRET, assertion, public_jwk
from tests.conftest import FHIR_JSON


@pytest.fixture
def smart_app(make_client: Any, tmp_path: Path) -> TestClient:
    path = tmp_path / "clients.json"
    path.write_text(
        '{"clients": ['
        '{"client_id": "reader", "tenant": "clinic-a", "scopes": "system/*.rs",'
        f' "jwks": {{"keys": [{_json(public_jwk(RSA_KEY, "rsa1"))}]}}}},'
        '{"client_id": "writer", "tenant": "clinic-a", "scopes": "system/*.cruds",'
        f' "jwks": {{"keys": [{_json(public_jwk(EC_KEY, "ec1", alg="ES384"))}]}}}}'
        "]}"
    )
    client: TestClient = make_client(smart_clients_file=str(path), token_secret=SECRET, api_keys="k:clinic-a")
    return client


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def token(client: TestClient, client_id: str, scope: str) -> str:
    key, alg, kid = (RSA_KEY, "RS384", "rsa1") if client_id == "reader" else (EC_KEY, "ES384", "ec1")
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(key, alg=alg, kid=kid, client_id=client_id),
    }
    response = client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


def test_discovery_and_capability_security_are_open(smart_app: TestClient) -> None:
    config = smart_app.get("/.well-known/smart-configuration").json()
    assert config["token_endpoint"].endswith("/auth/token")
    metadata = smart_app.get("/fhir/metadata").json()
    security = metadata["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"].endswith("/auth/token")


def test_token_carries_tenant_and_scopes_to_every_route(smart_app: TestClient) -> None:
    writer = {
        "Authorization": f"Bearer {token(smart_app, 'writer', 'system/*.cruds')}",
        "Content-Type": FHIR_JSON,
    }
    created = smart_app.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=writer)
    assert created.status_code == 201
    pid = created.json()["id"]
    # the API key of the same tenant sees it: the token's tenant was used
    assert smart_app.get(f"/fhir/Patient/{pid}", headers={"Authorization": "Bearer k"}).status_code == 200
    reader = {
        "Authorization": f"Bearer {token(smart_app, 'reader', 'system/*.rs')}",
        "Content-Type": FHIR_JSON,
    }
    assert smart_app.get(f"/fhir/Patient/{pid}", headers=reader).status_code == 200
    assert smart_app.get("/fhir/Patient", headers=reader).status_code == 200
    assert smart_app.get("/api/v1/registry", headers=reader).status_code == 200
    denied = smart_app.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=reader)
    assert denied.status_code == 403
    assert denied.json()["issue"][0]["code"] == "forbidden"
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert smart_app.delete(f"/fhir/Patient/{pid}", headers=reader).status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
    }
    assert smart_app.post("/fhir", json=bundle, headers=reader).status_code == 403
    audit = smart_app.get("/fhir/AuditEvent", params={"action": "C"}, headers=writer).json()
    assert any(
        e["resource"]["agent"][0]["who"]["identifier"]["value"] == "smart:writer" for e in audit["entry"]
    )


def test_narrow_token_cannot_read_dashboards(smart_app: TestClient) -> None:
    narrow = {"Authorization": f"Bearer {token(smart_app, 'reader', 'system/Patient.rs')}"}
    assert smart_app.get("/fhir/Patient", headers=narrow).status_code == 200
    assert smart_app.get("/fhir/Encounter", headers=narrow).status_code == 403
    response = smart_app.get("/api/v1/registry", headers=narrow)
    assert response.status_code == 403
    assert set(response.json()) == {"error", "detail"}


def test_bad_or_tampered_token_is_401_invalid_token(smart_app: TestClient) -> None:
    good = token(smart_app, "reader", "system/*.rs")
    for bad in (good[:-3] + "abc", "not-a-token"):
        response = smart_app.get("/fhir/Patient", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    missing = smart_app.get("/fhir/Patient")
    assert missing.status_code == 401
    assert "error=" not in missing.headers["www-authenticate"]


def test_replayed_assertion_is_refused_by_the_database(smart_app: TestClient) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(RSA_KEY, client_id="reader"),
    }
    assert smart_app.post("/auth/token", data=form).status_code == 200
    replay = smart_app.post("/auth/token", data=form)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"


def test_smart_without_a_secret_stops_start_up(make_client: Any, tmp_path: Path) -> None:
    from app.settings import SettingsError

    path = tmp_path / "clients.json"
    path.write_text('{"clients": []}')
    with pytest.raises(SettingsError):
        make_client(smart_clients_file=str(path))
