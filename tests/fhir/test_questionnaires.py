"""The instrument definitions served read-only (api.md, last section): they validate as R4, and a
response built from one, as a form builder would, scores as sent."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.questionnaire import Questionnaire

from app.measures.instruments import ORDINAL_VALUE_URL
from app.resources.validation import validate_resource
from tests.conftest import FHIR_JSON, Fhir, count_rows

IDS = {
    "phq-9": "http://loinc.org/q/44249-1",
    "gad-7": "http://loinc.org/q/69737-5",
    "phq-2": "http://loinc.org/q/55757-9",
}
TOTALS = {"phq-9": ("44261-6", 27), "gad-7": ("70274-6", 21), "phq-2": ("55758-7", 6)}


@pytest.mark.parametrize("qid", sorted(IDS))
def test_each_definition_is_valid_r4(client: TestClient, qid: str) -> None:
    body = client.get(f"/fhir/Questionnaire/{qid}").json()
    Questionnaire.model_validate(body)
    validate_resource(body, "Questionnaire")
    assert (body["id"], body["url"], body["status"]) == (qid, IDS[qid], "active")


def test_search_by_url_and_id(client: TestClient) -> None:
    def ids(**params: str) -> list[str]:
        bundle = client.get("/fhir/Questionnaire", params=params).json()
        assert bundle["type"] == "searchset" and bundle["total"] == len(bundle.get("entry", []))
        return sorted(e["resource"]["id"] for e in bundle.get("entry", []))

    assert ids() == ["gad-7", "phq-2", "phq-9"]
    assert ids(url=IDS["gad-7"]) == ["gad-7"]
    assert ids(url=IDS["phq-9"] + "|2.0") == ["phq-9"]  # a version suffix is ignored
    assert ids(url="http://loinc.org/q/00000-0") == []
    assert ids(_id="phq-2,phq-9") == ["phq-2", "phq-9"]


def test_read_only(client: TestClient, db: Any) -> None:
    assert client.get("/fhir/Questionnaire/phq-15").status_code == 404
    body = client.get("/fhir/Questionnaire/phq-9").json()
    response = client.post("/fhir/Questionnaire", json=body, headers={"Content-Type": FHIR_JSON})
    assert response.status_code in (400, 405) and response.json()["resourceType"] == "OperationOutcome"
    assert count_rows(db, "resource") == 0


def answered(definition: dict[str, Any], pick: int, patient: str) -> tuple[dict[str, Any], int]:
    """A completed response to ``definition``: for each scored item the option ``(pick + i) % 4``
    (PHQ-9 item 10 the first option); and the total its ordinal values add up to."""
    items, total = [], 0
    for index, item in enumerate(i for i in definition["item"] if i["type"] == "choice"):
        option = item["answerOption"][(pick + index) % 4 if item["required"] else 0]
        weights = [e["valueDecimal"] for e in option.get("extension", []) if e["url"] == ORDINAL_VALUE_URL]
        total += int(weights[0]) if weights else 0
        items.append({"linkId": item["linkId"], "answer": [{"valueCoding": option["valueCoding"]}]})
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": definition["url"],
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "authored": "2026-01-05T10:00:00Z",
        "item": items,
    }
    return response, total


@pytest.mark.parametrize("qid", sorted(IDS))
@pytest.mark.parametrize("pick", [0, 1, 2, 3])  # the four shifts put every answer on every item
def test_a_response_built_from_the_definition_scores_as_sent(client: TestClient, qid: str, pick: int) -> None:
    fhir = Fhir(client)
    patient = fhir.patient()
    definition = client.get(f"/fhir/Questionnaire/{qid}").json()
    response, expected = answered(definition, pick, patient)
    stored = fhir.create(response)
    found = client.get(
        "/fhir/Observation", params={"derived-from": f"QuestionnaireResponse/{stored['id']}"}
    ).json()
    [score] = [e["resource"] for e in found["entry"]]
    code, maximum = TOTALS[qid]
    assert score["code"]["coding"][0]["code"] == code
    assert score["valueQuantity"]["value"] == expected
    assert 0 <= expected <= maximum


def test_metadata_lists_the_definitions(client: TestClient) -> None:
    body = client.get("/fhir/metadata").json()
    [entry] = [r for r in body["rest"][0]["resource"] if r["type"] == "Questionnaire"]
    assert {i["code"] for i in entry["interaction"]} == {"read", "search-type"}
