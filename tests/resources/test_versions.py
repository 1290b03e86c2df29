"""Versions on the wire: weak ETags both ways, the history location, Last-Modified."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.errors import InvalidInput
from app.resources.versions import etag, history_location, http_date, parse_etag


@pytest.mark.parametrize(("value", "version"), [('W/"3"', 3), ('"3"', 3), ("3", 3), (' W/"12" ', 12)])
def test_parse_etag(value: str, version: int) -> None:
    assert parse_etag(value) == version
    assert parse_etag(etag(version)) == version


@pytest.mark.parametrize("value", ["", 'W/"x"', "W/", '"3.5"'])
def test_parse_etag_refuses(value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_etag(value, "Bundle.entry.request.ifMatch")
    assert refused.value.issues[0].diagnostics.startswith("Bundle.entry.request.ifMatch must be an ETag")


def test_location_and_http_date() -> None:
    assert history_location("Patient", "p1", 2) == "Patient/p1/_history/2"
    assert http_date(datetime(2026, 1, 5, 15, 30, 1, tzinfo=UTC)) == "Mon, 05 Jan 2026 15:30:01 GMT"
