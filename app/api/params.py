"""Dashboard query parameters (api.md: a malformed ``month`` or ``as_of`` answers 400 naming it)."""

from __future__ import annotations

import re
from datetime import date

from app.domain import Month
from app.errors import InvalidInput, Issue
from app.services.reports import today
from app.settings import Settings

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
        if not _DATE_RE.match(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            Issue("as_of must be a date YYYY-MM-DD", "invalid", expression=("as_of",))
        ) from None
