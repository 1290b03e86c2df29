"""The one FHIR date reader: what each precision names, in the clinic zone, and its edges."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.resources.dates import FhirDate, parse_fhir_date

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026", FhirDate(date(2026, 1, 1), date(2026, 12, 31), "year")),
        ("2026-02", FhirDate(date(2026, 2, 1), date(2026, 2, 28), "month")),
        ("2024-02", FhirDate(date(2024, 2, 1), date(2024, 2, 29), "month")),  # a leap February
        ("2026-03-08", FhirDate(date(2026, 3, 8), date(2026, 3, 8), "day")),
        # 03:30 UTC on Nov 1 is still Oct 31 in New York: the local day counts
        (
            "2026-11-01T03:30:00Z",
            FhirDate(
                date(2026, 10, 31), date(2026, 10, 31), "time", datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
            ),
        ),
        # no offset: read in the clinic zone (EST, UTC-5)
        (
            "2026-01-05T10:00:00",
            FhirDate(date(2026, 1, 5), date(2026, 1, 5), "time", datetime(2026, 1, 5, 15, tzinfo=UTC)),
        ),
    ],
)
def test_precisions(text: str, expected: FhirDate) -> None:
    assert parse_fhir_date(text, NY) == expected


@pytest.mark.parametrize(
    "text", ["", "26", "2026-1", "2026-13", "2026-02-30", "2026/01/05", "20260105", "0000", "x"]
)
def test_not_dates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fhir_date(text, NY)


def test_the_edges_of_the_calendar_overflow() -> None:
    with pytest.raises(OverflowError):
        parse_fhir_date("9999-12-31T23:00:00-05:00", NY)
    with pytest.raises(OverflowError):
        parse_fhir_date("9999-12-31", NY).end(NY)


def test_start_and_end_of_a_day_and_a_second() -> None:
    day = parse_fhir_date("2026-03-08", NY)  # the spring-forward day: 23 hours
    assert (day.end(NY) - day.start(NY)) == timedelta(hours=23)
    second = parse_fhir_date("2026-03-08T12:00:00Z", NY)
    assert second.end(NY) - second.start(NY) == timedelta(seconds=1)
    fraction = parse_fhir_date("2026-03-08T12:00:00.250Z", NY)
    assert fraction.end(NY) - fraction.start(NY) == timedelta(microseconds=1)


@given(st.dates(min_value=date(2, 1, 1), max_value=date(9998, 12, 31)))
def test_every_day_month_and_year_names_its_days(day: date) -> None:
    assert parse_fhir_date(day.isoformat(), NY) == FhirDate(day, day, "day")
    month = parse_fhir_date(day.isoformat()[:7], NY)
    assert (month.first, month.last) == (
        day.replace(day=1),
        day.replace(day=calendar.monthrange(day.year, day.month)[1]),
    )
    year = parse_fhir_date(day.isoformat()[:4], NY)
    assert year.first <= day <= year.last
    assert month.start(NY) < month.end(NY)
