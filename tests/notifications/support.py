"""What the notification tests share: a Subscription body as the Backport IG writes it, and a real
HTTP receiver on 127.0.0.1 that records what it gets."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.notifications.subscriptions import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    SAFETY_RISK,
    TIMEOUT,
)


def subscription_body(
    endpoint: str,
    *,
    topic: str = SAFETY_RISK,
    patient: str | None = None,
    content: str | None = "id-only",
    headers: list[str] | None = None,
    heartbeat: int | None = None,
    timeout: int | None = None,
    status: str = "requested",
) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
    if content is not None:
        channel["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]}
    if headers:
        channel["header"] = headers
    extensions = []
    if heartbeat is not None:
        extensions.append({"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat})
    if timeout is not None:
        extensions.append({"url": TIMEOUT, "valueUnsignedInt": timeout})
    if extensions:
        channel["extension"] = extensions
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": status,
        "reason": "PHQ-9 item 9 alerts to the on-call care manager",
        "criteria": topic,
        "channel": channel,
    }
    if patient is not None:
        body["_criteria"] = {
            "extension": [
                {"url": FILTER_CRITERIA, "valueString": f"QuestionnaireResponse?patient=Patient/{patient}"}
            ]
        }
    return body


class Receiver:
    """A rest-hook endpoint: records each POST (path, headers, JSON body) and answers with the
    next status of ``answers`` (200 once they run out)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.delay = 0.0
        self.reply_bytes = 0  # the size of each answer's body
        self.started = 0  # requests that arrived, answered or not yet
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.started += 1
                time.sleep(receiver.delay)
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": json.loads(body),
                            "answered": status,
                            "arrived": arrived,
                        }
                    )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")  # must not be followed
                self.send_header("Content-Length", str(receiver.reply_bytes))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client stopped reading (64 KiB): fine
                    self.wfile.write(b"x" * receiver.reply_bytes)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bundles(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The notification Bundles answered 2xx, of one ``type`` (handshake, event-notification,
        heartbeat) when given."""
        with self.lock:
            found = [r["body"] for r in self.received if 200 <= r["answered"] < 300]
        return [b for b in found if kind is None or notification_type(b) == kind]

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"the receiver did not get what was expected in {timeout} s: {self.received!r}")


def status_parameter(bundle: dict[str, Any], name: str) -> Any:
    parameters = bundle["entry"][0]["resource"]["parameter"]
    found = [p for p in parameters if p["name"] == name]
    if not found:
        return None
    value = found[0]
    return next((v for k, v in value.items() if k.startswith("value")), value.get("part"))


def notification_type(bundle: dict[str, Any]) -> str:
    return str(status_parameter(bundle, "type"))


def event_numbers(bundles: list[dict[str, Any]]) -> list[int]:
    numbers = []
    for bundle in bundles:
        for parameter in bundle["entry"][0]["resource"]["parameter"]:
            if parameter["name"] == "notification-event":
                part = {p["name"]: p for p in parameter["part"]}
                numbers.append(int(part["event-number"]["valueString"]))
    return numbers


@contextmanager
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()
