"""The one searchset builder: FHIR search results, computed views and the audit trail all answer
with the same Bundle shape (api.md: ``total``, absolute ``link`` URLs, ``fullUrl`` per entry)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson


def searchset(
    base: str,
    entries: Iterable[tuple[str, str, dict[str, Any] | bytes]],
    total: int,
    links: list[dict[str, str]],
) -> bytes:
    """A ``searchset`` Bundle as JSON bytes. ``base``: the absolute FHIR base URL; ``entries``:
    (type, id, resource) where the resource is a JSON object or stored JSON bytes (embedded as
    they are, never parsed again)."""
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/{rtype}/{rid}",
                    "resource": orjson.Fragment(resource) if isinstance(resource, bytes) else resource,
                    "search": {"mode": "match"},
                }
                for rtype, rid, resource in entries
            ],
        }
    )


def entry_url(url: str) -> tuple[str, str]:
    """A Bundle entry's ``request.url`` as (resource type, the rest): ``Patient/p1`` gives
    ("Patient", "/p1"), ``Encounter?identifier=a|b`` ("Encounter", "?identifier=a|b"). An absolute
    URL of this server keeps what follows its FHIR base (``http://host/fhir/Patient/p1``)."""
    url = url.strip()
    if "://" in url:
        url = url.split("://", 1)[1].split("/", 1)[-1]
        url = url.split("fhir/", 1)[1] if url.startswith("fhir/") or "/fhir/" in url else url
    url = url.lstrip("/")
    rtype = url.split("?", 1)[0].split("/", 1)[0]
    return rtype, url[len(rtype) :]
