"""The dashboard JSON on the wire matches the models the OpenAPI document publishes
(``app.api.schemas``, unknown fields forbidden), for each route, with data in every field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from app.api.schemas import (
    BillingMonthOut,
    BillingPageOut,
    CareStatusOut,
    ErrorOut,
    RegistryPageOut,
)
from tests.api.scenario import Clinic


@pytest.fixture
def patient(clinic: Clinic) -> str:
    """A patient with an episode, minutes in two months, PHQ-9 scores and a safety answer."""
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 95, "initial-assessment")
    clinic.minutes(pid, "2026-02-05T10:00:00Z", 20)
    clinic.phq9(pid, "2026-01-05T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 1])
    clinic.score(pid, "2026-02-05T10:00:00Z", 14)
    return pid


def _valid(model: type[BaseModel], response: Any) -> Any:
    assert response.status_code == 200, response.text
    return model.model_validate_json(response.text)


def test_billing_month(client: TestClient, patient: str) -> None:
    month = _valid(
        BillingMonthOut, client.get(f"/api/v1/patients/{patient}/billing", params={"month": "2026-01"})
    )
    assert [(c.code, c.units) for c in month.codes] == [("99492", 1), ("99494", 1)]


def test_billing_page(client: TestClient, patient: str) -> None:
    page = _valid(BillingPageOut, client.get("/api/v1/billing", params={"month": "2026-02", "limit": 1}))
    assert [item.patient_id for item in page.items] == [patient]
    assert page.totals == {"G2214": 1}


def test_care_status_and_registry(client: TestClient, patient: str) -> None:
    status = _valid(
        CareStatusOut, client.get(f"/api/v1/patients/{patient}/care-status", params={"as_of": "2026-02-10"})
    )
    phq9 = status.measures["PHQ-9"]
    assert phq9 is not None and (phq9.baseline.score, phq9.latest.score) == (17, 14)
    assert status.flags == ["safety_risk", "case_review_due"]
    registry = _valid(RegistryPageOut, client.get("/api/v1/registry", params={"as_of": "2026-02-10"}))
    assert [(item.patient_id, item.name) for item in registry.items] == [(patient, "Ana Rivera")]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/patients/nobody/billing", {"month": "2026-01"}, 404),
        ("/api/v1/billing", {"month": "2026-13"}, 400),
        ("/api/v1/registry", {"as_of": "yesterday"}, 400),
    ],
)
def test_errors(client: TestClient, path: str, params: dict[str, str], status: int) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status
    ErrorOut.model_validate_json(response.text)


def test_the_models_forbid_what_they_do_not_name() -> None:
    with pytest.raises(ValidationError):
        ErrorOut.model_validate({"error": "invalid", "detail": "x", "extra": 1})


def test_the_openapi_document_publishes_the_models(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in [
        ("/api/v1/patients/{patient_id}/billing", "BillingMonthOut"),
        ("/api/v1/billing", "BillingPageOut"),
        ("/api/v1/patients/{patient_id}/care-status", "CareStatusOut"),
        ("/api/v1/registry", "RegistryPageOut"),
    ]:
        responses = paths[path]["get"]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model}")
        assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
