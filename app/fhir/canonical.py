"""Search over the definitions the service serves read only (Questionnaire, Measure): by ``url``
(a ``|version`` suffix is ignored) and ``_id``, each repeatable or comma-separated; other
parameters are ignored. Audited like any search."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from app.fhir.outcome import fhir_base, fhir_response
from app.resources.bundle import searchset
from app.services.resources import ResourceService
from app.services.uow import transact


def search_served(
    request: Request, service: ResourceService, rtype: str, served: Iterable[dict[str, Any]]
) -> Response:
    params = request.query_params
    urls = {u.split("|", 1)[0] for value in params.getlist("url") for u in value.split(",")}
    ids = {i for value in params.getlist("_id") for i in value.split(",")}
    found = [r for r in served if (not urls or r["url"] in urls) and (not ids or r["id"] in ids)]

    def audited() -> None:
        service.require(rtype, "s")
        service.audit("E", "search-type", rtype)

    transact(service, audited)
    entries = [(rtype, r["id"], r) for r in found]
    return fhir_response(
        searchset(fhir_base(request), entries, len(found), [{"relation": "self", "url": str(request.url)}])
    )
