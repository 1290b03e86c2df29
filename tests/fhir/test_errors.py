"""Every error is an OperationOutcome with the status api.md names, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FHIR_JSON, count_rows


def _post_raw(
    client: TestClient, content: bytes, content_type: str = FHIR_JSON, path: str = "/fhir/Patient"
) -> Any:
    return client.post(path, content=content, headers={"Content-Type": content_type})


def _assert_outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"]
    assert issue["diagnostics"]
    return body


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe\x00bad", 400),
        (b"[1, 2]", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b'{"a":' * 65 + b"1" + b"}" * 65, 400),
    ],
    ids=["unparseable", "not-utf8", "not-object", "deep-100k", "deep-65"],
)
def test_bad_json_is_400(client: TestClient, db: Any, content: bytes, status: int) -> None:
    _assert_outcome(_post_raw(client, content), status)
    assert count_rows(db, "resource") == 0


def test_wrong_content_type_is_415_before_anything_else(client: TestClient) -> None:
    _assert_outcome(_post_raw(client, b"{not json", "text/plain"), 415)


def test_body_over_limit_is_413(make_client: Any) -> None:
    client = make_client(max_body_bytes=100)
    body = b'{"resourceType": "Patient", "name": [{"family": "' + b"x" * 200 + b'"}]}'
    _assert_outcome(_post_raw(client, body), 413)


def test_unknown_element_is_400_with_expression(client: TestClient, db: Any) -> None:
    body = _assert_outcome(_post_raw(client, b'{"resourceType": "Patient", "colour": "blue"}'), 400)
    assert any("colour" in e for i in body["issue"] for e in i.get("expression", []))
    assert count_rows(db, "resource") == 0


def test_bad_required_code_is_400_naming_the_field(client: TestClient) -> None:
    body = _assert_outcome(_post_raw(client, b'{"resourceType": "Patient", "gender": "bogus"}'), 400)
    assert body["issue"][0]["expression"] == ["Patient.gender"]


def test_resource_type_not_matching_url_is_400(client: TestClient) -> None:
    _assert_outcome(_post_raw(client, b'{"resourceType": "Practitioner"}'), 400)


def test_subject_that_is_not_a_patient_here_is_422(client: TestClient, db: Any) -> None:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": "Patient/ghost"},
        "effectiveDateTime": "2026-01-05",
        "valueInteger": 12,
    }
    response = client.post("/fhir/Observation", json=body, headers={"Content-Type": FHIR_JSON})
    outcome = _assert_outcome(response, 422)
    assert outcome["issue"][0]["expression"] == ["Observation.subject"]
    assert count_rows(db, "resource") == 0
    assert count_rows(db, "measurement") == 0


def test_500_body_says_nothing_internal(client: TestClient) -> None:
    response = client.get("/fhir/Patient", params={"_count": "x"})
    assert response.status_code == 400  # a bad parameter is the client's error, not a 500
    assert "Traceback" not in response.text


def test_unknown_path_outside_fhir_is_json_404(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not-found"
