"""Invariants of the measures over generated clinics (hypothesis): the numerator never exceeds the
denominator minus its exclusions, the summary counts are the sizes of the subject lists, and the
individual reports sum to the summary."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import Diagnosis, Measurement, PatientFacts, Person, TimeEntry
from app.quality.fhir import measure_report
from app.quality.measures import MEASURES, POPULATIONS, Period, QualityConfig, evaluate, evaluate_patient

CONFIG = QualityConfig()
FIRST = date(2024, 6, 1)
SPAN = 1000  # days: the generated data runs to early 2027
ACTIVITIES = ("initial-assessment", "follow-up", "outreach", "case-review", "psychiatric-consultation")

days = st.integers(0, SPAN).map(lambda n: FIRST + timedelta(days=n))


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@st.composite
def patients(draw: st.DrawFn, pid: str) -> PatientFacts:
    scores = [
        Measurement(
            pid,
            "PHQ-9",
            draw(st.integers(0, 27)),
            _at(draw(days), draw(st.integers(0, 23))),
            f"Observation/{pid}-{n}",
        )
        for n in range(draw(st.integers(0, 6)))
    ]
    diagnoses = [
        Diagnosis(
            pid,
            code,
            None,
            category,
            draw(st.none() | days),
            draw(st.none() | days),
            draw(st.booleans()),
            draw(st.booleans()),
            f"Condition/{pid}-{n}",
        )
        for n, (code, category) in enumerate(
            draw(
                st.lists(
                    st.sampled_from(
                        [("F33.1", "depression"), ("F32.A", "depression"), ("F31.9", "exclusion")]
                    ),
                    max_size=3,
                )
            )
        )
    ]
    entries = [
        TimeEntry(
            pid,
            _at(draw(days), 10),
            draw(st.integers(0, 60)) * 60,
            draw(st.sampled_from(ACTIVITIES)),
            f"Encounter/{pid}-{n}",
            draw(st.sampled_from([None, None, "not_finished"])),
        )
        for n in range(draw(st.integers(0, 6)))
    ]
    died = draw(st.none() | days)
    person = Person(draw(st.none() | st.dates(date(1950, 1, 1), date(2015, 1, 1))), died is not None, died)
    return PatientFacts(entries=entries, measurements=scores, diagnoses=diagnoses, person=person)


@st.composite
def clinics(draw: st.DrawFn) -> dict[str, PatientFacts]:
    return {f"p{n}": draw(patients(f"p{n}")) for n in range(draw(st.integers(0, 6)))}


@st.composite
def periods(draw: st.DrawFn) -> Period:
    start = draw(st.dates(date(2025, 1, 1), date(2026, 12, 31)))
    return Period(start, start + timedelta(days=draw(st.integers(0, 400))))


@settings(max_examples=150, deadline=None)
@given(clinics(), periods(), st.sampled_from(sorted(MEASURES)))
def test_populations_add_up(clinic: dict[str, PatientFacts], period: Period, measure_id: str) -> None:
    measure = MEASURES[measure_id]
    result = evaluate(measure, period, clinic, CONFIG)
    report = measure_report(result, "subject-list", datetime(2026, 12, 4, tzinfo=UTC))
    lists = {f"#{c['id']}": c for c in report["contained"]}
    for position, group in enumerate(result.groups):
        # the numerator never exceeds the denominator minus the exclusions
        assert group.count("numerator") <= group.count("denominator") - group.count("denominator-exclusion")
        assert set(group.subjects["denominator"]) <= set(group.subjects["initial-population"])
        # the summary counts are the sizes of the subject lists
        for population in report["group"][position]["population"]:
            listed = lists[population["subjectResults"]["reference"]].get("entry", [])
            assert population["count"] == len(listed)
        # evaluating per subject and summing equals the summary
        for code in POPULATIONS:
            total = sum(
                evaluate_patient(measure, period, facts, CONFIG)[position][code] for facts in clinic.values()
            )
            assert total == group.count(code)
        if group.score is not None:
            assert 0 <= group.score <= 1
