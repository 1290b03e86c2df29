"""Care status (measures.md, "Care status"; api.md care-status JSON).

Each boundary is tested on both sides. Unless a test says otherwise the episode starts on Monday
2026-01-05 and instants are at noon UTC on the named day, clinic time zone UTC.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.care.status import (
    FLAGS,
    OPEN_STATUSES,
    CareStatus,
    care_status,
    change_percent,
    is_response,
    severity,
)
from app.domain import CareConfig, Episode, Instrument, Measurement, TimeEntry

START = date(2026, 1, 5)
CONFIG = CareConfig()


def d(offset: int, base: date = START) -> date:
    return base + timedelta(days=offset)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


_counter = iter(range(10**9))


def m(
    day: date,
    score: int | None,
    instrument: Instrument = "PHQ-9",
    item9: int | None = None,
    *,
    hour: int = 12,
    source: str | None = None,
) -> Measurement:
    return Measurement(
        patient_id="p1",
        instrument=instrument,
        score=score,
        effective=at(day, hour),
        source=source or f"QuestionnaireResponse/q{next(_counter)}",
        item9=item9,
    )


def e(
    day: date,
    activity: str = "follow-up",
    excluded: str | None = None,
    *,
    minutes: int = 20,
    hour: int = 12,
) -> TimeEntry:
    return TimeEntry(
        patient_id="p1",
        start=at(day, hour),
        seconds=minutes * 60,
        activity=activity,
        source=f"Encounter/e{next(_counter)}",
        excluded=excluded,
    )


OPEN = (Episode(START),)


def run(
    as_of: date,
    *,
    episodes: Sequence[Episode] = OPEN,
    measurements: Sequence[Measurement] = (),
    entries: Sequence[TimeEntry] = (),
    config: CareConfig = CONFIG,
    timezone: str = "UTC",
    count_consultant_time: bool = False,
) -> CareStatus:
    return care_status("p1", as_of, episodes, measurements, entries, config, timezone, count_consultant_time)


# --- the api.md example ----------------------------------------------------------------------------


def test_api_md_example() -> None:
    measurements = [
        m(date(2026, 1, 5), 18),
        m(date(2026, 1, 26), 17),
        m(date(2026, 2, 23), 17),
        m(date(2026, 3, 20), 16),
    ]
    entries = [e(date(2026, 1, 5)), e(date(2026, 3, 20))]
    result = run(date(2026, 3, 31), measurements=measurements, entries=entries)
    assert result.to_json() == {
        "patient_id": "p1",
        "as_of": "2026-03-31",
        "status": "active",
        "episode_start": "2026-01-05",
        "weeks_in_treatment": 12,
        "last_contact": "2026-03-20",
        "measures": {
            "PHQ-9": {
                "baseline": {"score": 18, "date": "2026-01-05"},
                "latest": {"score": 16, "date": "2026-03-20"},
                "change_percent": -11.1,
                "response": False,
                "remission": False,
                "severity": "moderately severe",
                "count": 4,
            },
            "GAD-7": None,
        },
        "flags": ["not_improving", "case_review_due"],
        "diagnoses": [],
    }


def test_not_enrolled_json() -> None:
    result = run(d(0), episodes=())
    assert result.to_json() == {
        "patient_id": "p1",
        "as_of": "2026-01-05",
        "status": "not_enrolled",
        "episode_start": None,
        "weeks_in_treatment": None,
        "last_contact": None,
        "measures": {"PHQ-9": None, "GAD-7": None},
        "flags": [],
        "diagnoses": [],
    }


# --- status ----------------------------------------------------------------------------------------


def test_episode_starting_after_as_of_is_ignored() -> None:
    assert run(d(-1)).status == "not_enrolled"
    assert run(d(0)).status == "active"
    assert run(d(0)).episode_start == START


@pytest.mark.parametrize(
    ("latest", "status"),
    [(5, "active"), (4, "relapse_prevention"), (0, "relapse_prevention"), (27, "active")],
)
def test_remission_boundary_sets_relapse_prevention(latest: int, status: str) -> None:
    result = run(d(60), measurements=[m(d(0), 15), m(d(50), latest)])
    assert result.status == status
    assert result.phq9 is not None
    assert result.phq9.remission is (latest < 5)


def test_open_episode_without_measurements_is_active() -> None:
    assert run(d(3)).status == "active"


def test_primary_instrument_is_phq9_then_gad7() -> None:
    # PHQ-9 not in remission wins over a GAD-7 in remission.
    both = [m(d(0), 12), m(d(0), 3, "GAD-7")]
    assert run(d(1), measurements=both).status == "active"
    # GAD-7 alone decides when there is no PHQ-9 (a PHQ-2 is no primary instrument).
    assert run(d(1), measurements=[m(d(0), 3, "GAD-7"), m(d(0), 5, "PHQ-2")]).status == ("relapse_prevention")
    assert run(d(1), measurements=[m(d(0), 5, "GAD-7")]).status == "active"


def test_inactive_from_the_episode_end_on() -> None:
    episodes = [Episode(START, end=d(200), end_reason="inactive")]
    assert run(d(199), episodes=episodes).status == "active"
    ended = run(d(200), episodes=episodes)
    assert ended.status == "inactive"
    assert ended.episode_end == d(200)
    assert run(d(199), episodes=episodes).episode_end is None


def test_discharged_from_the_episode_end_on() -> None:
    episodes = [Episode(START, end=d(90), end_reason="discharged")]
    assert run(d(89), episodes=episodes).status == "active"
    assert run(d(90), episodes=episodes).status == "discharged"
    assert run(d(400), episodes=episodes).status == "discharged"


def test_end_reason_without_end_date_has_ended() -> None:
    assert run(d(10), episodes=[Episode(START, end_reason="discharged")]).status == "discharged"


def test_current_or_last_episode_is_picked() -> None:
    first = Episode(START, end=d(250), end_reason="inactive")
    second = Episode(d(300))
    episodes = [second, first]  # order does not matter
    between = run(d(280), episodes=episodes)
    assert (between.status, between.episode_start) == ("inactive", START)
    assert between.weeks_in_treatment == 40
    later = run(d(301), episodes=episodes)
    assert (later.status, later.episode_start, later.weeks_in_treatment) == ("active", d(300), 0)


# --- weeks_in_treatment and last_contact ------------------------------------------------------------


@pytest.mark.parametrize(("offset", "weeks"), [(0, 0), (6, 0), (7, 1), (69, 9), (70, 10)])
def test_whole_weeks_in_treatment(offset: int, weeks: int) -> None:
    assert run(d(offset)).weeks_in_treatment == weeks


def test_last_contact_counts_only_counted_entries_on_or_before_as_of() -> None:
    entries = [
        e(d(1)),
        e(d(2), excluded="not_finished"),
        e(d(3), "psychiatric-consultation"),
        e(d(9)),  # after as_of
    ]
    assert run(d(5), entries=entries).last_contact == d(1)
    assert run(d(5), entries=entries, count_consultant_time=True).last_contact == d(3)
    assert run(d(9), entries=entries).last_contact == d(9)


def test_last_contact_spans_episodes_and_not_enrolled() -> None:
    assert run(d(5), episodes=(), entries=[e(d(1))]).last_contact == d(1)


def test_dates_are_taken_in_the_clinic_time_zone() -> None:
    # billing.md: 2026-02-01T03:00Z is still January 31 in America/Chicago.
    entry = TimeEntry("p1", datetime(2026, 2, 1, 3, tzinfo=UTC), 1200, "follow-up", "Encounter/x")
    score = Measurement("p1", "PHQ-9", 12, datetime(2026, 2, 1, 3, tzinfo=UTC), "Observation/o")
    chicago = run(date(2026, 1, 31), entries=[entry], measurements=[score], timezone="America/Chicago")
    assert chicago.last_contact == date(2026, 1, 31)
    assert chicago.phq9 is not None
    assert chicago.phq9.latest.date == date(2026, 1, 31)
    utc = run(date(2026, 1, 31), entries=[entry], measurements=[score])
    assert (utc.last_contact, utc.phq9) == (None, None)


def test_unknown_time_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="time zone"):
        run(d(1), timezone="Mars/Olympus_Mons")


# --- measures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "in_window"), [(-14, True), (-15, False)])
def test_baseline_lookback_14_days(offset: int, in_window: bool) -> None:
    result = run(d(30), measurements=[m(d(offset), 20), m(d(10), 14)])
    assert result.phq9 is not None
    if in_window:
        assert result.phq9.baseline.date == d(offset)
        assert (result.phq9.baseline.score, result.phq9.count) == (20, 2)
    else:
        assert result.phq9.baseline.date == d(10)
        assert (result.phq9.baseline.score, result.phq9.count) == (14, 1)


def test_baseline_lookback_is_a_setting() -> None:
    config = dataclasses.replace(CONFIG, baseline_lookback_days=30)
    result = run(d(30), measurements=[m(d(-20), 20), m(d(10), 14)], config=config)
    assert result.phq9 is not None
    assert result.phq9.baseline.date == d(-20)


def test_lookback_only_measurement_is_baseline_and_latest() -> None:
    result = run(d(3), measurements=[m(d(-5), 17)])
    assert result.phq9 is not None
    assert result.phq9.baseline == result.phq9.latest
    assert result.phq9.change_percent == 0.0
    assert result.phq9.count == 1


def test_latest_is_on_or_before_as_of_and_later_scores_are_ignored() -> None:
    measurements = [m(d(0), 20), m(d(20), 12), m(d(40), 4)]
    result = run(d(39), measurements=measurements)
    assert result.phq9 is not None
    assert (result.phq9.latest.score, result.phq9.latest.date, result.phq9.count) == (12, d(20), 2)
    assert result.status == "active"
    assert run(d(40), measurements=measurements).status == "relapse_prevention"


def test_scores_of_a_previous_episode_are_not_this_episodes_baseline() -> None:
    episodes = [Episode(START, end=d(250), end_reason="inactive"), Episode(d(300))]
    result = run(d(320), episodes=episodes, measurements=[m(d(10), 22), m(d(310), 8)])
    assert result.phq9 is not None
    assert (result.phq9.baseline.score, result.phq9.count) == (8, 1)


def test_ended_episode_window_stops_at_its_end() -> None:
    episodes = [Episode(START, end=d(90), end_reason="discharged")]
    result = run(d(120), episodes=episodes, measurements=[m(d(0), 20), m(d(80), 9), m(d(100), 3)])
    assert result.phq9 is not None
    assert (result.phq9.latest.score, result.phq9.count) == (9, 2)


def test_gad7_measure_and_both_instruments() -> None:
    result = run(d(30), measurements=[m(d(0), 16, "GAD-7"), m(d(28), 7, "GAD-7"), m(d(1), 11)])
    assert result.gad7 is not None
    assert result.gad7.to_json() == {
        "baseline": {"score": 16, "date": d(0).isoformat()},
        "latest": {"score": 7, "date": d(28).isoformat()},
        "change_percent": -56.3,
        "response": True,
        "remission": False,
        "severity": "mild",
        "count": 2,
    }
    assert result.phq9 is not None
    assert result.phq9.count == 1
    assert result.phq9.severity == "moderate"


def test_same_instant_is_ordered_by_source_not_input_order() -> None:
    a = m(d(0), 20, source="Observation/a")
    b = m(d(0), 10, source="Observation/b")
    for order in ([a, b], [b, a]):
        result = run(d(1), measurements=order)
        assert result.phq9 is not None
        assert (result.phq9.baseline.score, result.phq9.latest.score) == (20, 10)


@pytest.mark.parametrize(
    ("baseline", "latest", "expected"),
    [
        (18, 16, -11.1),
        (16, 17, 6.3),  # 6.25 rounds half away from zero
        (16, 15, -6.3),  # -6.25
        (20, 10, -50.0),
        (3, 9, 200.0),
        (7, 7, 0.0),
        (0, 5, None),
        (0, 0, None),
    ],
)
def test_change_percent(baseline: int, latest: int, expected: float | None) -> None:
    assert change_percent(baseline, latest) == expected


@pytest.mark.parametrize(
    ("baseline", "latest", "expected"),
    [(20, 10, True), (20, 11, False), (15, 7, True), (15, 8, False), (0, 0, False), (1, 0, True)],
)
def test_response_at_exactly_half(baseline: int, latest: int, expected: bool) -> None:
    assert is_response(baseline, latest) is expected
    result = run(d(30), measurements=[m(d(0), baseline), m(d(20), latest)])
    assert result.phq9 is not None
    assert result.phq9.response is expected


def test_response_fraction_is_exact() -> None:
    # 0.3 * 10 is 3.0000000000000004 in floats; the setting means 3/10.
    assert is_response(10, 3, 0.3) is True


def test_severity_is_the_measures_table() -> None:
    # The bands themselves are table-tested against measures.md in tests/measures.
    assert severity("PHQ-9", 15) == "moderately severe"
    assert severity("GAD-7", 15) == "severe"


def test_out_of_range_score_has_no_severity_and_does_not_break_the_status() -> None:
    assert severity("PHQ-9", 28) is None
    assert severity("PHQ-2", 3) is None
    result = run(d(5), measurements=[m(d(1), 30)])
    assert result.phq9 is not None
    assert (result.phq9.latest.score, result.phq9.severity) == (30, None)


# --- flags: safety_risk ----------------------------------------------------------------------------


def test_safety_risk_from_item9() -> None:
    assert "safety_risk" in run(d(5), measurements=[m(d(1), 12, item9=1)]).flags
    assert "safety_risk" not in run(d(5), measurements=[m(d(1), 12, item9=0)]).flags
    assert "safety_risk" not in run(d(5), measurements=[m(d(1), 12)]).flags


def test_safety_risk_cleared_by_a_later_item9_zero() -> None:
    measurements = [m(d(1), 15, item9=2), m(d(20), 10, item9=0)]
    assert "safety_risk" in run(d(19), measurements=measurements).flags
    assert "safety_risk" not in run(d(20), measurements=measurements).flags


def test_safety_risk_not_cleared_by_unanswered_item9_or_other_instruments() -> None:
    measurements = [
        m(d(1), 15, item9=1),
        m(d(10), 9),  # a total-score Observation: item 9 unknown
        m(d(11), 3, "GAD-7"),
        m(d(12), 0, "PHQ-2"),
    ]
    assert "safety_risk" in run(d(20), measurements=measurements).flags


def test_safety_risk_returns_with_a_later_positive_item9() -> None:
    measurements = [m(d(1), 15, item9=1), m(d(10), 8, item9=0), m(d(20), 12, item9=1)]
    assert "safety_risk" not in run(d(19), measurements=measurements).flags
    assert "safety_risk" in run(d(20), measurements=measurements).flags


def test_item9_alone_raises_and_clears_safety_risk_but_is_no_score() -> None:
    """An item-level 44260-8 answer (score None): safety_risk only (api.md, item 9 everywhere)."""
    scored = m(d(1), 16, item9=0)
    alone = m(d(10), None, item9=2, source="Observation/item9")
    result = run(d(12), measurements=[scored, alone])
    assert "safety_risk" in result.flags
    assert result.phq9 is not None and (result.phq9.latest.score, result.phq9.count) == (16, 1)
    cleared = run(d(12), measurements=[scored, alone, m(d(11), None, item9=0, source="Observation/later")])
    assert "safety_risk" not in cleared.flags


def test_item9_alone_is_not_a_measurement_for_overdue() -> None:
    config = dataclasses.replace(CONFIG, measurement_overdue_days=30)
    alone = [m(d(1), None, item9=0, source="Observation/item9")]
    assert "measurement_overdue" in run(d(20), measurements=alone, config=config).flags
    assert run(d(20), measurements=alone, config=config).phq9 is None


def test_safety_risk_shown_whatever_the_status() -> None:
    risky = [m(d(1), 15, item9=3)]
    not_enrolled = run(d(5), episodes=(), measurements=risky)
    assert (not_enrolled.status, not_enrolled.flags) == ("not_enrolled", ("safety_risk",))
    discharged = run(d(50), episodes=[Episode(START, d(30), "discharged")], measurements=risky)
    assert (discharged.status, discharged.flags) == ("discharged", ("safety_risk",))


# --- flags: not_improving --------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "flagged"), [(69, False), (70, True)])
def test_not_improving_from_week_10(offset: int, flagged: bool) -> None:
    measurements = [m(d(0), 18), m(d(60), 16)]
    assert ("not_improving" in run(d(offset), measurements=measurements).flags) is flagged


@pytest.mark.parametrize(
    ("baseline", "latest", "flagged"),
    [
        (18, 10, True),  # >= 10 and > 50 %
        (18, 9, False),  # below 10: clinically significant improvement
        (20, 10, False),  # exactly 50 %: a response
        (20, 11, True),
        (10, 10, True),  # single-score-like: no change
        (9, 12, True),  # worse
    ],
)
def test_not_improving_score_rule(baseline: int, latest: int, flagged: bool) -> None:
    result = run(d(84), measurements=[m(d(0), baseline), m(d(80), latest)])
    assert ("not_improving" in result.flags) is flagged


def test_not_improving_single_measurement_is_no_improvement() -> None:
    assert "not_improving" in run(d(84), measurements=[m(d(0), 15)]).flags


def test_not_improving_uses_gad7_without_phq9() -> None:
    assert "not_improving" in run(d(84), measurements=[m(d(0), 16, "GAD-7"), m(d(80), 12, "GAD-7")]).flags
    # With a PHQ-9 the PHQ-9 decides.
    mixed = [m(d(0), 16, "GAD-7"), m(d(80), 12, "GAD-7"), m(d(0), 12), m(d(80), 4)]
    assert "not_improving" not in run(d(84), measurements=mixed).flags


def test_not_improving_needs_an_open_episode() -> None:
    episodes = [Episode(START, d(80), "inactive")]
    assert "not_improving" not in run(d(84), episodes=episodes, measurements=[m(d(0), 15)]).flags


def test_not_improving_thresholds_are_settings() -> None:
    config = dataclasses.replace(CONFIG, not_improving_weeks=12, not_improving_min_score=15)
    measurements = [m(d(0), 18), m(d(80), 16)]
    assert "not_improving" not in run(d(83), measurements=measurements, config=config).flags
    assert "not_improving" in run(d(84), measurements=measurements, config=config).flags
    low = [m(d(0), 18), m(d(80), 14)]
    assert "not_improving" not in run(d(84), measurements=low, config=config).flags


# --- flags: measurement_overdue ---------------------------------------------------------------------


@pytest.mark.parametrize(("last", "overdue"), [(30, False), (31, True), (0, False)])
def test_measurement_overdue_30_days(last: int, overdue: bool) -> None:
    as_of = d(100)
    result = run(as_of, measurements=[m(d(0), 15), m(d(-last, as_of), 12)])
    assert ("measurement_overdue" in result.flags) is overdue


def test_measurement_overdue_counts_any_instrument() -> None:
    as_of = d(100)
    assert "measurement_overdue" not in run(as_of, measurements=[m(d(95), 3, "PHQ-2")]).flags
    assert "measurement_overdue" not in run(as_of, measurements=[m(d(95), 8, "GAD-7")]).flags
    assert "measurement_overdue" in run(as_of).flags


def test_measurement_overdue_in_relapse_prevention_too() -> None:
    result = run(d(100), measurements=[m(d(0), 15), m(d(60), 3)])
    assert result.status == "relapse_prevention"
    assert "measurement_overdue" in result.flags


@pytest.mark.parametrize(
    "episodes",
    [(), (Episode(START, d(50), "discharged"),), (Episode(START, d(50), "inactive"),)],
)
def test_workflow_flags_only_in_an_open_episode(episodes: Sequence[Episode]) -> None:
    result = run(d(100), episodes=episodes, measurements=[m(d(0), 20)])
    assert result.flags == ()


def test_measurement_overdue_days_is_a_setting() -> None:
    config = dataclasses.replace(CONFIG, measurement_overdue_days=7)
    assert "measurement_overdue" not in run(d(17), measurements=[m(d(10), 9)], config=config).flags
    assert "measurement_overdue" in run(d(18), measurements=[m(d(10), 9)], config=config).flags


# --- flags: no_recent_contact ----------------------------------------------------------------------


@pytest.mark.parametrize(("last", "flagged"), [(30, False), (31, True), (0, False)])
def test_no_recent_contact_30_days(last: int, flagged: bool) -> None:
    as_of = d(100)
    result = run(as_of, entries=[e(d(0)), e(d(-last, as_of))])
    assert ("no_recent_contact" in result.flags) is flagged


def test_no_recent_contact_only_counted_entries() -> None:
    as_of = d(100)
    entries = [e(d(95), excluded="not_finished"), e(d(96), "psychiatric-consultation")]
    assert "no_recent_contact" in run(as_of, entries=entries).flags
    assert "no_recent_contact" not in run(as_of, entries=entries, count_consultant_time=True).flags


def test_no_recent_contact_only_when_active() -> None:
    result = run(d(100), measurements=[m(d(0), 15), m(d(90), 3)])
    assert result.status == "relapse_prevention"
    assert "no_recent_contact" not in result.flags
    assert "no_recent_contact" in run(d(100), measurements=[m(d(90), 12)]).flags


def test_no_recent_contact_days_is_a_setting() -> None:
    config = dataclasses.replace(CONFIG, no_recent_contact_days=14)
    assert "no_recent_contact" not in run(d(24), entries=[e(d(10))], config=config).flags
    assert "no_recent_contact" in run(d(25), entries=[e(d(10))], config=config).flags


# --- flags: case_review_due ------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "due"), [(55, True), (56, False)])
def test_case_review_due_for_new_patients_before_week_8(offset: int, due: bool) -> None:
    result = run(d(offset), measurements=[m(d(50), 4)], entries=[e(d(50))])
    assert ("case_review_due" in result.flags) is due


@pytest.mark.parametrize(("review", "due"), [(28, False), (29, True), (0, False)])
def test_case_review_within_28_days(review: int, due: bool) -> None:
    as_of = d(40)  # a new patient (week 5)
    result = run(as_of, entries=[e(d(-review, as_of), "case-review")])
    assert ("case_review_due" in result.flags) is due


def test_case_review_due_for_not_improving_and_safety_risk() -> None:
    as_of = d(84)  # week 12: no longer new
    entries = [e(d(80))]
    plain = run(as_of, measurements=[m(d(0), 18), m(d(80), 8)], entries=entries)
    assert "case_review_due" not in plain.flags
    stuck = run(as_of, measurements=[m(d(0), 18), m(d(80), 16)], entries=entries)
    assert stuck.flags == ("not_improving", "case_review_due")
    risky = run(as_of, measurements=[m(d(0), 18), m(d(80), 8, item9=1)], entries=entries)
    assert risky.flags == ("safety_risk", "case_review_due")
    reviewed = run(as_of, measurements=[m(d(80), 16)], entries=[*entries, e(d(60), "case-review")])
    assert "case_review_due" not in reviewed.flags


def test_cancelled_case_review_does_not_count() -> None:
    result = run(d(20), entries=[e(d(10), "case-review", excluded="not_finished")])
    assert "case_review_due" in result.flags


def test_case_review_days_and_new_patient_weeks_are_settings() -> None:
    config = dataclasses.replace(CONFIG, case_review_due_days=7, new_patient_weeks=4)
    entries = [e(d(10), "case-review")]
    assert "case_review_due" not in run(d(17), entries=entries, config=config).flags
    assert "case_review_due" in run(d(18), entries=entries, config=config).flags
    assert "case_review_due" not in run(d(28), config=config, entries=[e(d(27))]).flags


def test_flags_keep_the_measures_md_order() -> None:
    result = run(d(84), measurements=[m(d(0), 20), m(d(40), 18, item9=2)])
    assert result.flags == (
        "safety_risk",
        "not_improving",
        "measurement_overdue",
        "no_recent_contact",
        "case_review_due",
    )


# --- properties ------------------------------------------------------------------------------------

ZONES = st.sampled_from(["UTC", "America/Chicago", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
DAYS = st.integers(min_value=-60, max_value=400)


END_REASONS: list[Literal["inactive", "discharged"] | None] = [None, "inactive", "discharged"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[date, list[Episode], list[Measurement], list[TimeEntry]]:
    as_of = d(draw(st.integers(min_value=-30, max_value=400)))
    episodes: list[Episode] = []
    cursor = draw(st.integers(min_value=-40, max_value=100))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        length = draw(st.integers(min_value=0, max_value=200))
        reason = draw(st.sampled_from(END_REASONS))
        end = None if reason is None else d(cursor + length)
        episodes.append(Episode(d(cursor), end, reason))
        if end is None:
            break
        cursor += length + draw(st.integers(min_value=1, max_value=200))
    instant = st.builds(
        lambda day, minute: at(d(day), 0) + timedelta(minutes=minute),
        DAYS,
        st.integers(min_value=0, max_value=24 * 60 - 1),
    )
    measurements = draw(
        st.lists(
            st.builds(
                Measurement,
                patient_id=st.just("p1"),
                instrument=st.sampled_from(["PHQ-9", "GAD-7", "PHQ-2"]),
                score=st.integers(min_value=0, max_value=21),
                effective=instant,
                source=st.text("abc", min_size=1, max_size=3).map(lambda s: f"Observation/{s}"),
                item9=st.none() | st.integers(min_value=0, max_value=3),
            ),
            max_size=12,
        )
    )
    entries = draw(
        st.lists(
            st.builds(
                TimeEntry,
                patient_id=st.just("p1"),
                start=instant,
                seconds=st.integers(min_value=0, max_value=3600),
                activity=st.sampled_from(
                    ["follow-up", "case-review", "psychiatric-consultation", "outreach"]
                ),
                source=st.just("Encounter/e"),
                excluded=st.sampled_from([None, None, "not_finished"]),
            ),
            max_size=8,
        )
    )
    return as_of, episodes, measurements, entries


def _local(instant: datetime, zone: str) -> date:
    return instant.astimezone(ZoneInfo(zone)).date()


@settings(max_examples=300, deadline=None)
@given(histories(), histories(), ZONES, st.booleans())
def test_data_after_as_of_never_changes_the_result(
    history: tuple[date, list[Episode], list[Measurement], list[TimeEntry]],
    extra: tuple[date, list[Episode], list[Measurement], list[TimeEntry]],
    zone: str,
    consultant: bool,
) -> None:
    as_of, episodes, measurements, entries = history
    _, more_episodes, more_measurements, more_entries = extra
    # The episodes as known on as_of stay as they are; later ones are added.
    later_episodes = [ep for ep in more_episodes if ep.start > as_of]
    later_measurements = [x for x in more_measurements if _local(x.effective, zone) > as_of]
    later_entries = [x for x in more_entries if _local(x.start, zone) > as_of]
    before = care_status("p1", as_of, episodes, measurements, entries, CONFIG, zone, consultant)
    after = care_status(
        "p1",
        as_of,
        [*later_episodes, *episodes],
        [*later_measurements, *measurements],
        [*later_entries, *entries],
        CONFIG,
        zone,
        consultant,
    )
    assert after == before


@settings(max_examples=200, deadline=None)
@given(histories(), ZONES, st.randoms(use_true_random=False))
def test_input_order_does_not_matter_and_invariants_hold(
    history: tuple[date, list[Episode], list[Measurement], list[TimeEntry]],
    zone: str,
    rnd: random.Random,
) -> None:
    as_of, episodes, measurements, entries = history
    result = care_status("p1", as_of, episodes, measurements, entries, CONFIG, zone)
    episodes, measurements, entries = list(episodes), list(measurements), list(entries)
    rnd.shuffle(episodes)
    rnd.shuffle(measurements)
    rnd.shuffle(entries)
    again = care_status("p1", as_of, episodes, measurements, entries, CONFIG, zone)
    assert again == result

    # Flags are known names in the measures.md order; workflow flags need an open episode.
    assert list(result.flags) == [f for f in FLAGS if f in result.flags]
    if result.status not in OPEN_STATUSES:
        assert set(result.flags) <= {"safety_risk"}
    assert (result.episode_start is None) == (result.status == "not_enrolled")
    if result.last_contact is not None:
        assert result.last_contact <= as_of
    for summary in (result.phq9, result.gad7):
        if summary is not None:
            assert summary.baseline.date <= summary.latest.date <= as_of
            assert summary.count >= 1
    result.to_json()  # always serialisable
