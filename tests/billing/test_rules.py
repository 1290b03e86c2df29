"""Rule sets: one row per published threshold and one either side (billing.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.billing.codes import CPT, HCPCS, SEPARATELY_BILLED_CODES
from app.billing.rules import (
    BILLING_MD_EXCLUSIONS,
    RULE_SETS,
    MonthKind,
    RuleSet,
    Variant,
    evaluate,
    rule_set_for,
    separately_billed_on,
)
from app.domain import BillingConfig, BillingSetting, CodeUnits, Program

DEFAULT = BillingConfig()


def _rules(setting: BillingSetting, day: date, variant: Variant = "standard") -> RuleSet:
    found = rule_set_for(setting, day, variant)
    assert found is not None
    return found


def _codes(
    setting: BillingSetting,
    day: date,
    kind: MonthKind,
    minutes: int,
    *,
    config: BillingConfig = DEFAULT,
    program: Program = "cocm",
    variant: Variant = "standard",
) -> dict[str, int]:
    evaluation = evaluate(_rules(setting, day, variant), kind, program, minutes, config)
    return {item.code: item.units for item in evaluation.codes}


PHYSICIAN_2026 = date(2026, 1, 1)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, {}),
        (15, {}),
        (16, {"G2214": 1}),
        (35, {"G2214": 1}),
        (36, {"99492": 1}),
        (85, {"99492": 1}),
        (86, {"99492": 1, "99494": 1}),
        (115, {"99492": 1, "99494": 1}),
        (116, {"99492": 1, "99494": 2}),
        (145, {"99492": 1, "99494": 2}),
        (146, {"99492": 1, "99494": 3}),
    ],
)
def test_physician_initial_month_thresholds(minutes: int, expected: dict[str, int]) -> None:
    assert _codes("physician", PHYSICIAN_2026, "initial", minutes) == expected


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, {}),
        (15, {}),
        (16, {"G2214": 1}),
        (30, {"G2214": 1}),
        (31, {"99493": 1}),
        (75, {"99493": 1}),
        (76, {"99493": 1, "99494": 1}),
        (105, {"99493": 1, "99494": 1}),
        (106, {"99493": 1, "99494": 2}),
        (135, {"99493": 1, "99494": 2}),
        (136, {"99493": 1, "99494": 3}),
    ],
)
def test_physician_subsequent_month_thresholds(minutes: int, expected: dict[str, int]) -> None:
    assert _codes("physician", PHYSICIAN_2026, "subsequent", minutes) == expected


@pytest.mark.parametrize(
    ("kind", "minutes", "expected"),
    [
        ("initial", 15, {}),
        ("initial", 16, {}),
        ("initial", 35, {}),
        ("initial", 36, {"99492": 1}),
        ("initial", 86, {"99492": 1, "99494": 1}),
        ("subsequent", 16, {}),
        ("subsequent", 30, {}),
        ("subsequent", 31, {"99493": 1}),
    ],
)
def test_physician_before_2021_has_no_g2214(kind: MonthKind, minutes: int, expected: dict[str, int]) -> None:
    assert _codes("physician", date(2020, 12, 1), kind, minutes) == expected


@pytest.mark.parametrize(
    ("day", "g2214"),
    [
        (date(2020, 12, 1), False),
        (date(2020, 12, 31), False),
        (date(2021, 1, 1), True),
        (date(2021, 1, 31), True),
    ],
)
def test_g2214_starts_with_2021_dates_of_service(day: date, g2214: bool) -> None:
    assert ("G2214" in _codes("physician", day, "initial", 20)) is g2214


@pytest.mark.parametrize(("kind", "minutes"), [("initial", 16), ("initial", 35), ("subsequent", 16)])
def test_g2214_not_reported_when_setting_off(kind: MonthKind, minutes: int) -> None:
    config = BillingConfig(fallback_covered=False)
    assert _codes("physician", PHYSICIAN_2026, kind, minutes, config=config) == {}
    assert _codes("physician", PHYSICIAN_2026, kind, 200, config=config)["99494"] >= 1


@pytest.mark.parametrize(
    ("minutes", "cap", "expected_units", "capped_from"),
    [
        (146, 2, 2, 3),
        (145, 2, 2, None),
        (116, 2, 2, None),
        (86, 0, 0, 1),
        (300, 4, 4, 8),
        (300, None, 8, None),
    ],
)
def test_99494_cap_by_setting(
    minutes: int, cap: int | None, expected_units: int, capped_from: int | None
) -> None:
    config = BillingConfig(add_on_cap=cap)
    evaluation = evaluate(_rules("physician", PHYSICIAN_2026), "initial", "cocm", minutes, config)
    units = {item.code: item.units for item in evaluation.codes}
    assert units.get("99494", 0) == expected_units
    assert units["99492"] == 1
    assert evaluation.capped_from == capped_from


@pytest.mark.parametrize(("kind", "base"), [("initial", 70), ("subsequent", 60)])
def test_99494_units_follow_midpoint_formula(kind: MonthKind, base: int) -> None:
    base_code = "99492" if kind == "initial" else "99493"
    for minutes in range(base // 2 + 1, 400):
        codes = _codes("physician", PHYSICIAN_2026, kind, minutes)
        assert codes[base_code] == 1
        assert codes.get("99494", 0) == max(0, (minutes - base + 14) // 30)


@pytest.mark.parametrize(
    ("day", "kind", "minutes", "expected"),
    [
        (date(2024, 12, 1), "initial", 69, {}),
        (date(2024, 12, 1), "initial", 70, {"G0512": 1}),
        (date(2024, 12, 1), "subsequent", 59, {}),
        (date(2024, 12, 1), "subsequent", 60, {"G0512": 1}),
        (date(2024, 12, 1), "initial", 200, {"G0512": 1}),
        (date(2024, 12, 1), "initial", 36, {}),  # no midpoint, no G2214 at FQHC/RHC
        (date(2025, 1, 1), "initial", 69, {}),
        (date(2025, 1, 1), "initial", 70, {"G0512": 1}),
        (date(2025, 9, 1), "subsequent", 59, {}),
        (date(2025, 9, 1), "subsequent", 60, {"G0512": 1}),
        (date(2025, 10, 1), "initial", 69, {}),
        (date(2025, 10, 1), "initial", 70, {"G0512": 1}),
        (date(2025, 12, 1), "subsequent", 60, {"G0512": 1}),
        (date(2026, 1, 1), "initial", 36, {"99492": 1}),
        (date(2026, 1, 1), "initial", 16, {"G2214": 1}),
        (date(2026, 1, 1), "subsequent", 76, {"99493": 1, "99494": 1}),
    ],
)
def test_fqhc_rhc_cocm_by_date_of_service(
    day: date, kind: MonthKind, minutes: int, expected: dict[str, int]
) -> None:
    assert _codes("fqhc_rhc", day, kind, minutes) == expected


@pytest.mark.parametrize(
    ("setting", "day", "transition", "minutes", "expected"),
    [
        ("physician", date(2026, 1, 1), False, 19, {}),
        ("physician", date(2026, 1, 1), False, 20, {"99484": 1}),
        ("physician", date(2020, 12, 1), False, 20, {"99484": 1}),
        ("physician", date(2026, 1, 1), False, 200, {"99484": 1}),
        ("fqhc_rhc", date(2024, 12, 1), False, 19, {}),
        ("fqhc_rhc", date(2024, 12, 1), False, 20, {"G0511": 1}),
        ("fqhc_rhc", date(2025, 1, 1), False, 19, {}),
        ("fqhc_rhc", date(2025, 1, 1), False, 20, {"99484": 1}),
        ("fqhc_rhc", date(2025, 1, 1), True, 19, {}),
        ("fqhc_rhc", date(2025, 1, 1), True, 20, {"G0511": 1}),
        ("fqhc_rhc", date(2025, 9, 1), True, 20, {"G0511": 1}),
        ("fqhc_rhc", date(2025, 10, 1), True, 20, {"99484": 1}),
        ("fqhc_rhc", date(2025, 12, 1), False, 20, {"99484": 1}),
        ("fqhc_rhc", date(2026, 1, 1), True, 20, {"99484": 1}),
    ],
)
def test_general_bhi_codes(
    setting: BillingSetting, day: date, transition: bool, minutes: int, expected: dict[str, int]
) -> None:
    config = BillingConfig(fqhc_g0511_transition=transition)
    for kind in ("initial", "subsequent"):
        assert _codes(setting, day, kind, minutes, config=config, program="general-bhi") == expected


@pytest.mark.parametrize(
    ("setting", "before", "after"),
    [
        ("physician", date(2020, 12, 31), date(2021, 1, 1)),
        ("fqhc_rhc", date(2024, 12, 31), date(2025, 1, 1)),
        ("fqhc_rhc", date(2025, 9, 30), date(2025, 10, 1)),
        ("fqhc_rhc", date(2025, 12, 31), date(2026, 1, 1)),
    ],
)
def test_rule_set_changes_at_each_cut_over(setting: BillingSetting, before: date, after: date) -> None:
    assert _rules(setting, before).name != _rules(setting, after).name
    assert _rules(setting, before) == _rules(setting, before.replace(day=1))
    assert _rules(setting, after) == _rules(setting, after.replace(day=28))


def test_no_rule_set_before_2018() -> None:
    assert rule_set_for("physician", date(2017, 12, 31)) is None
    assert rule_set_for("fqhc_rhc", date(2017, 12, 31)) is None


def test_rule_set_boundaries_are_month_aligned_and_contiguous() -> None:
    groups: dict[tuple[str, str], list[RuleSet]] = {}
    for rule_set in RULE_SETS:
        groups.setdefault((rule_set.setting, rule_set.variant), []).append(rule_set)
        assert rule_set.first_day.day == 1, rule_set.name
        if rule_set.last_day is not None:
            assert (rule_set.last_day + timedelta(days=1)).day == 1, rule_set.name
        assert rule_set.source, rule_set.name
    for group in groups.values():
        ordered = sorted(group, key=lambda rule_set: rule_set.first_day)
        for earlier, later in pairwise(ordered):
            assert earlier.last_day is not None
            assert earlier.last_day + timedelta(days=1) == later.first_day
        assert ordered[-1].last_day is None


@pytest.mark.parametrize(
    ("kind", "program", "minutes", "expected"),
    [
        ("initial", "cocm", 0, {}),
        ("initial", "cocm", 1, {"G0568": 1}),
        ("initial", "cocm", 200, {"G0568": 1}),
        ("subsequent", "cocm", 1, {"G0569": 1}),
        ("subsequent", "general-bhi", 0, {}),
        ("subsequent", "general-bhi", 1, {"G0570": 1}),
    ],
)
def test_apcm_add_on_rule_set(
    kind: MonthKind, program: Program, minutes: int, expected: dict[str, int]
) -> None:
    for setting in ("physician", "fqhc_rhc"):
        assert _codes(setting, date(2026, 1, 1), kind, minutes, program=program, variant="apcm") == expected
    assert rule_set_for("physician", date(2025, 12, 31), "apcm") is None


def test_code_systems() -> None:
    def systems(kind: MonthKind, minutes: int, day: date = PHYSICIAN_2026) -> dict[str, str]:
        evaluation = evaluate(_rules("physician", day), kind, "cocm", minutes, DEFAULT)
        return {item.code: item.system for item in evaluation.codes}

    assert systems("initial", 100) == {"99492": CPT, "99494": CPT}
    assert systems("initial", 20) == {"G2214": HCPCS}
    fqhc = evaluate(_rules("fqhc_rhc", date(2024, 1, 1)), "initial", "cocm", 70, DEFAULT)
    assert fqhc.codes == (CodeUnits("G0512", 1, HCPCS),)


@pytest.mark.parametrize(
    ("codes", "problem"),
    [
        ({"99492", "99493"}, "99492 with 99493 in one month"),
        ({"G2214", "99492"}, "99492 with G2214 in one month"),
        ({"G2214", "99493"}, "99493 with G2214 in one month"),
        ({"99494"}, "99494 without 99492 or 99493"),
        ({"99492", "99484"}, "99484 with 99492 in one month"),
        ({"G2214", "G0511"}, "G0511 with G2214 in one month"),
        ({"G0512", "99484"}, "99484 with G0512 in one month"),
    ],
)
def test_exclusion_violations_named(codes: set[str], problem: str) -> None:
    assert problem in BILLING_MD_EXCLUSIONS.violations(tuple(CodeUnits(code, 1) for code in codes))


_CONFIGS = [
    BillingConfig(),
    BillingConfig(fallback_covered=False),
    BillingConfig(add_on_cap=2),
    BillingConfig(setting="fqhc_rhc", fqhc_g0511_transition=True),
]


@pytest.mark.parametrize("rule_set", RULE_SETS, ids=lambda rule_set: rule_set.name)
def test_no_rule_set_breaks_an_exclusion(rule_set: RuleSet) -> None:
    for config in _CONFIGS:
        for kind in ("initial", "subsequent"):
            for program in ("cocm", "general-bhi"):
                for minutes in range(300):
                    codes = evaluate(rule_set, kind, program, minutes, config).codes
                    assert rule_set.exclusions.violations(codes) == [], (kind, program, minutes, codes)
                    assert all(item.units >= 1 for item in codes)


@given(
    rule_set=st.sampled_from(RULE_SETS),
    kind=st.sampled_from(["initial", "subsequent"]),
    program=st.sampled_from(["cocm", "general-bhi"]),
    config=st.sampled_from(_CONFIGS),
    minutes=st.integers(0, 2000),
    more=st.integers(0, 500),
)
def test_more_minutes_never_fewer_units(
    *, rule_set: RuleSet, kind: MonthKind, program: Program, config: BillingConfig, minutes: int, more: int
) -> None:
    def units(value: int) -> int:
        return sum(item.units for item in evaluate(rule_set, kind, program, value, config).codes)

    assert units(minutes + more) >= units(minutes)


@pytest.mark.parametrize(
    ("kind", "minutes", "progress"),
    [
        ("initial", 33, "3 more needed for 99492"),
        ("initial", 10, "6 more needed for G2214, 26 more needed for 99492"),
        ("initial", 40, "46 more for 99494"),
        ("initial", 95, "21 more for a second 99494"),
        ("subsequent", 110, "26 more for a third 99494"),
    ],
)
def test_progress_sentences(kind: MonthKind, minutes: int, progress: str) -> None:
    assert evaluate(_rules("physician", PHYSICIAN_2026), kind, "cocm", minutes, DEFAULT).progress == progress


# --- separately billed services: a code list of each rule set, chosen by date ------------------------

_CY2027_PSYCHOTHERAPY = (CPT, "X9999")  # a made-up code for a made-up rule set


def _with_cy2027_list() -> tuple[RuleSet, ...]:
    ends_2026 = tuple(
        replace(r, last_day=date(2026, 12, 31)) if r.name == "physician-2021" else r for r in RULE_SETS
    )
    cy2027 = next(r for r in RULE_SETS if r.name == "physician-2021")
    cy2027 = replace(
        cy2027,
        name="physician-2027-made-up",
        first_day=date(2027, 1, 1),
        separately_billed=cy2027.separately_billed | {_CY2027_PSYCHOTHERAPY},
    )
    return (*ends_2026, cy2027)


@pytest.mark.parametrize(
    ("day", "listed"),
    [(date(2026, 12, 31), False), (date(2027, 1, 1), True), (date(2027, 1, 2), True)],
)
def test_separately_billed_codes_are_dated_with_the_rule_sets(day: date, listed: bool) -> None:
    codes = separately_billed_on(day, _with_cy2027_list())
    assert (_CY2027_PSYCHOTHERAPY in codes) is listed
    assert (CPT, "90837") in codes  # psychotherapy stays billed on its own throughout


@pytest.mark.parametrize("day", [date(2017, 12, 31), date(2018, 1, 1), date(2026, 6, 1)])
def test_the_published_list_is_billing_mds(day: date) -> None:
    assert separately_billed_on(day) == SEPARATELY_BILLED_CODES
