"""The whole-picture topics as pure functions (app.notifications.derived): table tests at the
billing.md thresholds and the care-flag edges."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.billing.codes import CPT
from app.domain import BillingConfig, CareConfig, ConsentFact, Measurement, PatientFacts, TimeEntry, VisitFact
from app.notifications.derived import raised_flags, threshold_reached

CONSENT = ConsentFact("p1", True, date(2026, 1, 2), "Consent/c1")
VISIT = VisitFact("p1", date(2026, 1, 2), CPT, "99214", "Encounter/v1")
TODAY = date(2026, 1, 31)


def minutes(count: int, day: int = 5, source: str = "Encounter/e1") -> TimeEntry:
    return TimeEntry("p1", datetime(2026, 1, day, 15, tzinfo=UTC), count * 60, "follow-up", source)


def facts(*entries: TimeEntry, measurements: tuple[Measurement, ...] = ()) -> PatientFacts:
    return PatientFacts(
        entries=list(entries), consents=[CONSENT], visits=[VISIT], measurements=list(measurements)
    )


@pytest.mark.parametrize(
    ("before", "added", "reached"),
    [
        (0, 15, False),  # under G2214's 16 (CY2021 PFS: midpoint of 30)
        (0, 16, True),  # G2214
        (16, 19, False),  # 35: still G2214
        (16, 20, True),  # 36: 99492 (midpoint of 70)
        (36, 1, False),  # 37: 99492 still
        (70, 15, False),  # 85: no 99494 yet
        (70, 16, True),  # 86: the first 99494 unit
        (86, 29, False),  # 115: one unit
        (86, 30, True),  # 116: the second unit
    ],
)
def test_billing_threshold_reached(before: int, added: int, reached: bool) -> None:
    earlier = (minutes(before, day=3, source="Encounter/e0"),) if before else ()
    was = facts(*earlier)
    now = facts(*earlier, minutes(added))
    assert threshold_reached("p1", "Encounter/e1", was, now, TODAY, BillingConfig()) is reached


def test_fewer_minutes_never_reach_a_threshold() -> None:
    was = facts(minutes(40))  # 99492
    now = facts(minutes(20))  # corrected down: G2214 again, a "new" code but no more minutes
    assert not threshold_reached("p1", "Encounter/e1", was, now, TODAY, BillingConfig())


def phq9(day: int, score: int, item9: int, source: str) -> Measurement:
    return Measurement("p1", "PHQ-9", score, datetime(2026, 1, day, 10, tzinfo=UTC), source, item9)


@pytest.mark.parametrize(
    ("earlier", "item9", "raised"),
    [
        ((), 0, []),
        ((), 1, ["safety_risk"]),  # measures.md: item 9 >= 1
        ((), 3, ["safety_risk"]),
        ((phq9(3, 15, 2, "QuestionnaireResponse/q0"),), 1, []),  # already at risk
        ((phq9(3, 15, 0, "QuestionnaireResponse/q0"),), 1, ["safety_risk"]),
    ],
)
def test_care_flag_raised(earlier: tuple[Measurement, ...], item9: int, raised: list[str]) -> None:
    was = facts(minutes(30), measurements=earlier)
    now = facts(minutes(30), measurements=(*earlier, phq9(10, 14, item9, "QuestionnaireResponse/q1")))
    assert raised_flags("p1", was, now, TODAY, BillingConfig(), CareConfig()) == raised
