"""Care status of one patient as of a date (measures.md, "Care status"; api.md, care-status JSON).

Pure: no I/O, no clock. The caller hands over everything it has for the patient (episodes already
computed by the billing core, every measurement and time entry, possibly dated after ``as_of``) and
the result depends only on what is dated on or before ``as_of``, so that every status is
reproducible (measures.md: "as of defaults to today and can be given").

Choices the spec leaves open, recorded here once:

- **Dates.** Every instant (``Measurement.effective``, ``TimeEntry.start``) is turned into a calendar
  date in the clinic time zone (billing.md, "calendar month"); a naive datetime is read as UTC.
  Anything whose date is after ``as_of`` is ignored.
- **Episode.** The current or last episode whose ``start`` is on or before ``as_of``; ties on the
  start prefer the episode without an end. The episode has ended as of ``as_of`` when its ``end`` is
  on or before ``as_of`` (the end is the episode's last day, so on that day the patient is already
  discharged / inactive), or when it carries an ``end_reason`` without an end date. An ``end`` after
  ``as_of`` (the list was computed later) means the episode is still open on ``as_of``.
- **Status.** ``discharged`` when ``end_reason == "discharged"``, ``inactive`` for any other ended
  episode; in an open episode ``relapse_prevention`` when the latest primary-instrument score is in
  remission (below ``CareConfig.remission_below``), else ``active`` (also when nothing was measured).
  The primary instrument is PHQ-9 when the window holds a PHQ-9, else GAD-7 (measures.md).
- **Measurement window.** From ``episode.start - baseline_lookback_days`` to ``as_of`` (or the
  episode's end when it ended before ``as_of``), both ends included. *Baseline* is the earliest and
  *latest* the most recent measurement of the instrument in that same window: measures.md defines
  latest as "on or before as-of"; restricting it to the window keeps baseline and latest of one course
  of care, so that a score from a previous episode or after discharge never pairs with this
  episode's baseline. Equal instants are ordered by ``source`` so that the choice is deterministic.
  ``count`` is the number of the instrument's measurements in the window. Without an episode there is
  no window and both measures are ``None``.
- **weeks_in_treatment** is ``(as_of - episode_start).days // 7`` (measures.md: "whole weeks from
  episode_start to as-of"), also for an ended episode; ``None`` without an episode.
- **change_percent** is rounded to one decimal half away from zero, computed exactly (Decimal):
  16 -> 17 is +6.25 %, reported 6.3 (float ``round`` would give 6.2).
- **severity** is the band of the latest score from ``app.measures.instruments.severity`` (the one
  table of measures.md); ``None`` for a score outside the instrument's range.
- **not_improving** with a single score: baseline = latest, so a patient measured once at >= 10 and
  never again is "not improving" at week 10 (no evidence of improvement, which is what the flag asks).
- **response** is ``latest <= response_fraction * baseline`` computed exactly; ``False`` when the
  baseline is 0 (nothing to halve; Coley et al. 2020 define response as a >= 50 % reduction).
- **last_contact** is the date of the most recent *counted* time entry on or before ``as_of`` in any
  episode: ``excluded is None`` and, for ``psychiatric-consultation``, only when
  ``count_consultant_time`` (billing.md, "What time counts").
- **"In the last N days"** means dated on or after ``as_of - N days`` (and on or before ``as_of``):
  with N = 30 and as_of 2026-03-31, a score on 2026-03-01 is recent, one on 2026-02-28 is not.
- **Which patients carry flags.** ``safety_risk`` is derived from every PHQ-9 on or before ``as_of``,
  whatever the status: a positive item 9 is a safety concern whether or not the patient is in an
  open episode, and the registry must surface it (a discharged or never-enrolled patient with
  thoughts of self-harm still needs a call). The other flags are workflow reminders of an open CoCM
  episode (IMPACT / AIMS Center registry) and only apply to ``active`` / ``relapse_prevention``
  patients; ``no_recent_contact`` only to ``active`` ones (measures.md). ``case_review_due`` therefore
  needs an open episode too, even when ``safety_risk`` is set.
- **case-review entries** count for ``case_review_due`` when ``activity == "case-review"`` and
  ``excluded is None`` (a cancelled or planned review did not take place).
- **measurement_overdue** counts a measurement of any instrument (PHQ-2 included: api.md counts its
  total as a measurement), in the episode or not.
- **Item 9 on its own** (a ``Measurement`` without a score: an item-level ``44260-8`` Observation)
  counts for ``safety_risk`` as a PHQ-9 with item 9 answered, dated by its effective time (api.md),
  and for nothing else: it is no total score, so no baseline, latest, count or measurement.
- **Diagnoses** (quality.md): the patient's diagnoses in the quality value sets active on ``as_of``
  (``Diagnosis.active_on``), ordered by code then source, whatever the status.
- **Flag order** is that of the measures.md table: safety_risk, not_improving, measurement_overdue,
  no_recent_contact, case_review_due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.domain import ICD10_CM, CareConfig, Diagnosis, Episode, Instrument, Measurement, TimeEntry
from app.measures.instruments import severity as instrument_severity

Status = Literal["not_enrolled", "active", "relapse_prevention", "inactive", "discharged"]
Flag = Literal["safety_risk", "not_improving", "measurement_overdue", "no_recent_contact", "case_review_due"]

STATUSES: Final[tuple[Status, ...]] = (
    "not_enrolled",
    "active",
    "relapse_prevention",
    "inactive",
    "discharged",
)
# measures.md, Flags table order; also the order of CareStatus.flags.
FLAGS: Final[tuple[Flag, ...]] = (
    "safety_risk",
    "not_improving",
    "measurement_overdue",
    "no_recent_contact",
    "case_review_due",
)
# The instruments tracked in the care-status JSON (api.md), in output order. PHQ-2 is a screener:
# it counts for measurement_overdue but has no measure block of its own.
TRACKED_INSTRUMENTS: Final[tuple[Instrument, ...]] = ("PHQ-9", "GAD-7")

CASE_REVIEW_ACTIVITY: Final = "case-review"
OPEN_STATUSES: Final[frozenset[Status]] = frozenset({"active", "relapse_prevention"})


@dataclass(frozen=True)
class ScorePoint:
    """One score and its date in the clinic time zone."""

    score: int
    date: date

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "date": self.date.isoformat()}


@dataclass(frozen=True)
class MeasureSummary:
    """First and last score of one instrument in the episode window (AIMS Center registry: "first
    and last scores")."""

    instrument: Instrument
    baseline: ScorePoint
    latest: ScorePoint
    change_percent: float | None
    response: bool
    remission: bool
    severity: str | None
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.to_json(),
            "latest": self.latest.to_json(),
            "change_percent": self.change_percent,
            "response": self.response,
            "remission": self.remission,
            "severity": self.severity,
            "count": self.count,
        }


