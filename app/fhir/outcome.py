"""OperationOutcome rendering: one table from domain error to HTTP status (api.md, Errors)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from app.auth.scopes import www_authenticate
from app.errors import (
    BusinessRuleViolation,
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    InvalidInput,
    Issue,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    PreconditionFailed,
    Unavailable,
    UnsupportedMediaType,
)

FHIR_JSON = "application/fhir+json"

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Forbidden: 403,
    NotSupported: 405,
    Conflict: 409,
    Gone: 410,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    BusinessRuleViolation: 422,
    Unavailable: 503,
}

# FHIR issue-type code for errors raised by the framework rather than the domain.
CODE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "business-rule",
    500: "exception",
    503: "transient",
}


def status_of(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def issue_json(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": issue.severity, "code": issue.code, "diagnostics": issue.diagnostics}
    if issue.expression:
        out["expression"] = list(issue.expression)
    return out


def outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue_json(i) for i in issues]}


def fhir_response(
    body: dict[str, Any] | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content=content, status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(issues: list[Issue], status: int, headers: dict[str, str] | None = None) -> Response:
    return fhir_response(outcome(issues), status, headers)


def error_response(error: DomainError) -> Response:
    return outcome_response(error.issues, status_of(error), error_headers(error))


def error_headers(error: DomainError) -> dict[str, str] | None:
    if isinstance(error, Unavailable):
        return {"Retry-After": "5"}
    if isinstance(error, Forbidden):
        return {"WWW-Authenticate": www_authenticate("insufficient_scope", scope=error.required_scope)}
    return None
