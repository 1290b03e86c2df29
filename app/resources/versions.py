"""How versions appear on the wire (FHIR RESTful API, "Managing Resource Contention" and
"read"): a weak ETag per version, ``If-Match`` read back, the history location, and
``Last-Modified`` as an HTTP date. The store deals in version numbers and instants only."""

from __future__ import annotations

from datetime import datetime

from app.errors import InvalidInput


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def parse_etag(value: str, name: str = "If-Match") -> int:
    """The version number of a (weak) ETag: ``W/"3"``, ``"3"`` or ``3``; ``InvalidInput`` otherwise."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f'{name} must be an ETag like W/"3", got {value[:40]!r}') from None


def history_location(rtype: str, rid: str, version_id: int) -> str:
    return f"{rtype}/{rid}/_history/{version_id}"


def http_date(moment: datetime) -> str:
    """``Last-Modified``: an IMF-fixdate (RFC 9110) of a UTC instant."""
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
