"""Notification and status Bundles (notifications.md "Notifications" and "Operations"; Backport IG
profiles ``backport-subscription-notification-r4`` and ``backport-subscription-status-r4``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson


@dataclass(frozen=True)
class EventView:
    """One outbox event as a notification carries it. ``focus_version``: the version the event was
    raised on (``id-only`` entries say POST for a first version, PUT otherwise); ``resources``: the
    stored bodies (focus first, then context) for ``full-resource``."""

    number: int
    timestamp: datetime
    focus: str  # "Type/id"
    focus_version: int
    context: tuple[str, ...] = ()
    resources: tuple[bytes, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class StatusView:
    subscription_id: str
    topic: str
    status: str
    events_since_start: int
    error: str | None = None


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(
    base: str, view: StatusView, kind: str, events: Sequence[EventView] = (), content: str = "id-only"
) -> dict[str, Any]:
    """The status ``Parameters`` of a notification (``kind`` handshake, heartbeat, event-notification)
    or of a query (query-status, query-event)."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base}/Subscription/{view.subscription_id}"},
        },
        {"name": "topic", "valueCanonical": view.topic},
        {"name": "status", "valueCode": view.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(view.events_since_start)},
    ]
    for event in events:
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": _instant(event.timestamp)},
        ]
        if content != "empty":
            part.append({"name": "focus", "valueReference": {"reference": f"{base}/{event.focus}"}})
            part += [
                {"name": "additional-context", "valueReference": {"reference": f"{base}/{ref}"}}
                for ref in event.context
            ]
        parameters.append({"name": "notification-event", "part": part})
    if view.error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": view.error}})
    return {"resourceType": "Parameters", "parameter": parameters}


def notification_bundle(
    base: str,
    view: StatusView,
    kind: str,
    now: datetime,
    events: Sequence[EventView] = (),
    content: str = "id-only",
) -> bytes:
    """A ``history`` Bundle: the status entry, then per event the focus (and for ``full-resource``
    the stored resources)."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": status_parameters(base, view, kind, events, content),
            "request": {"method": "GET", "url": f"{base}/Subscription/{view.subscription_id}/$status"},
            "response": {"status": "200"},
        }
    ]
    for event in events if content != "empty" else ():
        rtype = event.focus.split("/", 1)[0]
        first = event.focus_version == 1
        request = {"method": "POST" if first else "PUT", "url": rtype if first else event.focus}
        if content == "id-only":
            entries.append(
                {
                    "fullUrl": f"{base}/{event.focus}",
                    "request": request,
                    "response": {"status": "201" if first else "200"},
                }
            )
            continue
        for position, (ref, body) in enumerate(
            zip((event.focus, *event.context), event.resources, strict=False)
        ):
            entries.append(
                {
                    "fullUrl": f"{base}/{ref}",
                    "resource": orjson.Fragment(body),
                    "request": request if position == 0 else {"method": "GET", "url": ref},
                    "response": {"status": "201" if first and position == 0 else "200"},
                }
            )
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "history", "timestamp": _instant(now), "entry": entries}
    )
