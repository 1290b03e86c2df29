"""PHQ-9 item 9 from every representation an engine may send (api.md, last section; measures.md,
safety_risk), end to end over HTTP: a QuestionnaireResponse item, a ``44260-8`` component of a
total-score Observation, an item-level ``44260-8`` Observation (answer code or integer). Each raises
``safety_risk`` when above 0, and a later 0 in any of them clears it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.measures.instruments import ANSWERS, PHQ9
from tests.api.scenario import Clinic, observation
from tests.api.test_care_api import status
from tests.conftest import count_rows

LOINC = "http://loinc.org"
AS_OF = "2026-02-27"
EARLY, LATE = "2026-02-02T10:00:00Z", "2026-02-16T10:00:00Z"
ANSWER_CODE = {a.score: a.code for a in ANSWERS.values() if a.code != "LA18938-3"}  # LL358-3 by score


def by_response(clinic: Clinic, pid: str, when: str, item9: int) -> None:
    clinic.phq9(pid, when, [1, 1, 1, 1, 1, 1, 1, 1, item9])


def by_component_integer(clinic: Clinic, pid: str, when: str, item9: int) -> None:
    component = {"code": {"coding": [{"system": LOINC, "code": PHQ9.safety_item}]}, "valueInteger": item9}
    clinic.fhir.create(observation(pid, when, PHQ9.total, valueInteger=8 + item9, component=[component]))


def by_component_code(clinic: Clinic, pid: str, when: str, item9: int) -> None:
    component = {
        "code": {"coding": [{"system": LOINC, "code": PHQ9.safety_item}]},
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": ANSWER_CODE[item9]}]},
    }
    clinic.fhir.create(observation(pid, when, PHQ9.total, valueInteger=8 + item9, component=[component]))


def by_item_code(clinic: Clinic, pid: str, when: str, item9: int) -> None:
    answer = {"coding": [{"system": LOINC, "code": ANSWER_CODE[item9]}]}
    clinic.fhir.create(observation(pid, when, PHQ9.safety_item, valueCodeableConcept=answer))


def by_item_integer(clinic: Clinic, pid: str, when: str, item9: int) -> None:
    clinic.fhir.create(observation(pid, when, PHQ9.safety_item, valueInteger=item9))


Sender = Callable[[Clinic, str, str, int], None]
SENDERS: dict[str, Sender] = {
    "response item": by_response,
    "component integer": by_component_integer,
    "component answer code": by_component_code,
    "item Observation answer code": by_item_code,
    "item Observation integer": by_item_integer,
}


@pytest.mark.parametrize("item9", [0, 1, 3])  # 0: no risk; 1: the lowest risk; 3: the highest answer
@pytest.mark.parametrize("representation", SENDERS)
def test_each_representation_raises_safety_risk_above_zero(
    client: TestClient, clinic: Clinic, representation: str, item9: int
) -> None:
    pid = clinic.enrolled()
    SENDERS[representation](clinic, pid, EARLY, item9)
    flags = status(client, pid, AS_OF)["flags"]
    assert ("safety_risk" in flags) is (item9 > 0)
    assert any(row["patient_id"] == pid for row in _registry(client, "safety_risk")) is (item9 > 0)


@pytest.mark.parametrize("clearing", SENDERS)
@pytest.mark.parametrize("raising", SENDERS)
def test_a_later_zero_in_any_representation_clears_it(
    client: TestClient, clinic: Clinic, raising: str, clearing: str
) -> None:
    pid = clinic.enrolled()
    SENDERS[raising](clinic, pid, EARLY, 2)
    SENDERS[clearing](clinic, pid, LATE, 0)
    assert "safety_risk" in status(client, pid, "2026-02-10")["flags"]  # before the clearing answer
    assert "safety_risk" not in status(client, pid, AS_OF)["flags"]


@pytest.mark.parametrize("raising", SENDERS)
def test_a_later_positive_answer_raises_it_again(client: TestClient, clinic: Clinic, raising: str) -> None:
    pid = clinic.enrolled()
    by_item_integer(clinic, pid, EARLY, 0)
    SENDERS[raising](clinic, pid, LATE, 1)
    assert "safety_risk" in status(client, pid, AS_OF)["flags"]


def test_item9_alone_is_not_a_score(client: TestClient, clinic: Clinic) -> None:
    """An item-level answer counts for safety_risk only: no baseline, latest or count."""
    pid = clinic.enrolled()
    clinic.minutes(pid, EARLY, 40, "initial-assessment")  # opens the episode the measures belong to
    clinic.phq9(pid, EARLY, [2, 2, 2, 2, 2, 2, 2, 2, 0])  # 16
    by_item_integer(clinic, pid, LATE, 1)
    result = status(client, pid, AS_OF)
    phq9 = result["measures"]["PHQ-9"]
    assert (phq9["latest"], phq9["count"]) == ({"score": 16, "date": "2026-02-02"}, 1)
    assert "safety_risk" in result["flags"]


def test_item9_alone_does_not_count_as_a_measurement(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled(on="2026-01-02")
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40, "initial-assessment")
    by_item_integer(clinic, pid, LATE, 0)
    assert "measurement_overdue" in status(client, pid, AS_OF)["flags"]
    clinic.score(pid, LATE, 12)
    assert "measurement_overdue" not in status(client, pid, AS_OF)["flags"]


def test_deleting_the_item_observation_removes_its_answer(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    stored = clinic.fhir.create(observation(pid, EARLY, PHQ9.safety_item, valueInteger=2))
    assert "safety_risk" in status(client, pid, AS_OF)["flags"]
    assert client.delete(f"/fhir/Observation/{stored['id']}").status_code == 204
    assert "safety_risk" not in status(client, pid, AS_OF)["flags"]


def test_a_retried_item_observation_is_one_answer(client: TestClient, clinic: Clinic, db: Any) -> None:
    pid = clinic.enrolled()
    body = observation(
        pid, EARLY, PHQ9.safety_item, valueInteger=2, identifier=[{"system": "urn:engine", "value": "obs-9"}]
    )
    first, again = clinic.fhir.post(body), clinic.fhir.post(body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert count_rows(db, "measurement") == 1


@pytest.mark.parametrize(
    ("value", "expression"),
    [
        ({"valueInteger": 4}, "Observation.value[x]"),  # one above the highest answer
        ({"valueInteger": -1}, "Observation.value[x]"),
        (
            {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6572-7"}]}},
            "Observation.value[x]",
        ),
        ({"valueBoolean": True}, "Observation.value[x]"),
    ],
)
def test_an_unreadable_item9_answer_is_refused_and_stores_nothing(
    client: TestClient, clinic: Clinic, db: Any, value: dict[str, Any], expression: str
) -> None:
    pid = clinic.enrolled()
    before = count_rows(db, "resource")
    response = clinic.fhir.post(observation(pid, EARLY, PHQ9.safety_item, **value))
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [expression]
    assert "PHQ-9 item 9" in issue["diagnostics"]
    assert count_rows(db, "resource") == before
    assert count_rows(db, "measurement") == 0


def test_item9_without_a_value_or_not_final_is_stored_but_not_counted(
    client: TestClient, clinic: Clinic, db: Any
) -> None:
    pid = clinic.enrolled()
    declined = observation(pid, EARLY, PHQ9.safety_item, dataAbsentReason={"text": "asked but declined"})
    preliminary = observation(pid, EARLY, PHQ9.safety_item, valueInteger=3) | {"status": "preliminary"}
    for body in (declined, preliminary):
        assert clinic.fhir.post(body).status_code == 201
    assert count_rows(db, "measurement") == 0
    assert "safety_risk" not in status(client, pid, AS_OF)["flags"]


def _registry(client: TestClient, flag: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/registry", params={"as_of": AS_OF, "flag": flag})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
