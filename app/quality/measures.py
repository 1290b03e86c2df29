"""The four measures of quality.md, evaluated from a patient's facts: dates in, populations out.

``evaluate_patient`` answers, for one patient, which populations of each group they are in;
``evaluate`` sums patients into a ``MeasureResult`` (so the summary is by construction the sum of
the individual reports). Every window and threshold is an entry of ``QualityRules``.

Choices quality.md leaves open, recorded once:

- **Dates.** Scores and time entries are placed on their clinic-local date; every window names
  days, both ends included unless said otherwise. "Months" are calendar months (``add_months``:
  the same day number, else the month's last day).
- **Index PHQ-9.** The first PHQ-9 score > 9 in the window on a day when a depression diagnosis is
  active and the patient is 12 or older (CMS159 takes the first assessment that meets all of
  them). Several scores on one day: the earliest instant, then the source id. A patient without a
  birth date has no known age and no index.
- **The last score in a window**: the latest instant, then the highest source id.
- **Exclusions** (the depression measures): an exclusion diagnosis active on any day up to the
  window's end, or death on or before it (``deceasedBoolean`` true: dead, date unknown). Excluded
  patients stay in the denominator, are counted in ``denominator-exclusion`` and never in the
  numerator.
- **Episodes** are the billing core's (billing.md), as known at the period's end, of either program.
  A patient counts once per measure: their first episode (by start) that meets the initial
  population's conditions. The subjects of every population are patients.
- **First contact** (``cocm-follow-up-4w``): the earliest counted entry of a contact activity on or
  after the episode start; the numerator needs another on a later date, no later than start + 28
  days and not after a discharge (a lapsed episode's end, the last day of its last month with
  minutes, does not cut these windows short).
- **Baseline** (``cocm-consult-not-improving``): the first PHQ-9 score in the episode or up to
  ``baseline_lookback_days`` before its start (measures.md), dated by week 8. "Not improved":
  every score from then to week 8 is >= 10 and above 50% of the baseline. A case review or
  consultation counts whether or not its minutes count, unless it did not take place (a planned or
  cancelled Encounter).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import cached_property
from typing import Final, Literal
from zoneinfo import ZoneInfo

from app.billing.episodes import distinct_entries, find_episodes, is_counted
from app.billing.rules import episode_rules_for
from app.domain import BillingConfig, Episode, PatientFacts, TimeEntry

PopulationCode = Literal["initial-population", "denominator", "denominator-exclusion", "numerator"]
POPULATIONS: Final[tuple[PopulationCode, ...]] = (
    "initial-population",
    "denominator",
    "denominator-exclusion",
    "numerator",
)
NOT_TAKEN_PLACE: Final = "not_finished"  # TimeEntry.excluded of a planned or cancelled Encounter


@dataclass(frozen=True)
class QualityRules:
    """Every window and threshold of quality.md, with its source."""

    # CMS159: identification period [start - 14 months, start - 2 months); remission at 12 months +/- 60 days.
    identification_from_months: int = 14
    identification_to_months: int = 2
    remission_after_months: int = 12
    remission_window_days: int = 60
    index_above: int = 9  # CMS159 / DRR-E: PHQ-9 > 9
    remission_below: int = 5  # CMS159 / DRR-E: PHQ-9 < 5
    minimum_age_years: int = 12  # CMS159 / DRR-E: 12 and older
    # NCQA DRR-E: index in [start - 240 days, end - 240 days]; follow-up 120-240 days after it.
    response_lookback_days: int = 240
    follow_up_from_days: int = 120
    follow_up_to_days: int = 240
    response_fraction: Fraction = Fraction(1, 2)  # DRR-E: at least 50% lower than the index
    # Bauer et al. 2015 (AIMS): a follow-up contact within 4 weeks; consultation in weeks 8-12.
    follow_up_contact_days: int = 28
    follow_up_activities: frozenset[str] = frozenset(
        {"follow-up", "outreach", "brief-intervention", "relapse-prevention", "initial-assessment"}
    )
    week8_days: int = 56
    week12_days: int = 84
    not_improved_from: int = 10  # measures.md not_improving: latest >= 10 ...
    consult_activities: frozenset[str] = frozenset({"case-review", "psychiatric-consultation"})
    baseline_lookback_days: int = 14  # measures.md: baseline up to 14 days before the episode start


@dataclass(frozen=True)
class QualityConfig:
    billing: BillingConfig = field(default_factory=BillingConfig)
    rules: QualityRules = field(default_factory=QualityRules)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.billing.timezone)


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("the period ends before it starts")

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def quarters(self) -> list[Period]:
        """The calendar quarters the period touches, each cut to the period."""
        out: list[Period] = []
        first = date(self.start.year, 3 * ((self.start.month - 1) // 3) + 1, 1)
        while first <= self.end:
            following = add_months(first, 3)
            out.append(Period(max(first, self.start), min(following - timedelta(days=1), self.end)))
            first = following
        return out


@dataclass(frozen=True)
class GroupDefinition:
    code: str | None  # None for a measure of one group
    title: str
    numerator: str  # what the numerator says, for the Measure resource and the page


@dataclass(frozen=True)
class MeasureDefinition:
    id: str
    title: str
    follows: str
    description: str
    initial_population: str
    exclusion: str | None
    groups: tuple[GroupDefinition, ...]


MEASURES: Final[dict[str, MeasureDefinition]] = {
    m.id: m
    for m in (
        MeasureDefinition(
            "depression-remission-12m",
            "Depression remission at twelve months",
            "CMS159 / MIPS 370",
            "Patients 12 and older with depression and a PHQ-9 above 9 who reach remission (PHQ-9 below 5) "
            "twelve months later (+/- 60 days).",
            "Patients with an index PHQ-9 (first score > 9 on a day with an active depression diagnosis, "
            "aged 12 or more) in [period start - 14 months, period start - 2 months)",
            "An exclusion diagnosis (bipolar, personality, psychotic or pervasive developmental disorder, "
            "palliative care) or death up to the end of the remission window",
            (
                GroupDefinition(
                    None, "Remission", "The last PHQ-9 in [index + 12 months - 60 days, + 60 days] is < 5"
                ),
            ),
        ),
        MeasureDefinition(
            "depression-response-6m",
            "Depression follow-up, remission and response at 4-8 months",
            "NCQA HEDIS DRR-E",
            "Patients 12 and older with depression and a PHQ-9 above 9: followed up with a PHQ-9 120-240 days "
            "later, in remission (below 5) or responding (at least 50% lower) then.",
            "Patients with an index PHQ-9 (first score > 9 on a day with an active depression diagnosis, "
            "aged 12 or more) in [period start - 240 days, period end - 240 days]",
            "An exclusion diagnosis or death up to index + 240 days",
            (
                GroupDefinition(
                    "follow-up", "Follow-up", "A PHQ-9 score in [index + 120 days, index + 240 days]"
                ),
                GroupDefinition("remission", "Remission", "The last of those scores is < 5"),
                GroupDefinition(
                    "response", "Response", "The last of those scores is <= 50% of the index score"
                ),
            ),
        ),
        MeasureDefinition(
            "cocm-follow-up-4w",
            "Follow-up contact within four weeks",
            "AIMS Center (Bauer et al. 2015)",
            "Episodes of collaborative care starting in the period with a second care-manager contact within "
            "28 days of the start.",
            "Patients with an episode (billing.md) starting in the period",
            None,
            (
                GroupDefinition(
                    None,
                    "Follow-up",
                    "A second counted contact on a later date, within 28 days after the start",
                ),
            ),
        ),
        MeasureDefinition(
            "cocm-consult-not-improving",
            "Psychiatric consultation for patients not improving by week 8",
            "AIMS Center (Bauer et al. 2015)",
            "Episodes with a baseline PHQ-9 of 10 or more not improved by week 8 that get a case review or "
            "psychiatric consultation in weeks 8-12.",
            "Patients with an episode whose week 8 (start + 56 days) falls in the period, a baseline PHQ-9 "
            ">= 10 and no PHQ-9 up to week 8 below 10 or at most 50% of the baseline",
            None,
            (
                GroupDefinition(
                    None, "Consultation", "A case-review or psychiatric-consultation entry in weeks 8-12"
                ),
            ),
        ),
    )
}


def add_months(day: date, months: int) -> date:
    """quality.md: the same day number ``months`` calendar months later (or earlier), the month's
    last day when it has no such day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


