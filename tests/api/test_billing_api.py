"""Billing end to end: FHIR resources in; JSON, CSV and ChargeItem out."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.scenario import CPT, Clinic
from tests.conftest import FHIR_JSON, Fhir


def billing(client: TestClient, pid: str, month: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/patients/{pid}/billing", params={"month": month})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_initial_month_95_minutes_is_99492_plus_99494(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 60, "initial-assessment")
    clinic.minutes(pid, "2026-01-20T10:00:00Z", 35)
    result = billing(client, pid, "2026-01")
    assert result == {
        "patient_id": pid,
        "month": "2026-01",
        "setting": "physician",
        "month_kind": "initial",
        "episode_start": "2026-01-05",
        "minutes": 95,
        "codes": [{"code": "99492", "units": 1}, {"code": "99494", "units": 1}],
        "billable": True,
        "blockers": [],
        "notes": result["notes"],
    }
    assert any("95" in note for note in result["notes"])


def test_subsequent_month_and_blockers(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.patient()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)
    clinic.minutes(pid, "2026-02-05T10:00:00Z", 31)
    january = billing(client, pid, "2026-01")
    assert january["codes"] == [{"code": "99492", "units": 1}]
    assert january["billable"] is False
    assert set(january["blockers"]) == {"consent_missing", "initiating_visit_missing"}
    february = billing(client, pid, "2026-02")
    assert february["month_kind"] == "subsequent"
    assert february["codes"] == [{"code": "99493", "units": 1}]
    assert february["blockers"] == ["consent_missing"]


def test_consultant_time_and_unfinished_entries_do_not_count(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 20)
    clinic.minutes(pid, "2026-01-06T10:00:00Z", 45, "psychiatric-consultation")
    clinic.minutes(pid, "2026-01-07T10:00:00Z", 30, status="cancelled")
    result = billing(client, pid, "2026-01")
    assert result["minutes"] == 20
    assert result["codes"] == [{"code": "G2214", "units": 1}]
    assert any("psychiatric consultant" in note and "45" in note for note in result["notes"])


def test_consultant_time_counts_with_the_setting(make_client: Any) -> None:
    client = make_client(count_consultant_time=True)
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-06T10:00:00Z", 45, "psychiatric-consultation")
    assert billing(client, pid, "2026-01")["minutes"] == 45


def test_retried_time_entry_counts_once(client: TestClient, clinic: Clinic, fhir: Fhir) -> None:
    pid = clinic.enrolled()
    body = {
        "resourceType": "Encounter",
        "identifier": [{"system": "urn:ehr:enc", "value": "e-42"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [
            {"coding": [{"system": "http://cocm-api.org/fhir/CodeSystem/cocm-activity", "code": "follow-up"}]}
        ],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2026-01-05T10:00:00Z"},
        "length": {"value": 40, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }
    for _ in range(3):
        assert fhir.post(body).status_code in (200, 201)
    assert billing(client, pid, "2026-01")["minutes"] == 40


def test_deleted_entry_stops_counting(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 20)
    extra = clinic.minutes(pid, "2026-01-06T10:00:00Z", 20)
    assert billing(client, pid, "2026-01")["minutes"] == 40
    client.delete(f"/fhir/Encounter/{extra['id']}")
    assert billing(client, pid, "2026-01")["minutes"] == 20


def test_month_is_taken_in_the_clinic_time_zone(make_client: Any) -> None:
    client = make_client(timezone="America/Chicago")
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled(on="2026-01-02")
    clinic.minutes(pid, "2026-02-01T03:00:00Z", 40)  # 21:00 on January 31 in Chicago
    assert billing(client, pid, "2026-01")["minutes"] == 40
    assert billing(client, pid, "2026-02")["minutes"] == 0


def test_all_patients_totals_paging_and_csv(client: TestClient, clinic: Clinic) -> None:
    pids = [clinic.enrolled(family=f"P{i}") for i in range(3)]
    for pid, minutes in zip(pids, (40, 95, 20), strict=True):
        clinic.minutes(pid, "2026-01-05T10:00:00Z", minutes)
    clinic.patient("NoTime")
    first = client.get("/api/v1/billing", params={"month": "2026-01", "limit": 2}).json()
    assert first["totals"] == {"99492": 2, "99494": 1, "G2214": 1}
    assert len(first["items"]) == 2
    second = client.get(
        "/api/v1/billing", params={"month": "2026-01", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert second["next_cursor"] is None
    assert {i["patient_id"] for i in first["items"] + second["items"]} == set(pids)

    response = client.get("/api/v1/billing.csv", params={"month": "2026-01"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 4  # one per patient and code
    by_code = sorted((r["code"], r["units"]) for r in rows)
    assert by_code == [("99492", "1"), ("99492", "1"), ("99494", "1"), ("G2214", "1")]
    assert {r["billable"] for r in rows} == {"true"}
    assert all(r["month_kind"] == "initial" for r in rows)


@pytest.mark.parametrize("chunk", [2, 500])
def test_csv_streamed_in_chunks_says_what_the_pages_say(
    client: TestClient, clinic: Clinic, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The CSV is computed a chunk of patients at a time (the fact reads switch from IN lists to
    one tenant-wide read above the chunk size): with 5 patients and chunks of 2 or 500 it lists
    exactly the patients and codes of the JSON pages, in the same order."""
    monkeypatch.setattr("app.store.reads.CHUNK", chunk)
    monkeypatch.setattr("app.services.reports.CHUNK", chunk)
    pids = [clinic.enrolled(family=f"C{i}") for i in range(6)]
    for pid, minutes in zip(pids, (40, 95, 20, 70, 36), strict=False):  # the sixth has no minutes
        clinic.minutes(pid, "2026-01-05T10:00:00Z", minutes)
    client.delete(f"/fhir/Patient/{pids[2]}")  # a deleted patient is billed nowhere
    items = client.get("/api/v1/billing", params={"month": "2026-01", "limit": 500}).json()["items"]
    expected = [(i["patient_id"], c["code"], str(c["units"])) for i in items for c in i["codes"]]
    response = client.get("/api/v1/billing.csv", params={"month": "2026-01"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["patient_id"], r["code"], r["units"]) for r in rows] == expected
    assert {r["patient_id"] for r in rows} == {pids[0], pids[1], pids[3], pids[4]}


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "January", ""])
def test_malformed_month_is_400_json(client: TestClient, clinic: Clinic, month: str) -> None:
    pid = clinic.patient()
    for url in (f"/api/v1/patients/{pid}/billing", "/api/v1/billing", "/api/v1/billing.csv"):
        response = client.get(url, params={"month": month})
        assert response.status_code == 400, (url, response.text)
        assert set(response.json()) == {"error", "detail"}


