"""The two topics a write raises through what it changes in a patient's whole picture, not in the
resource alone (notifications.md Topics): ``care-flag-raised`` (``safety_risk`` or
``not_improving`` true as of the write's date and false just before it) and
``billing-threshold-reached`` (an Encounter that adds counted minutes to its month and so raises
a code or a unit the month supports: G2214 -> 99492, a new 99494). Pure: the patient's facts before
and after the write in, the topics out; the resource service reads the facts and raises the events.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from app.billing.episodes import local_date
from app.care.status import Flag
from app.domain import BillingConfig, CareConfig, Month, PatientFacts
from app.picture import billing_month, status

WATCHED_FLAGS: tuple[Flag, ...] = ("safety_risk", "not_improving")  # notifications.md: care-flag-raised


def raised_flags(
    patient_id: str,
    before: PatientFacts,
    after: PatientFacts,
    as_of: date,
    billing: BillingConfig,
    care: CareConfig,
) -> list[Flag]:
    """The watched flags true after the write and false before it, as of ``as_of``."""

    def flags(facts: PatientFacts) -> set[str]:
        return set(status(patient_id, facts, as_of, billing, care).flags)

    was, now = flags(before), flags(after)
    return [flag for flag in WATCHED_FLAGS if flag in now and flag not in was]


def threshold_reached(
    patient_id: str,
    encounter: str,
    before: PatientFacts,
    after: PatientFacts,
    today: date,
    billing: BillingConfig,
) -> bool:
    """Whether the write of ``encounter`` (``Encounter/id``) added counted minutes to its month and
    with them a code or a unit the month did not support before."""
    entry = next((e for e in after.entries if e.source == encounter), None)
    if entry is None:
        return False
    month = Month.of(local_date(entry, ZoneInfo(billing.timezone)))

    was, now = (billing_month(patient_id, facts, month, billing, today) for facts in (before, after))
    units = {code.code: code.units for code in was.codes}
    return now.minutes > was.minutes and any(code.units > units.get(code.code, 0) for code in now.codes)
