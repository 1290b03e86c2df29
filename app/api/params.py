"""Dashboard query parameters (api.md: a malformed ``month`` or ``as_of`` answers 400 naming it)."""

from __future__ import annotations

from datetime import date

from app.domain import Month
from app.errors import InvalidInput, Issue
from app.resources.dates import parse_fhir_date
from app.services.reports import today
from app.settings import Settings


def parse_month(text: str | None, settings: Settings, name: str = "month") -> Month:
    if text is None:
        return Month.of(today(settings))
    try:
        return Month.parse(text)
    except ValueError:
        raise InvalidInput(Issue(f"{name} must be YYYY-MM", "invalid", expression=(name,))) from None


def parse_as_of(text: str | None, settings: Settings) -> date:
    if text is None:
        return today(settings)
    try:
        value = parse_fhir_date(text, settings.zone)
        if value.precision != "day":
            raise ValueError("not a day")
        return value.first
    except ValueError:
        raise InvalidInput(
            Issue("as_of must be a date YYYY-MM-DD", "invalid", expression=("as_of",))
        ) from None
