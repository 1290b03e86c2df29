"""Plain value types shared by the pure core (measures, billing, care) and the store.

Nothing here does I/O or knows about FastAPI, SQLAlchemy or FHIR models. The store extracts these
facts from FHIR resources when they are written and hands them back to the core when it reads.
All datetimes are timezone-aware; dates are calendar dates in the clinic time zone unless named
otherwise.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final, Literal

Instrument = Literal["PHQ-9", "GAD-7", "PHQ-2"]
DiagnosisCategory = Literal["depression", "exclusion"]
ICD10_CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"  # the system of every Diagnosis.code
Program = Literal["cocm", "general-bhi"]
BillingSetting = Literal["physician", "fqhc_rhc"]

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month (in the clinic time zone when it comes from a date)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        # Year 9999 is left out so that every month has a next one (datetime ends in 9999).
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9998:
            raise ValueError(f"not a calendar month: {self.year:04d}-{self.month:02d}")

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse ``YYYY-MM``; raises ValueError otherwise."""
        match = _MONTH_RE.match(text)
        if match is None:
            raise ValueError(f"month must be YYYY-MM, got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def next(self) -> Month:
        return Month(self.year + (self.month == 12), self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def index(self) -> int:
        """Months since year 0: differences between months are plain subtraction."""
        return self.year * 12 + self.month - 1

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Measurement:
    """One symptom score: a scored QuestionnaireResponse or a total-score Observation; or, with
    ``score`` None, a PHQ-9 item 9 answered on its own (an item-level ``44260-8`` Observation), which
    counts for safety_risk only."""

    patient_id: str
    instrument: Instrument
    score: int | None
    effective: datetime
    source: str  # "QuestionnaireResponse/abc" or "Observation/xyz"
    item9: int | None = None  # PHQ-9 safety item when answered
    warnings: tuple[str, ...] = ()


# api.md activity table: the psychiatric consultant's own time, counted only by setting.
PSYCHIATRIC_CONSULTATION: Final = "psychiatric-consultation"
# The reason such an entry does not count (its other reasons are in ``TimeEntry.excluded``).
PSYCHIATRIC_CONSULTANT: Final = "psychiatric_consultant"


@dataclass(frozen=True)
class TimeEntry:
    """One Encounter carrying a CoCM activity code.

    ``excluded`` names why the entry never counts, whatever the settings (``not_finished``,
    ``inpatient``, ``separately_billed``); ``None`` when it may count. Whether the psychiatric
    consultant's time counts is a setting, applied by the billing core from ``activity``.
    """

    patient_id: str
    start: datetime
    seconds: int
    activity: str
    source: str  # "Encounter/abc"
    excluded: str | None = None

    def uncounted_reason(self, *, count_consultant_time: bool) -> str | None:
        """Why this entry does not count toward care-manager minutes, ``None`` when it counts: the
        one definition of billing.md "What time counts" (billing, last contact, care status).
        Its own ``excluded`` reason, else ``psychiatric_consultant`` for the consultant's own time
        unless ``count_consultant_time``."""
        if self.excluded is not None:
            return self.excluded
        if self.activity == PSYCHIATRIC_CONSULTATION and not count_consultant_time:
            return PSYCHIATRIC_CONSULTANT
        return None


@dataclass(frozen=True)
class EpisodeOfCareFact:
    """What the service reads from an EpisodeOfCare."""

    patient_id: str
    start: date | None
    end: date | None
    finished: bool
    program: Program
    source: str


@dataclass(frozen=True)
class ConsentFact:
    patient_id: str
    active: bool
    on: date | None  # Consent.dateTime as a clinic-local date
    source: str


@dataclass(frozen=True)
class VisitFact:
    """A finished Encounter typed with a billing code that matters to CoCM: an initiating visit
    (E/M, AWV, IPPE, TCM) or an APCM base code (G0556-G0558)."""

    patient_id: str
    on: date
    system: str
    code: str
    source: str


@dataclass(frozen=True)
class Diagnosis:
    """A Condition whose code is in one of the quality value sets (``app.quality.valuesets``),
    coded in ICD-10-CM (a SNOMED CT code through the shipped map). ``onset``: onset[x] or else
    recordedDate, a clinic-local date (None: not given); ``abatement``: the date it abated (None:
    not given); ``clinically_active``: clinicalStatus is active, recurrence or relapse, or absent;
    ``refuted``: verificationStatus is refuted or entered-in-error.

    Active on a date (quality.md, Diagnoses): not refuted, onset on or before the date and, when an
    abatement date is given, the date before it. FHIR requires an abated Condition to carry an
    inactive clinicalStatus (invariant con-4), so the abatement date, when there is one, is what
    says until when it was active; without one, clinicalStatus says whether it still is."""

    patient_id: str
    code: str  # ICD-10-CM with its dot, e.g. "F33.1"
    display: str | None
    category: DiagnosisCategory
    onset: date | None
    abatement: date | None
    clinically_active: bool
    refuted: bool
    source: str  # "Condition/abc"

    def active_on(self, day: date) -> bool:
        if self.refuted or (self.onset is not None and self.onset > day):
            return False
        return day < self.abatement if self.abatement is not None else self.clinically_active

    def active_by(self, day: date) -> bool:
        """Active on any day up to and including ``day``."""
        if self.refuted or (self.onset is not None and self.onset > day):
            return False
        if self.abatement is not None:
            return self.onset is None or self.onset < self.abatement
        return self.clinically_active


@dataclass(frozen=True)
class Person:
    """What the quality measures read from a Patient: the birth date (the first day of a partial
    one) and the date of death (``deceased`` without ``deceased_on``: deceasedBoolean true)."""

    birth_date: date | None = None
    deceased: bool = False
    deceased_on: date | None = None

    def died_by(self, day: date) -> bool:
        return self.deceased and (self.deceased_on is None or self.deceased_on <= day)


@dataclass(frozen=True)
class Episode:
    """One continuous course of care (billing.md, Episodes)."""

    start: date
    end: date | None = None  # last day of the episode once it has ended
    end_reason: Literal["discharged", "inactive"] | None = None
    program: Program = "cocm"


@dataclass(frozen=True)
class BillingConfig:
    """Billing settings (api.md settings table); defaults are the documented defaults."""

    timezone: str = "UTC"
    setting: BillingSetting = "physician"
    count_consultant_time: bool = False
    fallback_covered: bool = True
    add_on_cap: int | None = None
    apcm_addons: bool = False
    # billing.md FQHC/RHC 2025-01-01..2025-09-30: G0511 still accepted in the transition.
    fqhc_g0511_transition: bool = False


@dataclass(frozen=True)
class CareConfig:
    """Care-status thresholds (measures.md); each maps to a COCM_ setting."""

    not_improving_weeks: int = 10
    measurement_overdue_days: int = 30
    no_recent_contact_days: int = 30
    case_review_due_days: int = 28
    new_patient_weeks: int = 8
    baseline_lookback_days: int = 14
    not_improving_min_score: int = 10
    response_fraction: float = 0.5
    remission_below: int = 5


@dataclass(frozen=True)
class CodeUnits:
    code: str
    units: int
    system: str = "http://www.ama-assn.org/go/cpt"


def _ordinal(unit: int) -> str:
    words = {1: "", 2: "a second ", 3: "a third ", 4: "a fourth ", 5: "a fifth "}
    return words.get(unit, f"unit {unit} of ")


@dataclass(frozen=True)
class Threshold:
    """The next code a month's minutes can reach: ``minutes`` counted minutes in the month earn
    unit ``unit`` of ``code`` (an ``add_on`` adds units to a base code already earned)."""

    minutes: int
    code: str
    unit: int = 1
    add_on: bool = False

    @property
    def label(self) -> str:
        """ "99492", "a second 99494"."""
        return f"{_ordinal(self.unit)}{self.code}"

    def clause(self, minutes: int) -> str:
        """ "14 more needed for 99492", "21 more for a second 99494"."""
        return f"{self.minutes - minutes} more {'for' if self.add_on else 'needed for'} {self.label}"


@dataclass(frozen=True)
class BillingMonth:
    """One patient's month (api.md, "Billing month"). ``rule_set`` names the rule set that billed
    it and ``pending`` the codes more minutes would earn, nearest first (``None`` and empty without
    an episode; empty also when more minutes add nothing)."""

    patient_id: str
    month: Month
    setting: BillingSetting
    month_kind: Literal["initial", "subsequent"] | None
    episode_start: date | None
    minutes: int
    codes: tuple[CodeUnits, ...]
    billable: bool
    blockers: tuple[str, ...]
    notes: tuple[str, ...]
    counted_sources: tuple[str, ...] = field(default=())  # Encounters that counted
    rule_set: str | None = None
    pending: tuple[Threshold, ...] = ()  # thresholds still ahead, nearest first

    @property
    def next_threshold(self) -> Threshold | None:
        return self.pending[0] if self.pending else None

    @property
    def progress(self) -> str:
        """ "3 more needed for G2214, 14 more needed for 99492" ("" when nothing is pending)."""
        return ", ".join(threshold.clause(self.minutes) for threshold in self.pending)


@dataclass
class PatientFacts:
    """Every fact of one patient, as the billing and care cores read them."""

    entries: list[TimeEntry] = field(default_factory=list)
    episodes_of_care: list[EpisodeOfCareFact] = field(default_factory=list)
    consents: list[ConsentFact] = field(default_factory=list)
    visits: list[VisitFact] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    person: Person = field(default_factory=Person)


@dataclass(frozen=True)
class Actor:
    """Who is calling, for the audit trail: an agent name (key fingerprint or client id) and the
    network address. Never a key, never patient data."""

    agent: str
    address: str | None = None


SYSTEM_ACTOR = Actor("system")
