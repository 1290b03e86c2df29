"""The ASGI application ``app.main:app``: settings read once, the engine made in the lifespan, one
error handler turning domain errors into an OperationOutcome (``/fhir``) or a JSON error
(everything else). A 500 says nothing internal; logs carry the error class and the route, never
a body, a patient detail or a key."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.routes import router as api_router
from app.auth.routes import router as auth_router
from app.auth.scopes import www_authenticate
from app.auth.smart import SmartConfigError, load_smart_server
from app.deps import CallerDep, Unauthorized, parse_api_keys
from app.errors import DomainError, InvalidInput, Issue, Unavailable
from app.fhir.audit import router as audit_router
from app.fhir.export import router as export_router
from app.fhir.lane import CreateLane
from app.fhir.measures import router as measures_router
from app.fhir.outcome import error_headers, error_response, outcome_response
from app.fhir.questionnaires import router as questionnaires_router
from app.fhir.routes import router as fhir_router
from app.fhir.subscriptions import router as subscriptions_router
from app.fhir.views import router as views_router
from app.observability import RequestContextMiddleware, configure_logging, metrics_body
from app.resources.outcome import CODE_BY_STATUS, status_of
from app.services.export import Runner as ExportRunner
from app.services.notify import Dispatcher
from app.services.uow import WriteGroup
from app.settings import Settings, SettingsError, load_settings
from app.store.db import make_engine, make_sessionmaker, write_lock
from app.store.migrate import current_revision, head_revision
from app.web.quality import router as quality_pages_router
from app.web.routes import router as web_router

log = logging.getLogger("cocm")


def _wants_fhir(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def _error(
    request: Request,
    status: int,
    message: str,
    issues: list[Issue] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if _wants_fhir(request):
        return outcome_response(
            issues or [Issue(message, CODE_BY_STATUS.get(status, "processing"))], status, headers
        )
    body: dict[str, Any] = {"error": CODE_BY_STATUS.get(status, "error"), "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.write_lock = write_lock(engine)
        app.state.write_group = WriteGroup(
            app.state.write_lock if engine.dialect.name == "sqlite" else threading.Lock(),
            settings.group_commit_limit,
            lambda: app.state.sessionmaker(bind=engine.connect()),
        )
        read_url = settings.sqlalchemy_read_url  # a replica for the month-wide reads, if any
        read_engine = (
            make_engine(read_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
            if read_url is not None
            else None
        )
        app.state.read_engine = read_engine
        app.state.read_sessionmaker = (
            make_sessionmaker(read_engine) if read_engine else app.state.sessionmaker
        )
        stop = asyncio.Event()
        dispatcher = (
            asyncio.create_task(
                Dispatcher(
                    app.state.sessionmaker,
                    settings,
                    write_lock=app.state.write_lock,
                    head=app.state.head_revision,
                ).run(stop)
            )
            if settings.notify_in_process
            else None
        )
        exporter = (
            asyncio.create_task(
                ExportRunner(app.state.sessionmaker, settings, write_lock=app.state.write_lock).run(stop)
            )
            if settings.export_in_process
            else None
        )
        # What lives as long as the process (modules, FHIR models, compiled statements) leaves the
        # collector's view: a full collection then walks only the requests' garbage, not the
        # whole heap (Python docs, gc.freeze; the POST p99 went from ~80 to ~40 ms, benchmarks/RESULTS.md).
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if dispatcher is not None:
                await dispatcher  # finishes the notification in flight (bounded by its timeout)
            if exporter is not None:
                await exporter  # the batch in flight; an unfinished job is taken up again later
            await asyncio.to_thread(app.state.write_group.close)
            engine.dispose()
            if read_engine is not None:
                read_engine.dispose()

    app = FastAPI(
        title="cocm-api",
        version="0.1.0",
        summary="FHIR R4 service for the Psychiatric Collaborative Care Model",
        description=(
            "Scores PHQ-9/GAD-7 responses, keeps the CoCM registry and turns care-manager minutes "
            "into billing codes. FHIR R4 at `/fhir`, dashboard JSON at `/api/v1`."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = parse_api_keys(settings.api_keys)
    try:
        app.state.smart_server = load_smart_server(settings)
    except SmartConfigError as exc:
        raise SettingsError(f"cocm-api: invalid settings: {exc}") from None
    app.state.head_revision = head_revision()

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if _wants_fhir(request):
            return error_response(exc)
        return _error(request, status_of(exc), exc.issues[0].diagnostics, headers=error_headers(exc))

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> Response:
        challenge = www_authenticate("invalid_token") if exc.invalid_token else www_authenticate()
        return _error(
            request, 401, f"authentication required: {exc}", headers={"WWW-Authenticate": challenge}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            Issue(
                f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}",
                "invalid",
                expression=(".".join(str(p) for p in err.get("loc", ())[1:]),)
                if len(err.get("loc", ())) > 1
                else (),
            )
            for err in exc.errors()
        ]
        return _error(request, 400, issues[0].diagnostics if issues else "invalid request", issues)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "no such path", 405: "method not allowed here"}.get(exc.status_code, str(exc.detail))
        return _error(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> Response:
        log.warning(
            "database unavailable on %s %s", request.method, getattr(request.scope.get("route"), "path", "?")
        )
        return await domain_error(request, Unavailable("the database is unavailable; retry shortly"))

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        log.warning("value refused by the database on %s", request.method)
        return await domain_error(request, InvalidInput("a value is out of range for storage"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return await domain_error(request, Unavailable("the database connection was lost; retry shortly"))
        log.error(
            "unhandled %s on %s %s",
            type(exc).__name__,
            request.method,
            getattr(request.scope.get("route"), "path", "?"),
        )
        return _error(request, 500, "internal error; the request was not applied")

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers. Touches no database."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    def ready(request: Request) -> Response:
        """Readiness: the database (and the read replica, when one is set) answers and its schema
        is at the head migration (503 otherwise)."""
        try:
            for engine in filter(None, (request.app.state.engine, request.app.state.read_engine)):
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            revision = current_revision(request.app.state.engine)
        except DBAPIError:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, 503, {"Retry-After": "5"}
            )
        expected = request.app.state.head_revision
        if revision != expected:
            return JSONResponse(
                {"status": "unavailable", "database": "reachable", "schema": revision, "expected": expected},
                503,
                {"Retry-After": "5"},
            )
        return JSONResponse({"status": "ready", "database": "reachable", "schema": revision})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics(caller: CallerDep) -> Response:
        """Prometheus metrics: requests and latency by route and status, resources ingested by
        type, scoring warnings, billing runs. Needs the same credentials as the API."""
        body, media_type = metrics_body()
        return Response(body, media_type=media_type)

    app.state.create_lane = {}  # path -> route: app.fhir.lane
    app.add_middleware(CreateLane)  # inside the request context: logged and measured alike
    app.add_middleware(RequestContextMiddleware)
    app.include_router(auth_router)  # before the generic /fhir/{type} routes, like the views
    app.include_router(views_router)
    app.include_router(audit_router)
    app.include_router(subscriptions_router)
    app.include_router(questionnaires_router)
    app.include_router(measures_router)
    app.include_router(export_router)
    app.include_router(fhir_router)
    app.include_router(api_router)
    app.include_router(web_router)
    app.include_router(quality_pages_router)
    return app


app = create_app()
