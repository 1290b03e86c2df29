"""Concurrent retries meet at the database's unique keys: one resource, minutes counted once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from tests.api.scenario import ACTIVITY
from tests.conftest import FHIR_JSON, Fhir, count_rows

PARALLEL = 50


def encounter(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "identifier": [{"system": "urn:ehr:enc", "value": "same-entry"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": ACTIVITY, "code": "follow-up"}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2026-01-05T10:00:00Z"},
        "length": {"value": 40, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }


def _fire(client: TestClient, body: dict[str, Any], headers: dict[str, str]) -> list[int]:
    def send(_: int) -> int:
        return client.post(
            "/fhir/Encounter", json=body, headers={"Content-Type": FHIR_JSON, **headers}
        ).status_code

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(send, range(PARALLEL)))


def test_concurrent_conditional_creates_store_one(client: TestClient, fhir: Fhir, db: Any) -> None:
    pid = fhir.patient()
    statuses = _fire(client, encounter(pid), {"If-None-Exist": "identifier=urn:ehr:enc|same-entry"})
    assert sorted(set(statuses)) == [200, 201]
    assert statuses.count(201) == 1
    assert count_rows(db, "time_entry") == 1
    minutes = client.get(f"/api/v1/patients/{pid}/billing", params={"month": "2026-01"}).json()["minutes"]
    assert minutes == 40


def test_concurrent_plain_posts_with_one_identifier_store_one(
    client: TestClient, fhir: Fhir, db: Any
) -> None:
    pid = fhir.patient()
    statuses = _fire(client, encounter(pid), {})
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201}
    assert count_rows(db, "time_entry") == 1


def test_concurrent_updates_with_if_match_have_one_winner(client: TestClient, fhir: Fhir) -> None:
    pid = fhir.patient()

    def send(i: int) -> int:
        body = {"resourceType": "Patient", "id": pid, "name": [{"family": f"F{i}"}]}
        return client.put(
            f"/fhir/Patient/{pid}", json=body, headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'}
        ).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(send, range(20)))
    assert statuses.count(200) == 1
    assert statuses.count(412) == 19
    assert fhir.get(f"Patient/{pid}").json()["meta"]["versionId"] == "2"


def test_concurrent_conditional_updates_create_one(client: TestClient, fhir: Fhir, db: Any) -> None:
    """PUT ?identifier= from many clients at once: the first creates, the others lose the race on
    the identifier key, retry, find it and update it; never a second resource or time entry."""
    pid = fhir.patient()

    def send(_: int) -> int:
        return client.put(
            "/fhir/Encounter?identifier=urn:ehr:enc|same-entry",
            json=encounter(pid),
            headers={"Content-Type": FHIR_JSON},
        ).status_code

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        statuses = list(pool.map(send, range(PARALLEL)))
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201}
    assert count_rows(db, "time_entry") == 1
    assert fhir.get("Encounter", identifier="urn:ehr:enc|same-entry").json()["total"] == 1
