"""Episodes of care for billing (billing.md, "Episodes"): which month is initial, which subsequent.

Pure: facts in, ``Episode`` values out. Months and days are taken in the clinic time zone
(``config.timezone``).

Choices:

- What counts. An entry counts when ``excluded`` is ``None`` and it is not the psychiatric consultant's
  own time (unless ``config.count_consultant_time``): ``TimeEntry.uncounted_reason`` is the one definition, shared
  with the engine. Entries with the same ``source`` are one entry (a retried write): the one kept is
  chosen by value, never by position, so input order never matters.
- Active month. A month "has counted minutes" when its counted seconds, summed and floored once, reach
  one whole minute (billing.md counts minutes at month level). Counted entries in a month with under a
  minute in total neither start nor extend an episode.
- As of. ``find_episodes(..., as_of)`` answers with what is known on ``as_of`` (a clinic-local date):
  entries dated after it and EpisodeOfCares starting after it are ignored, and a discharge dated after it
  has not happened yet. An episode whose last month with minutes is L ends as inactive only once the six
  months L+1..L+6 have all ended by ``as_of`` (``as_of`` > last day of L+6); until then it is open
  (``end`` None), even when no minutes have come for five months and a half. The engine passes the later
  of today and the billed month's last day (see ``engine``).
- Inactive end. An episode ended by the rule data's ``inactive_after_months`` (billing.md: 6) empty
  months (``rules.EpisodeRules``, given as ``rules``) has ``end`` = the
  last day of its last month with counted minutes (or of its start month when it never had any) and
  ``end_reason`` "inactive". A month with minutes after the gap starts a new episode (initial again);
  after one to five empty months the episode goes on.
- EpisodeOfCare. Each EpisodeOfCare (fact) frames an episode from ``start`` (its period.start wins over
  the first counted entry) to its discharge. An EpisodeOfCare with a start and no counted minutes still
  makes an episode: its start month is the initial month (billing.md: the episode's first calendar month),
  so minutes that only come in a later month of it are subsequent; with no minutes at all it ends as
  inactive after six empty months like any episode. Inactivity also splits an EpisodeOfCare: minutes
  after six empty months inside a still-active EpisodeOfCare start a new episode (same program).
- Discharge. A ``finished`` EpisodeOfCare ends its episode on ``period.end``; without an end, on the last
  counted day inside it (or its start when it has none). Counted minutes after the discharge start a new
  episode (program ``cocm``) unless another EpisodeOfCare frames them. If six empty months passed before
  the discharge date, the episode had already ended as inactive.
- Overlapping EpisodeOfCares. Ordered by start (ties by source): a later start ends the earlier one the
  day before (``end_reason`` "discharged": replaced); one that starts on the same day as a later-sorted
  one is dropped. An EpisodeOfCare without ``period.start`` covers everything up to its discharge; its
  episode starts on the first counted day inside it (none: no episode).
- Entries outside every EpisodeOfCare make episodes of their own (program ``cocm``), with one exception:
  counted minutes that lead into a dated EpisodeOfCare (fewer than six empty months between their last
  month and the EpisodeOfCare's start month) belong to no episode, because the client says the episode
  began on the EpisodeOfCare's start. Their months have no ``month_kind`` and bill nothing (the engine
  says why); minutes in the start month itself count toward that month as usual. This never bills an
  initial month twice for one course of care.
- Two episodes can share a month (a discharge, then minutes later in the same month):
  ``episode_for_month`` picks the one that started later, the episode the month's new work belongs to.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from app.billing.rules import BILLING_MD_EPISODES, EpisodeRules
from app.domain import BillingConfig, Episode, EpisodeOfCareFact, Month, Program, TimeEntry

MonthKind = Literal["initial", "subsequent"]


def distinct_entries(entries: Iterable[TimeEntry]) -> list[TimeEntry]:
    """One entry per ``source`` (a retried write is one entry), chosen by value, sorted."""
    by_source: dict[str, TimeEntry] = {}
    for entry in entries:
        kept = by_source.get(entry.source)
        if kept is None or _entry_key(entry) > _entry_key(kept):
            by_source[entry.source] = entry
    return sorted(by_source.values(), key=_entry_key)


def _entry_key(entry: TimeEntry) -> tuple[object, ...]:
    return (entry.start, entry.source, entry.seconds, entry.activity, entry.excluded or "")


def is_counted(entry: TimeEntry, config: BillingConfig) -> bool:
    return entry.uncounted_reason(count_consultant_time=config.count_consultant_time) is None


def local_date(entry: TimeEntry, zone: ZoneInfo) -> date:
    """The clinic-local calendar date on which ``entry`` starts."""
    return entry.start.astimezone(zone).date()


def month_kind(episode: Episode, month: Month) -> MonthKind:
    """``initial`` for the episode's first calendar month, else ``subsequent``."""
    return "initial" if Month.of(episode.start) == month else "subsequent"


def episode_for_month(episodes: Sequence[Episode], month: Month) -> Episode | None:
    """The episode covering ``month`` (the later-starting one when two share it), else None.

    An open episode (``end`` None) covers every month from its start: ask ``find_episodes`` with an
    ``as_of`` no earlier than the month's end so that a lapsed episode is seen as ended.
    """
    covering = [
        episode
        for episode in episodes
        if Month.of(episode.start) <= month and (episode.end is None or month <= Month.of(episode.end))
    ]
    return max(covering, key=lambda episode: episode.start, default=None)


