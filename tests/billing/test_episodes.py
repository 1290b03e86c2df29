"""Episodes (billing.md, "Episodes")."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.billing.episodes import (
    distinct_entries,
    episode_for_month,
    find_episodes,
    is_counted,
    month_kind,
)
from app.billing.rules import EpisodeRules
from app.domain import BillingConfig, Episode, EpisodeOfCareFact, Month, Program, TimeEntry

CONFIG = BillingConfig()
FAR = date(2030, 1, 1)


def entry(
    day: date, minutes: float = 40, activity: str = "follow-up", excluded: str | None = None, source: str = ""
) -> TimeEntry:
    return TimeEntry(
        patient_id="p1",
        start=datetime(day.year, day.month, day.day, 15, tzinfo=UTC),
        seconds=round(minutes * 60),
        activity=activity,
        source=source or f"Encounter/{day.isoformat()}-{activity}-{minutes}",
        excluded=excluded,
    )


def eoc(
    start: date | None,
    end: date | None = None,
    finished: bool = False,
    program: Program = "cocm",
    source: str = "EpisodeOfCare/e1",
) -> EpisodeOfCareFact:
    return EpisodeOfCareFact("p1", start, end, finished, program, source)


def kinds(episodes: list[Episode], *months: str) -> list[str | None]:
    result: list[str | None] = []
    for text in months:
        month = Month.parse(text)
        episode = episode_for_month(episodes, month)
        result.append(None if episode is None else month_kind(episode, month))
    return result


def test_episode_starts_on_first_counted_entry() -> None:
    episodes = find_episodes(
        [entry(date(2026, 1, 20)), entry(date(2026, 1, 5))], [], CONFIG, date(2026, 2, 28)
    )
    assert episodes[0].start == date(2026, 1, 5)
    assert kinds(episodes, "2025-12", "2026-01", "2026-02") == [None, "initial", "subsequent"]


def test_five_empty_months_keep_the_episode() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 7, 10))]  # Feb..Jun empty: five months
    episodes = find_episodes(entries, [], CONFIG, FAR)
    assert len(episodes) == 1
    assert kinds(episodes, "2026-01", "2026-04", "2026-07") == ["initial", "subsequent", "subsequent"]


def test_six_empty_months_end_the_episode() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 8, 10))]  # Feb..Jul empty: six months
    episodes = find_episodes(entries, [], CONFIG, date(2026, 9, 30))
    assert episodes[0] == Episode(date(2026, 1, 10), date(2026, 1, 31), "inactive")
    assert episodes[1].start == date(2026, 8, 10)
    assert kinds(episodes, "2026-01", "2026-03", "2026-08", "2026-09") == [
        "initial",
        None,
        "initial",
        "subsequent",
    ]


@pytest.mark.parametrize(
    ("as_of", "end"),
    [
        (date(2026, 7, 30), None),  # July, the sixth empty month, has not ended
        (date(2026, 7, 31), None),
        (date(2026, 8, 1), date(2026, 1, 31)),
    ],
)
def test_inactive_only_once_six_months_have_elapsed(as_of: date, end: date | None) -> None:
    episodes = find_episodes([entry(date(2026, 1, 10))], [], CONFIG, as_of)
    assert episodes[0].end == end
    assert episodes[0].end_reason == (None if end is None else "inactive")


def test_as_of_ignores_later_entries() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 3, 10))]
    assert find_episodes(entries, [], CONFIG, date(2026, 2, 28)) == [Episode(date(2026, 1, 10))]


@pytest.mark.parametrize(("lapse", "episodes"), [(2, 2), (3, 2), (4, 1)])
def test_the_lapse_is_rule_data(lapse: int, episodes: int) -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 5, 10))]  # three empty months between
    assert len(find_episodes(entries, [], CONFIG, FAR, rules=EpisodeRules(lapse))) == episodes
    assert len(find_episodes(entries, [], CONFIG, FAR)) == 1  # billing.md: six


def test_month_with_only_uncounted_time_does_not_keep_episode_alive() -> None:
    entries = [
        entry(date(2026, 1, 10)),
        entry(date(2026, 4, 10), excluded="not_finished"),
        entry(date(2026, 5, 10), activity="psychiatric-consultation"),
        entry(date(2026, 6, 10), excluded="separately_billed"),
        entry(date(2026, 8, 10)),
    ]
    episodes = find_episodes(entries, [], CONFIG, FAR)
    assert [episode.start for episode in episodes] == [date(2026, 1, 10), date(2026, 8, 10)]


def test_uncounted_time_never_starts_an_episode() -> None:
    entries = [entry(date(2026, 1, 10), excluded="inpatient"), entry(date(2026, 1, 12), minutes=0.5)]
    assert find_episodes(entries, [], CONFIG, FAR) == []


def test_consultant_time_counts_with_setting() -> None:
    entries = [entry(date(2026, 1, 10), activity="psychiatric-consultation")]
    assert find_episodes(entries, [], CONFIG, FAR) == []
    config = BillingConfig(count_consultant_time=True)
    assert find_episodes(entries, [], config, FAR)[0].start == date(2026, 1, 10)
    assert entries[0].uncounted_reason(count_consultant_time=False) == "psychiatric_consultant"
    assert is_counted(entries[0], config)


def test_month_boundary_in_clinic_time_zone() -> None:
    late = TimeEntry("p1", datetime(2026, 2, 1, 3, tzinfo=UTC), 2400, "follow-up", "Encounter/a")
    assert find_episodes([late], [], BillingConfig(timezone="America/Chicago"), FAR)[0].start == date(
        2026, 1, 31
    )
    assert find_episodes([late], [], CONFIG, FAR)[0].start == date(2026, 2, 1)


def test_episode_of_care_start_wins() -> None:
    entries = [entry(date(2026, 2, 10))]
    episodes = find_episodes(entries, [eoc(date(2026, 1, 20))], CONFIG, date(2026, 2, 28))
    assert episodes == [Episode(date(2026, 1, 20))]
    assert kinds(episodes, "2026-01", "2026-02") == ["initial", "subsequent"]


def test_episode_of_care_without_minutes_is_an_episode_and_lapses() -> None:
    episodes = find_episodes([], [eoc(date(2026, 1, 20))], CONFIG, date(2026, 7, 31))
    assert episodes == [Episode(date(2026, 1, 20))]
    episodes = find_episodes([], [eoc(date(2026, 1, 20))], CONFIG, date(2026, 8, 1))
    assert episodes == [Episode(date(2026, 1, 20), date(2026, 1, 31), "inactive")]


def test_episode_of_care_in_the_future_is_ignored() -> None:
    assert find_episodes([], [eoc(date(2026, 3, 1))], CONFIG, date(2026, 2, 28)) == []


def test_discharge_ends_episode_and_later_minutes_start_a_new_one() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 2, 10)), entry(date(2026, 4, 10))]
    facts = [eoc(date(2026, 1, 5), date(2026, 2, 28), finished=True)]
    episodes = find_episodes(entries, facts, CONFIG, date(2026, 4, 30))
    assert episodes == [
        Episode(date(2026, 1, 5), date(2026, 2, 28), "discharged"),
        Episode(date(2026, 4, 10)),
    ]
    assert kinds(episodes, "2026-02", "2026-03", "2026-04") == ["subsequent", None, "initial"]


def test_discharge_without_end_uses_last_counted_day() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 2, 14))]
    episodes = find_episodes(entries, [eoc(date(2026, 1, 5), finished=True)], CONFIG, FAR)
    assert episodes == [Episode(date(2026, 1, 5), date(2026, 2, 14), "discharged")]


def test_discharge_after_as_of_has_not_happened_yet() -> None:
    facts = [eoc(date(2026, 1, 5), date(2026, 3, 15), finished=True)]
    assert find_episodes([], facts, CONFIG, date(2026, 2, 28)) == [Episode(date(2026, 1, 5))]


def test_discharge_after_six_empty_months_was_already_inactive() -> None:
    facts = [eoc(date(2026, 1, 5), date(2026, 9, 1), finished=True)]
    episodes = find_episodes([entry(date(2026, 1, 10))], facts, CONFIG, FAR)
    assert episodes == [Episode(date(2026, 1, 5), date(2026, 1, 31), "inactive")]


def test_inactivity_splits_an_open_episode_of_care() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 9, 10))]
    episodes = find_episodes(
        entries, [eoc(date(2026, 1, 5), program="general-bhi")], CONFIG, date(2026, 9, 30)
    )
    assert episodes == [
        Episode(date(2026, 1, 5), date(2026, 1, 31), "inactive", "general-bhi"),
        Episode(date(2026, 9, 10), None, None, "general-bhi"),
    ]


def test_program_comes_from_episode_of_care() -> None:
    episodes = find_episodes(
        [entry(date(2026, 1, 10))], [eoc(date(2026, 1, 1), program="general-bhi")], CONFIG, FAR
    )
    assert episodes[0].program == "general-bhi"


def test_minutes_leading_into_episode_of_care_belong_to_it() -> None:
    entries = [entry(date(2025, 12, 10)), entry(date(2026, 1, 3)), entry(date(2026, 1, 10))]
    episodes = find_episodes(entries, [eoc(date(2026, 1, 5))], CONFIG, date(2026, 1, 31))
    assert episodes == [Episode(date(2026, 1, 5))]
    assert kinds(episodes, "2025-12", "2026-01") == [None, "initial"]


def test_minutes_long_before_episode_of_care_are_their_own_episode() -> None:
    entries = [entry(date(2025, 5, 10)), entry(date(2026, 1, 10))]  # Jun..Dec empty
    episodes = find_episodes(entries, [eoc(date(2026, 1, 5))], CONFIG, date(2026, 1, 31))
    assert episodes == [Episode(date(2025, 5, 10), date(2025, 5, 31), "inactive"), Episode(date(2026, 1, 5))]


def test_later_episode_of_care_replaces_an_open_one() -> None:
    facts = [
        eoc(date(2026, 1, 5), source="EpisodeOfCare/a"),
        eoc(date(2026, 3, 1), program="general-bhi", source="EpisodeOfCare/b"),
    ]
    episodes = find_episodes(
        [entry(date(2026, 1, 10)), entry(date(2026, 3, 10))], facts, CONFIG, date(2026, 3, 31)
    )
    assert episodes == [
        Episode(date(2026, 1, 5), date(2026, 2, 28), "discharged"),
        Episode(date(2026, 3, 1), None, None, "general-bhi"),
    ]


def test_episode_of_care_without_start_starts_at_first_minute() -> None:
    episodes = find_episodes(
        [entry(date(2026, 1, 10))], [eoc(None, program="general-bhi")], CONFIG, date(2026, 1, 31)
    )
    assert episodes == [Episode(date(2026, 1, 10), None, None, "general-bhi")]
    assert find_episodes([], [eoc(None)], CONFIG, FAR) == []


def test_same_month_restart_after_discharge_picks_later_episode() -> None:
    entries = [entry(date(2026, 3, 2)), entry(date(2026, 3, 20))]
    episodes = find_episodes(
        entries, [eoc(date(2026, 1, 5), date(2026, 3, 10), finished=True)], CONFIG, date(2026, 3, 31)
    )
    assert episodes[1] == Episode(date(2026, 3, 20))
    assert episode_for_month(episodes, Month(2026, 3)) == episodes[1]


def test_entry_order_and_duplicates_never_matter() -> None:
    entries = [entry(date(2026, 1, 10)), entry(date(2026, 9, 10)), entry(date(2026, 3, 1))]
    expected = find_episodes(entries, [], CONFIG, FAR)
    assert find_episodes(list(reversed(entries)), [], CONFIG, FAR) == expected
    assert find_episodes([*entries, *entries], [], CONFIG, FAR) == expected
    assert len(distinct_entries([*entries, *entries])) == 3


def test_invalid_lapse() -> None:
    with pytest.raises(ValueError, match="inactive_after_months"):
        EpisodeRules(0)


@pytest.mark.parametrize(
    ("activity", "excluded", "count_consultant_time", "reason"),
    [
        ("follow-up", None, False, None),
        ("case-review", None, False, None),
        ("psychiatric-consultation", None, False, "psychiatric_consultant"),
        ("psychiatric-consultation", None, True, None),
        ("follow-up", "not_finished", True, "not_finished"),  # the entry's own reason wins
        ("psychiatric-consultation", "inpatient", True, "inpatient"),
        ("psychiatric-consultation", "separately_billed", False, "separately_billed"),
    ],
)
def test_what_time_counts(
    activity: str, excluded: str | None, count_consultant_time: bool, reason: str | None
) -> None:
    """billing.md "What time counts", defined once on TimeEntry (billing and care status use it)."""
    one = entry(date(2026, 1, 10), activity=activity, excluded=excluded)
    assert one.uncounted_reason(count_consultant_time=count_consultant_time) == reason
    assert is_counted(one, BillingConfig(count_consultant_time=count_consultant_time)) is (reason is None)
