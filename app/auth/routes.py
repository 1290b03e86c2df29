"""SMART discovery and token routes, open without credentials (api.md, Access and tenants).

- ``GET /.well-known/smart-configuration`` (also under ``/fhir``): what a backend-services
  client needs (SMART App Launch 2.x, "Conformance").
- ``POST /auth/token``: the client-credentials grant with a ``private_key_jwt`` assertion; answers
  ``{access_token, token_type, expires_in, scope}`` or an OAuth error body (RFC 6749 §5.2),
  never cached.

The app provides ``app.state.smart_server`` (``load_smart_server``; None when no client registry
is configured) and either ``app.state.jti_store`` (a ``JtiStore``, e.g. ``tests.auth.jti.MemoryJtiStore`` in
tests) or ``app.state.sessionmaker`` (then used assertion ids go to the ``smart_jti`` table).
Include this router before the generic ``/fhir/{type}/{id}`` routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.auth.smart import (
    ASSERTION_ALGORITHMS,
    ASSERTION_TYPE,
    GRANT_TYPE,
    TOKEN_PATH,
    JtiStore,
    OAuthError,
    SmartServer,
    SqlJtiStore,
    TokenResponse,
    token_url,
)

router = APIRouter(tags=["SMART"])

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_TOKEN_REQUEST_BYTES = 65_536
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SCOPES_SUPPORTED = ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", "system/*.*"]

TOKEN_REQUEST_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "scope", "client_assertion_type", "client_assertion"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
                        "scope": {"type": "string", "example": "system/Patient.rs system/Observation.cruds"},
                        "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                        "client_assertion": {"type": "string", "description": "RS384/ES384-signed JWT"},
                    },
                }
            }
        },
    },
    "responses": {
        "400": {"description": "OAuth error: invalid_request, invalid_scope, unsupported_grant_type"},
        "401": {"description": "OAuth error: invalid_client"},
    },
}


def _server(request: Request) -> SmartServer | None:
    server: SmartServer | None = getattr(request.app.state, "smart_server", None)
    return server


def request_token_url(request: Request) -> str:
    """The token endpoint's absolute URL as this request reached the service."""
    return token_url(str(request.base_url))


def advertised_token_url(request: Request) -> str:
    server = _server(request)
    base = server.public_base_url if server is not None else None
    if base is None:
        base = getattr(getattr(request.app.state, "settings", None), "public_base_url", None)
    return token_url(base) if base else request_token_url(request)


def smart_configuration(request: Request) -> dict[str, Any]:
    return {
        "token_endpoint": advertised_token_url(request),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "grant_types_supported": [GRANT_TYPE],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }


@router.get("/.well-known/smart-configuration", summary="SMART discovery")
def smart_configuration_root(request: Request) -> JSONResponse:
    """SMART on FHIR discovery for backend-services clients."""
    return JSONResponse(smart_configuration(request))


@router.get("/fhir/.well-known/smart-configuration", summary="SMART discovery (FHIR base)")
def smart_configuration_fhir(request: Request) -> JSONResponse:
    """The same document under the FHIR base URL, where SMART clients look for it."""
    return JSONResponse(smart_configuration(request))


def _oauth_error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=NO_STORE)


@contextmanager
def _jti_store(request: Request) -> Iterator[JtiStore]:
    store: JtiStore | None = getattr(request.app.state, "jti_store", None)
    if store is not None:
        yield store
        return
    session = request.app.state.sessionmaker()
    try:
        yield SqlJtiStore(session)
    finally:
        session.close()


async def _read_form(request: Request) -> dict[str, list[str]]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise OAuthError("invalid_request", f"the token request must be {FORM_MEDIA_TYPE}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_TOKEN_REQUEST_BYTES:
            raise OAuthError("invalid_request", "the token request is too large")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
        return parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the token request is not a valid form") from None


@router.post(
    TOKEN_PATH,
    name="smart_token",
    summary="SMART backend-services token",
    openapi_extra=TOKEN_REQUEST_SCHEMA,
    response_model=None,
)
async def token(request: Request) -> JSONResponse:
    """OAuth 2.0 client-credentials grant authenticated by a signed JWT (``private_key_jwt``).
    Grants the requested scopes the client is allowed (possibly a subset); 401 ``invalid_client``
    for any problem with the assertion, including a reused ``jti``."""
    try:
        form = await _read_form(request)
        server = _server(request)
        if server is None:
            raise OAuthError("invalid_client", "no SMART clients are configured on this server")
        url = request_token_url(request)

        def work() -> TokenResponse:
            with _jti_store(request) as store:
                return server.token(form, url, store)

        answer = await run_in_threadpool(work)
    except OAuthError as exc:
        return _oauth_error(exc)
    return JSONResponse(answer.body(), headers=NO_STORE)
