"""A patient's whole picture from their facts: the billing month (``app.billing``) and the care
status (``app.care``), the two cores joined the one way every caller needs them (the reports
service, the whole-picture notification topics). Pure."""

from __future__ import annotations

from datetime import date

from app.billing.engine import bill_month
from app.billing.episodes import find_episodes
from app.billing.rules import episode_rules_for
from app.care.status import CareStatus, care_status
from app.domain import BillingConfig, BillingMonth, CareConfig, Month, PatientFacts


def billing_month(
    patient_id: str, facts: PatientFacts, month: Month, billing: BillingConfig, today: date
) -> BillingMonth:
    return bill_month(
        patient_id, month, facts.entries, facts.episodes_of_care, facts.consents, facts.visits, billing, today
    )


def status(
    patient_id: str, facts: PatientFacts, as_of: date, billing: BillingConfig, care: CareConfig
) -> CareStatus:
    """The care status as of ``as_of``, over the episodes the billing rules find (the lapse of the
    rule set covering ``as_of``)."""
    lapse = episode_rules_for(billing.setting, as_of)
    episodes = find_episodes(facts.entries, facts.episodes_of_care, billing, as_of=as_of, rules=lapse)
    return care_status(
        patient_id,
        as_of,
        episodes,
        facts.measurements,
        facts.entries,
        care,
        billing.timezone,
        billing.count_consultant_time,
        facts.diagnoses,
    )