Membership = dict[PopulationCode, bool]


@dataclass(frozen=True)
class GroupResult:
    code: str | None
    subjects: dict[PopulationCode, tuple[str, ...]]  # patient ids, sorted

    def count(self, population: PopulationCode) -> int:
        return len(self.subjects[population])

    @property
    def score(self) -> Decimal | None:
        """numerator / (denominator - denominator-exclusion), 4 places; None when divided by 0."""
        divisor = self.count("denominator") - self.count("denominator-exclusion")
        if divisor <= 0:
            return None
        return (Decimal(self.count("numerator")) / Decimal(divisor)).quantize(
            Decimal("0.0001"), ROUND_HALF_UP
        )


@dataclass(frozen=True)
class MeasureResult:
    measure: MeasureDefinition
    period: Period
    groups: tuple[GroupResult, ...] = field(default=())


def evaluate_all(
    measures: Sequence[MeasureDefinition],
    period: Period,
    patients: Mapping[str, PatientFacts],
    config: QualityConfig,
) -> list[MeasureResult]:
    """Each of ``measures`` over ``patients``: what the measures share of a patient (scores,
    entries, episodes) is computed once per patient."""
    members: list[list[dict[PopulationCode, list[str]]]] = [
        [{p: [] for p in POPULATIONS} for _ in m.groups] for m in measures
    ]
    for patient_id in sorted(patients):
        patient = _Patient(patients[patient_id], period, config)
        for measure, found in zip(measures, members, strict=True):
            for position, membership in enumerate(_run(measure, patient)):
                for population, inside in membership.items():
                    if inside:
                        found[position][population].append(patient_id)
    return [
        MeasureResult(
            measure,
            period,
            tuple(
                GroupResult(group.code, {p: tuple(ids) for p, ids in group_members.items()})
                for group, group_members in zip(measure.groups, found, strict=True)
            ),
        )
        for measure, found in zip(measures, members, strict=True)
    ]


