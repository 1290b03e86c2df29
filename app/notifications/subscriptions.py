"""The topics this server raises and what it accepts in a Subscription (notifications.md; HL7
Subscriptions R5 Backport IG, profile ``backport-subscription``).

Choices where the page is silent:

- Filters: every ``backport-filter-criteria`` must read ``Type?patient=Patient/{id}`` and all must
  name the same patient (ANDed filters on two patients could never match: 422 rather than a
  subscription that never fires).
- ``channel.payload`` absent means no payload (R4: content ``empty``); present it must be
  ``application/fhir+json``. ``backport-payload-content`` absent means ``id-only``.
- ``backport-timeout`` is 1..120 seconds (default 10); ``backport-heartbeat-period`` at least 1.
- ``channel.header`` entries must be ``Name: value`` with an HTTP token name and no line breaks.
- The endpoint's scheme and host are checked here; whether its address is public is a network
  question asked at create and at every delivery (``app.services.notify``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from app.errors import BusinessRuleViolation, Issue
from app.resources.dates import parse_fhir_date

BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER_CRITERIA: Final = BACKPORT + "backport-filter-criteria"
PAYLOAD_CONTENT: Final = BACKPORT + "backport-payload-content"
HEARTBEAT_PERIOD: Final = BACKPORT + "backport-heartbeat-period"
TIMEOUT: Final = BACKPORT + "backport-timeout"
TOPIC_CANONICAL: Final = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"
SERVER_CAPABILITY: Final = (
    "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
)

_TOPIC_BASE: Final = "http://cocm-api.org/fhir/SubscriptionTopic/"
SAFETY_RISK: Final = _TOPIC_BASE + "safety-risk"
MEASUREMENT_RECORDED: Final = _TOPIC_BASE + "measurement-recorded"
CARE_FLAG_RAISED: Final = _TOPIC_BASE + "care-flag-raised"
BILLING_THRESHOLD_REACHED: Final = _TOPIC_BASE + "billing-threshold-reached"
# notifications.md Topics: topic -> the types its focus can be (full-resource needs read scope on them).
TOPICS: Final[dict[str, tuple[str, ...]]] = {
    SAFETY_RISK: ("QuestionnaireResponse", "Observation"),
    MEASUREMENT_RECORDED: ("Observation",),
    CARE_FLAG_RAISED: ("Patient",),
    BILLING_THRESHOLD_REACHED: ("Encounter",),
}

CONTENTS: Final = ("empty", "id-only", "full-resource")
STATUSES: Final = ("requested", "active", "error", "off")
DEFAULT_TIMEOUT_SECONDS: Final = 10  # notifications.md: backport-timeout default
MAX_TIMEOUT_SECONDS: Final = 120
FHIR_JSON: Final = "application/fhir+json"

_FILTER: Final = re.compile(r"([A-Z][A-Za-z]{1,63})\?patient=Patient/([A-Za-z0-9\-.]{1,64})")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class SubscriptionSpec:
    """What the dispatcher needs from a stored Subscription."""

    topic: str
    status: str
    endpoint: str
    content: str
    patient_id: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    heartbeat_seconds: int | None = None
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    end: datetime | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""


@dataclass(frozen=True)
class RaisedEvent:
    """An event a committed write raises (notifications.md Topics): the topic, the patient it is
    about, the focus as written (type, id, version) and the additional context (``Type/id``)."""

    topic: str
    patient_id: str
    focus_type: str
    focus_id: str
    focus_version: int
    context: tuple[str, ...] = ()


def _refuse(message: str, path: str, code: str = "not-supported") -> BusinessRuleViolation:
    return BusinessRuleViolation(Issue(message, code, expression=(path,)))


def _extensions(node: Any) -> list[dict[str, Any]]:
    found = node.get("extension") if isinstance(node, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _unsigned(channel: dict[str, Any], url: str, name: str) -> int | None:
    values = [
        e.get("valueUnsignedInt", e.get("valuePositiveInt"))
        for e in _extensions(channel)
        if e.get("url") == url
    ]
    if not values:
        return None
    value = values[-1]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _refuse(
            f"{name} must be a positive number of seconds", "Subscription.channel.extension", "value"
        )
    return value


def parse_subscription(data: dict[str, Any]) -> SubscriptionSpec:
    """The spec of a Subscription the R4 model already accepted, or ``BusinessRuleViolation`` (422)
    naming what this server does not support (the scheme against the allowed hosts is
    ``check_scheme``'s)."""
    topic = data.get("criteria")
    if topic not in TOPICS:
        raise _refuse(
            f"criteria must be one of this server's topics: {', '.join(TOPICS)}", "Subscription.criteria"
        )
    patients: set[str] = set()
    for extension in _extensions(data.get("_criteria")):
        if extension.get("url") != FILTER_CRITERIA:
            continue
        value = extension.get("valueString")
        match = _FILTER.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _refuse(
                "a filter criterion must read Type?patient=Patient/{id}", "Subscription.criteria.extension"
            )
        patients.add(match.group(2))
    if len(patients) > 1:
        raise _refuse("the filter criteria name different patients", "Subscription.criteria.extension")
    channel = data.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise _refuse("channel.type must be rest-hook", "Subscription.channel.type")
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or not parts.hostname or parts.scheme not in {"https", "http"}:
        raise _refuse(
            "channel.endpoint must be an absolute https:// URL", "Subscription.channel.endpoint", "value"
        )
    payload = channel.get("payload")
    contents = [
        e.get("valueCode") for e in _extensions(channel.get("_payload")) if e.get("url") == PAYLOAD_CONTENT
    ]
    content = contents[-1] if contents else "id-only"
    if payload is None:
        content = "empty"  # R4: no payload, no content
    elif payload != FHIR_JSON:
        raise _refuse(f"channel.payload must be {FHIR_JSON}", "Subscription.channel.payload")
    if content not in CONTENTS:
        raise _refuse(
            f"payload content must be one of {', '.join(CONTENTS)}", "Subscription.channel.payload.extension"
        )
    headers: list[tuple[str, str]] = []
    for raw in channel.get("header") or []:
        name, colon, value = str(raw).partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name.strip()) or "\r" in value or "\n" in value:
            raise _refuse(
                "each channel.header must read 'Name: value'", "Subscription.channel.header", "value"
            )
        headers.append((name.strip(), value.strip()))
    timeout = _unsigned(channel, TIMEOUT, "backport-timeout") or DEFAULT_TIMEOUT_SECONDS
    if timeout > MAX_TIMEOUT_SECONDS:
        raise _refuse(
            f"backport-timeout is at most {MAX_TIMEOUT_SECONDS} seconds",
            "Subscription.channel.extension",
            "value",
        )
    end_text = data.get("end")
    try:
        end = parse_fhir_date(end_text, ZoneInfo("UTC")).instant if isinstance(end_text, str) else None
    except (ValueError, OverflowError):
        raise _refuse("end must be an instant", "Subscription.end", "value") from None
    status = data.get("status")
    return SubscriptionSpec(
        topic=str(topic),
        status=str(status) if status in STATUSES else "requested",
        endpoint=str(endpoint),
        content=content,
        patient_id=next(iter(patients), None),
        headers=tuple(headers),
        heartbeat_seconds=_unsigned(channel, HEARTBEAT_PERIOD, "backport-heartbeat-period"),
        timeout_seconds=timeout,
        end=end,
    )


def check_scheme(spec: SubscriptionSpec, allowed_hosts: frozenset[str]) -> None:
    """``https://`` always; ``http://`` only for a host in ``COCM_SUBSCRIPTION_ALLOWED_HOSTS``."""
    if urlsplit(spec.endpoint).scheme == "http" and spec.host.lower() not in allowed_hosts:
        raise _refuse(
            "channel.endpoint must use https:// (http:// only for hosts in COCM_SUBSCRIPTION_ALLOWED_HOSTS)",
            "Subscription.channel.endpoint",
            "value",
        )
