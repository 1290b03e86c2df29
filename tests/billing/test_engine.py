"""bill_month: minutes, codes, blockers and notes for one patient-month."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.billing.codes import ACTIVITY_SYSTEM, CPT, HCPCS, INITIATING_VISIT_CODES
from app.billing.engine import bill_month
from app.billing.facts import time_entry_from_encounter
from app.billing.rules import (
    RULE_SETS,
    STANDARD,
    AddOnCode,
    EpisodeRules,
    Exclusions,
    KindRule,
    Prerequisites,
    RuleSet,
    TimedCode,
)
from app.domain import (
    BillingConfig,
    BillingMonth,
    ConsentFact,
    EpisodeOfCareFact,
    Month,
    Program,
    Threshold,
    TimeEntry,
    VisitFact,
)

CONSENT = ConsentFact("p1", True, date(2025, 1, 2), "Consent/c1")
VISIT = VisitFact("p1", date(2025, 12, 1), CPT, "99214", "Encounter/v1")
LATER = date(2030, 1, 1)


def entry(
    when: datetime | date,
    minutes: float = 40,
    activity: str = "follow-up",
    excluded: str | None = None,
    source: str | None = None,
) -> TimeEntry:
    start = when if isinstance(when, datetime) else datetime(when.year, when.month, when.day, 15, tzinfo=UTC)
    return TimeEntry(
        "p1",
        start,
        round(minutes * 60),
        activity,
        source or f"Encounter/{start.isoformat()}-{minutes}-{activity}-{excluded}",
        excluded,
    )


def bill(
    entries: Sequence[TimeEntry],
    month: str = "2026-01",
    *,
    config: BillingConfig | None = None,
    episodes_of_care: Sequence[EpisodeOfCareFact] = (),
    consents: Sequence[ConsentFact] = (CONSENT,),
    visits: Sequence[VisitFact] = (VISIT,),
    today: date = LATER,
) -> BillingMonth:
    return bill_month(
        "p1",
        Month.parse(month),
        entries,
        episodes_of_care,
        consents,
        visits,
        config or BillingConfig(),
        today,
    )


def codes(result: BillingMonth) -> dict[str, int]:
    return {item.code: item.units for item in result.codes}


def test_billing_month_shape_for_the_api_example() -> None:
    result = bill([entry(date(2026, 1, 5), 50), entry(date(2026, 1, 20), 45)])
    assert result.patient_id == "p1"
    assert result.month == Month(2026, 1)
    assert result.setting == "physician"
    assert result.month_kind == "initial"
    assert result.episode_start == date(2026, 1, 5)
    assert result.minutes == 95
    assert result.codes[0].code == "99492"
    assert codes(result) == {"99492": 1, "99494": 1}
    assert result.billable is True
    assert result.blockers == ()
    assert result.notes == ("95 counted minutes; 21 more for a second 99494",)
    assert len(result.counted_sources) == 2


def test_seconds_are_summed_before_flooring() -> None:
    # three entries of 10.5 minutes: 31.5 -> 31 counted minutes (99493), not 3 x 10 = 30 (G2214)
    history = [entry(date(2025, 12, 10))]
    parts = [entry(date(2026, 1, day), 10.5) for day in (5, 12, 19)]
    result = bill([*history, *parts])
    assert result.month_kind == "subsequent"
    assert result.minutes == 31
    assert codes(result) == {"99493": 1}
    assert "counted entries sum to 31 min 30 s; minutes are whole, floored once" in result.notes


@pytest.mark.parametrize(
    ("minutes", "kind", "expected", "note"),
    [
        (33, "initial", {"G2214": 1}, "33 counted minutes: 3 more needed for 99492"),
        (10, "initial", {}, "10 counted minutes: 6 more needed for G2214, 26 more needed for 99492"),
        (36, "initial", {"99492": 1}, "36 counted minutes; 50 more for 99494"),
        (30, "subsequent", {"G2214": 1}, "30 counted minutes: 1 more needed for 99493"),
        (105, "subsequent", {"99493": 1, "99494": 1}, "105 counted minutes; 1 more for a second 99494"),
    ],
)
def test_progress_notes(minutes: int, kind: str, expected: dict[str, int], note: str) -> None:
    history = [entry(date(2025, 12, 10))] if kind == "subsequent" else []
    result = bill([*history, entry(date(2026, 1, 5), minutes)])
    assert result.month_kind == kind
    assert codes(result) == expected
    assert result.notes[0] == note


def test_uncounted_entries_are_listed_with_their_minutes() -> None:
    result = bill(
        [
            entry(date(2026, 1, 5), 40),
            entry(date(2026, 1, 6), 25, activity="psychiatric-consultation"),
            entry(date(2026, 1, 7), 20, activity="psychiatric-consultation"),
            entry(date(2026, 1, 8), 20, excluded="not_finished"),
            entry(date(2026, 1, 9), 30, excluded="inpatient"),
            entry(date(2026, 1, 10), 10.5, excluded="separately_billed"),
        ]
    )
    assert result.minutes == 40
    assert result.notes[1:] == (
        "2 entries by the psychiatric consultant not counted (45 min)",
        "1 entry not finished not counted (20 min)",
        "1 inpatient or observation entry not counted (30 min)",
        "1 entry billed separately (E/M or psychotherapy) not counted (10.5 min)",
    )
    assert len(result.counted_sources) == 1


def test_consultant_time_counts_with_setting() -> None:
    entries = [entry(date(2026, 1, 5), 20), entry(date(2026, 1, 6), 20, activity="psychiatric-consultation")]
    assert codes(bill(entries)) == {"G2214": 1}
    result = bill(entries, config=BillingConfig(count_consultant_time=True))
    assert result.minutes == 40
    assert codes(result) == {"99492": 1}
    assert "1 entry by the psychiatric consultant counted by setting (20 min)" in result.notes


def test_g2214_setting_off() -> None:
    result = bill([entry(date(2026, 1, 5), 20)], config=BillingConfig(fallback_covered=False))
    assert result.codes == ()
    assert result.billable is False
    assert "G2214 not reported: not covered by setting" in result.notes


def test_99494_cap_is_noted() -> None:
    result = bill([entry(date(2026, 1, 5), 150)], config=BillingConfig(add_on_cap=2))
    assert codes(result) == {"99492": 1, "99494": 2}
    assert "99494 capped at 2 by setting (the minutes support 3)" in result.notes


@pytest.mark.parametrize(
    ("month", "expected"),
    [
        ("2020-12", {}),  # physician before 2021: no G2214
        ("2021-01", {"G2214": 1}),
    ],
)
def test_g2214_cut_over_is_by_month(month: str, expected: dict[str, int]) -> None:
    day = Month.parse(month).first_day + timedelta(days=4)
    assert codes(bill([entry(day, 20)], month)) == expected


@pytest.mark.parametrize(
    ("month", "minutes", "program", "transition", "expected"),
    [
        ("2024-12", 70, "cocm", False, {"G0512": 1}),
        ("2024-12", 69, "cocm", False, {}),
        ("2025-01", 70, "cocm", False, {"G0512": 1}),
        ("2025-09", 69, "cocm", False, {}),
        ("2025-10", 70, "cocm", False, {"G0512": 1}),
        ("2025-12", 36, "cocm", False, {}),
        ("2026-01", 36, "cocm", False, {"99492": 1}),
        ("2026-01", 16, "cocm", False, {"G2214": 1}),
        ("2024-12", 20, "general-bhi", False, {"G0511": 1}),
        ("2024-12", 19, "general-bhi", False, {}),
        ("2025-01", 20, "general-bhi", False, {"99484": 1}),
        ("2025-01", 20, "general-bhi", True, {"G0511": 1}),
        ("2025-09", 20, "general-bhi", True, {"G0511": 1}),
        ("2025-10", 20, "general-bhi", True, {"99484": 1}),
        ("2026-01", 20, "general-bhi", True, {"99484": 1}),
    ],
)
def test_fqhc_rhc_months(
    month: str, minutes: int, program: Program, transition: bool, expected: dict[str, int]
) -> None:
    start = Month.parse(month).first_day
    config = BillingConfig(setting="fqhc_rhc", fqhc_g0511_transition=transition)
    episode = EpisodeOfCareFact("p1", start, None, False, program, "EpisodeOfCare/e")
    result = bill(
        [entry(start + timedelta(days=4), minutes)], month, config=config, episodes_of_care=[episode]
    )
    assert result.setting == "fqhc_rhc"
    assert result.month_kind == "initial"
    assert codes(result) == expected


def test_general_bhi_bills_99484_instead_of_cocm() -> None:
    episode = EpisodeOfCareFact("p1", date(2026, 1, 2), None, False, "general-bhi", "EpisodeOfCare/e")
    for minutes, expected in [(19, {}), (20, {"99484": 1}), (120, {"99484": 1})]:
        result = bill([entry(date(2026, 1, 5), minutes)], episodes_of_care=[episode])
        assert codes(result) == expected
        assert result.episode_start == date(2026, 1, 2)
    assert result.notes[0] == "120 counted minutes"
    assert "general behavioral health integration episode: general BHI code, not CoCM codes" in result.notes


def test_apcm_add_on_needs_setting_and_base_code_in_month() -> None:
    apcm = VisitFact("p1", date(2026, 1, 3), HCPCS, "G0556", "Encounter/a1")
    entries = [entry(date(2026, 1, 5), 40)]
    assert codes(bill(entries, visits=[VISIT, apcm])) == {"99492": 1}
    on = BillingConfig(apcm_addons=True)
    result = bill(entries, config=on, visits=[VISIT, apcm])
    assert codes(result) == {"G0568": 1}
    assert (
        "APCM G0556 on 2026-01-03 (Encounter/a1): behavioral health reported as APCM add-on" in result.notes
    )
    february = VisitFact("p1", date(2026, 2, 3), HCPCS, "G0557", "Encounter/a2")
    assert codes(bill(entries, config=on, visits=[VISIT, february])) == {"99492": 1}
    assert codes(
        bill([*entries, entry(date(2026, 2, 5), 5)], "2026-02", config=on, visits=[VISIT, february])
    ) == {"G0569": 1}


def test_apcm_is_not_an_initiating_visit() -> None:
    apcm = VisitFact("p1", date(2026, 1, 3), HCPCS, "G0556", "Encounter/a1")
    result = bill([entry(date(2026, 1, 5), 40)], visits=[apcm])
    assert "initiating_visit_missing" in result.blockers


@pytest.mark.parametrize(
    ("consent", "blocked"),
    [
        (ConsentFact("p1", True, date(2026, 1, 31), "Consent/c"), False),
        (ConsentFact("p1", True, date(2026, 2, 1), "Consent/c"), True),
        (ConsentFact("p1", False, date(2026, 1, 2), "Consent/c"), True),
        (ConsentFact("p1", True, None, "Consent/c"), True),
        (None, True),
    ],
)
def test_consent_blocker(consent: ConsentFact | None, blocked: bool) -> None:
    result = bill([entry(date(2026, 1, 5), 40)], consents=[] if consent is None else [consent])
    assert ("consent_missing" in result.blockers) is blocked
    assert result.billable is not blocked
    assert codes(result) == {"99492": 1}  # codes are reported either way
    assert ("no CoCM consent on file by 2026-01-31" in result.notes) is blocked


@pytest.mark.parametrize(
    ("visit_day", "blocked"),
    [
        (date(2025, 1, 10), False),  # 365 days before the first minute (2026-01-10)
        (date(2025, 1, 9), True),  # 366 days before
        (date(2026, 1, 10), False),  # on the day
        (date(2026, 1, 11), True),  # after the first minute
    ],
)
def test_initiating_visit_window(visit_day: date, blocked: bool) -> None:
    visit = VisitFact("p1", visit_day, HCPCS, "G0438", "Encounter/v")
    result = bill([entry(date(2026, 1, 20), 20), entry(date(2026, 1, 10), 20)], visits=[visit])
    assert ("initiating_visit_missing" in result.blockers) is blocked
    if blocked:
        assert "no initiating visit (E/M, AWV, IPPE or TCM) from 2025-01-10 to 2026-01-10" in result.notes


def test_initiating_visit_only_checked_in_initial_month() -> None:
    entries = [entry(date(2025, 12, 10)), entry(date(2026, 1, 10))]
    assert "initiating_visit_missing" in bill(entries, "2025-12", visits=[]).blockers
    result = bill(entries, "2026-01", visits=[])
    assert result.month_kind == "subsequent"
    assert result.blockers == ()


@pytest.mark.parametrize(
    ("today", "open_"),
    [(date(2026, 1, 15), True), (date(2026, 1, 31), True), (date(2026, 2, 1), False)],
)
def test_month_open_blocker(today: date, open_: bool) -> None:
    result = bill([entry(date(2026, 1, 5), 40)], today=today)
    assert ("month_open" in result.blockers) is open_
    assert codes(result) == {"99492": 1}
    assert result.billable is not open_


def test_blockers_in_documented_order() -> None:
    result = bill([entry(date(2026, 1, 5), 40)], consents=[], visits=[], today=date(2026, 1, 20))
    assert result.blockers == ("consent_missing", "initiating_visit_missing", "month_open")
    assert result.billable is False


def test_month_without_minutes() -> None:
    result = bill([])
    assert result.month_kind is None
    assert result.minutes == 0
    assert result.codes == ()
    assert result.billable is False
    assert result.notes == ("no counted minutes in 2026-01",)


def test_month_with_only_uncounted_time() -> None:
    result = bill([entry(date(2026, 1, 5), 60, excluded="not_finished")])
    assert result.month_kind is None
    assert result.codes == ()
    assert result.counted_sources == ()
    assert "1 entry not finished not counted (60 min)" in result.notes


def test_empty_month_inside_an_episode_is_subsequent_until_the_episode_lapses() -> None:
    entries = [entry(date(2025, 12, 10))]
    result = bill(entries, "2026-03", today=date(2026, 4, 1))
    assert result.month_kind == "subsequent"
    assert result.episode_start == date(2025, 12, 10)
    assert result.codes == ()
    # Jan..Jun 2026 empty: by July the episode has ended on 2025-12-31, so March had no episode
    assert bill(entries, "2026-03", today=date(2026, 6, 30)).month_kind == "subsequent"
    assert bill(entries, "2026-03", today=date(2026, 7, 1)).month_kind is None


def test_later_episode_of_care_start_is_seen_when_billing_an_earlier_month() -> None:
    episode = EpisodeOfCareFact("p1", date(2026, 2, 3), None, False, "cocm", "EpisodeOfCare/e")
    entries = [entry(date(2026, 1, 20), 50), entry(date(2026, 2, 10), 50)]
    before = bill(entries, "2026-01", episodes_of_care=[episode], today=date(2026, 2, 1))
    assert before.month_kind == "initial"  # the EpisodeOfCare does not start yet
    after = bill(entries, "2026-01", episodes_of_care=[episode], today=date(2026, 2, 3))
    assert after.month_kind is None
    assert (
        bill(entries, "2026-02", episodes_of_care=[episode], today=date(2026, 3, 1)).month_kind == "initial"
    )


@pytest.mark.parametrize(
    ("month", "kind"), [("2026-06", "subsequent"), ("2026-07", "subsequent"), ("2026-08", "initial")]
)
def test_five_and_six_empty_months_at_engine_level(month: str, kind: str) -> None:
    # minutes in January, nothing until the billed month: Feb..Jun (5) or Feb..Jul (6) empty
    day = Month.parse(month).first_day + timedelta(days=9)
    result = bill([entry(date(2026, 1, 10)), entry(day, 40)], month)
    assert result.month_kind == kind


def test_minutes_before_episode_of_care_start_bill_nothing() -> None:
    episode = EpisodeOfCareFact("p1", date(2026, 2, 3), None, False, "cocm", "EpisodeOfCare/e")
    result = bill([entry(date(2026, 1, 20), 50)], episodes_of_care=[episode])
    assert result.month_kind is None
    assert result.minutes == 50
    assert result.codes == ()
    assert (
        result.notes[0]
        == "50 counted minutes outside any episode (the EpisodeOfCare starts 2026-02-03): no codes"
    )


def test_discharged_episode_then_new_episode_is_initial() -> None:
    episode = EpisodeOfCareFact("p1", date(2026, 1, 2), date(2026, 2, 28), True, "cocm", "EpisodeOfCare/e")
    entries = [entry(date(2026, 1, 5), 40), entry(date(2026, 2, 5), 40), entry(date(2026, 4, 5), 40)]
    assert bill(entries, "2026-02", episodes_of_care=[episode]).month_kind == "subsequent"
    assert bill(entries, "2026-03", episodes_of_care=[episode]).month_kind is None
    result = bill(entries, "2026-04", episodes_of_care=[episode])
    assert (result.month_kind, result.episode_start) == ("initial", date(2026, 4, 5))


def test_no_rule_set_before_2018() -> None:
    result = bill([entry(date(2017, 6, 5), 40)], "2017-06")
    assert result.codes == ()
    assert result.notes[0] == "40 counted minutes; no physician billing rules cover 2017-06: no codes"


def test_facts_of_another_patient_are_refused() -> None:
    other = TimeEntry("p2", datetime(2026, 1, 5, tzinfo=UTC), 60, "follow-up", "Encounter/x")
    with pytest.raises(ValueError, match="another patient"):
        bill([other])


def test_duplicate_sources_count_once() -> None:
    one = entry(date(2026, 1, 5), 20, source="Encounter/same")
    assert bill([one, one]).minutes == 20


# --- time zone: the month of an entry is that of its start in the clinic's time zone ---------------


def _local(zone: str, wall: tuple[int, int, int, int, int], fold: int = 0) -> datetime:
    year, month, day, hour, minute = wall
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


@pytest.mark.parametrize("zone", ["America/Chicago", "America/New_York"])
@pytest.mark.parametrize(
    ("local", "month"),
    [
        ((2026, 1, 31, 23, 0), "2026-01"),  # an hour before midnight on the month's last day
        ((2026, 2, 1, 0, 59), "2026-02"),  # an hour after
        ((2026, 10, 31, 23, 0), "2026-10"),  # DST ends 2026-11-01 02:00 local
        ((2026, 11, 1, 0, 30), "2026-11"),
        ((2026, 3, 8, 3, 30), "2026-03"),  # DST started 2026-03-08 02:00 local
    ],
)
def test_entry_month_in_clinic_time_zone(
    zone: str, local: tuple[int, int, int, int, int], month: str
) -> None:
    config = BillingConfig(timezone=zone)
    start = _local(zone, local).astimezone(UTC)
    result = bill([entry(start, 40)], month, config=config)
    assert result.minutes == 40
    other = Month.parse(month).previous() if local[2] == 1 else Month.parse(month).next()
    assert bill([entry(start, 40)], str(other), config=config).minutes == 0


def test_utc_month_differs_from_chicago_month() -> None:
    start = datetime(2026, 2, 1, 3, tzinfo=UTC)  # billing.md: January in America/Chicago
    assert bill([entry(start, 40)], "2026-01", config=BillingConfig(timezone="America/Chicago")).minutes == 40
    assert bill([entry(start, 40)], "2026-01").minutes == 0


def _encounter(start: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": ACTIVITY_SYSTEM, "code": "follow-up"}]}],
        "period": {"start": start, "end": end},
    }


@pytest.mark.parametrize("zone", ["America/Chicago", "America/New_York"])
def test_dst_days_end_to_end(zone: str) -> None:
    config = BillingConfig(timezone=zone)
    # 2026-03-08: 01:30 -> 03:30 local is one hour (the clock skips 02:00-03:00)
    spring = time_entry_from_encounter(
        _encounter("2026-03-08T01:30:00", "2026-03-08T03:30:00"), "a", "p1", zone
    )
    # 2026-11-01: 00:30 -> 01:30 (second, standard time) local is two hours
    fall = time_entry_from_encounter(
        _encounter(
            _local(zone, (2026, 11, 1, 0, 30)).isoformat(),
            _local(zone, (2026, 11, 1, 1, 30), fold=1).isoformat(),
        ),
        "b",
        "p1",
        zone,
    )
    assert spring is not None
    assert fall is not None
    assert spring.seconds == 3600
    assert fall.seconds == 7200
    assert bill([spring], "2026-03", config=config).minutes == 60
    assert bill([fall], "2026-11", config=config).minutes == 120
    assert bill([fall], "2026-10", config=config).minutes == 0


# --- properties ------------------------------------------------------------------------------------

_MONTH = Month(2026, 3)
_CONFIGS = st.sampled_from(
    [
        BillingConfig(),
        BillingConfig(timezone="America/Chicago", add_on_cap=2),
        BillingConfig(fallback_covered=False, count_consultant_time=True),
        BillingConfig(setting="fqhc_rhc"),
    ]
)
_in_march = st.builds(
    lambda day, second, seconds, activity, excluded: TimeEntry(
        "p1",
        datetime(2026, 3, day, 12, tzinfo=UTC) + timedelta(seconds=second),
        seconds,
        activity,
        f"Encounter/{day}-{second}-{seconds}-{activity}-{excluded}",
        excluded,
    ),
    st.integers(2, 30),
    st.integers(0, 3600),
    st.integers(0, 5400),
    st.sampled_from(["follow-up", "outreach", "psychiatric-consultation"]),
    st.sampled_from([None, None, None, "not_finished"]),
)
_history = st.lists(
    st.builds(
        lambda months_back, seconds: entry(date(2026, 3, 1) - timedelta(days=30 * months_back), seconds / 60),
        st.integers(1, 9),
        st.integers(0, 5400),
    ),
    max_size=3,
)


def _bill(entries: Sequence[TimeEntry], config: BillingConfig) -> BillingMonth:
    return bill_month("p1", _MONTH, entries, [], [CONSENT], [VISIT], config, LATER)


def _units(result: BillingMonth) -> int:
    return sum(item.units for item in result.codes)


@settings(max_examples=150, deadline=None)
@given(
    history=_history,
    month=st.lists(_in_march, max_size=6, unique_by=lambda item: item.source),
    config=_CONFIGS,
    data=st.data(),
)
def test_entry_order_never_matters(
    history: list[TimeEntry], month: list[TimeEntry], config: BillingConfig, data: st.DataObject
) -> None:
    entries = [*history, *month]
    shuffled = data.draw(st.permutations(entries))
    assert _bill(shuffled, config) == _bill(entries, config)


@settings(max_examples=150, deadline=None)
@given(
    history=_history,
    month=st.lists(_in_march, min_size=1, max_size=5, unique_by=lambda item: item.source),
    config=_CONFIGS,
    cut=st.floats(0, 1),
    later=st.integers(0, 3600),
)
def test_splitting_an_entry_never_changes_the_codes(
    history: list[TimeEntry], month: list[TimeEntry], config: BillingConfig, cut: float, later: int
) -> None:
    whole = month[0]
    first_part = int(whole.seconds * cut)
    parts = [
        TimeEntry("p1", whole.start, first_part, whole.activity, whole.source + "-a", whole.excluded),
        TimeEntry(
            "p1",
            min(whole.start + timedelta(seconds=later), datetime(2026, 3, 31, 12, tzinfo=UTC)),
            whole.seconds - first_part,
            whole.activity,
            whole.source + "-b",
            whole.excluded,
        ),
    ]
    before = _bill([*history, *month], config)
    after = _bill([*history, *parts, *month[1:]], config)
    assert (after.codes, after.minutes, after.month_kind) == (before.codes, before.minutes, before.month_kind)


@settings(max_examples=150, deadline=None)
@given(
    history=_history,
    month=st.lists(_in_march, max_size=5, unique_by=lambda item: item.source),
    extra=_in_march,
    config=_CONFIGS,
)
def test_more_minutes_never_fewer_units(
    history: list[TimeEntry], month: list[TimeEntry], extra: TimeEntry, config: BillingConfig
) -> None:
    if any(item.source == extra.source for item in month):
        return
    before = _bill([*history, *month], config)
    after = _bill([*history, *month, extra], config)
    assert after.minutes >= before.minutes
    assert _units(after) >= _units(before)


# --- the next threshold: one decision for the notes, the JSON and the registry page ---------------


@pytest.mark.parametrize(
    ("minutes", "config", "pending"),
    [
        # initial month (billing.md: G2214 from 16 min, 99492 from 36, 99494 for each further 30
        # beyond 70 from its midpoint: 86, 116, ...)
        (15, BillingConfig(), [(16, "G2214", 1, False), (36, "99492", 1, False)]),
        (16, BillingConfig(), [(36, "99492", 1, False)]),
        (35, BillingConfig(), [(36, "99492", 1, False)]),
        (36, BillingConfig(), [(86, "99494", 1, True)]),
        (85, BillingConfig(), [(86, "99494", 1, True)]),
        (86, BillingConfig(), [(116, "99494", 2, True)]),
        (116, BillingConfig(), [(146, "99494", 3, True)]),
        (15, BillingConfig(fallback_covered=False), [(36, "99492", 1, False)]),
        (86, BillingConfig(add_on_cap=1), []),  # at the cap more minutes add nothing
        (85, BillingConfig(add_on_cap=1), [(86, "99494", 1, True)]),
    ],
)
def test_pending_thresholds_of_an_initial_month(
    minutes: int, config: BillingConfig, pending: list[tuple[int, str, int, bool]]
) -> None:
    result = bill([entry(date(2026, 1, 5), minutes)], config=config)
    assert [(t.minutes, t.code, t.unit, t.add_on) for t in result.pending] == pending
    assert result.next_threshold == (result.pending[0] if result.pending else None)
    assert result.rule_set is not None
    # the biller's note says the same thing
    assert (
        result.notes[0].endswith(result.progress)
        if result.progress
        else result.notes[0] == f"{minutes} counted minutes"
    )


def test_threshold_labels_and_clauses() -> None:
    result = bill([entry(date(2026, 1, 5), 90)])
    threshold = result.next_threshold
    assert threshold is not None
    assert (threshold.label, threshold.clause(90)) == ("a second 99494", "26 more for a second 99494")
    first = bill([entry(date(2026, 1, 5), 20)]).next_threshold
    assert first is not None and first.clause(20) == "16 more needed for 99492"


def test_no_episode_no_threshold() -> None:
    result = bill([], month="2026-01")
    assert (result.month_kind, result.rule_set, result.pending, result.progress) == (None, None, (), "")


# --- rules as data: a rule set added without touching the engine --------------------------------


def test_a_new_rule_set_in_data_alone_bills_its_codes() -> None:
    """billing.md: "a payer-specific rule set can be added without touching the engine". A made-up
    CY2027 physician rule set (not a published rule): a new initial code X9001 from 30 minutes with
    an add-on X9002 every 30 beyond 60 (from 76), its own exclusions, and a shorter initiating-visit
    window, handed to ``bill_month`` as data."""
    cy2027 = RuleSet(
        "physician-2027-made-up",
        "physician",
        STANDARD,
        date(2027, 1, 1),
        None,
        KindRule(TimedCode("X9001", HCPCS, 30), AddOnCode("X9002", HCPCS, base=60, first_unit=16, block=30)),
        KindRule(TimedCode("99493", CPT, 31)),
        TimedCode("99484", CPT, 20),
        source="made up for this test",
        exclusions=Exclusions(frozenset({frozenset({"X9001", "99493"})}), (("X9002", frozenset({"X9001"})),)),
        prerequisites=Prerequisites(INITIATING_VISIT_CODES, 30),
    )
    ends_2026 = tuple(
        replace(r, last_day=date(2026, 12, 31)) if r.name == "physician-2021" else r for r in RULE_SETS
    )
    rule_sets = (*ends_2026, cy2027)
    visit = VisitFact("p1", date(2026, 12, 20), CPT, "99214", "Encounter/v2027")

    def bill_with(when: date, minutes: int) -> BillingMonth:
        month = Month.of(when)
        return bill_month(
            "p1", month, [entry(when, minutes)], (), (CONSENT,), (visit,), BillingConfig(), LATER, rule_sets
        )

    january = bill_with(date(2027, 1, 5), 80)
    assert (january.rule_set, codes(january), january.billable) == (
        "physician-2027-made-up",
        {"X9001": 1, "X9002": 1},
        True,
    )
    assert january.next_threshold == Threshold(106, "X9002", 2, add_on=True)
    too_early = bill_with(date(2027, 1, 25), 80)  # the visit is 36 days before: outside the 30-day window
    assert too_early.blockers == ("initiating_visit_missing",)
    december = bill_with(date(2026, 12, 22), 80)  # the published rules still bill 2026
    assert (december.rule_set, codes(december)) == ("physician-2021", {"99492": 1})
    without_the_new_data = bill([entry(date(2027, 1, 5), 80)], month="2027-01")
    assert (without_the_new_data.rule_set, codes(without_the_new_data)) == ("physician-2021", {"99492": 1})


@pytest.mark.parametrize(
    ("second", "lapse", "kind"),
    [
        (date(2027, 3, 5), 1, "initial"),  # one empty month, lapse after one: a new episode
        (date(2027, 3, 5), 2, "subsequent"),
        (date(2027, 4, 5), 2, "initial"),  # two empty months, lapse after two
        (date(2027, 4, 5), 3, "subsequent"),
        (date(2027, 4, 5), 6, "subsequent"),  # billing.md's six
    ],
)
def test_the_episode_lapse_comes_from_the_rule_set_of_the_month(second: date, lapse: int, kind: str) -> None:
    """A rule set's own ``EpisodeRules`` decide when an episode lapses in the months it covers."""
    covering = tuple(
        replace(r, episodes=EpisodeRules(lapse)) if r.name == "physician-2021" else r for r in RULE_SETS
    )
    entries = [entry(date(2027, 1, 5), 40), entry(second, 40)]
    visit = VisitFact("p1", date(2026, 12, 20), CPT, "99214", "Encounter/v")
    result = bill_month(
        "p1", Month.of(second), entries, (), (CONSENT,), (visit,), BillingConfig(), LATER, covering
    )
    assert result.month_kind == kind