def evaluate(
    measure: MeasureDefinition, period: Period, patients: Mapping[str, PatientFacts], config: QualityConfig
) -> MeasureResult:
    return evaluate_all([measure], period, patients, config)[0]


def evaluate_patient(
    measure: MeasureDefinition, period: Period, facts: PatientFacts, config: QualityConfig
) -> list[Membership]:
    """One membership per group of ``measure``."""
    return _run(measure, _Patient(facts, period, config))


class _Patient:
    """One patient as the measures of one period read them, each part computed once when needed."""

    def __init__(self, facts: PatientFacts, period: Period, config: QualityConfig) -> None:
        self.facts = facts
        self.period = period
        self.config = config
        self.rules = config.rules

    @cached_property
    def scores(self) -> list[_Score]:
        """PHQ-9 total scores by time (an item 9 answered alone is no score)."""
        zone = self.config.zone
        scores = [
            _Score(m.effective.astimezone(zone).date(), m.score, (m.effective, m.source))
            for m in self.facts.measurements
            if m.instrument == "PHQ-9" and m.score is not None
        ]
        return sorted(scores, key=lambda s: s.order)

    @cached_property
    def entry_days(self) -> list[tuple[date, TimeEntry]]:
        zone = self.config.zone
        return [
            (entry.start.astimezone(zone).date(), entry) for entry in distinct_entries(self.facts.entries)
        ]

    @cached_property
    def episodes(self) -> list[Episode]:
        """The billing core's episodes as known at the period's end."""
        billing, end = self.config.billing, self.period.end
        rules = episode_rules_for(billing.setting, end)
        return find_episodes(self.facts.entries, self.facts.episodes_of_care, billing, as_of=end, rules=rules)


def _run(measure: MeasureDefinition, patient: _Patient) -> list[Membership]:
    if measure.id == "depression-remission-12m":
        return [_remission_12m(patient)]
    if measure.id == "depression-response-6m":
        return _response_6m(patient)
    if measure.id == "cocm-follow-up-4w":
        return [_follow_up_4w(patient)]
    if measure.id == "cocm-consult-not-improving":
        return [_consult_not_improving(patient)]
    raise KeyError(measure.id)


def _membership(initial: bool, excluded: bool = False, numerator: bool = False) -> Membership:
    return {
        "initial-population": initial,
        "denominator": initial,
        "denominator-exclusion": initial and excluded,
        "numerator": initial and not excluded and numerator,
    }


# --- the depression measures --------------------------------------------------------------------


@dataclass(frozen=True)
class _Score:
    day: date
    score: int
    order: tuple[object, ...]


