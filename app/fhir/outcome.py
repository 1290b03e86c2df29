"""OperationOutcome responses (api.md, Errors); the shapes and the status table are in
``app.resources.outcome``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from app.auth.scopes import www_authenticate
from app.errors import DomainError, Forbidden, Issue, Unavailable
from app.resources.outcome import FHIR_JSON, outcome, status_of


def fhir_base(request: Request) -> str:
    """The absolute FHIR base URL of this server as the request reached it."""
    return str(request.base_url).rstrip("/") + "/fhir"


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
