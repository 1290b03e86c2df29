"""The create lane: ``POST /fhir/{type}`` straight to the create route, past the router.

The busiest request (an EHR posting a PHQ-9, a GAD-7, an Encounter) spent more of its time being
matched against the routes before it (Bulk Data, views, Subscriptions...) and passed through
FastAPI's per-route wrappers than in everything it does but validation (benchmarks/RESULTS.md,
"Analysis"). The router stays the authority: when it sends ``POST /fhir/X`` to ``routes.create``
(for a type this server stores), the route writes the path down in ``app.state.create_lane``; from
then on this pure ASGI middleware hands that path's POSTs to the same function directly. A path the
router sends elsewhere never enters the lane. Errors get the application's own exception handlers,
so an answer through the lane is the answer through the router (tests/fhir/test_create_lane.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.fhir.routes import create


class CreateLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = scope["app"].state.create_lane.get(scope["path"])
            if route is not None:
                await self._create(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _create(route: BaseRoute, scope: Scope, receive: Receive, send: Send) -> None:
        rtype = scope["path"].rsplit("/", 1)[1]
        scope["route"] = route  # the request log and metrics name the route template
        scope["path_params"] = {"rtype": rtype}
        request = Request(scope, receive, send)
        try:
            response = await create(rtype, request)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None:  # as in Starlette: the server error middleware answers (500)
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler(handlers: dict[Any, Any], exc: Exception) -> Any:
    """The handler Starlette's exception middleware would choose: the nearest registered class in
    the exception's MRO; ``Exception`` itself is the server error middleware's. The app registers
    ``async`` handlers keyed by class only (tests/fhir/test_create_lane.py checks it)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
