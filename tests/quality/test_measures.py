"""The four measures of quality.md in the pure core: one row at every boundary of every window and
threshold, and one on either side (``app.quality.measures``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app.domain import Diagnosis, Measurement, PatientFacts, Person, TimeEntry
from app.quality.measures import MEASURES, Period, QualityConfig, add_months, evaluate_patient

CONFIG = QualityConfig()
PERIOD = Period(date(2026, 1, 1), date(2026, 12, 31))
INDEX = date(2025, 1, 10)  # in CMS159's identification period [2024-11-01, 2025-11-01) for PERIOD
D = timedelta(days=1)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def score(day: date, value: int, hour: int = 10, source: str | None = None) -> Measurement:
    return Measurement("p", "PHQ-9", value, at(day, hour), source or f"Observation/{day}-{hour}")


def diagnosis(
    code: str = "F33.1",
    onset: date | None = date(2024, 12, 1),
    abatement: date | None = None,
    category: str = "depression",
    active: bool = True,
    refuted: bool = False,
) -> Diagnosis:
    return Diagnosis("p", code, None, category, onset, abatement, active, refuted, f"Condition/{code}")  # type: ignore[arg-type]


def patient(
    *scores: Measurement,
    diagnoses: tuple[Diagnosis, ...] = (diagnosis(),),
    birth: date | None = date(1980, 1, 1),
    died: date | None = None,
    entries: tuple[TimeEntry, ...] = (),
) -> PatientFacts:
    return PatientFacts(
        entries=list(entries),
        measurements=list(scores),
        diagnoses=list(diagnoses),
        person=Person(birth, died is not None, died),
    )


def members(measure: str, facts: PatientFacts, period: Period = PERIOD, group: int = 0) -> dict[str, bool]:
    return dict(evaluate_patient(MEASURES[measure], period, facts, CONFIG)[group])


def in_numerator(measure: str, facts: PatientFacts, group: int = 0) -> bool:
    return members(measure, facts, group=group)["numerator"]


def in_population(measure: str, facts: PatientFacts, period: Period = PERIOD) -> bool:
    return members(measure, facts, period)["initial-population"]


# --- calendar months -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2025, 1, 31), 1, date(2025, 2, 28)),  # no 31 February: the month's last day
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2026, 1, 1), -14, date(2024, 11, 1)),
        (date(2026, 3, 31), -2, date(2026, 1, 31)),
        (date(2025, 12, 15), 1, date(2026, 1, 15)),
    ],
)
def test_add_months_keeps_the_day_number_or_the_last_day(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


# --- depression-remission-12m (CMS159) ----------------------------------------------------------

REMISSION = "depression-remission-12m"


@pytest.mark.parametrize(
    ("index_day", "inside"),
    [
        (date(2024, 10, 31), False),  # the day before the identification period
        (date(2024, 11, 1), True),  # periodStart - 14 months: included
        (date(2025, 10, 31), True),
        (date(2025, 11, 1), False),  # periodStart - 2 months: excluded
    ],
)
def test_index_in_the_identification_period(index_day: date, inside: bool) -> None:
    facts = patient(score(index_day, 15), diagnoses=(diagnosis(onset=date(2024, 1, 1)),))
    assert in_population(REMISSION, facts) is inside


@pytest.mark.parametrize(("value", "inside"), [(9, False), (10, True), (27, True)])
def test_index_score_above_nine(value: int, inside: bool) -> None:
    assert in_population(REMISSION, patient(score(INDEX, value))) is inside


@pytest.mark.parametrize(
    ("day", "numerator"),
    [
        (date(2025, 11, 10), False),  # index + 12 months - 61 days
        (date(2025, 11, 11), True),  # index + 12 months - 60 days: included
        (date(2026, 1, 10), True),
        (date(2026, 3, 11), True),  # index + 12 months + 60 days: included
        (date(2026, 3, 12), False),
    ],
)
def test_remission_window_edges(day: date, numerator: bool) -> None:
    assert in_numerator(REMISSION, patient(score(INDEX, 15), score(day, 2))) is numerator


@pytest.mark.parametrize(("value", "numerator"), [(0, True), (4, True), (5, False), (6, False)])
def test_remission_below_five(value: int, numerator: bool) -> None:
    assert in_numerator(REMISSION, patient(score(INDEX, 15), score(date(2026, 1, 10), value))) is numerator


@pytest.mark.parametrize(
    ("scores", "numerator"),
    [
        (((date(2025, 12, 1), 3), (date(2026, 2, 1), 8)), False),  # the last one counts
        (((date(2025, 12, 1), 8), (date(2026, 2, 1), 3)), True),
        (((date(2026, 2, 1), 8), (date(2026, 3, 12), 3)), False),  # a later one outside the window
    ],
)
def test_the_last_score_in_the_window_decides(scores: tuple[tuple[date, int], ...], numerator: bool) -> None:
    facts = patient(score(INDEX, 15), *(score(day, value) for day, value in scores))
    assert in_numerator(REMISSION, facts) is numerator


def test_the_last_of_two_scores_on_one_day_is_the_later_instant() -> None:
    same_day = date(2026, 1, 10)
    later_low = patient(score(INDEX, 15), score(same_day, 8, hour=9), score(same_day, 3, hour=15))
    later_high = patient(score(INDEX, 15), score(same_day, 3, hour=9), score(same_day, 8, hour=15))
    assert in_numerator(REMISSION, later_low) and not in_numerator(REMISSION, later_high)


def test_the_first_of_two_elevated_scores_is_the_index() -> None:
    # 2025-01-10 (15) then 2025-03-10 (12): remission is looked for around 2026-01-10, not 2026-03-10.
    early = patient(score(INDEX, 15), score(date(2025, 3, 10), 12), score(date(2025, 11, 12), 2))
    assert in_numerator(REMISSION, early)
    late_only = patient(score(INDEX, 15), score(date(2025, 3, 10), 12), score(date(2026, 5, 9), 2))
    assert not in_numerator(REMISSION, late_only)


@pytest.mark.parametrize(
    ("birth", "inside"),
    [
        (date(2013, 1, 11), False),  # 12 the day after the index
        (date(2013, 1, 10), True),  # 12 on the index day
        (date(2013, 1, 9), True),
        (None, False),  # no birth date: age unknown
    ],
)
def test_twelve_or_older_on_the_index_day(birth: date | None, inside: bool) -> None:
    assert in_population(REMISSION, patient(score(INDEX, 15), birth=birth)) is inside


@pytest.mark.parametrize(
    ("dx", "inside"),
    [
        (diagnosis(onset=INDEX + D), False),  # starts the day after the index
        (diagnosis(onset=INDEX), True),  # starts on the index day
        (diagnosis(onset=None), True),  # no onset or recordedDate: on the list all along
        (
            diagnosis(onset=date(2020, 1, 1), abatement=INDEX - D, active=False),
            False,
        ),  # abated the day before
        (diagnosis(onset=date(2020, 1, 1), abatement=INDEX, active=False), False),  # abated that day
        (diagnosis(onset=date(2020, 1, 1), abatement=INDEX + D, active=False), True),  # abated the day after
        (diagnosis(active=False), False),  # resolved, no date
        (diagnosis(refuted=True), False),
        (diagnosis(code="F31.9", category="exclusion"), False),  # not a depression diagnosis
    ],
)
def test_depression_diagnosis_active_on_the_index_day(dx: Diagnosis, inside: bool) -> None:
    assert in_population(REMISSION, patient(score(INDEX, 15), diagnoses=(dx,))) is inside


def test_an_elevated_score_without_a_diagnosis_is_passed_over_for_a_later_one() -> None:
    facts = patient(
        score(date(2025, 1, 2), 20),  # before the diagnosis: not the index
        score(INDEX, 15),
        score(date(2026, 1, 10), 2),
        diagnoses=(diagnosis(onset=date(2025, 1, 5)),),
    )
    assert in_numerator(REMISSION, facts)


WINDOW_END = date(2026, 3, 11)  # index + 12 months + 60 days


@pytest.mark.parametrize(
    ("onset", "excluded"),
    [
        (date(2023, 1, 1), True),  # long before
        (WINDOW_END, True),  # on the window's end
        (WINDOW_END + D, False),  # after it
    ],
)
def test_exclusion_diagnosis_up_to_the_window_end(onset: date, excluded: bool) -> None:
    facts = patient(
        score(INDEX, 15),
        score(date(2026, 1, 10), 2),
        diagnoses=(diagnosis(), diagnosis("F20.9", onset=onset, category="exclusion")),
    )
    found = members(REMISSION, facts)
    assert found["denominator"]
    assert found["denominator-exclusion"] is excluded
    assert found["numerator"] is not excluded


@pytest.mark.parametrize(
    ("died", "excluded"), [(date(2025, 6, 1), True), (WINDOW_END, True), (WINDOW_END + D, False)]
)
def test_death_up_to_the_window_end_excludes(died: date, excluded: bool) -> None:
    facts = patient(score(INDEX, 15), score(date(2026, 1, 10), 2), died=died)
    assert members(REMISSION, facts)["denominator-exclusion"] is excluded


def test_death_without_a_date_excludes() -> None:
    facts = patient(score(INDEX, 15))
    facts.person = Person(date(1980, 1, 1), deceased=True)
    assert members(REMISSION, facts)["denominator-exclusion"]


# --- depression-response-6m (HEDIS DRR-E) --------------------------------------------------------

RESPONSE = "depression-response-6m"
R_INDEX = date(2025, 8, 1)


@pytest.mark.parametrize(
    ("index_day", "inside"),
    [
        (PERIOD.start - timedelta(days=241), False),
        (PERIOD.start - timedelta(days=240), True),  # included
        (PERIOD.end - timedelta(days=240), True),  # included
        (PERIOD.end - timedelta(days=239), False),
    ],
)
def test_response_index_window(index_day: date, inside: bool) -> None:
    facts = patient(score(index_day, 15), diagnoses=(diagnosis(onset=date(2024, 1, 1)),))
    assert in_population(RESPONSE, facts) is inside


@pytest.mark.parametrize(
    ("days", "followed_up"), [(119, False), (120, True), (180, True), (240, True), (241, False)]
)
def test_follow_up_between_120_and_240_days(days: int, followed_up: bool) -> None:
    facts = patient(score(R_INDEX, 16), score(R_INDEX + timedelta(days=days), 3))
    assert [in_numerator(RESPONSE, facts, group) for group in range(3)] == [followed_up] * 3


@pytest.mark.parametrize(
    ("later", "remission", "response"),
    [
        (4, True, True),
        (5, False, True),
        (10, False, True),  # exactly 50% of 20
        (11, False, False),
    ],
)
def test_remission_and_response_from_the_last_follow_up(later: int, remission: bool, response: bool) -> None:
    facts = patient(
        score(R_INDEX, 20),
        score(R_INDEX + timedelta(days=130), 2),
        score(R_INDEX + timedelta(days=200), later),
    )
    assert [in_numerator(RESPONSE, facts, group) for group in range(3)] == [True, remission, response]


@pytest.mark.parametrize(("onset_days", "excluded"), [(240, True), (241, False)])
def test_response_exclusions_up_to_index_plus_240_days(onset_days: int, excluded: bool) -> None:
    facts = patient(
        score(R_INDEX, 20),
        score(R_INDEX + timedelta(days=150), 3),
        diagnoses=(
            diagnosis(),
            diagnosis("Z51.5", onset=R_INDEX + timedelta(days=onset_days), category="exclusion"),
        ),
    )
    for group in range(3):
        found = members(RESPONSE, facts, group=group)
        assert found["denominator-exclusion"] is excluded and found["numerator"] is not excluded


# --- cocm-follow-up-4w (AIMS) ------------------------------------------------------------------

FOLLOW_UP = "cocm-follow-up-4w"
START = date(2026, 3, 1)


def entry(
    day: date, activity: str = "follow-up", minutes: int = 20, excluded: str | None = None, hour: int = 10
) -> TimeEntry:
    return TimeEntry(
        "p", at(day, hour), minutes * 60, activity, f"Encounter/{day}-{activity}-{hour}", excluded
    )


def enrolled(*entries: TimeEntry, start: date = START) -> tuple[TimeEntry, ...]:
    return (entry(start, "initial-assessment", 40), *entries)


@pytest.mark.parametrize(
    ("days", "numerator"),
    [(0, False), (1, True), (27, True), (28, True), (29, False)],  # same day is not a second contact
)
def test_second_contact_within_28_days(days: int, numerator: bool) -> None:
    facts = patient(entries=enrolled(entry(START + timedelta(days=days), hour=15)))
    assert members(FOLLOW_UP, facts) == {
        "initial-population": True,
        "denominator": True,
        "denominator-exclusion": False,
        "numerator": numerator,
    }


@pytest.mark.parametrize(
    ("activity", "excluded", "numerator"),
    [
        ("outreach", None, True),
        ("brief-intervention", None, True),
        ("relapse-prevention", None, True),
        ("case-review", None, False),  # not a contact with the patient
        ("psychiatric-consultation", None, False),
        ("follow-up", "not_finished", False),  # did not take place
    ],
)
def test_which_entries_are_contacts(activity: str, excluded: str | None, numerator: bool) -> None:
    facts = patient(entries=enrolled(entry(START + timedelta(days=10), activity, excluded=excluded)))
    assert in_numerator(FOLLOW_UP, facts) is numerator


@pytest.mark.parametrize(
    ("start", "inside"),
    [
        (date(2025, 12, 31), False),
        (date(2026, 1, 1), True),
        (date(2026, 12, 31), True),
        (date(2027, 1, 1), False),
    ],
)
def test_episode_starting_in_the_period(start: date, inside: bool) -> None:
    assert in_population(FOLLOW_UP, patient(entries=enrolled(start=start))) is inside


# --- cocm-consult-not-improving (AIMS) -----------------------------------------------------------

CONSULT = "cocm-consult-not-improving"
WEEK8 = START + timedelta(days=56)


def not_improving(*extra: TimeEntry, baseline: int = 20, later: int = 18) -> PatientFacts:
    return patient(score(START, baseline), score(START + timedelta(days=28), later), entries=enrolled(*extra))


@pytest.mark.parametrize(
    ("days", "numerator"), [(55, False), (56, True), (70, True), (84, True), (85, False)]
)
def test_consultation_in_weeks_8_to_12(days: int, numerator: bool) -> None:
    facts = not_improving(entry(START + timedelta(days=days), "case-review"))
    assert in_numerator(CONSULT, facts) is numerator


@pytest.mark.parametrize(
    ("activity", "excluded", "numerator"),
    [
        ("psychiatric-consultation", None, True),  # counted or not
        ("case-review", "separately_billed", True),
        ("case-review", "not_finished", False),  # planned or cancelled: did not take place
        ("follow-up", None, False),
    ],
)
def test_which_entries_are_consultations(activity: str, excluded: str | None, numerator: bool) -> None:
    facts = not_improving(entry(WEEK8 + timedelta(days=3), activity, excluded=excluded))
    assert in_numerator(CONSULT, facts) is numerator


@pytest.mark.parametrize(
    ("baseline", "later", "inside"),
    [
        (9, 9, False),  # baseline below 10
        (10, 10, True),
        (20, 11, True),  # 55% of baseline: not improved
        (20, 10, False),  # exactly 50%: improved
        (20, 9, False),  # below 10: improved
    ],
)
def test_baseline_of_ten_not_improved_by_week_8(baseline: int, later: int, inside: bool) -> None:
    assert in_population(CONSULT, not_improving(baseline=baseline, later=later)) is inside


@pytest.mark.parametrize(("days", "inside"), [(56, False), (57, True)])  # improved on week 8, or after it
def test_improvement_after_week_8_does_not_count(days: int, inside: bool) -> None:
    facts = patient(score(START, 20), score(START + timedelta(days=days), 4), entries=enrolled())
    assert in_population(CONSULT, facts) is inside


@pytest.mark.parametrize(
    ("week8", "inside"),
    [(PERIOD.start - D, False), (PERIOD.start, True), (PERIOD.end, True), (PERIOD.end + D, False)],
)
def test_week_8_in_the_period(week8: date, inside: bool) -> None:
    start = week8 - timedelta(days=56)
    facts = patient(score(start, 20), entries=enrolled(start=start))
    assert in_population(CONSULT, facts) is inside


def test_baseline_up_to_14_days_before_the_start() -> None:
    for days, inside in ((14, True), (15, False)):
        facts = patient(score(START - timedelta(days=days), 20), entries=enrolled())
        assert in_population(CONSULT, facts) is inside
