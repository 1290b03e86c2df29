"""OperationOutcome and the status table from domain error to HTTP status (no framework)."""

from __future__ import annotations

from typing import Any

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
