"""The one reader of FHIR ``date``, ``dateTime`` and ``instant`` values (and of ``date`` search
values): everything that places a resource or a query in time goes through ``parse_fhir_date``.

A value names calendar days in the clinic time zone, ``first`` to ``last`` (a year, a month, a day),
or, with a time, an ``instant`` (aware; a time without an offset is read in the clinic zone, as
FHIR leaves it to the server). Its local day is then the instant's day in the clinic zone. At the
edges of the calendar (years 1 and 9999) moving an instant between zones can overflow: that raises
``OverflowError``, which each caller turns into its own answer.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Precision = Literal["year", "month", "day", "time"]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


@dataclass(frozen=True)
class FhirDate:
    first: date  # first local day named
    last: date  # last local day named (inclusive)
    precision: Precision
    instant: datetime | None = None  # in UTC, when a time was given

    def start(self, zone: ZoneInfo) -> datetime:
        """The first instant named, in UTC (the local midnight starting ``first`` for a date)."""
        if self.instant is not None:
            return self.instant
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=zone).astimezone(UTC)

    def end(self, zone: ZoneInfo) -> datetime:
        """The first instant after the value, in UTC: the next local midnight after ``last`` for a
        date, the next second (or microsecond, when fractions were given) for a time."""
        if self.instant is not None:
            step = timedelta(seconds=1) if self.instant.microsecond == 0 else timedelta(microseconds=1)
            return self.instant + step
        following = self.last + timedelta(days=1)
        return datetime(following.year, following.month, following.day, tzinfo=zone).astimezone(UTC)


def parse_fhir_date(text: str, zone: ZoneInfo) -> FhirDate:
    """``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or a dateTime with a time. ``ValueError`` for anything
    else; ``OverflowError`` for a time at the edge of the calendar (module docstring)."""
    if "T" in text:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone, fold=0)
        local = moment.astimezone(zone).date()
        return FhirDate(local, local, "time", moment.astimezone(UTC))
    match = _DATE.match(text)
    if match is None:
        raise ValueError(f"not a FHIR date: {text!r}")
    year, month, day = (int(part) if part else None for part in match.groups())
    assert year is not None
    if day is not None and month is not None:
        one = date(year, month, day)
        return FhirDate(one, one, "day")
    if month is not None:
        return FhirDate(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]), "month")
    return FhirDate(date(year, 1, 1), date(year, 12, 31), "year")