@dataclass(frozen=True)
class _Frame:
    """An EpisodeOfCare as a date interval: ``start`` None = from the beginning, ``end`` None = open."""

    start: date | None
    end: date | None
    program: Program

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


def active_days(entries: Sequence[TimeEntry], config: BillingConfig, as_of: date) -> list[date]:
    """Sorted distinct local dates of counted entries, with seconds, in months with counted minutes,
    up to ``as_of``."""
    zone = ZoneInfo(config.timezone)
    seconds: dict[int, int] = defaultdict(int)  # by month index (a plain int: this loop is hot)
    days: set[date] = set()
    for entry in distinct_entries(entries):
        day = local_date(entry, zone)
        if day > as_of or not is_counted(entry, config):
            continue
        seconds[_month_index(day)] += entry.seconds
        if entry.seconds > 0:
            days.add(day)
    return sorted(day for day in days if seconds[_month_index(day)] >= 60)


def find_episodes(
    entries: Sequence[TimeEntry],
    episodes_of_care: Sequence[EpisodeOfCareFact],
    config: BillingConfig,
    as_of: date,
    rules: EpisodeRules = BILLING_MD_EPISODES,
) -> list[Episode]:
    """The patient's episodes as known on ``as_of`` (clinic-local date), sorted by start."""
    days = active_days(entries, config, as_of)
    frames = _frames(episodes_of_care, days, as_of)
    episodes: list[Episode] = []
    for frame in frames:
        inside = [day for day in days if frame.covers(day)]
        if frame.start is None and not inside:
            continue
        start = frame.start if frame.start is not None else inside[0]
        episodes += _split(
            start,
            inside,
            discharge=frame.end,
            program=frame.program,
            as_of=as_of,
            inactive_after=rules.inactive_after_months,
        )

    starts = {frame.start for frame in frames if frame.start is not None}
    boundaries = sorted(starts | {frame.end + timedelta(days=1) for frame in frames if frame.end is not None})
    segments: dict[int, list[date]] = defaultdict(list)
    for day in days:
        if not any(frame.covers(day) for frame in frames):
            segments[bisect_right(boundaries, day)].append(day)
    for position, segment in segments.items():
        found = _split(
            segment[0],
            segment,
            discharge=None,
            program="cocm",
            as_of=as_of,
            inactive_after=rules.inactive_after_months,
        )
        following = boundaries[position] if position < len(boundaries) else None
        if (
            following is not None
            and following in starts
            and _month_index(following) - _month_index(segment[-1]) - 1 < rules.inactive_after_months
        ):
            found = found[:-1]  # leads into a dated EpisodeOfCare: that episode starts at its start
        episodes += found
    return sorted(episodes, key=lambda episode: (episode.start, episode.end or date.max))


def _frames(facts: Sequence[EpisodeOfCareFact], days: Sequence[date], as_of: date) -> list[_Frame]:
    known = sorted(
        (fact for fact in facts if fact.start is None or fact.start <= as_of),
        key=lambda fact: (fact.start or date.min, fact.source),
    )
    frames: list[_Frame] = []
    for position, fact in enumerate(known):
        following = known[position + 1].start if position + 1 < len(known) else None
        if position + 1 < len(known) and following is None:
            continue  # two without a start: the later-sorted one stands
        limit = None if following is None else following - timedelta(days=1)
        if fact.start is not None and limit is not None and limit < fact.start:
            continue  # replaced on its first day
        end: date | None = None
        if fact.finished:
            if fact.end is not None:
                end = fact.end
            else:
                inside = [
                    day
                    for day in days
                    if (fact.start is None or fact.start <= day) and (limit is None or day <= limit)
                ]
                end = inside[-1] if inside else fact.start
                if end is None:
                    continue  # no start, no minutes: nothing to frame
            if end > as_of:
                end = None  # not discharged yet as of as_of
        if limit is not None and (end is None or end > limit):
            end = limit
        frames.append(_Frame(fact.start, end, fact.program))
    return frames


def _split(
    start: date,
    days: Sequence[date],
    *,
    discharge: date | None,
    program: Program,
    as_of: date,
    inactive_after: int,
) -> list[Episode]:
    """Episodes from ``start`` over the active ``days`` (all on or after ``start``), cut at every run of
    ``inactive_after`` empty months, ending at ``discharge`` or open."""
    episodes: list[Episode] = []
    current = start
    last_active = _month_index(start)
    for day in days:
        month = _month_index(day)
        if month - last_active - 1 >= inactive_after:
            episodes.append(Episode(current, _last_day(last_active), "inactive", program))
            current = day
        last_active = max(last_active, month)
    if discharge is not None and _month_index(discharge) - last_active - 1 < inactive_after:
        episodes.append(Episode(current, discharge, "discharged", program))
    elif discharge is not None or _month_index(as_of) - last_active - 1 >= inactive_after:
        episodes.append(Episode(current, _last_day(last_active), "inactive", program))
    else:
        episodes.append(Episode(current, None, None, program))
    return episodes


def _month_index(day: date) -> int:
    """``Month.of(day).index()`` without building the Month (the episode loops are hot)."""
    return day.year * 12 + day.month - 1


def _last_day(index: int) -> date:
    return Month(index // 12, index % 12 + 1).last_day
