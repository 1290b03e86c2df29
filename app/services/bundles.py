"""Transaction and batch Bundles (``POST /fhir``), after the FHIR R4 http page (3.1.0.11).

Transaction: all entries in one database transaction; any failing entry fails the whole Bundle
with that entry's status and an OperationOutcome whose expression names ``Bundle.entry[i]``,
and nothing is written. Entries run in the order the specification gives (DELETE, POST, PUT, GET),
Patients before the resources that point at them; ``urn:uuid:`` fullUrls of created or updated
entries are rewritten to ``Type/id`` wherever a ``reference`` names them.

Batch: every entry on its own (its own transaction); a failure becomes that entry's
``response.status`` and ``response.outcome``; the others still happen.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.errors import DomainError, InvalidInput, Issue, NotSupported, PayloadTooLarge
from app.resources.bundle import entry_url
from app.resources.outcome import outcome, status_of
from app.resources.validation import SUPPORTED_TYPES
from app.resources.versions import etag, history_location, parse_etag
from app.services.resources import ResourceService
from app.services.uow import transact
from app.settings import Settings
from app.store.ids import new_id
from app.store.repository import Stored, WriteResult, format_instant

METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
REASONS = {200: "OK", 201: "Created", 204: "No Content"}


def process_bundle(service: ResourceService, body: dict[str, Any], settings: Settings, base: str) -> bytes:
    if body.get("resourceType") != "Bundle":
        raise InvalidInput(Issue("POST /fhir takes a Bundle", "invalid", expression=("resourceType",)))
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in {"transaction", "batch"}:
        raise InvalidInput(
            Issue("Bundle.type must be transaction or batch", "invalid", expression=("Bundle.type",))
        )
    entries = body.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidInput(
            Issue("Bundle.entry must be a list of objects", "structure", expression=("Bundle.entry",))
        )
    if len(entries) > settings.max_bundle_entries:
        raise PayloadTooLarge(
            f"the Bundle has {len(entries)} entries; the limit is {settings.max_bundle_entries}"
        )
    if kind == "transaction":
        requests = [entry_request(e, f"Bundle.entry[{i}]") for i, e in enumerate(entries)]
        responses = transact(service, lambda: _transaction(service, entries, requests))
    else:
        responses = [_batch_entry(service, i, entry) for i, entry in enumerate(entries)]
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "entry": [_response_entry(base, r) for r in responses],
        }
    )


EntryResult = WriteResult | Stored | None | dict[str, Any]


def _transaction(
    service: ResourceService, entries: list[dict[str, Any]], requests: list[tuple[str, str, str]]
) -> list[EntryResult]:
    targets, assigned = _resolve_full_urls(service, entries, requests)
    resources = [rewrite_references(e.get("resource"), targets) for e in entries]
    order = sorted(
        range(len(entries)),
        key=lambda i: (METHOD_ORDER[requests[i][0]], requests[i][1] != "Patient", i),
    )
    results: list[EntryResult] = [None] * len(entries)
    for i in order:
        try:
            results[i] = execute_entry(service, entries[i], requests[i], resources[i], assigned.get(i))
        except DomainError as exc:
            exc.issues = [_locate(issue, i) for issue in exc.issues]
            raise
    return results


def _batch_entry(service: ResourceService, index: int, entry: dict[str, Any]) -> EntryResult:
    try:
        request = entry_request(entry, f"Bundle.entry[{index}]")
        return transact(service, lambda: execute_entry(service, entry, request, entry.get("resource")))
    except DomainError as exc:
        status = status_of(exc)
        return {
            "status": f"{status} {exc.issues[0].code}",
            "outcome": outcome([_locate(i, index) for i in exc.issues]),
        }


def entry_request(entry: dict[str, Any], where: str) -> tuple[str, str, str]:
    """(method, resource type, the rest of the url) of an entry, checked: a supported method and
    type, and for POST and PUT a resource of that type. ``where``: the entry's FHIRPath
    (``Bundle.entry[3]``), named in the errors."""
    request = entry.get("request")
    at = f"{where}.request"
    if not isinstance(request, dict):
        raise InvalidInput(Issue(f"{at} is required", "required", expression=(at,)))
    method = str(request.get("method", "")).upper()
    if method not in METHOD_ORDER:
        raise NotSupported(
            Issue(
                f"{at}.method {method!r} is not supported",
                "not-supported",
                expression=(f"{at}.method",),
            )
        )
    rtype, rest = entry_url(str(request.get("url", "")))
    if rtype not in SUPPORTED_TYPES:
        raise InvalidInput(
            Issue(f"{at}.url names no supported resource type", "invalid", expression=(f"{at}.url",))
        )
    if method in {"POST", "PUT"}:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise InvalidInput(
                Issue(
                    f"{where}.resource is required for {method}",
                    "required",
                    expression=(f"{where}.resource",),
                )
            )
        if resource.get("resourceType") != rtype:
            raise InvalidInput(
                Issue(
                    f"{where}.resource is not a {rtype}",
                    "invalid",
                    expression=(f"{where}.resource.resourceType",),
                )
            )
    return method, rtype, rest


def _resolve_full_urls(
    service: ResourceService, entries: list[dict[str, Any]], requests: list[tuple[str, str, str]]
) -> tuple[dict[str, str], dict[int, str]]:
    """fullUrl -> ``Type/id`` for every entry that creates or updates a resource, and the ids
    assigned to creates. A conditional create that matches, or a create whose identifier is stored
    already, points its fullUrl at that resource, so a retried transaction references what the first
    attempt made (FHIR http 3.1.0.11.2; api.md Idempotency)."""
    targets: dict[str, str] = {}
    assigned: dict[int, str] = {}
    for index, (entry, (method, rtype, rest)) in enumerate(zip(entries, requests, strict=True)):
        full_url = entry.get("fullUrl")
        if method == "POST" and not rest:
            condition = (entry.get("request") or {}).get("ifNoneExist")
            resource = entry.get("resource") or {}
            matches = service.repo.match(rtype, condition, "ifNoneExist") if condition else []
            known = matches[0] if len(matches) == 1 else service.repo.by_identifiers(rtype, resource)
            rid = known.id if known is not None else new_id()
            assigned[index] = rid
            if isinstance(full_url, str) and full_url:
                targets[full_url] = f"{rtype}/{rid}"
        elif method == "PUT" and rest.startswith("/") and isinstance(full_url, str) and full_url:
            targets[full_url] = f"{rtype}{rest}"
    return targets, assigned


def rewrite_references(node: Any, targets: dict[str, str]) -> Any:
    """A copy of ``node`` with every ``reference`` that names a fullUrl pointed at its target."""
    if isinstance(node, dict):
        out = {k: rewrite_references(v, targets) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in targets:
            out["reference"] = targets[ref]
        return out
    if isinstance(node, list):
        return [rewrite_references(v, targets) for v in node]
    return node


def execute_entry(
    service: ResourceService,
    entry: dict[str, Any],
    request: tuple[str, str, str],
    resource: Any,
    rid: str | None = None,
    *,
    unless_same: bool = False,
) -> EntryResult:
    """Do one entry (``entry_request``) with ``resource`` (its references rewritten): what a
    transaction, a batch and ``cocm import`` do alike. ``rid``: the id a transaction assigned to a
    create. ``unless_same``: a PUT whose content is stored already writes nothing (an import)."""
    method, rtype, rest = request
    details = entry.get("request") or {}
    if method == "POST":
        assert isinstance(resource, dict)
        return service.create(rtype, resource, if_none_exist=details.get("ifNoneExist"), rid=rid)
    if method == "PUT":
        assert isinstance(resource, dict)
        if rest.startswith("?"):
            return service.conditional_update(rtype, rest[1:], resource, unless_same=unless_same)
        rid = rest.lstrip("/")
        if "id" not in resource:
            resource = {**resource, "id": rid}
        if_match = details.get("ifMatch")
        expected = parse_etag(str(if_match), "Bundle.entry.request.ifMatch") if if_match is not None else None
        return service.update(rtype, rid, resource, if_match=expected, unless_same=unless_same)
    if method == "DELETE":
        service.delete(rtype, rest.lstrip("/"))
        return None
    rid = rest.lstrip("/")
    if not rid or "?" in rid or "/" in rid:
        raise NotSupported(Issue("GET entries support read (Type/id) only", "not-supported"))
    return service.read(rtype, rid)


def _locate(issue: Issue, index: int) -> Issue:
    prefix = f"Bundle.entry[{index}]"
    expressions = tuple(
        e
        if e.startswith("Bundle.")
        else f"{prefix}.resource.{e.split('.', 1)[1]}"
        if "." in e
        else f"{prefix}.resource.{e}"
        for e in issue.expression
    ) or (prefix,)
    return Issue(f"{prefix}: {issue.diagnostics}", issue.code, issue.severity, expressions)


def _response_entry(base: str, result: EntryResult) -> dict[str, Any]:
    if isinstance(result, dict):
        return {"response": result}
    if result is None:
        return {"response": {"status": "204 No Content"}}
    stored, status = (
        (result.stored, 201 if result.created else 200) if isinstance(result, WriteResult) else (result, 200)
    )
    entry: dict[str, Any] = {
        "fullUrl": f"{base}/{stored.type}/{stored.id}",
        "response": {
            "status": f"{status} {REASONS[status]}",
            "location": history_location(stored.type, stored.id, stored.version_id),
            "etag": etag(stored.version_id),
            "lastModified": format_instant(stored.last_updated),
        },
    }
    if stored.content is not None:
        entry["resource"] = orjson.Fragment(stored.content)
    return entry
