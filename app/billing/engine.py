"""One patient, one calendar month: codes, units, blockers and notes (billing.md; api.md "Billing month").

Pure: facts in, a ``BillingMonth`` out. ``today`` is the clinic-local date (the caller takes it in
``COCM_TIMEZONE``); it decides ``month_open`` and how much of the record the episodes see (below). All
facts passed must belong to ``patient_id`` (else ValueError: mixing patients is a caller bug).

Choices:

- Minutes. Counted entries (``TimeEntry.uncounted_reason`` is None) whose start falls in the month in the
  clinic time zone; their seconds are summed and floored to whole minutes once (never per entry).
  Entries with the same source are one entry. Input order never matters.
- Episode. ``find_episodes`` as of the later of ``today`` and the month's last day: everything known
  now, and at least the whole month. So the month's result reflects the current record: an
  EpisodeOfCare recorded later that starts after this month takes this month's minutes out of any
  episode (billing.md: its start wins) instead of leaving two initial months for one course of care, and
  an empty month whose six-month lapse has since completed shows no episode. Minutes of a month with
  counted minutes never change kind by waiting: runs of months are split by their gaps, not by the date.
  No episode covering the month (no minutes, or minutes that lead into a later EpisodeOfCare start):
  ``month_kind`` null and no codes.
- Codes. The rule set for the setting and the month's first day (cut-overs are month-aligned); the APCM
  add-on variant when ``config.apcm_addons`` and an APCM base VisitFact is dated in the month. The
  episode's program chooses CoCM or general BHI codes. A date with no rule set (before 2018) bills
  nothing and says so. Codes are always reported, blocked or not; the
  result is checked against billing.md's mutual exclusions.
- Blockers, in this order: ``consent_missing`` (no active Consent dated on or before the month's last
  day), ``initiating_visit_missing`` (initial months of either program: no initiating VisitFact dated in
  the rule set's ``prerequisites.initiating_visit_days`` (365) days before the episode's first counted minute, or on that
  day; the first counted minute is the earliest counted entry of the month, or the episode start when
  the month has none), ``month_open`` (``today`` on or before the month's last day).
- ``billable`` is true only with at least one code and no blocker: a month that supports nothing has
  nothing to bill.
- Notes are sentences for a biller: the counted minutes and what more minutes would add, a 99494 cap
  that cut units, G2214 left out by setting, seconds left after flooring, every group of entries that
  did not count with their minutes, the program or APCM variant when it changes the codes, and one
  sentence per blocker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from app.billing.episodes import (
    distinct_entries,
    episode_for_month,
    find_episodes,
    is_counted,
    local_date,
    month_kind,
)
from app.billing.rules import (
    APCM,
    BILLING_MD_EXCLUSIONS,
    BILLING_MD_PREREQUISITES,
    RULE_SETS,
    STANDARD,
    Evaluation,
    KindRule,
    RuleSet,
    episode_rules_for,
    evaluate,
    rule_set_for,
)
from app.domain import (
    PSYCHIATRIC_CONSULTANT,
    PSYCHIATRIC_CONSULTATION,
    BillingConfig,
    BillingMonth,
    CodeUnits,
    ConsentFact,
    EpisodeOfCareFact,
    Month,
    Threshold,
    TimeEntry,
    VisitFact,
)

CONSENT_MISSING = "consent_missing"
INITIATING_VISIT_MISSING = "initiating_visit_missing"
MONTH_OPEN = "month_open"

# Sentences for entries that did not count, by reason, in the order they are listed.
_UNCOUNTED: dict[str, tuple[str, str]] = {
    PSYCHIATRIC_CONSULTANT: ("entry by the psychiatric consultant", "entries by the psychiatric consultant"),
    "not_finished": ("entry not finished", "entries not finished"),
    "inpatient": ("inpatient or observation entry", "inpatient or observation entries"),
    "separately_billed": (
        "entry billed separately (E/M or psychotherapy)",
        "entries billed separately (E/M or psychotherapy)",
    ),
}


def _duration(seconds: int) -> str:
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds / 60:.1f} min"


def _count(number: int, forms: tuple[str, str]) -> str:
    return f"{number} {forms[0] if number == 1 else forms[1]}"


def bill_month(
    patient_id: str,
    month: Month,
    entries: Sequence[TimeEntry],
    episodes_of_care: Sequence[EpisodeOfCareFact],
    consents: Sequence[ConsentFact],
    visits: Sequence[VisitFact],
    config: BillingConfig,
    today: date,
    rule_sets: Sequence[RuleSet] = RULE_SETS,
) -> BillingMonth:
    """The billing month of one patient (all facts passed must be that patient's), under the
    published ``RULE_SETS`` or the rule sets given (a payer's own, a future year's)."""
    facts: list[TimeEntry | EpisodeOfCareFact | ConsentFact | VisitFact] = [
        *entries,
        *episodes_of_care,
        *consents,
        *visits,
    ]
    for fact in facts:
        if fact.patient_id != patient_id:
            raise ValueError(f"{fact.source} belongs to another patient than {patient_id}")
    zone = ZoneInfo(config.timezone)
    unique = distinct_entries(entries)
    in_month = [entry for entry in unique if Month.of(local_date(entry, zone)) == month]
    counted = [entry for entry in in_month if is_counted(entry, config)]
    counted_seconds = sum(entry.seconds for entry in counted)
    minutes = counted_seconds // 60

    standard = rule_set_for(config.setting, month.first_day, STANDARD, rule_sets)
    lapse = episode_rules_for(config.setting, month.first_day, rule_sets)
    episodes = find_episodes(unique, episodes_of_care, config, as_of=max(today, month.last_day), rules=lapse)
    episode = episode_for_month(episodes, month)
    kind = month_kind(episode, month) if episode is not None else None

    notes: list[str] = []
    codes: tuple[CodeUnits, ...] = ()
    pending: tuple[Threshold, ...] = ()
    rule_set: RuleSet | None = None
    if episode is None or kind is None:
        notes.append(_no_episode_note(month, minutes, episodes_of_care))
    else:
        apcm_codes = (standard.prerequisites if standard else BILLING_MD_PREREQUISITES).apcm_base_codes
        apcm = sorted(
            (
                visit
                for visit in visits
                if (visit.system, visit.code) in apcm_codes and Month.of(visit.on) == month
            ),
            key=lambda visit: (visit.on, visit.code, visit.source),
        )
        if config.apcm_addons and apcm:
            rule_set = rule_set_for(config.setting, month.first_day, APCM, rule_sets)
        rule_set = rule_set or standard
        if rule_set is None:
            notes.append(
                f"{minutes} counted minutes; no {config.setting} billing rules cover {month}: no codes"
            )
        else:
            evaluation = evaluate(rule_set, kind, episode.program, minutes, config)
            codes = evaluation.codes
            pending = evaluation.pending
            rule = rule_set.initial if kind == "initial" else rule_set.subsequent
            notes += _code_notes(evaluation, minutes, config, rule)
            if episode.program == "general-bhi":
                notes.append(
                    "general behavioral health integration episode: general BHI code, not CoCM codes"
                )
            if rule_set.variant == APCM:
                first = apcm[0]
                notes.append(
                    f"APCM {first.code} on {first.on} ({first.source}): "
                    "behavioral health reported as APCM add-on"
                )
    problems = (rule_set.exclusions if rule_set else BILLING_MD_EXCLUSIONS).violations(codes)
    if problems:  # the rule data broke a billing.md exclusion: never report such a month
        raise RuntimeError(f"billing rules produced excluded codes: {'; '.join(problems)}")
    prerequisites = rule_set.prerequisites if rule_set else BILLING_MD_PREREQUISITES

    if counted_seconds % 60:
        notes.append(
            f"counted entries sum to {minutes} min {counted_seconds % 60} s; minutes are whole, floored once"
        )
    notes += _uncounted_notes(in_month, config)

    blockers: list[str] = []
    if not any(c.active and c.on is not None and c.on <= month.last_day for c in consents):
        blockers.append(CONSENT_MISSING)
        notes.append(f"no CoCM consent on file by {month.last_day}")
    if episode is not None and kind == "initial":
        first_minute = min(
            (local_date(entry, zone) for entry in counted if entry.seconds > 0), default=episode.start
        )
        earliest = first_minute - timedelta(days=prerequisites.initiating_visit_days)
        if not any(
            (visit.system, visit.code) in prerequisites.initiating_visit_codes
            and earliest <= visit.on <= first_minute
            for visit in visits
        ):
            blockers.append(INITIATING_VISIT_MISSING)
            notes.append(f"no initiating visit (E/M, AWV, IPPE or TCM) from {earliest} to {first_minute}")
    if today <= month.last_day:
        blockers.append(MONTH_OPEN)
        notes.append(f"{month} has not ended in {config.timezone}: codes are provisional")

    return BillingMonth(
        patient_id=patient_id,
        month=month,
        setting=config.setting,
        month_kind=kind,
        episode_start=episode.start if episode is not None else None,
        minutes=minutes,
        codes=codes,
        billable=bool(codes) and not blockers,
        blockers=tuple(blockers),
        notes=tuple(notes),
        counted_sources=tuple(entry.source for entry in counted),
        rule_set=rule_set.name if rule_set else None,
        pending=pending,
    )


def _no_episode_note(month: Month, minutes: int, episodes_of_care: Sequence[EpisodeOfCareFact]) -> str:
    if minutes == 0:
        return f"no counted minutes in {month}"
    later = sorted(
        fact.start for fact in episodes_of_care if fact.start is not None and fact.start > month.last_day
    )
    reason = f" (the EpisodeOfCare starts {later[0]})" if later else ""
    return f"{minutes} counted minutes outside any episode{reason}: no codes"


def _code_notes(
    evaluation: Evaluation,
    minutes: int,
    config: BillingConfig,
    rule: KindRule,
) -> list[str]:
    notes: list[str] = []
    if not evaluation.progress:
        notes.append(f"{minutes} counted minutes")
    elif evaluation.base_reached:
        notes.append(f"{minutes} counted minutes; {evaluation.progress}")
    else:
        notes.append(f"{minutes} counted minutes: {evaluation.progress}")
    if evaluation.capped_from is not None and rule.add_on is not None:
        notes.append(
            f"{rule.add_on.code} capped at {config.add_on_cap} by setting "
            f"(the minutes support {evaluation.capped_from})"
        )
    fallback = rule.fallback
    if (
        not config.fallback_covered
        and fallback is not None
        and not evaluation.base_reached
        and not evaluation.codes
        and minutes >= fallback.minutes
    ):
        notes.append(f"{fallback.code} not reported: not covered by setting")
    return notes


def _uncounted_notes(in_month: Sequence[TimeEntry], config: BillingConfig) -> list[str]:
    groups: dict[str, list[TimeEntry]] = defaultdict(list)
    consultant_counted: list[TimeEntry] = []
    for entry in in_month:
        reason = entry.uncounted_reason(count_consultant_time=config.count_consultant_time)
        if reason is not None:
            groups[reason].append(entry)
        elif entry.activity == PSYCHIATRIC_CONSULTATION:
            consultant_counted.append(entry)
    notes: list[str] = []
    order = [*_UNCOUNTED, *sorted(set(groups) - set(_UNCOUNTED))]
    for reason in order:
        group = groups.get(reason)
        if not group:
            continue
        forms = _UNCOUNTED.get(reason, (f"entry ({reason})", f"entries ({reason})"))
        seconds = sum(entry.seconds for entry in group)
        notes.append(f"{_count(len(group), forms)} not counted ({_duration(seconds)})")
    if consultant_counted:
        seconds = sum(entry.seconds for entry in consultant_counted)
        forms = _UNCOUNTED[PSYCHIATRIC_CONSULTANT]
        notes.append(f"{_count(len(consultant_counted), forms)} counted by setting ({_duration(seconds)})")
    return notes
