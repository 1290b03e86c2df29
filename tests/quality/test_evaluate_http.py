"""``Measure`` and ``$evaluate-measure`` over HTTP (quality.md): the three report types from
real writes, the errors, and every Measure and MeasureReport valid as R4."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport

from app.quality.measures import MEASURES
from tests.api.scenario import Clinic

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
PERIOD = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}


def condition(pid: str, code: str, onset: str = "2024-12-01", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {
            "coding": [{"system": ICD10, "code": code, "display": "Major depressive disorder, recurrent"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
        **extra,
    }


def depressed(clinic: Clinic, later: int | None, birth: str = "1980-01-01") -> str:
    """A patient with recurrent depression, an index PHQ-9 of 15 on 2025-01-10 and, if given, a
    score a year later."""
    pid = clinic.fhir.patient(birthDate=birth)
    clinic.fhir.create(condition(pid, "F33.1"))
    clinic.score(pid, "2025-01-10T10:00:00Z", 15)
    if later is not None:
        clinic.score(pid, "2026-01-10T10:00:00Z", later)
    return pid


def counts(report: dict[str, Any], group: int = 0) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][group]["population"]}


def evaluate(clinic: Clinic, measure: str, **params: str) -> Any:
    return clinic.fhir.get(f"Measure/{measure}/$evaluate-measure", **{**PERIOD, **params})


def test_summary_counts_and_score_from_the_store(clinic: Clinic) -> None:
    depressed(clinic, 3)
    depressed(clinic, 12)
    excluded = depressed(clinic, 2)
    clinic.fhir.create(condition(excluded, "F31.9", onset="2025-06-01"))
    depressed(clinic, None, birth="2013-02-01")  # 11 on the index day: not in the measure

    response = evaluate(clinic, "depression-remission-12m")
    assert response.status_code == 200, response.text
    report = response.json()
    MeasureReport.model_validate(report)
    assert report["type"] == "summary" and report["status"] == "complete"
    assert report["measure"] == "http://cocm-api.org/fhir/Measure/depression-remission-12m"
    assert report["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    assert counts(report) == {
        "initial-population": 3,
        "denominator": 3,
        "denominator-exclusion": 1,
        "numerator": 1,
    }
    assert report["group"][0]["measureScore"] == {"value": 0.5}
    assert "contained" not in report and "reporter" not in report
    assert evaluate(clinic, "depression-remission-12m").json() == report  # same data, same report


def test_subject_list_names_the_patients_behind_each_count(clinic: Clinic) -> None:
    remitted, not_remitted = depressed(clinic, 3), depressed(clinic, 12)
    report = evaluate(clinic, "depression-remission-12m", reportType="subject-list").json()
    MeasureReport.model_validate(report)
    assert report["type"] == "subject-list"
    lists = {f"#{c['id']}": c for c in report["contained"]}
    members = {
        p["code"]["coding"][0]["code"]: sorted(
            e["item"]["reference"] for e in lists[p["subjectResults"]["reference"]].get("entry", [])
        )
        for p in report["group"][0]["population"]
    }
    assert members["numerator"] == [f"Patient/{remitted}"]
    assert members["denominator"] == sorted([f"Patient/{remitted}", f"Patient/{not_remitted}"])
    assert members["denominator-exclusion"] == []
    assert {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]} == {
        code: len(refs) for code, refs in members.items()
    }


def test_individual_report_counts_one_patient(clinic: Clinic) -> None:
    remitted, other = depressed(clinic, 3), depressed(clinic, 12)
    report = evaluate(clinic, "depression-remission-12m", subject=f"Patient/{remitted}").json()
    MeasureReport.model_validate(report)
    assert report["type"] == "individual" and report["subject"] == {"reference": f"Patient/{remitted}"}
    assert counts(report) == {
        "initial-population": 1,
        "denominator": 1,
        "denominator-exclusion": 0,
        "numerator": 1,
    }
    assert counts(evaluate(clinic, "depression-remission-12m", subject=other).json())["numerator"] == 0


def test_response_measure_has_three_groups(clinic: Clinic) -> None:
    pid = clinic.fhir.patient(birthDate="1970-05-05")
    clinic.fhir.create(condition(pid, "F32.2", onset="2025-05-01"))
    clinic.score(pid, "2025-06-01T10:00:00Z", 20)
    clinic.score(pid, "2025-11-01T10:00:00Z", 9)  # 153 days later: followed up, responding, not remitted
    report = evaluate(clinic, "depression-response-6m").json()
    MeasureReport.model_validate(report)
    codes = [g["code"]["coding"][0]["code"] for g in report["group"]]
    assert codes == ["follow-up", "remission", "response"]
    assert [counts(report, i)["numerator"] for i in range(3)] == [1, 0, 1]


@pytest.mark.parametrize(
    ("params", "status", "expression"),
    [
        ({"periodStart": None}, 400, "periodStart"),
        ({"periodEnd": "2026-13-01"}, 400, "periodEnd"),
        ({"periodEnd": "2026"}, 400, "periodEnd"),
        ({"periodEnd": "2025-12-31"}, 400, "periodEnd"),
        ({"reportType": "everything"}, 400, "reportType"),
        ({"reportType": "subject"}, 400, "subject"),
        ({"subject": "Patient/unknown"}, 404, None),
    ],
)
def test_bad_parameters_answer_an_operation_outcome(
    clinic: Clinic, params: dict[str, str | None], status: int, expression: str | None
) -> None:
    query = {k: v for k, v in {**PERIOD, **params}.items() if v is not None}
    response = clinic.fhir.get("Measure/depression-remission-12m/$evaluate-measure", **query)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if expression is not None:
        assert expression in outcome["issue"][0]["expression"]


def test_unknown_measure_is_404(clinic: Clinic) -> None:
    assert evaluate(clinic, "nope").status_code == 404
    assert clinic.fhir.get("Measure/nope").status_code == 404


@pytest.mark.parametrize("measure_id", sorted(MEASURES))
def test_every_measure_is_served_valid_and_evaluates_valid(clinic: Clinic, measure_id: str) -> None:
    served = clinic.fhir.get(f"Measure/{measure_id}").json()
    Measure.model_validate(served)
    assert served["url"] == f"http://cocm-api.org/fhir/Measure/{measure_id}"
    assert served["status"] == "active"
    assert served["scoring"]["coding"][0]["code"] == "proportion"
    assert served["improvementNotation"]["coding"][0]["code"] == "increase"
    found = clinic.fhir.get("Measure", url=served["url"]).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [measure_id]
    for report_type in ("summary", "subject-list"):
        report = evaluate(clinic, measure_id, reportType=report_type).json()
        MeasureReport.model_validate(report)
        assert "measureScore" not in report["group"][0]  # nothing in the store: 0 / 0


def test_measures_cannot_be_written(clinic: Clinic) -> None:
    served = clinic.fhir.get("Measure/cocm-follow-up-4w").json()
    assert clinic.fhir.put("Measure/cocm-follow-up-4w", served).status_code == 405


def test_individual_reports_sum_to_the_summary(clinic: Clinic) -> None:
    pids = [depressed(clinic, 3), depressed(clinic, 12), depressed(clinic, None), clinic.fhir.patient()]
    clinic.fhir.create(condition(pids[1], "Z51.5", onset="2025-03-01"))
    summary = counts(evaluate(clinic, "depression-remission-12m").json())
    individual = [
        counts(evaluate(clinic, "depression-remission-12m", subject=f"Patient/{pid}").json()) for pid in pids
    ]
    assert {code: sum(c[code] for c in individual) for code in summary} == summary
    assert summary == {"initial-population": 3, "denominator": 3, "denominator-exclusion": 1, "numerator": 1}
