"""The server-rendered registry and billing pages, through the HTTP client."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.api.scenario import Clinic
from tests.conftest import Fhir

AS_OF = "2026-01-20"


@pytest.fixture
def pages(client: TestClient) -> TestClient:
    return client


def caseload(clinic: Clinic) -> dict[str, str]:
    """Calm: 40 min on 2026-01-05 (oldest contact). Risky: 22 min on 2026-01-10 and a PHQ-9 with
    item 9 > 0 (safety_risk), so it is first although its contact is more recent."""
    calm = clinic.enrolled("Calm")
    clinic.minutes(calm, "2026-01-05T10:00:00Z", 40, "initial-assessment")
    clinic.phq9(calm, "2026-01-05T10:00:00Z", [1, 1, 1, 1, 1, 1, 1, 1, 0])  # 8
    clinic.phq9(calm, "2026-01-15T10:00:00Z", [1, 1, 1, 0, 0, 0, 0, 0, 0])  # 3
    risky = clinic.enrolled("Risky")
    clinic.minutes(risky, "2026-01-10T10:00:00Z", 22)
    clinic.phq9(risky, "2026-01-08T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 1])  # 17
    clinic.phq9(risky, "2026-01-16T10:00:00Z", [2, 2, 2, 2, 2, 2, 1, 1, 1])  # 15
    clinic.score(risky, "2026-01-16T10:00:00Z", 12, code="70274-6")  # GAD-7
    return {"calm": calm, "risky": risky}


def rows(page: str) -> list[str]:
    """The registry table's patient rows, in order."""
    return re.findall(r'<tr class="patient[^"]*" data-patient-id="[^"]*">.*?</tr>', page, re.S)


