"""Request ids, JSON logs without patient data, and Prometheus metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.settings import Settings
from app.store.db import make_engine
from tests.conftest import FHIR_JSON


def test_request_id_is_echoed_or_made(client: Any) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/health").headers["x-request-id"]
    assert len(made) == 32
    hostile = client.get("/health", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
    assert hostile != "x" * 500


def test_log_lines_are_json_without_patient_data(
    make_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client()
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Zebulon"}],
        "identifier": [{"system": "urn:mrn", "value": "MRN-555"}],
    }
    client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR_JSON, "X-Request-ID": "req-1"})
    client.get("/fhir/Patient", params={"identifier": "urn:mrn|MRN-555"})
    client.post("/fhir/Patient", json={**body, "gender": "bogus"}, headers={"Content-Type": FHIR_JSON})
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["message"] == "request"]
    assert any(
        line["request_id"] == "req-1" and line["route"] == "/fhir/{rtype}" and line["status"] == 201
        for line in requests
    )
    assert "Zebulon" not in err
    assert "MRN-555" not in err
    assert "bogus" not in err


def test_metrics_count_requests_ingestion_and_billing(client: Any) -> None:
    client.post(
        "/fhir/Practitioner", json={"resourceType": "Practitioner"}, headers={"Content-Type": FHIR_JSON}
    )
    client.get("/api/v1/billing", params={"month": "2026-01"})
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'cocm_http_requests_total{method="POST",route="/fhir/{rtype}",status="201"}' in text
    assert 'cocm_resources_ingested_total{type="Practitioner"}' in text
    assert 'cocm_billing_runs_total{scope="month"}' in text
    assert "cocm_http_request_duration_seconds_bucket" in text


def test_metrics_need_credentials_when_keys_are_set(make_client: Any) -> None:
    client = make_client(api_keys="k1")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer k1"}).status_code == 200


def test_database_errors_carry_no_bound_values(db: Any) -> None:
    """A failed statement's parameters are patient data: the engines hide them from the error
    message that a log or a traceback would show."""
    engine = make_engine(Settings(database_url=db.url.render_as_string(hide_password=False)).sqlalchemy_url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as failed:
            conn.execute(text("SELECT id FROM no_such_table WHERE id = :pid"), {"pid": "MRN-777-Zebulon"})
    finally:
        engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert "MRN-777-Zebulon" not in str(failed.value)
