"""FHIR R4 REST routes under ``/fhir`` (api.md, FHIR R4 API).

Bodies are read and parsed once (``read_fhir_body``), validated once against the R4B model, and
stored as received with ``id``/``meta`` set; responses send the stored bytes without another trip
through the model. Search bundles embed the stored bytes with ``orjson.Fragment``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from app.auth.routes import advertised_token_url
from app.deps import BodyDep, ServiceDep, SettingsDep, get_caller, open_service, read_fhir_body
from app.errors import DomainError, InvalidInput, Issue, NotFound, NotSupported
from app.fhir.capability import capability_statement
from app.fhir.outcome import fhir_base, fhir_response, outcome_response
from app.resources import cursor as cursor_codec
from app.resources.bundle import searchset
from app.resources.outcome import FHIR_JSON
from app.resources.validation import SUPPORTED_TYPES
from app.resources.versions import etag, history_location, http_date, parse_etag
from app.services.bundles import process_bundle
from app.services.resources import ResourceService
from app.services.uow import transact, transact_async
from app.store.repository import Stored, WriteResult

router = APIRouter(prefix="/fhir", tags=["FHIR"])

READ_ONLY_TYPES = {
    "CarePlan",
    "ChargeItem",
    "AuditEvent",
    "CapabilityStatement",
    "Questionnaire",
    "Measure",
    "MeasureReport",
}
BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FHIR_JSON: {"schema": {"type": "object", "required": ["resourceType"]}},
            "application/json": {"schema": {"type": "object", "required": ["resourceType"]}},
        },
    }
}


def _with_headers(*names: str) -> dict[str, Any]:
    """``BODY_SCHEMA`` and the optional request headers a write route reads itself (``_write``)."""
    optional = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    parameters = [
        {"in": "header", "name": name.lower(), "required": False, "schema": {**optional, "title": name}}
        for name in names
    ]
    return {**BODY_SCHEMA, "parameters": parameters}


def _check_type(rtype: str, *, writing: bool = False) -> None:
    if rtype in SUPPORTED_TYPES:
        return
    if rtype in READ_ONLY_TYPES and writing:
        raise NotSupported(f"{rtype} is computed or written by the service; it cannot be written")
    raise NotFound(Issue(f"resource type {rtype!r} is not supported by this server", "not-supported"))


def resource_headers(stored: Stored) -> dict[str, str]:
    return {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.last_updated)}


def write_response(result: WriteResult, prefer: str | None) -> Response:
    stored = result.stored
    status = 201 if result.created else 200
    location = history_location(stored.type, stored.id, stored.version_id)
    headers = {**resource_headers(stored), "Location": f"/fhir/{location}"}
    preference = _prefer_return(prefer)
    if preference == "minimal":
        return Response(status_code=status, headers=headers)
    if preference == "OperationOutcome":
        issues = result.warnings or [
            Issue(
                f"{stored.type}/{stored.id} stored as version {stored.version_id}",
                "informational",
                "information",
            )
        ]
        return outcome_response(issues, status, headers)
    assert stored.content is not None
    return fhir_response(stored.content, status, headers)


async def _precheck(
    service: ResourceService, rtype: str, body: dict[str, Any], *interactions: str, rid: str | None = None
) -> None:
    """``ResourceService.precheck`` on the event loop (validation is CPU alone), but a Subscription's
    in the thread pool (its endpoint's host is looked up in DNS); a failure's audit row, a database
    write, is made in the thread pool."""
    try:
        if rtype == "Subscription":
            await anyio.to_thread.run_sync(partial(service.precheck, rtype, body, *interactions, rid=rid))
        else:
            service.precheck(rtype, body, *interactions, rid=rid)
    except DomainError:
        await anyio.to_thread.run_sync(service.audit_failure, "4")
        raise


def _prefer_return(prefer: str | None) -> str | None:
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "return":
            return value.strip().strip('"')
    return None


def _strict(prefer: str | None) -> bool:
    return "handling=strict" in (prefer or "").replace(" ", "").lower()


@router.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request) -> Response:
    """The server's CapabilityStatement (FHIR 4.0.1): exactly the interactions implemented."""
    token_url = advertised_token_url(request) if request.app.state.smart_server is not None else None
    return fhir_response(capability_statement(fhir_base(request), token_url))


@router.post("", summary="Transaction or batch Bundle", openapi_extra=BODY_SCHEMA)
def bundle(request: Request, body: BodyDep, service: ServiceDep, settings: SettingsDep) -> Response:
    """Process a `transaction` (all or nothing, `urn:uuid:` references rewritten) or `batch`
    (entry by entry) Bundle; answers `transaction-response` / `batch-response`."""
    result = process_bundle(service, body, settings, fhir_base(request))
    return fhir_response(result)


@router.post(
    "/{rtype}",
    summary="Create (or conditional create)",
    openapi_extra=_with_headers("If-None-Exist", "Prefer"),
)
async def create(rtype: str, request: Request) -> Response:
    """Create a resource: 201 with `Location` and `ETag`. With `If-None-Exist: identifier=sys|val`:
    one match answers 200 with it (nothing written), several 412. A plain POST whose identifier is
    already stored answers 200 with the stored resource when the content is the same, 409 when not."""
    if rtype in SUPPORTED_TYPES:  # the router chose this route for this path: app.fhir.lane
        request.app.state.create_lane.setdefault(request.scope["path"], request.scope["route"])
    if_none_exist = request.headers.get("if-none-exist")

    def work(service: ResourceService, body: dict[str, Any], _: int | None) -> WriteResult:
        return service.create(rtype, body, if_none_exist=if_none_exist)

    return await _write(request, rtype, work, "c", *(("s",) if if_none_exist else ()))


async def _write(
    request: Request,
    rtype: str,
    work: Callable[[ResourceService, dict[str, Any], int | None], WriteResult],
    *interactions: str,
    rid: str | None = None,
    if_match: str | None = None,
) -> Response:
    """A single-resource write: the body (415, 413, 400), the caller (401), the type (404, 405), an
    ``If-Match`` header (400 when malformed; its version is passed to ``work``), the scopes and the
    body's validity, then ``work`` in a (possibly shared) transaction. These routes read their
    inputs themselves rather than through FastAPI dependencies: on the busiest path resolving four
    dependencies and two headers cost more than the rest of the route (benchmarks/RESULTS.md)."""
    body = await read_fhir_body(request)
    caller = await get_caller(request)
    with open_service(request, caller) as service:
        _check_type(rtype, writing=True)
        expected = parse_etag(if_match) if if_match is not None else None
        await _precheck(service, rtype, body, *interactions, rid=rid)
        result = await transact_async(service, lambda: work(service, body, expected))
    return write_response(result, request.headers.get("prefer"))


@router.get("/{rtype}", summary="Search")
def search(
    rtype: str,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    prefer: str | None = Header(None),
) -> Response:
    """Search: a `searchset` Bundle with `total` and `self`/`next` links; `_count` (default 50,
    max 500) and the opaque `_cursor` page through the results."""
    _check_type(rtype)
    params = list(request.query_params.multi_items())
    count = _int_param(params, "_count", settings.default_page_size)
    count = min(count, settings.max_page_size)
    offset = _decode_cursor(dict(params).get("_cursor"))
    resources, total, applied = transact(
        service, lambda: service.search(rtype, params, offset=offset, count=count, strict=_strict(prefer))
    )
    base = fhir_base(request)

    def link(at: int) -> str:
        query = [*applied, ("_count", str(count))]
        if at:
            query.append(("_cursor", _encode_cursor(at)))
        return f"{base}/{rtype}?{urlencode(query)}"

    links = [{"relation": "self", "url": link(offset)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": link(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - count))})
    entries = [(s.type, s.id, s.content or b"{}") for s in resources]
    return fhir_response(searchset(base, entries, total, links))


@router.put("/{rtype}", summary="Conditional update", openapi_extra=_with_headers("Prefer"))
async def conditional_update(rtype: str, request: Request) -> Response:
    """Upsert by search criteria (`?identifier=sys|val`): one match is updated, none creates,
    several answer 412."""
    query = urlencode(list(request.query_params.multi_items()))

    def work(service: ResourceService, body: dict[str, Any], _: int | None) -> WriteResult:
        return service.conditional_update(rtype, query, body)

    return await _write(request, rtype, work, "u", "s")


@router.get("/{rtype}/{rid}", summary="Read")
def read(rtype: str, rid: str, service: ServiceDep) -> Response:
    """Read the current version: 200 with `ETag`, 404 unknown, 410 deleted."""
    _check_type(rtype)
    stored = transact(service, lambda: service.read(rtype, rid))
    assert stored.content is not None
    return fhir_response(stored.content, 200, resource_headers(stored))


@router.put("/{rtype}/{rid}", summary="Update", openapi_extra=_with_headers("If-Match", "Prefer"))
async def update(rtype: str, rid: str, request: Request) -> Response:
    """Update (200) or create with the client's id (201). `If-Match: W/"n"` must name the current
    version (412 otherwise); the body's id must equal the URL's."""

    def work(service: ResourceService, body: dict[str, Any], expected: int | None) -> WriteResult:
        return service.update(rtype, rid, body, if_match=expected)

    return await _write(request, rtype, work, "u", rid=rid, if_match=request.headers.get("if-match"))


@router.delete("/{rtype}/{rid}", summary="Delete", status_code=204)
async def delete(rtype: str, rid: str, service: ServiceDep) -> Response:
    """Delete: 204; the resource stops counting in status and billing; read answers 410."""
    _check_type(rtype, writing=True)
    await transact_async(service, lambda: service.delete(rtype, rid))
    return Response(status_code=204)


@router.get("/{rtype}/{rid}/_history", summary="History of a resource")
def history(rtype: str, rid: str, request: Request, service: ServiceDep) -> Response:
    """Every version, newest first, as a `history` Bundle (deletions as DELETE entries)."""
    _check_type(rtype)
    versions = transact(service, lambda: service.history(rtype, rid))
    base = fhir_base(request)
    entries: list[dict[str, Any]] = []
    for v in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{rtype}/{rid}"}
        if v.content is not None:
            entry["resource"] = orjson.Fragment(v.content)
            entry["request"] = {"method": "POST" if v.version_id == 1 else "PUT", "url": rtype}
            entry["response"] = {"status": "201" if v.version_id == 1 else "200", "etag": etag(v.version_id)}
        else:
            entry["request"] = {"method": "DELETE", "url": f"{rtype}/{rid}"}
            entry["response"] = {"status": "204", "etag": etag(v.version_id)}
        entries.append(entry)
    body = {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
    return fhir_response(orjson.dumps(body))


@router.get("/{rtype}/{rid}/_history/{vid}", summary="Version read")
def vread(rtype: str, rid: str, vid: str, service: ServiceDep) -> Response:
    """Read one version (`vread`): 404 unknown version, 410 when that version is a deletion."""
    _check_type(rtype)
    if not vid.isdigit() or len(vid) > 9:
        raise NotFound(f"{rtype}/{rid} has no version {vid[:20]!r}")
    stored = transact(service, lambda: service.vread(rtype, rid, int(vid)))
    assert stored.content is not None
    return fhir_response(stored.content, 200, resource_headers(stored))


def _int_param(params: list[tuple[str, str]], name: str, default: int) -> int:
    value = dict(params).get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise InvalidInput(Issue(f"{name} must be a whole number below 10^9", "invalid", expression=(name,)))
    return int(value)


def _encode_cursor(offset: int) -> str:
    return cursor_codec.encode({"o": offset})


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = cursor_codec.decode(cursor)["o"]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput(
            Issue("_cursor is not a cursor this server issued", "invalid", expression=("_cursor",))
        )
    return value