@dataclass(frozen=True)
class CareStatus:
    """A patient's care status as of a date (api.md, "Care status").

    ``episode_end`` is not part of the JSON; it is kept for computed views (CarePlan.period).
    """

    patient_id: str
    as_of: date
    status: Status
    episode_start: date | None
    weeks_in_treatment: int | None
    last_contact: date | None
    phq9: MeasureSummary | None
    gad7: MeasureSummary | None
    flags: tuple[Flag, ...]
    episode_end: date | None = None
    diagnoses: tuple[Diagnosis, ...] = ()

    @property
    def measures(self) -> dict[str, MeasureSummary | None]:
        summaries = {"PHQ-9": self.phq9, "GAD-7": self.gad7}
        return {name: summaries[name] for name in TRACKED_INSTRUMENTS}

    def has_flag(self, flag: str) -> bool:
        return flag in self.flags

    def to_json(self) -> dict[str, Any]:
        """The api.md care-status object, dates as ISO strings."""
        return {
            "patient_id": self.patient_id,
            "as_of": self.as_of.isoformat(),
            "status": self.status,
            "episode_start": _iso(self.episode_start),
            "weeks_in_treatment": self.weeks_in_treatment,
            "last_contact": _iso(self.last_contact),
            "measures": {
                name: (summary.to_json() if summary is not None else None)
                for name, summary in self.measures.items()
            },
            "flags": list(self.flags),
            "diagnoses": [
                {"system": ICD10_CM, "code": d.code, "display": d.display, "category": d.category}
                for d in self.diagnoses
            ],
        }


