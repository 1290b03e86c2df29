"""Search: parameters from api.md, paging with next links, _lastUpdated."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.scenario import observation
from tests.conftest import Fhir


def encounter(pid: str, start: str, status: str = "finished", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [
            {"coding": [{"system": "http://cocm-api.org/fhir/CodeSystem/cocm-activity", "code": "follow-up"}]}
        ],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
        "length": {"value": 20, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
        **extra,
    }


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_search_by_patient_and_subject_forms(fhir: Fhir) -> None:
    a, b = fhir.patient(), fhir.patient()
    mine = fhir.create(encounter(a, "2026-01-05T10:00:00Z"))["id"]
    fhir.create(encounter(b, "2026-01-05T10:00:00Z"))
    for params in ({"patient": a}, {"patient": f"Patient/{a}"}, {"subject": f"Patient/{a}"}):
        bundle = fhir.get("Encounter", **params).json()
        assert bundle["type"] == "searchset"
        assert bundle["total"] == 1
        assert ids(bundle) == {mine}


def test_search_by_date_prefixes(fhir: Fhir) -> None:
    pid = fhir.patient()
    jan = fhir.create(encounter(pid, "2026-01-31T12:00:00Z"))["id"]
    feb = fhir.create(encounter(pid, "2026-02-01T12:00:00Z"))["id"]
    assert ids(fhir.get("Encounter", date="2026-01").json()) == {jan}
    assert ids(fhir.get("Encounter", date="ge2026-02-01").json()) == {feb}
    assert ids(fhir.get("Encounter", date="lt2026-02-01").json()) == {jan}
    assert ids(fhir.get("Encounter", date="2026").json()) == {jan, feb}
    both = fhir.client.get(
        "/fhir/Encounter", params=[("date", "ge2026-01-01"), ("date", "le2026-01-31")]
    ).json()
    assert ids(both) == {jan}


def test_search_by_code_status_and_identifier(fhir: Fhir) -> None:
    pid = fhir.patient(identifier=[{"system": "urn:mrn", "value": "abc"}])
    phq = fhir.create(observation(pid, "2026-01-05", "44261-6", valueInteger=12))["id"]
    gad = fhir.create(observation(pid, "2026-01-05", "70274-6", valueInteger=8))["id"]
    assert ids(fhir.get("Observation", code="http://loinc.org|44261-6").json()) == {phq}
    assert ids(fhir.get("Observation", code="70274-6").json()) == {gad}
    assert ids(fhir.get("Observation", code="44261-6,70274-6").json()) == {phq, gad}
    assert ids(fhir.get("Observation", status="final").json()) == {phq, gad}
    assert ids(fhir.get("Patient", identifier="urn:mrn|abc").json()) == {pid}
    assert ids(fhir.get("Patient", identifier="abc").json()) == {pid}
    assert fhir.get("Patient", identifier="urn:other|abc").json()["total"] == 0
    assert ids(fhir.get("Patient", _id=pid).json()) == {pid}


def test_paging_follows_next_links_across_pages(fhir: Fhir) -> None:
    pid = fhir.patient()
    created = {fhir.create(encounter(pid, f"2026-01-{day:02d}T10:00:00Z"))["id"] for day in range(1, 8)}
    seen: list[str] = []
    url: str | None = f"/fhir/Encounter?patient={pid}&_count=3"
    pages = 0
    while url:
        bundle = fhir.client.get(url).json()
        assert bundle["total"] == 7
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["self"].startswith("http")
        url = links.get("next")
        if url:
            parsed = urlsplit(url)
            assert parse_qs(parsed.query)["_count"] == ["3"]
            url = f"{parsed.path}?{parsed.query}"
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(created)


def test_count_is_capped_and_zero_gives_total_only(fhir: Fhir) -> None:
    pid = fhir.patient()
    fhir.create(encounter(pid, "2026-01-01T10:00:00Z"))
    bundle = fhir.get("Encounter", _count="0").json()
    assert bundle["total"] == 1
    assert bundle.get("entry", []) == []
    capped = fhir.get("Encounter", _count="100000").json()
    assert "_count=500" in capped["link"][0]["url"]


def test_last_updated_search(fhir: Fhir) -> None:
    pid = fhir.patient()
    assert ids(fhir.get("Patient", _lastUpdated="ge2020-01-01").json()) == {pid}
    assert fhir.get("Patient", _lastUpdated="lt2020-01-01").json()["total"] == 0


def test_deleted_resources_leave_search(fhir: Fhir) -> None:
    pid = fhir.patient()
    fhir.client.delete(f"/fhir/Patient/{pid}")
    assert fhir.get("Patient").json()["total"] == 0


@pytest.mark.parametrize("params", [{"date": "not-a-date"}, {"_cursor": "garbage!"}, {"_count": "-1"}])
def test_bad_search_values_are_400(fhir: Fhir, params: dict[str, str]) -> None:
    response = fhir.get("Encounter", **params)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_parameter_is_ignored_unless_strict(fhir: Fhir) -> None:
    assert fhir.get("Patient", shoe_size="9").status_code == 200
    strict = fhir.client.get(
        "/fhir/Patient", params={"shoe_size": "9"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400


@pytest.mark.parametrize("value", ["' OR 1=1 --", "\u202eevil", 'a"b', "%", "_", "\\", "x\ty"])
def test_hostile_search_values_are_parameters(fhir: Fhir, value: str) -> None:
    fhir.patient()
    for name in ("identifier", "_id", "status"):
        response = fhir.get("Patient" if name != "status" else "Encounter", **{name: value})
        assert response.status_code == 200
        assert response.json()["total"] == 0


def test_nul_in_a_search_value_is_400(fhir: Fhir) -> None:
    response = fhir.get("Patient", identifier="x\x00y")
    assert response.status_code == 400


HOSTILE = [
    "' OR '1'='1",
    "1; DROP TABLE resource; --",
    "\u202e\u2066evil\u2069",
    "\u0007\u001b[31m",
    "x" * 5000,
    "%00",
    "😀|😀",
    "ge",
    "|",
    "a|b|c",
    "Patient/",
    "../../etc/passwd",
]


@pytest.mark.parametrize(
    "rtype", ["Patient", "QuestionnaireResponse", "Observation", "Encounter", "EpisodeOfCare", "Consent"]
)
def test_hostile_corpus_at_every_search_parameter(fhir: Fhir, rtype: str) -> None:
    from app.store.search import params_for

    fhir.patient()
    for name in params_for(rtype):
        for value in HOSTILE:
            response = fhir.get(rtype, **{name: value})
            assert response.status_code in (200, 400), (name, value, response.status_code)
            if response.status_code == 200:
                assert response.json()["total"] == 0 or rtype == "Patient", (name, value)
            else:
                assert response.json()["resourceType"] == "OperationOutcome"
    assert fhir.get("Patient").json()["total"] == 1  # nothing was dropped


def test_identifier_longer_than_the_index_is_400(fhir: Fhir) -> None:
    response = fhir.post({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "v" * 300}]})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.identifier"]