def _index(
    facts: PatientFacts, scores: Sequence[_Score], first: date, last: date, rules: QualityRules
) -> _Score | None:
    birth = facts.person.birth_date
    if birth is None:
        return None
    adult_from = add_months(birth, 12 * rules.minimum_age_years)
    depression = [d for d in facts.diagnoses if d.category == "depression"]
    for score in scores:
        if (
            first <= score.day <= last
            and score.score > rules.index_above
            and score.day >= adult_from
            and any(d.active_on(score.day) for d in depression)
        ):
            return score
    return None


def _excluded(facts: PatientFacts, until: date) -> bool:
    return facts.person.died_by(until) or any(
        d.category == "exclusion" and d.active_by(until) for d in facts.diagnoses
    )


def _last_in(scores: Sequence[_Score], first: date, last: date) -> _Score | None:
    inside = [s for s in scores if first <= s.day <= last]
    return inside[-1] if inside else None


def _remission_12m(patient: _Patient) -> Membership:
    rules, period, facts, scores = patient.rules, patient.period, patient.facts, patient.scores
    first = add_months(period.start, -rules.identification_from_months)
    last = add_months(period.start, -rules.identification_to_months) - timedelta(days=1)  # end excluded
    index = _index(facts, scores, first, last, rules)
    if index is None:
        return _membership(False)
    target = add_months(index.day, rules.remission_after_months)
    window = (
        target - timedelta(days=rules.remission_window_days),
        target + timedelta(days=rules.remission_window_days),
    )
    latest = _last_in(scores, *window)
    return _membership(
        True, _excluded(facts, window[1]), latest is not None and latest.score < rules.remission_below
    )


def _response_6m(patient: _Patient) -> list[Membership]:
    rules, period, facts, scores = patient.rules, patient.period, patient.facts, patient.scores
    lookback = timedelta(days=rules.response_lookback_days)
    index = _index(facts, scores, period.start - lookback, period.end - lookback, rules)
    if index is None:
        return [_membership(False)] * 3
    window_end = index.day + timedelta(days=rules.follow_up_to_days)
    excluded = _excluded(facts, window_end)
    latest = _last_in(scores, index.day + timedelta(days=rules.follow_up_from_days), window_end)
    return [
        _membership(True, excluded, latest is not None),
        _membership(True, excluded, latest is not None and latest.score < rules.remission_below),
        _membership(
            True, excluded, latest is not None and latest.score <= rules.response_fraction * index.score
        ),
    ]


# --- the AIMS process measures -----------------------------------------------------------------


def _inside(episode: Episode, day: date) -> bool:
    """On or after the start and not after a discharge. An episode that lapsed ends on the last day
    of its last month with minutes (billing.md), which says nothing of the weeks that followed."""
    discharged_before = episode.end_reason == "discharged" and episode.end is not None and day > episode.end
    return episode.start <= day and not discharged_before


def _follow_up_4w(patient: _Patient) -> Membership:
    rules, period = patient.rules, patient.period
    episode = next((e for e in patient.episodes if period.contains(e.start)), None)
    if episode is None:
        return _membership(False)
    contacts = sorted(
        {
            day
            for day, entry in patient.entry_days
            if entry.activity in rules.follow_up_activities
            and is_counted(entry, patient.config.billing)
            and _inside(episode, day)
        }
    )
    deadline = episode.start + timedelta(days=rules.follow_up_contact_days)
    return _membership(True, numerator=any(contacts[0] < day <= deadline for day in contacts[1:]))


def _consult_not_improving(patient: _Patient) -> Membership:
    rules, period, scores = patient.rules, patient.period, patient.scores
    week8, week12 = timedelta(days=rules.week8_days), timedelta(days=rules.week12_days)
    for episode in patient.episodes:
        if not period.contains(episode.start + week8):
            continue
        window_start = episode.start - timedelta(days=rules.baseline_lookback_days)
        window = [
            s
            for s in scores
            if window_start <= s.day <= episode.start + week8 and _inside(episode, max(s.day, episode.start))
        ]
        if not window or window[0].score < rules.not_improved_from:
            continue
        baseline = window[0].score
        if any(
            s.score < rules.not_improved_from or s.score <= rules.response_fraction * baseline for s in window
        ):
            continue
        consulted = any(
            entry.activity in rules.consult_activities
            and entry.excluded != NOT_TAKEN_PLACE
            and episode.start + week8 <= day <= episode.start + week12
            for day, entry in patient.entry_days
        )
        return _membership(True, numerator=consulted)
    return _membership(False)