def care_status(
    patient_id: str,
    as_of: date,
    episodes: Sequence[Episode],
    measurements: Sequence[Measurement],
    entries: Sequence[TimeEntry],
    config: CareConfig,
    timezone: str,
    count_consultant_time: bool = False,
    diagnoses: Sequence[Diagnosis] = (),
) -> CareStatus:
    """Derive the care status of one patient as of ``as_of`` (see the module docstring for the
    choices). ``timezone`` is an IANA name; an unknown one raises ValueError."""
    zone = _zone(timezone)

    # Everything dated after as_of is dropped first: the rest of the function only sees the past.
    dated = sorted(
        (pair for pair in ((_local_date(m.effective, zone), m) for m in measurements) if pair[0] <= as_of),
        # Equal instants: ordered by source (then content), so that input order never matters.
        key=lambda pair: (
            _utc(pair[1].effective),
            pair[1].source,
            pair[1].instrument,
            -1 if pair[1].score is None else pair[1].score,
            -1 if pair[1].item9 is None else pair[1].item9,
        ),
    )
    entry_dates = [pair for pair in ((_local_date(e.start, zone), e) for e in entries) if pair[0] <= as_of]
    counted_dates = [
        day
        for day, e in entry_dates
        if e.uncounted_reason(count_consultant_time=count_consultant_time) is None
    ]
    last_contact = max(counted_dates, default=None)

    episode = _current_episode(episodes, as_of)
    status: Status
    phq9: MeasureSummary | None = None
    gad7: MeasureSummary | None = None
    weeks: int | None = None
    if episode is None:
        status = "not_enrolled"
    else:
        weeks = (as_of - episode.start).days // 7
        window_start = episode.start - timedelta(days=config.baseline_lookback_days)
        ended = _has_ended(episode, as_of)
        window_end = min(as_of, episode.end) if ended and episode.end is not None else as_of
        in_window = [(day, m) for day, m in dated if window_start <= day <= window_end]
        phq9 = _summary("PHQ-9", in_window, config)
        gad7 = _summary("GAD-7", in_window, config)
        if ended:
            status = "discharged" if episode.end_reason == "discharged" else "inactive"
        else:
            primary = phq9 if phq9 is not None else gad7
            status = "relapse_prevention" if primary is not None and primary.remission else "active"

    flags = _flags(
        as_of=as_of,
        status=status,
        weeks=weeks,
        primary=phq9 if phq9 is not None else gad7,
        dated=dated,
        counted_dates=counted_dates,
        case_review_dates=[
            day for day, e in entry_dates if e.activity == CASE_REVIEW_ACTIVITY and e.excluded is None
        ],
        config=config,
    )
    return CareStatus(
        patient_id=patient_id,
        as_of=as_of,
        status=status,
        episode_start=episode.start if episode is not None else None,
        weeks_in_treatment=weeks,
        last_contact=last_contact,
        phq9=phq9,
        gad7=gad7,
        flags=flags,
        episode_end=episode.end if episode is not None and _has_ended(episode, as_of) else None,
        diagnoses=tuple(
            sorted((d for d in diagnoses if d.active_on(as_of)), key=lambda d: (d.code, d.source))
        ),
    )


# --- flags ---------------------------------------------------------------------------------------


