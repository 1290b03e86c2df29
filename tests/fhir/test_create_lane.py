"""The create lane (``app.fhir.lane``): once the router has sent ``POST /fhir/{type}`` to the create
route, that path's POSTs go to the same function directly, and answer exactly as through the router."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FHIR_JSON, load_fixture

PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "lane-1"}]}
NEW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")  # app.store.ids
VOLATILE = {"x-request-id", "date", "location", "etag", "last-modified", "content-length"}


def _post(client: TestClient, path: str, body: bytes, **headers: str) -> Any:
    return client.post(path, content=body, headers={"Content-Type": FHIR_JSON, **headers})


def _lane(client: TestClient) -> dict[str, Any]:
    lane: dict[str, Any] = client.app.state.create_lane  # type: ignore[attr-defined]
    return lane


def _answer(response: Any) -> tuple[int, dict[str, str], Any]:
    """What a client sees, less what differs from one request to the next (ids, times)."""
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE}
    body = json.loads(NEW_ID.sub("<id>", response.text)) if response.content else None
    if isinstance(body, dict):
        body.pop("meta", None)
    return response.status_code, headers, body


def test_the_router_opens_the_lane_to_create_paths_only(client: TestClient) -> None:
    assert _lane(client) == {}
    assert _post(client, "/fhir/Patient", b'{"resourceType": "Patient"}').status_code == 201
    assert set(_lane(client)) == {"/fhir/Patient"}
    assert _post(client, "/fhir/CarePlan", b'{"resourceType": "CarePlan"}').status_code == 405
    assert _post(client, "/fhir/NoSuchType", b"{}").status_code == 404
    kick_off = client.post("/fhir/$export", headers={"Prefer": "respond-async"})
    assert kick_off.status_code == 202
    assert set(_lane(client)) == {"/fhir/Patient"}


def test_a_remembered_path_is_served_without_the_router(client: TestClient) -> None:
    assert _post(client, "/fhir/Patient", b'{"resourceType": "Patient"}').status_code == 201
    client.app.router.routes.clear()  # type: ignore[attr-defined]
    created = _post(client, "/fhir/Patient", b'{"resourceType": "Patient"}')
    assert created.status_code == 201 and created.json()["resourceType"] == "Patient"
    assert _post(client, "/fhir/Observation", b'{"resourceType": "Observation"}').status_code == 404


REQUESTS: dict[str, tuple[str, Callable[[], bytes], dict[str, str]]] = {
    "created": (
        "/fhir/QuestionnaireResponse",
        lambda: _fixture("us-core-phq9-questionnaireresponse.json"),
        {},
    ),
    "minimal": ("/fhir/Patient", lambda: b'{"resourceType": "Patient"}', {"Prefer": "return=minimal"}),
    "outcome": (
        "/fhir/Patient",
        lambda: b'{"resourceType": "Patient"}',
        {"Prefer": "return=OperationOutcome"},
    ),
    "conditional": ("/fhir/Patient", lambda: _json(PATIENT), {"If-None-Exist": "identifier=urn:mrn|lane-1"}),
    "unparseable": ("/fhir/Patient", lambda: b"{not json", {}),
    "wrong-type": ("/fhir/Patient", lambda: b'{"resourceType": "Observation"}', {}),
    "invalid": ("/fhir/Patient", lambda: b'{"resourceType": "Patient", "gender": 7}', {}),
    "media-type": ("/fhir/Patient", lambda: b'{"resourceType": "Patient"}', {"Content-Type": "text/plain"}),
}


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def _fixture(name: str) -> bytes:
    data = load_fixture(name)
    data.pop("id", None)
    data["subject"] = {"reference": "Patient/lane-patient"}
    return _json(data)


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_an_answer_through_the_lane_is_the_answer_through_the_router(
    make_client: Callable[..., TestClient], case: str
) -> None:
    client = make_client()
    client.put("/fhir/Patient/lane-patient", json={"resourceType": "Patient", "id": "lane-patient"})
    if case == "conditional":
        _post(client, "/fhir/Patient", _json(PATIENT))
    path, body, headers = REQUESTS[case]
    _lane(client).clear()  # the setup's POSTs opened it: the next one must come through the router
    routed = _post(client, path, body(), **headers)
    assert path in _lane(client)
    laned = _post(client, path, body(), **headers)
    assert _answer(laned) == _answer(routed)
    assert routed.status_code in {200, 201, 400, 415} and routed.headers["x-request-id"]


def test_credentials_are_checked_in_the_lane(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys="k1:north")
    body = b'{"resourceType": "Patient"}'
    assert _post(client, "/fhir/Patient", body, Authorization="Bearer k1").status_code == 201
    assert "/fhir/Patient" in _lane(client)
    refused = _post(client, "/fhir/Patient", body, Authorization="Bearer wrong")
    assert refused.status_code == 401 and "invalid_token" in refused.headers["www-authenticate"]
    assert refused.json()["resourceType"] == "OperationOutcome"


def _posts_counted(client: TestClient) -> float:
    """``cocm_http_requests_total`` for 201 answers to POST /fhir/{rtype} (the registry is the process's)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("cocm_http_requests_total{") and all(
            label in line for label in ('method="POST"', 'route="/fhir/{rtype}"', 'status="201"')
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_through_the_lane_are_measured_under_the_route_template(client: TestClient) -> None:
    before = _posts_counted(client)
    for _ in range(3):
        assert _post(client, "/fhir/Patient", b'{"resourceType": "Patient"}').status_code == 201
    assert "/fhir/Patient" in _lane(client)
    assert _posts_counted(client) == before + 3


def test_the_exception_handlers_are_what_the_lane_expects(client: TestClient) -> None:
    """The lane awaits the handler of the exception's nearest class (``app.fhir.lane._handler``):
    every handler the app registers must be ``async`` and keyed by an exception class."""
    handlers = client.app.exception_handlers  # type: ignore[attr-defined]
    assert handlers
    for key, handler in handlers.items():
        assert isinstance(key, type) and issubclass(key, Exception), key
        assert inspect.iscoroutinefunction(handler), handler
