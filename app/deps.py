"""Request-scoped dependencies shared by the FHIR and dashboard routes: the caller (API key ->
tenant), the resource service over a session, the FHIR body reader, and the one transaction per request.

Authentication (api.md, Access and tenants): ``COCM_API_KEYS`` lists ``key`` or ``key:tenant``
entries, sent as ``Authorization: Bearer <key>``; keys are compared in constant time and never
logged. When no key is configured the service runs open, every caller in tenant ``default``: a
development default that ``cocm serve`` allows only on a loopback address (``Settings.open_access_warning``);
once keys are set every route but the open ones needs one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from app.auth.scopes import ALL_SCOPES, Scope, allows
from app.auth.smart import authenticate_bearer
from app.domain import Actor
from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.resources.validation import parse_json
from app.services.resources import ResourceService
from app.settings import DEFAULT_TENANT, Settings

FHIR_MEDIA_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}

T = TypeVar("T")


class Unauthorized(Exception):
    """No or unknown credentials (401). ``invalid_token``: credentials were sent but are not
    valid (RFC 6750 error code in the challenge)."""

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token


@dataclass(frozen=True)
class Caller:
    tenant: str
    agent: str  # who, for the audit trail: a key fingerprint or a client id; never a key
    scopes: tuple[Scope, ...] = ALL_SCOPES  # API keys hold every scope of their tenant


def key_fingerprint(key: bytes) -> str:
    """A name for a key in the audit trail that does not reveal it."""
    return "api-key:" + hashlib.sha256(key).hexdigest()[:12]


def parse_api_keys(text: str) -> list[tuple[bytes, str]]:
    keys: list[tuple[bytes, str]] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        key, _, tenant = entry.partition(":")
        keys.append((key.encode(), tenant.strip() or DEFAULT_TENANT))
    return keys


# The dependencies below are ``async def`` because they never block (no I/O): FastAPI runs a plain
# ``def`` dependency in the thread pool, and each such hop costs more than the work itself.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_caller(request: Request) -> Caller:
    """API keys first (constant-time compare), then SMART access tokens issued by /auth/token."""
    keys: list[tuple[bytes, str]] = request.app.state.api_keys
    smart_on = request.app.state.smart_server is not None
    if not keys and not smart_on:
        return Caller(DEFAULT_TENANT, "anonymous")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer credentials")
    presented = token.strip().encode()
    found: Caller | None = None
    for key, tenant in keys:  # no early exit: constant time over the key list
        if hmac.compare_digest(presented, key) and found is None:
            found = Caller(tenant, key_fingerprint(key))
    if found is not None:
        return found
    identity = authenticate_bearer(token.strip(), request.app.state.settings) if smart_on else None
    if identity is None:
        raise Unauthorized("unknown, invalid or expired credentials", invalid_token=True)
    return Caller(identity.tenant, f"smart:{identity.client_id}", identity.scopes)


CallerDep = Annotated[Caller, Depends(get_caller)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@contextmanager
def open_service(request: Request, caller: Caller) -> Iterator[ResourceService]:
    """A resource service over a new session. Opening a session touches no database; closing it returns the
    connection to the pool once the request's transaction has ended (``transact``)."""
    state = request.app.state
    session = state.sessionmaker()
    replica = state.read_sessionmaker
    reads = session if replica is state.sessionmaker else replica()
    try:
        settings: Settings = state.settings
        yield ResourceService(
            session,
            caller.tenant,
            settings.zone,
            Actor(caller.agent, request.client.host if request.client else None),
            permits=partial(allows, caller.scopes),
            write_lock=state.write_lock,
            reads=reads,
            allowed_hosts=settings.allowed_hosts,
            billing=settings.billing,
            care=settings.care,
            group=state.write_group,
        )
    finally:
        session.close()
        if reads is not session:
            reads.close()


async def get_service(request: Request, caller: CallerDep) -> AsyncIterator[ResourceService]:
    with open_service(request, caller) as service:
        yield service


ServiceDep = Annotated[ResourceService, Depends(get_service)]


async def read_fhir_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object: content type first (415), then size (413), then the JSON
    itself (400, including nesting deeper than the limit), as api.md orders the checks."""
    settings: Settings = request.app.state.settings
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in FHIR_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/fhir+json or application/json, not {media_type or 'missing'!r}"
        )
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the {limit}-byte limit")
        chunks.append(chunk)
    data = parse_json(b"".join(chunks), settings.max_json_depth)
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object (a FHIR resource)", code="structure")
    return data


BodyDep = Annotated[dict[str, Any], Depends(read_fhir_body)]