def _flags(
    *,
    as_of: date,
    status: Status,
    weeks: int | None,
    primary: MeasureSummary | None,
    dated: Sequence[tuple[date, Measurement]],
    counted_dates: Sequence[date],
    case_review_dates: Sequence[date],
    config: CareConfig,
) -> tuple[Flag, ...]:
    flags: list[Flag] = []
    is_open = status in OPEN_STATUSES

    # measures.md: the latest PHQ-9 with item 9 answered decides; a later item 9 = 0 clears it.
    # Shown whatever the status (module docstring).
    safety_risk = _safety_risk(dated)
    if safety_risk:
        flags.append("safety_risk")

    # IMPACT / AIMS Center: psychiatric case review of patients not improved at 10-12 weeks;
    # clinically significant improvement = PHQ-9 < 10 or >= 50 % reduction (Bao et al., MHIP).
    not_improving = (
        is_open
        and weeks is not None
        and weeks >= config.not_improving_weeks
        and primary is not None
        and primary.latest.score >= config.not_improving_min_score
        and Fraction(primary.latest.score) > _fraction(config.response_fraction) * primary.baseline.score
    )
    if not_improving:
        flags.append("not_improving")

    scored_days = (day for day, m in dated if m.score is not None)  # item 9 alone is no measurement
    if is_open and not _any_since(scored_days, as_of, config.measurement_overdue_days):
        flags.append("measurement_overdue")

    if status == "active" and not _any_since(counted_dates, as_of, config.no_recent_contact_days):
        flags.append("no_recent_contact")

    needs_review = not_improving or safety_risk or (weeks is not None and weeks < config.new_patient_weeks)
    if is_open and needs_review and not _any_since(case_review_dates, as_of, config.case_review_due_days):
        flags.append("case_review_due")
    return tuple(flags)


def _safety_risk(dated: Sequence[tuple[date, Measurement]]) -> bool:
    for _, m in reversed(dated):  # most recent first
        if m.instrument == "PHQ-9" and m.item9 is not None:
            return m.item9 > 0
    return False


def _any_since(days: Iterable[date], as_of: date, n_days: int) -> bool:
    """True when one of ``days`` (all on or before as_of) is on or after ``as_of - n_days``."""
    since = as_of - timedelta(days=n_days)
    return any(since <= day <= as_of for day in days)


# --- measures ------------------------------------------------------------------------------------


def _summary(
    instrument: Instrument, in_window: Sequence[tuple[date, Measurement]], config: CareConfig
) -> MeasureSummary | None:
    points = [(day, m.score) for day, m in in_window if m.instrument == instrument and m.score is not None]
    if not points:
        return None
    (base_day, base), (last_day, last) = points[0], points[-1]
    return MeasureSummary(
        instrument=instrument,
        baseline=ScorePoint(base, base_day),
        latest=ScorePoint(last, last_day),
        change_percent=change_percent(base, last),
        response=is_response(base, last, config.response_fraction),
        # measures.md: remission = latest < 5 (PHQ-9 and GAD-7); Coley et al. 2020.
        remission=last < config.remission_below,
        severity=severity(instrument, last),
        count=len(points),
    )


def change_percent(baseline: int, latest: int) -> float | None:
    """(latest - baseline) / baseline * 100, one decimal half away from zero; None for baseline 0."""
    if baseline == 0:
        return None
    value = Decimal(100 * (latest - baseline)) / Decimal(baseline)
    return float(value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def is_response(baseline: int, latest: int, fraction: float = 0.5) -> bool:
    """latest <= fraction * baseline, exactly; False when the baseline is 0 (Coley et al. 2020:
    response is a >= 50 % reduction, undefined from 0)."""
    if baseline <= 0:
        return False
    return Fraction(latest) <= _fraction(fraction) * baseline


def severity(instrument: Instrument, score: int) -> str | None:
    """Severity band of the latest score (measures.md bands, owned by app.measures.instruments);
    ``None`` for a score outside the instrument's range (a malformed total-score Observation must
    not break the registry) or an instrument without bands (PHQ-2)."""
    try:
        return instrument_severity(instrument, score)
    except ValueError:
        return None


# --- helpers -------------------------------------------------------------------------------------


def _current_episode(episodes: Sequence[Episode], as_of: date) -> Episode | None:
    started = [e for e in episodes if e.start <= as_of]
    if not started:
        return None
    # Latest start wins; on equal starts the open episode (no end) wins, then the later end.
    return max(started, key=lambda e: (e.start, e.end is None, e.end or date.min))


def _has_ended(episode: Episode, as_of: date) -> bool:
    if episode.end is not None:
        return episode.end <= as_of
    return episode.end_reason is not None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _utc(instant: datetime) -> datetime:
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _local_date(instant: datetime, zone: ZoneInfo) -> date:
    return _utc(instant).astimezone(zone).date()


def _fraction(value: float) -> Fraction:
    """A setting such as 0.5 as an exact fraction (0.3 means 3/10, not its binary float)."""
    return Fraction(str(value))


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None
