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