def get_registry(client: TestClient, **params: str) -> str:
    response = client.get("/registry", params={"as_of": AS_OF, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_registry_lists_flagged_patient_first_with_trend_and_minutes(
    pages: TestClient, clinic: Clinic
) -> None:
    ids = caseload(clinic)
    page = get_registry(pages)
    found = rows(page)
    assert len(found) == 2
    assert f'data-patient-id="{ids["risky"]}"' in found[0]
    assert "Ana Risky" in found[0] and "Safety risk" in found[0]
    assert f'data-patient-id="{ids["calm"]}"' in found[1]
    # baseline -> latest PHQ-9 and the GAD-7
    assert "17 → <strong>15</strong>" in found[0]
    assert "12 → <strong>12</strong>" in found[0]
    assert "8 → <strong>3</strong>" in found[1]
    # one inline SVG trend per patient, a polyline through both PHQ-9 scores
    assert page.count("<svg") == 2
    polyline = re.search(r'<polyline points="([^"]+)"', found[0])
    assert polyline is not None and len(polyline.group(1).split()) == 2
    assert 'aria-label="PHQ-9 scores over time: 17 on 2026-01-08, 15 on 2026-01-16"' in found[0]
    # this month's counted minutes against the next code threshold (initial month)
    assert "22 of 36 min for 99492" in found[0]
    assert "40 of 86 min for 99494" in found[1]
    assert "codes: G2214" in found[0]
    # weeks in treatment and last contact
    assert "2026-01-10" in found[0] and "2026-01-05" in found[1]


def test_registry_minutes_in_a_subsequent_month_and_as_of_is_reproducible(
    pages: TestClient, clinic: Clinic
) -> None:
    ids = caseload(clinic)
    clinic.minutes(ids["calm"], "2026-02-03T10:00:00Z", 20)
    clinic.minutes(ids["calm"], "2026-02-20T10:00:00Z", 15)
    found = {
        row.split('data-patient-id="')[1].split('"')[0]: row
        for row in rows(get_registry(pages, as_of="2026-02-10"))
    }
    assert "20 of 31 min for 99493" in found[ids["calm"]]  # the 20 February entry is after as_of
    assert "subsequent month" in found[ids["calm"]]
    assert "0 of 16 min for G2214" in found[ids["risky"]]
    later = {
        row.split('data-patient-id="')[1].split('"')[0]: row
        for row in rows(get_registry(pages, as_of="2026-02-28"))
    }
    assert "35 of 76 min for 99494" in later[ids["calm"]]


def test_registry_filters_by_flag_and_status(pages: TestClient, clinic: Clinic) -> None:
    ids = caseload(clinic)
    flagged = rows(get_registry(pages, flag="safety_risk"))
    assert len(flagged) == 1 and ids["risky"] in flagged[0]
    remission = rows(get_registry(pages, status="relapse_prevention"))
    assert len(remission) == 1 and ids["calm"] in remission[0]
    empty_choice = rows(get_registry(pages, flag="", status=""))  # the form's "any" options
    assert len(empty_choice) == 2


def test_registry_bad_parameters_answer_400_html(pages: TestClient, clinic: Clinic) -> None:
    caseload(clinic)
    for params in ({"as_of": "2026-02-30"}, {"flag": "nope"}, {"status": "gone"}, {"cursor": "x"}):
        response = pages.get("/registry", params=params)
        assert response.status_code == 400, params
        assert response.headers["content-type"].startswith("text/html")
        assert "Ana" not in response.text
    assert pages.get("/registry/billing", params={"month": "2026-13"}).status_code == 400


def test_pages_send_no_store_and_a_script_free_policy(pages: TestClient, clinic: Clinic) -> None:
    caseload(clinic)
    for path in ("/registry", "/registry/billing"):
        response = pages.get(path)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert "script-src" not in response.headers["content-security-policy"]
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "<script" not in response.text


def test_billing_view_lists_codes_and_links_the_csv(pages: TestClient, clinic: Clinic) -> None:
    ids = caseload(clinic)
    response = pages.get("/registry/billing", params={"month": "2026-01"})
    assert response.status_code == 200
    page = response.text
    billing_rows = re.findall(r'<tr data-patient-id="([^"]+)">(.*?)</tr>', page, re.S)
    by_id = dict(billing_rows)
    assert [pid for pid, _ in billing_rows] == sorted(ids.values())
    assert '<td class="codes">99492</td>' in by_id[ids["calm"]]
    assert '<td class="num">40</td>' in by_id[ids["calm"]]
    assert '<td class="codes">G2214</td>' in by_id[ids["risky"]]
    assert "Ana Risky" in by_id[ids["risky"]]
    link = re.search(r'<a class="download" id="csv-download" href="([^"]+)" download>', page)
    assert link is not None
    href = html.unescape(link.group(1))
    assert href == "/api/v1/billing.csv?month=2026-01"
    csv = pages.get(href)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert ids["calm"] in csv.text and "99492" in csv.text


def test_billing_view_without_minutes(pages: TestClient) -> None:
    response = pages.get("/registry/billing", params={"month": "2025-06"})
    assert response.status_code == 200
    assert "No counted minutes in 2025-06." in response.text
    assert 'href="/api/v1/billing.csv?month=2025-06"' in response.text


def test_capped_add_on_shows_minutes_without_a_next_threshold(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(add_on_cap=1)
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled("Busy")
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 130)
    page = get_registry(client)
    assert "130 min" in page and "130 of" not in page
    assert "codes: 99492, 99494" in page


def test_patient_data_is_html_escaped(pages: TestClient, fhir: Fhir, clinic: Clinic) -> None:
    evil = "<script>alert(1)</script>"
    pid = fhir.patient(name=[{"text": evil}])
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 20)
    for path, params in (("/registry", {"as_of": AS_OF}), ("/registry/billing", {"month": "2026-01"})):
        page = pages.get(path, params=params).text
        assert evil not in page
        assert "<script" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_next_page_link_continues_in_urgency_order(pages: TestClient, clinic: Clinic) -> None:
    ids = caseload(clinic)
    first = get_registry(pages, limit="1")
    assert ids["risky"] in rows(first)[0]
    link = re.search(r'<a href="(/registry\?[^"]+)">Next page</a>', first)
    assert link is not None
    second = pages.get(html.unescape(link.group(1)))
    assert second.status_code == 200
    assert [ids["calm"] in row for row in rows(second.text)] == [True]
    assert "Next page" not in second.text


def test_pages_need_the_api_key_when_keys_are_set(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys="page-key")
    for path in ("/registry", "/registry/billing"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        response = client.get(path, headers={"Authorization": "Bearer page-key"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")


def test_pages_stay_out_of_the_openapi_document(pages: TestClient) -> None:
    paths = pages.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/registry")]
