"""The quality JSON, page and command (quality.md, "Dashboard JSON and page"): the same numbers as
``$evaluate-measure``, quarters that add up to the trend, targets from settings, links from every
count to the patients behind it, and ``cocm quality --csv`` on a real database."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.scenario import Clinic
from tests.conftest import run_cocm, serving
from tests.quality.test_evaluate_http import counts, depressed

PERIOD = {"period_start": "2026-01-01", "period_end": "2026-12-31"}


def quality(client: TestClient | httpx.Client, **params: str) -> Any:
    return client.get("/api/v1/quality", params={**PERIOD, **params})


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in body["measures"]}


def test_json_matches_evaluate_measure_and_has_the_quarters(clinic: Clinic) -> None:
    depressed(clinic, 3)
    depressed(clinic, 12)
    response = quality(clinic.fhir.client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["period_start"], body["period_end"]) == ("2026-01-01", "2026-12-31")
    assert list(by_id(body)) == [
        "depression-remission-12m",
        "depression-response-6m",
        "cocm-follow-up-4w",
        "cocm-consult-not-improving",
    ]
    remission = by_id(body)["depression-remission-12m"]["groups"][0]
    report = clinic.fhir.get(
        "Measure/depression-remission-12m/$evaluate-measure", periodStart="2026-01-01", periodEnd="2026-12-31"
    ).json()
    assert {p["code"]: p["count"] for p in remission["populations"]} == counts(report)
    assert remission["score"] == 0.5 and remission["target"] is None
    assert [(q["period_start"], q["period_end"]) for q in body["quarters"]] == [
        ("2026-01-01", "2026-03-31"),
        ("2026-04-01", "2026-06-30"),
        ("2026-07-01", "2026-09-30"),
        ("2026-10-01", "2026-12-31"),
    ]
    # CMS159's identification period moves with the quarter: Q1's holds both indexes of 2025-01-10;
    # the later ones hold the patient still at 12 on 2026-01-10 (a new index), not the one at 3.
    q_populations = [
        by_id(q)["depression-remission-12m"]["groups"][0]["populations"][0]["count"] for q in body["quarters"]
    ]
    assert q_populations == [2, 1, 1, 1]


def test_a_period_inside_one_quarter_is_its_own_trend(clinic: Clinic) -> None:
    body = quality(clinic.fhir.client, period_start="2026-02-10", period_end="2026-03-05").json()
    assert [(q["period_start"], q["period_end"]) for q in body["quarters"]] == [("2026-02-10", "2026-03-05")]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"period_start": "2026-02-30"}, "period_start"),
        ({"period_end": "yesterday"}, "period_end"),
        ({"period_end": "2025-12-31"}, "period_end"),
        ({"period_start": "1800-01-01"}, "1900"),
        ({"period_start": "2000-01-01"}, "ten years"),
    ],
)
def test_bad_period_is_a_json_400(clinic: Clinic, params: dict[str, str], name: str) -> None:
    response = quality(clinic.fhir.client, **params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and name in response.json()["detail"]


def test_targets_come_from_settings(database_url: str, migrated_engine: Any) -> None:
    app = create_app(Settings(database_url=database_url, target_depression_remission_12m=0.2))
    with TestClient(app) as client:
        body = quality(client).json()
        page = client.get("/registry/quality", params=PERIOD).text
    assert by_id(body)["depression-remission-12m"]["groups"][0]["target"] == 0.2
    assert by_id(body)["cocm-follow-up-4w"]["groups"][0]["target"] is None
    assert "target 20%" in page


def test_page_shows_rates_trends_and_links_to_the_patients(clinic: Clinic) -> None:
    remitted = depressed(clinic, 3)
    depressed(clinic, 12)
    page = clinic.fhir.client.get("/registry/quality", params=PERIOD)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert html.count('class="measure"') == 4
    assert "50.0%" in html and "<svg" in html
    section = html[html.index('id="depression-remission-12m"') : html.index('id="depression-response-6m"')]
    links = re.findall(r'<a class="count" href="([^"]+)"', section)
    numerator = next(link for link in links if "population=numerator" in link)
    listed = clinic.fhir.client.get(numerator.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert re.findall(r'data-patient-id="([^"]+)"', listed.text) == [remitted]


def test_page_bad_period_and_unknown_population_are_400_pages(clinic: Clinic) -> None:
    assert clinic.fhir.client.get("/registry/quality", params={"period_start": "soon"}).status_code == 400
    for params in ({"population": "everyone"}, {"population": "numerator", "group": "abc"}):
        bad = clinic.fhir.client.get(
            "/registry/quality/patients", params={"measure": "cocm-follow-up-4w", **params}
        )
        assert bad.status_code == 400 and "not known" in bad.text


def test_cli_prints_the_table_and_csv_of_the_running_service(tmp_path: Path) -> None:
    assert run_cocm(tmp_path, "demo", "--patients", "24", "--alumni", "12")[0] == 0
    code, lines = run_cocm(
        tmp_path, "quality", "--period-start", "2026-01-01", "--period-end", "2026-12-31", "--csv"
    )
    assert code == 0, lines
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert len(rows) == (1 + 3 + 1 + 1) * 4  # one row per measure, group and population
    with serving(tmp_path, "127.0.0.1") as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        served = by_id(quality(client).json())
    for row in rows:
        group = next(g for g in served[row["measure"]]["groups"] if (g["code"] or "") == row["group"])
        population = next(p for p in group["populations"] if p["code"] == row["population"])
        assert int(row["count"]) == population["count"]
    assert sum(int(r["count"]) for r in rows if r["population"] == "denominator") > 0
    code, lines = run_cocm(tmp_path, "quality", "--period-start", "2026-13-01")
    assert code != 0 and any("--period-start" in line for line in lines)