def test_unknown_patient_is_404_json(client: TestClient) -> None:
    response = client.get("/api/v1/patients/nobody/billing", params={"month": "2026-01"})
    assert response.status_code == 404
    assert response.json()["error"] == "not-found"


def test_charge_items_for_a_month(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    entry = clinic.minutes(pid, "2026-01-05T10:00:00Z", 95)
    bundle = client.get("/fhir/ChargeItem", params={"patient": pid, "occurrence": "2026-01"}).json()
    assert bundle["type"] == "searchset"
    items = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in bundle["entry"]}
    assert set(items) == {"99492", "99494"}
    item = items["99492"]
    assert item["status"] == "billable"
    assert item["code"]["coding"][0]["system"] == CPT
    assert item["quantity"] == {"value": 1}
    assert item["occurrencePeriod"] == {"start": "2026-01-01", "end": "2026-01-31"}
    assert item["supportingInformation"] == [{"reference": f"Encounter/{entry['id']}"}]
    assert item["subject"] == {"reference": f"Patient/{pid}"}


def test_charge_item_is_planned_when_blocked_and_validates(client: TestClient, clinic: Clinic) -> None:
    from fhir.resources.R4B.chargeitem import ChargeItem

    pid = clinic.patient()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 20)
    bundle = client.get("/fhir/ChargeItem", params={"patient": pid, "occurrence": "2026-01"}).json()
    [entry] = bundle["entry"]
    assert entry["resource"]["status"] == "planned"
    assert entry["resource"]["code"]["coding"][0]["code"] == "G2214"
    assert entry["resource"]["code"]["coding"][0]["system"].endswith("HCPCSReleaseCodeSets")
    ChargeItem.model_validate(entry["resource"])


def test_charge_item_needs_a_patient_and_is_read_only(client: TestClient) -> None:
    assert client.get("/fhir/ChargeItem").status_code == 400
    assert (
        client.get("/fhir/ChargeItem", params={"patient": "ghost", "occurrence": "2026-01"}).json()["total"]
        == 0
    )
    response = client.post(
        "/fhir/ChargeItem", json={"resourceType": "ChargeItem"}, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 405


def test_month_pages_are_computed_once_and_writes_refresh_them(client: TestClient, clinic: Clinic) -> None:
    from app.services.reports import MONTHS

    pids = [clinic.enrolled(family=f"C{i}") for i in range(3)]
    for pid in pids:
        clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)
    MONTHS.entries.clear()
    first = client.get("/api/v1/billing", params={"month": "2026-01", "limit": 1}).json()
    [(key, (version, run))] = MONTHS.entries.items()
    client.get("/api/v1/billing", params={"month": "2026-01", "limit": 1, "cursor": first["next_cursor"]})
    assert MONTHS.entries[key][1] is run  # the second page reused the first page's computation
    clinic.minutes(pids[0], "2026-01-06T10:00:00Z", 60)  # a write right after: never a stale answer
    again = client.get("/api/v1/billing", params={"month": "2026-01"}).json()
    assert again["totals"] == {"99492": 3, "99494": 1}
    [(same_key, (newer, _))] = MONTHS.entries.items()  # the older version was replaced, not kept
    assert same_key == key and newer != version
