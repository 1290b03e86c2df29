"""Billing rule sets as data, keyed by setting and date-of-service range (billing.md).

A ``RuleSet`` says, for one setting and one span of dates of service, which code each month kind and
program earns at which counted minutes, which codes exclude each other (``Exclusions``) and what a
month needs besides minutes (``Prerequisites``: initiating-visit codes and window, APCM base codes)
and when an episode lapses (``EpisodeRules``).
Adding CY2027 or a payer variant (for example a Medicaid plan that keeps G0512 after 2025, under a
variant key of its own) is a new ``RuleSet`` in the data (``RULE_SETS``, or the ``rule_sets`` given
to ``bill_month``); neither ``evaluate`` nor the engine looks at a year or a code list.

Choices:

- Thresholds are "at least N counted minutes". For timed CPT codes N already applies the CPT midpoint
  rule (99492: 36 of 70; 99493: 31 of 60; G2214: 16 of 30); FQHC G0512 and general BHI (99484, G0511)
  are "at least" thresholds with no midpoint (billing.md).
- Add-on units (99494): with base minutes B (70 initial, 60 subsequent) and counted minutes M, units are
  ``max(0, floor((M - B + 14) / 30))`` (billing.md), only when the base code is reached. The general form
  in the data is ``first unit at B + 16, one more every 30``. ``config.add_on_cap`` caps them; the
  evaluation keeps the uncapped count so the engine can say when the cap cuts.
- The fallback (G2214) is reported only under the base threshold, only when the rule set has one
  (none before 2021) and only when ``config.fallback_covered``.
- General BHI bills 99484 (one unit a month); in the FQHC/RHC 2025-01..2025-09 transition the rule set
  names G0511 as the alternative used when ``config.fqhc_g0511_transition`` is set.
- APCM add-ons (CY2026 PFS final rule): G0568 initial, G0569 subsequent, G0570 general BHI, one unit a
  month. Their descriptors carry no minute count, so the threshold is one counted minute (a month with
  CoCM work); a payer that wants more is a new rule set. The variant is chosen only when
  ``config.apcm_addons`` is on and the patient-month has an APCM base code; it applies to both settings
  (from 2026 FQHC/RHC bill the physician table).
- Dates of service. The published cut-overs all fall on the first of a month (``test_rules`` asserts the
  data keeps it so), so a month falls entirely in one rule set; the engine asks for the month's first day.
- Episode lapse. The standard rule set covering the billed month (for a care status, the as-of day)
  gives the number of empty months that end an episode (billing.md: six), ``episode_rules_for``.
- Separately billed services (billing.md "What time counts": E/M, psychotherapy) are a code list of
  each rule set (``separately_billed``). An Encounter typed with one is marked when it is written
  (``billing.facts``), by the published rule sets covering its date (``separately_billed_on``).
- Rule sets start with the codes they describe: 99492-99494, 99484 and G0512 from 2018-01-01 (CPT 2018;
  CY2018 PFS). Earlier dates have no rule set and bill nothing (the engine says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final, Literal

from app.billing.codes import (
    APCM_BASE_CODES,
    CPT,
    HCPCS,
    INITIATING_VISIT_CODES,
    SEPARATELY_BILLED_CODES,
    Code,
)
from app.domain import BillingConfig, BillingSetting, CodeUnits, Program, Threshold

MonthKind = Literal["initial", "subsequent"]
# A rule set's variant: "standard", "apcm" (the APCM add-on codes), or a payer's own key. A payer
# variant is a data key: a new RuleSet entry, no type or engine change.
Variant = str
STANDARD: Final = "standard"
APCM: Final = "apcm"


@dataclass(frozen=True)
class TimedCode:
    """A code reached at ``minutes`` counted minutes (at least), one unit."""

    code: str
    system: str
    minutes: int


@dataclass(frozen=True)
class AddOnCode:
    """A code billed per block beyond a base: first unit at ``base + first_unit``, then every ``block``."""

    code: str
    system: str
    base: int
    first_unit: int
    block: int

    def units(self, minutes: int) -> int:
        beyond = minutes - self.base
        return 0 if beyond < self.first_unit else 1 + (beyond - self.first_unit) // self.block

    def minutes_for(self, units: int) -> int:
        """Counted minutes needed for ``units`` units (units >= 1)."""
        return self.base + self.first_unit + (units - 1) * self.block


@dataclass(frozen=True)
class KindRule:
    """Codes of one month kind: a base code, its add-on, and a fallback under the base."""

    base: TimedCode
    add_on: AddOnCode | None = None
    fallback: TimedCode | None = None


@dataclass(frozen=True)
class Exclusions:
    """Codes never billed together in one patient-month, and add-ons that need a base (billing.md)."""

    mutually_exclusive: frozenset[frozenset[str]]
    requires_one_of: tuple[tuple[str, frozenset[str]], ...] = ()

    def violations(self, codes: tuple[CodeUnits, ...]) -> list[str]:
        """Sentences naming every exclusion ``codes`` break (empty when none)."""
        present = {item.code for item in codes}
        problems = [
            f"{' with '.join(sorted(pair))} in one month"
            for pair in self.mutually_exclusive
            if pair <= present
        ]
        problems += [
            f"{code} without {' or '.join(sorted(needed))}"
            for code, needed in self.requires_one_of
            if code in present and not needed & present
        ]
        return sorted(problems)


@dataclass(frozen=True)
class Prerequisites:
    """What a month needs besides minutes (billing.md, Prerequisites): an initiating visit with one of
    ``initiating_visit_codes`` in the ``initiating_visit_days`` before the first counted minute of an
    initial month; and the APCM base codes that switch a month to the APCM add-on variant."""

    initiating_visit_codes: frozenset[Code]
    initiating_visit_days: int
    apcm_base_codes: frozenset[Code] = frozenset()


@dataclass(frozen=True)
class EpisodeRules:
    """When an episode of care lapses (billing.md, Episodes): after ``inactive_after_months``
    consecutive calendar months without counted minutes."""

    inactive_after_months: int

    def __post_init__(self) -> None:
        if self.inactive_after_months < 1:
            raise ValueError("inactive_after_months must be at least 1")


@dataclass(frozen=True)
class RuleSet:
    name: str
    setting: BillingSetting
    variant: Variant
    first_day: date  # first date of service, inclusive
    last_day: date | None  # last date of service, inclusive; None = open
    initial: KindRule
    subsequent: KindRule
    general_bhi: TimedCode
    general_bhi_transition: TimedCode | None = None  # used when config.fqhc_g0511_transition
    source: str = ""
    exclusions: Exclusions = field(default_factory=lambda: BILLING_MD_EXCLUSIONS)
    prerequisites: Prerequisites = field(default_factory=lambda: BILLING_MD_PREREQUISITES)
    episodes: EpisodeRules = field(default_factory=lambda: BILLING_MD_EPISODES)
    separately_billed: frozenset[Code] = SEPARATELY_BILLED_CODES  # time of these services never counts

    def covers(self, day: date) -> bool:
        return self.first_day <= day and (self.last_day is None or day <= self.last_day)


# billing.md: never in the same patient-month. Pairs of codes that exclude each other.
CODE_GROUP_COCM: Final = frozenset({"99492", "99493", "99494", "G2214", "G0512", "G0568", "G0569"})
CODE_GROUP_GENERAL_BHI: Final = frozenset({"99484", "G0511", "G0570"})
BILLING_MD_EXCLUSIONS: Final[Exclusions] = Exclusions(
    frozenset(
        {
            frozenset({"99492", "99493"}),
            frozenset({"G2214", "99492"}),
            frozenset({"G2214", "99493"}),
            frozenset({"G0568", "G0569"}),  # APCM add-ons follow the same initial/subsequent split
        }
        | {frozenset({cocm, bhi}) for cocm in CODE_GROUP_COCM for bhi in CODE_GROUP_GENERAL_BHI}
    ),
    # billing.md: 99494 only with 99492 or 99493.
    requires_one_of=(("99494", frozenset({"99492", "99493"})),),
)
# billing.md Prerequisites: the initiating visit within 365 days before the first minute.
BILLING_MD_PREREQUISITES: Final[Prerequisites] = Prerequisites(INITIATING_VISIT_CODES, 365, APCM_BASE_CODES)
# billing.md Episodes: six consecutive calendar months without counted minutes end an episode.
BILLING_MD_EPISODES: Final[EpisodeRules] = EpisodeRules(inactive_after_months=6)


# CPT midpoint rule (billing.md; BCBS ND policy: 36-85 min = 99492, 31-75 min = 99493).
_99492: Final = TimedCode("99492", CPT, 36)  # 70-minute code, midpoint passed at 36
_99493: Final = TimedCode("99493", CPT, 31)  # 60-minute code, midpoint passed at 31
_99494_INITIAL: Final = AddOnCode("99494", CPT, base=70, first_unit=16, block=30)  # 16 of each 30 beyond B
_99494_SUBSEQUENT: Final = AddOnCode("99494", CPT, base=60, first_unit=16, block=30)
_G2214: Final = TimedCode("G2214", HCPCS, 16)  # CY2021 PFS: 30-minute code, midpoint passed at 16
_99484: Final = TimedCode("99484", CPT, 20)  # general BHI: at least 20 minutes, no midpoint (MLN909432)
_G0511: Final = TimedCode("G0511", HCPCS, 20)  # FQHC/RHC general BHI: at least 20 minutes (MLN909432)
# FQHC/RHC CoCM: at least 70 (initial) / 60 (subsequent) minutes, no midpoint (MLN909432; AHRQ).
_G0512_INITIAL: Final = KindRule(TimedCode("G0512", HCPCS, 70))
_G0512_SUBSEQUENT: Final = KindRule(TimedCode("G0512", HCPCS, 60))

_PHYSICIAN_INITIAL_2018: Final = KindRule(_99492, _99494_INITIAL)
_PHYSICIAN_SUBSEQUENT_2018: Final = KindRule(_99493, _99494_SUBSEQUENT)
_PHYSICIAN_INITIAL_2021: Final = KindRule(_99492, _99494_INITIAL, _G2214)
_PHYSICIAN_SUBSEQUENT_2021: Final = KindRule(_99493, _99494_SUBSEQUENT, _G2214)
# CY2026 PFS APCM behavioral-health add-ons: no minute count in the descriptors (see module docstring).
_APCM_INITIAL: Final = KindRule(TimedCode("G0568", HCPCS, 1))
_APCM_SUBSEQUENT: Final = KindRule(TimedCode("G0569", HCPCS, 1))
_G0570: Final = TimedCode("G0570", HCPCS, 1)

RULE_SETS: Final[tuple[RuleSet, ...]] = (
    RuleSet(
        "physician-2018",
        "physician",
        STANDARD,
        date(2018, 1, 1),
        date(2020, 12, 31),
        _PHYSICIAN_INITIAL_2018,
        _PHYSICIAN_SUBSEQUENT_2018,
        _99484,
        source="CPT 2018; billing.md: before 2021-01-01 no G2214",
    ),
    RuleSet(
        "physician-2021",
        "physician",
        STANDARD,
        date(2021, 1, 1),
        None,
        _PHYSICIAN_INITIAL_2021,
        _PHYSICIAN_SUBSEQUENT_2021,
        _99484,
        source="CY2021 PFS final rule (G2214 added)",
    ),
    RuleSet(
        "fqhc-rhc-2018",
        "fqhc_rhc",
        STANDARD,
        date(2018, 1, 1),
        date(2024, 12, 31),
        _G0512_INITIAL,
        _G0512_SUBSEQUENT,
        _G0511,
        source="MLN909432: G0512 CoCM, G0511 general BHI",
    ),
    RuleSet(
        "fqhc-rhc-2025-transition",
        "fqhc_rhc",
        STANDARD,
        date(2025, 1, 1),
        date(2025, 9, 30),
        _G0512_INITIAL,
        _G0512_SUBSEQUENT,
        _99484,
        general_bhi_transition=_G0511,
        source="CY2025 PFS final rule: RHC/FQHC care-management unbundling, G0511 accepted in transition",
    ),
    RuleSet(
        "fqhc-rhc-2025-q4",
        "fqhc_rhc",
        STANDARD,
        date(2025, 10, 1),
        date(2025, 12, 31),
        _G0512_INITIAL,
        _G0512_SUBSEQUENT,
        _99484,
        source="CY2025 PFS final rule: G0511 no longer paid from 2025-10-01",
    ),
    RuleSet(
        "fqhc-rhc-2026",
        "fqhc_rhc",
        STANDARD,
        date(2026, 1, 1),
        None,
        _PHYSICIAN_INITIAL_2021,
        _PHYSICIAN_SUBSEQUENT_2021,
        _99484,
        source="CY2026 PFS final rule; NARHC: G0512 discontinued, physician codes",
    ),
    *(
        RuleSet(
            f"apcm-addons-2026-{setting}",
            setting,
            APCM,
            date(2026, 1, 1),
            None,
            _APCM_INITIAL,
            _APCM_SUBSEQUENT,
            _G0570,
            source="CY2026 PFS final rule: APCM behavioral-health add-ons G0568-G0570",
        )
        for setting in ("physician", "fqhc_rhc")
    ),
)


def rule_set_for(
    setting: BillingSetting, day: date, variant: Variant = STANDARD, rule_sets: Sequence[RuleSet] = ()
) -> RuleSet | None:
    """The rule set for ``setting`` and date of service ``day`` among ``rule_sets`` (default: the
    published ``RULE_SETS``), or None when no rule set covers it."""
    found = [
        rule_set
        for rule_set in rule_sets or RULE_SETS
        if rule_set.setting == setting and rule_set.variant == variant and rule_set.covers(day)
    ]
    if len(found) > 1:
        raise RuntimeError(f"rule sets overlap on {day}: {[rule_set.name for rule_set in found]}")
    return found[0] if found else None


def episode_rules_for(
    setting: BillingSetting, day: date, rule_sets: Sequence[RuleSet] = RULE_SETS
) -> EpisodeRules:
    """The episode rules of the standard rule set covering ``day`` (billing.md's when none does)."""
    standard = rule_set_for(setting, day, STANDARD, rule_sets)
    return standard.episodes if standard is not None else BILLING_MD_EPISODES


def separately_billed_on(day: date, rule_sets: Sequence[RuleSet] = RULE_SETS) -> frozenset[Code]:
    """The codes of services billed on their own on ``day``: those of every rule set covering it
    (billing.md's list before the first rule set)."""
    covering = [rule_set.separately_billed for rule_set in rule_sets if rule_set.covers(day)]
    return frozenset().union(*covering) if covering else SEPARATELY_BILLED_CODES


@dataclass(frozen=True)
class Evaluation:
    """What the minutes earn under one rule set, with what the notes need. ``pending`` lists the
    thresholds still ahead, nearest first (empty when more minutes add nothing)."""

    codes: tuple[CodeUnits, ...]
    minutes: int
    pending: tuple[Threshold, ...]
    base_reached: bool
    capped_from: int | None = None  # add-on units before the cap, when the cap cut them

    @property
    def progress(self) -> str:
        """The pending thresholds as a sentence (``BillingMonth.progress``)."""
        return ", ".join(threshold.clause(self.minutes) for threshold in self.pending)


def evaluate(
    rule_set: RuleSet, kind: MonthKind, program: Program, minutes: int, config: BillingConfig
) -> Evaluation:
    """Codes ``minutes`` counted minutes earn in a month of ``kind`` and ``program``."""
    if program == "general-bhi":
        bhi = rule_set.general_bhi
        if rule_set.general_bhi_transition is not None and config.fqhc_g0511_transition:
            bhi = rule_set.general_bhi_transition
        if minutes >= bhi.minutes:
            return Evaluation((CodeUnits(bhi.code, 1, bhi.system),), minutes, (), base_reached=True)
        return Evaluation((), minutes, (Threshold(bhi.minutes, bhi.code),), base_reached=False)

    rule = rule_set.initial if kind == "initial" else rule_set.subsequent
    base = rule.base
    if minutes < base.minutes:
        fallback = rule.fallback if config.fallback_covered else None
        base_threshold = Threshold(base.minutes, base.code)
        if fallback is not None and minutes >= fallback.minutes:
            return Evaluation(
                (CodeUnits(fallback.code, 1, fallback.system),),
                minutes,
                (base_threshold,),
                base_reached=False,
            )
        pending = (
            (base_threshold,)
            if fallback is None
            else (Threshold(fallback.minutes, fallback.code), base_threshold)
        )
        return Evaluation((), minutes, pending, base_reached=False)

    codes = [CodeUnits(base.code, 1, base.system)]
    add_on = rule.add_on
    if add_on is None:
        return Evaluation(tuple(codes), minutes, (), base_reached=True)
    units = add_on.units(minutes)
    cap = config.add_on_cap
    billed = units if cap is None else min(units, cap)
    if billed:
        codes.append(CodeUnits(add_on.code, billed, add_on.system))
    capped_from = units if billed < units else None
    next_unit = Threshold(add_on.minutes_for(units + 1), add_on.code, units + 1, add_on=True)
    at_cap = cap is not None and billed >= cap  # more minutes add nothing
    return Evaluation(
        tuple(codes), minutes, () if at_cap else (next_unit,), base_reached=True, capped_from=capped_from
    )


def visit_codes_of(rule_sets: Sequence[RuleSet] = RULE_SETS) -> frozenset[Code]:
    """Every visit code some rule set reads (initiating visits, APCM base codes): the codes whose
    Encounters the write path keeps as visit facts."""
    return frozenset().union(
        *(r.prerequisites.initiating_visit_codes | r.prerequisites.apcm_base_codes for r in rule_sets)
    )
