"""Domain errors: raised by the core and the store, rendered by one handler at the edge.

They know nothing of HTTP. ``app.fhir.outcome`` turns them into an OperationOutcome with the status
that api.md names; the dashboard routes turn them into ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: FHIR issue-type ``code`` (invalid, structure, required, value,
    not-found, conflict, ...), a ``diagnostics`` sentence naming the field, and the FHIRPath
    ``expression`` of the element when known (for example ``Patient.gender``)."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()


class DomainError(Exception):
    """Base class; ``issues`` carries the details, the message the first diagnostics."""

    default_code = "processing"

    def __init__(self, message: str | Issue | list[Issue], *, code: str | None = None) -> None:
        if isinstance(message, str):
            issues = [Issue(message, code or self.default_code)]
        elif isinstance(message, Issue):
            issues = [message]
        else:
            issues = list(message)
        self.issues = issues
        super().__init__(issues[0].diagnostics if issues else self.__class__.__name__)


class InvalidInput(DomainError):
    """Unparseable or structurally invalid input (400)."""

    default_code = "invalid"


class NotFound(DomainError):
    default_code = "not-found"


class Gone(DomainError):
    """The resource was deleted (410)."""

    default_code = "deleted"


class Conflict(DomainError):
    default_code = "conflict"


class PreconditionFailed(DomainError):
    default_code = "conflict"


class BusinessRuleViolation(DomainError):
    """Valid FHIR that breaks a business rule (422), e.g. a subject Patient that does not exist."""

    default_code = "business-rule"


class Forbidden(DomainError):
    """Authenticated, but the granted scopes do not allow the interaction (403)."""

    default_code = "forbidden"

    def __init__(self, message: str | Issue | list[Issue], *, required_scope: str = "") -> None:
        super().__init__(message)
        self.required_scope = required_scope


class NotSupported(DomainError):
    """An interaction the server does not support (405)."""

    default_code = "not-supported"


class PayloadTooLarge(DomainError):
    default_code = "too-costly"


class UnsupportedMediaType(DomainError):
    default_code = "not-supported"


class Unavailable(DomainError):
    """The database cannot be reached (503)."""

    default_code = "transient"
