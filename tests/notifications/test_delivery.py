"""Subscriptions end to end (notifications.md): the app with its real background dispatcher, a
real HTTP receiver on 127.0.0.1, and the writes that must (and must not) raise events.

A "no event" case is followed by a write that does raise one: events arrive in number order, so
when the later one has arrived the earlier write would have arrived before it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.bulk import import_file, import_service
from app.notifications.subscriptions import (
    BILLING_THRESHOLD_REACHED,
    CARE_FLAG_RAISED,
    MEASUREMENT_RECORDED,
    SAFETY_RISK,
)
from app.settings import Settings
from app.store.db import make_sessionmaker
from tests.api.scenario import Clinic, phq9_response
from tests.conftest import FHIR_JSON, Fhir, count_rows
from tests.notifications.support import (
    Receiver,
    event_numbers,
    receiver,
    status_parameter,
    subscription_body,
)

ITEM9 = [1, 1, 1, 1, 1, 1, 1, 1, 2]  # item 9 answered "more than half the days"
NO_ITEM9 = [2, 2, 2, 2, 2, 2, 2, 2, 0]
WHEN = "2026-01-05T10:00:00Z"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


@pytest.fixture
def notifying(make_client: Callable[..., TestClient]) -> Callable[..., TestClient]:
    def make(**overrides: Any) -> TestClient:
        return make_client(
            subscription_allowed_hosts="127.0.0.1",
            notify_poll_seconds=0.05,
            notify_backoff_seconds=0.05,
            public_base_url="https://cocm.example.org",
            **overrides,
        )

    return make


def subscribe(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    response = client.post(
        "/fhir/Subscription", json=body, headers={"Content-Type": FHIR_JSON, **(headers or {})}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def active(client: TestClient, hook: Receiver, body: dict[str, Any]) -> str:
    """A subscription that passed its handshake."""
    sid = subscribe(client, body)
    hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
    wait_status(client, sid, "active")
    return sid


def wait_status(client: TestClient, sid: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/fhir/Subscription/{sid}").json()
        if body["status"] == status:
            return body
        time.sleep(0.02)
    raise AssertionError(f"Subscription/{sid} never became {status}")


def events_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    parameters = bundle["entry"][0]["resource"]["parameter"]
    return [
        {p["name"]: p for p in parameter["part"]}
        for parameter in parameters
        if parameter["name"] == "notification-event"
    ]


# --------------------------------------------------------------------------------- handshake


def test_handshake_then_active(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    sid = subscribe(client, subscription_body(hook.url, headers=["Authorization: Bearer hook-secret"]))
    hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
    [handshake] = hook.bundles("handshake")
    assert handshake["resourceType"] == "Bundle" and handshake["type"] == "history"
    assert status_parameter(handshake, "subscription") == {
        "reference": f"https://cocm.example.org/fhir/Subscription/{sid}"
    }
    assert status_parameter(handshake, "events-since-subscription-start") == "0"
    assert handshake["entry"][0]["request"]["url"].endswith(f"/Subscription/{sid}/$status")
    assert hook.received[0]["headers"]["Authorization"] == "Bearer hook-secret"
    assert hook.received[0]["headers"]["Content-Type"] == "application/fhir+json"
    stored = wait_status(client, sid, "active")
    assert stored["meta"]["versionId"] == "2"  # the server's status change is a new version
    status = client.get(f"/fhir/Subscription/{sid}/$status").json()
    assert status["type"] == "searchset" and status["total"] == 1
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["status"]["valueCode"] == "active"
    assert parameters["type"]["valueCode"] == "query-status"


def test_a_refused_handshake_is_error(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    hook.answers = [500]
    sid = subscribe(client, subscription_body(hook.url))
    wait_status(client, sid, "error")
    status = client.get(f"/fhir/Subscription/{sid}/$status").json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["error"]["valueCodeableConcept"]["text"] == "the endpoint answered 500"
    # the client asks again: a new handshake, accepted this time
    body = {**client.get(f"/fhir/Subscription/{sid}").json(), "status": "requested"}
    assert (
        client.put(f"/fhir/Subscription/{sid}", json=body, headers={"Content-Type": FHIR_JSON}).status_code
        == 200
    )
    wait_status(client, sid, "active")


@pytest.mark.parametrize(
    ("answer", "delay", "error"),
    [
        (307, 0.0, "the endpoint answered 307"),  # a redirect is not followed
        (200, 2.0, "the endpoint did not answer in time"),  # backport-timeout 1 s
    ],
)
def test_redirects_and_timeouts_fail_the_handshake(
    notifying: Callable[..., TestClient], hook: Receiver, answer: int, delay: float, error: str
) -> None:
    client = notifying()
    hook.answers, hook.delay = [answer], delay
    sid = subscribe(client, subscription_body(hook.url, timeout=1))
    wait_status(client, sid, "error")
    status = client.get(f"/fhir/Subscription/{sid}/$status").json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["error"]["valueCodeableConcept"]["text"] == error
    assert [r["path"] for r in hook.received] in ([], ["/hook"])  # never /elsewhere


def test_heartbeats_while_nothing_happens(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    active(client, hook, subscription_body(hook.url, heartbeat=1))
    hook.wait_for(lambda r: len(r.bundles("heartbeat")) == 2, timeout=5)
    beats = hook.bundles("heartbeat")
    assert [status_parameter(b, "events-since-subscription-start") for b in beats] == ["0", "0"]
    assert all(len(b["entry"]) == 1 for b in beats)


def test_logs_carry_no_body_header_or_patient(
    notifying: Callable[..., TestClient], hook: Receiver, capfd: pytest.CaptureFixture[str]
) -> None:
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    hook.answers = [200, 503]  # the handshake, then one failed event: both are logged
    active(
        client,
        hook,
        subscription_body(hook.url, content="full-resource", headers=["Authorization: Bearer hook-secret"]),
    )
    clinic.phq9(pid, WHEN, ITEM9)
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
    logged = capfd.readouterr().err
    assert "delivery failed" in logged  # the failure was logged...
    assert "hook-secret" not in logged and pid not in logged and "Rivera" not in logged  # ...and nothing else


# ------------------------------------------------------------------------------- safety risk


@pytest.mark.parametrize("content", ["empty", "id-only", "full-resource"])
def test_an_item9_response_notifies_once(
    notifying: Callable[..., TestClient], hook: Receiver, content: str
) -> None:
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    sid = active(client, hook, subscription_body(hook.url, content=content))
    response = clinic.phq9(pid, WHEN, ITEM9)
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
    [bundle] = hook.bundles("event-notification")
    assert status_parameter(bundle, "events-since-subscription-start") == "1"
    [event] = events_of(bundle)
    assert event["event-number"]["valueString"] == "1"
    base = "https://cocm.example.org/fhir"
    if content == "empty":
        assert "focus" not in event and len(bundle["entry"]) == 1
    else:
        assert (
            event["focus"]["valueReference"]["reference"] == f"{base}/QuestionnaireResponse/{response['id']}"
        )
        assert event["additional-context"]["valueReference"]["reference"] == f"{base}/Patient/{pid}"
        focus = bundle["entry"][1]
        assert focus["fullUrl"] == f"{base}/QuestionnaireResponse/{response['id']}"
        assert focus["request"] == {"method": "POST", "url": "QuestionnaireResponse"}
        if content == "id-only":
            assert "resource" not in focus and len(bundle["entry"]) == 2
        else:
            assert focus["resource"] == response  # as stored
            assert bundle["entry"][2]["resource"]["id"] == pid
    status = client.get(f"/fhir/Subscription/{sid}/$status").json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["events-since-subscription-start"]["valueString"] == "1"


def test_what_raises_nothing(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    """Item 9 = 0, a retried POST, a rolled-back transaction, a retried PUT: no event. Then an item-9
    response for another patient: event 2, right after event 1."""
    client = notifying()
    fhir = Fhir(client)
    clinic = Clinic(fhir)
    pid, other = clinic.enrolled(), clinic.enrolled("Okafor")
    active(client, hook, subscription_body(hook.url))
    first = phq9_response(pid, WHEN, ITEM9, identifier={"system": "urn:portal", "value": "r-1"})
    assert fhir.post(first).status_code == 201
    clinic.phq9(pid, "2026-01-06T10:00:00Z", NO_ITEM9)  # item 9 = 0
    assert fhir.post(first).status_code == 200  # the network blinked: a retry
    stored = fhir.get("QuestionnaireResponse?identifier=urn:portal|r-1").json()["entry"][0]["resource"]
    assert fhir.put(f"QuestionnaireResponse/{stored['id']}", stored).status_code == 200  # same content again
    rolled_back = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": phq9_response(pid, WHEN, ITEM9),
                "request": {"method": "POST", "url": "QuestionnaireResponse"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": 7},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert client.post("/fhir", json=rolled_back, headers={"Content-Type": FHIR_JSON}).status_code == 400
    clinic.phq9(other, WHEN, ITEM9)
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 2)
    bundles = hook.bundles("event-notification")
    assert event_numbers(bundles) == [1, 2]
    focus = [events_of(b)[0]["additional-context"]["valueReference"]["reference"] for b in bundles]
    assert [ref.rsplit("/", 1)[1] for ref in focus] == [pid, other]


def test_every_way_in_raises_the_same_event(
    notifying: Callable[..., TestClient], hook: Receiver, db: Any, database_url: str, tmp_path: Path
) -> None:
    """A transaction Bundle, a batch Bundle, a conditional update and ``cocm import``: each item-9
    response raises one event, numbered in commit order."""
    client = notifying()
    fhir = Fhir(client)
    pid = Clinic(fhir).enrolled()
    active(client, hook, subscription_body(hook.url))
    for kind in ("transaction", "batch"):
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [
                {
                    "resource": phq9_response(pid, WHEN, ITEM9),
                    "request": {"method": "POST", "url": "QuestionnaireResponse"},
                }
            ],
        }
        assert client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON}).status_code == 200
    conditional = phq9_response(pid, WHEN, ITEM9, identifier={"system": "urn:portal", "value": "c-1"})
    assert fhir.put("QuestionnaireResponse?identifier=urn:portal|c-1", conditional).status_code == 201
    file = tmp_path / "responses.ndjson"
    file.write_text(json.dumps(phq9_response(pid, WHEN, ITEM9)) + "\n")
    settings = Settings(database_url=database_url, subscription_allowed_hosts="127.0.0.1")
    with make_sessionmaker(db)() as session:
        report = import_file(file, import_service(session, settings), settings)
    assert report.created == 1
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 4)
    assert event_numbers(hook.bundles("event-notification")) == [1, 2, 3, 4]


def test_an_item9_change_from_zero_notifies(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    fhir = Fhir(client)
    pid = Clinic(fhir).enrolled()
    active(client, hook, subscription_body(hook.url))
    stored = fhir.create(phq9_response(pid, WHEN, NO_ITEM9))
    changed = {**phq9_response(pid, WHEN, ITEM9), "id": stored["id"]}
    assert fhir.put(f"QuestionnaireResponse/{stored['id']}", changed).status_code == 200
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
    [event] = events_of(hook.bundles("event-notification")[0])
    assert event["focus"]["valueReference"]["reference"].endswith(f"QuestionnaireResponse/{stored['id']}")


def test_filters_and_tenants(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    """A subscription filtered on one patient hears nothing of another; another tenant's
    subscription hears nothing of this tenant."""
    client = notifying(api_keys="key-a:a,key-b:b")
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}

    class Keyed(Fhir):
        def post(self, body: dict[str, Any], **headers: str) -> Any:
            return super().post(body, **a, **headers)

    clinic = Clinic(Keyed(client))
    pid, other = clinic.enrolled(), clinic.enrolled("Okafor")
    with receiver() as other_tenant:
        subscribe(client, subscription_body(other_tenant.url), b)
        other_tenant.wait_for(lambda r: len(r.bundles("handshake")) == 1)
        sid = subscribe(client, subscription_body(hook.url, patient=pid), a)
        hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
        clinic.phq9(other, WHEN, ITEM9)  # filtered out
        clinic.phq9(pid, WHEN, ITEM9)
        hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
        [event] = events_of(hook.bundles("event-notification")[0])
        assert event["additional-context"]["valueReference"]["reference"].endswith(f"Patient/{pid}")
        assert other_tenant.bundles("event-notification") == []
        assert client.get(f"/fhir/Subscription/{sid}/$status", headers=b).status_code == 404
        assert client.get(f"/fhir/Subscription/{sid}/$events", headers=b).status_code == 404


# ----------------------------------------------------------------------- measurement recorded


def test_a_scored_response_records_its_measurement(
    notifying: Callable[..., TestClient], hook: Receiver
) -> None:
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    active(client, hook, subscription_body(hook.url, topic=MEASUREMENT_RECORDED))
    response = clinic.phq9(pid, WHEN, NO_ITEM9)
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
    [event] = events_of(hook.bundles("event-notification")[0])
    derived = client.get(
        "/fhir/Observation", params={"derived-from": f"QuestionnaireResponse/{response['id']}"}
    )
    oid = derived.json()["entry"][0]["resource"]["id"]
    assert event["focus"]["valueReference"]["reference"].endswith(f"/Observation/{oid}")
    bundle = hook.bundles("event-notification")[0]
    parameters = bundle["entry"][0]["resource"]["parameter"]
    refs = [
        p["valueReference"]["reference"].split("/fhir/", 1)[1]
        for parameter in parameters
        if parameter["name"] == "notification-event"
        for p in parameter["part"]
        if p["name"] == "additional-context"
    ]
    assert refs == [f"Patient/{pid}", f"QuestionnaireResponse/{response['id']}"]


def test_the_registry_shows_whether_the_alert_was_delivered(
    notifying: Callable[..., TestClient], hook: Receiver
) -> None:
    client = notifying(timezone="America/Chicago")
    clinic = Clinic(Fhir(client))
    quiet, delivered, pending = clinic.enrolled(), clinic.enrolled("Okafor"), clinic.enrolled("Lee")
    clinic.phq9(quiet, WHEN, ITEM9)  # before any subscription: nobody was told
    active(client, hook, subscription_body(hook.url))
    clinic.phq9(delivered, WHEN, ITEM9)
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
    hook.answers = [503] * 1000
    clinic.phq9(pending, WHEN, ITEM9)
    hook.wait_for(lambda r: r.started >= 3)  # handshake, event 1, a refused try of event 2

    def alert_of(page: str, pid: str) -> str:
        row = page.split(f'data-patient-id="{pid}"', 1)[1].split("</tr>", 1)[0]
        return row.split('class="alert muted">', 1)[1].split("<", 1)[0] if 'class="alert' in row else ""

    page = client.get("/registry", params={"as_of": "2026-01-31"}).text
    assert alert_of(page, quiet) == "no alert sent (no subscription)"
    assert alert_of(page, delivered).startswith("alert delivered 2026-")
    assert alert_of(page, pending).startswith("alert raised 2026-") and alert_of(page, pending).endswith(
        "not yet delivered"
    )


# -------------------------------------------------------------- the whole-picture topics


def focus_and_context(bundle: dict[str, Any]) -> tuple[str, list[str]]:
    [event] = events_of(bundle)
    parameters = bundle["entry"][0]["resource"]["parameter"]
    context = [
        p["valueReference"]["reference"].split("/fhir/", 1)[1]
        for parameter in parameters
        if parameter["name"] == "notification-event"
        for p in parameter["part"]
        if p["name"] == "additional-context"
    ]
    return event["focus"]["valueReference"]["reference"].split("/fhir/", 1)[1], context


def test_billing_thresholds_notify(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    """16 counted minutes reach G2214, 36 reach 99492 (billing.md); 30 and a retry reach nothing."""
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    active(client, hook, subscription_body(hook.url, topic=BILLING_THRESHOLD_REACHED))
    first = clinic.minutes(pid, "2026-01-05T10:00:00Z", 16)  # G2214
    clinic.minutes(pid, "2026-01-06T10:00:00Z", 14)  # 30: G2214 still
    third = clinic.minutes(pid, "2026-01-07T10:00:00Z", 6)  # 36: 99492
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 2)
    found = [focus_and_context(b) for b in hook.bundles("event-notification")]
    assert found == [
        (f"Encounter/{first['id']}", [f"Patient/{pid}"]),
        (f"Encounter/{third['id']}", [f"Patient/{pid}"]),
    ]


def test_a_raised_care_flag_notifies_once(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 30)
    active(client, hook, subscription_body(hook.url, topic=CARE_FLAG_RAISED))
    clinic.phq9(pid, "2026-01-05T11:00:00Z", NO_ITEM9)  # no flag raised
    response = clinic.phq9(pid, "2026-01-06T11:00:00Z", ITEM9)  # safety_risk raised
    clinic.phq9(pid, "2026-01-07T11:00:00Z", ITEM9)  # already raised
    other = clinic.enrolled("Okafor")
    clinic.minutes(other, "2026-01-05T10:00:00Z", 30)
    clinic.phq9(other, "2026-01-06T11:00:00Z", ITEM9)  # the next event, after which nothing else came
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 2)
    found = [focus_and_context(b) for b in hook.bundles("event-notification")]
    assert found[0] == (f"Patient/{pid}", [f"QuestionnaireResponse/{response['id']}"])
    assert found[1][0] == f"Patient/{other}"


# ---------------------------------------------------------------------------- failures


def test_failures_retry_the_same_event_in_order(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    active(client, hook, subscription_body(hook.url))
    hook.answers = [503, 503, 503]
    clinic.phq9(pid, WHEN, ITEM9)
    clinic.phq9(pid, "2026-01-06T10:00:00Z", ITEM9)
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 2)
    sent = [
        event_numbers([r["body"]])[0]
        for r in hook.received
        if r["body"]["entry"][0]["resource"]["parameter"][3]["valueCode"] == "event-notification"
    ]
    assert sent == [1, 1, 1, 1, 2]  # three 503s for event 1, then 1 and 2, nothing skipped
    assert event_numbers(hook.bundles("event-notification")) == [1, 2]


def test_retries_exhausted_is_error_and_events_replay(
    notifying: Callable[..., TestClient], hook: Receiver, db: Any
) -> None:
    client = notifying(notify_retry_hours=0.0001)  # 0.36 s of retries
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    sid = active(client, hook, subscription_body(hook.url))
    hook.answers = [503] * 1000
    first = clinic.phq9(pid, WHEN, ITEM9)
    second = clinic.phq9(pid, "2026-01-06T10:00:00Z", ITEM9)
    wait_status(client, sid, "error")
    status = client.get(f"/fhir/Subscription/{sid}/$status").json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["events-since-subscription-start"]["valueString"] == "2"
    assert parameters["error"]["valueCodeableConcept"]["text"] == "the endpoint answered 503"
    replay = client.get(f"/fhir/Subscription/{sid}/$events", params={"eventsSinceNumber": "1"}).json()
    assert replay["type"] == "history"
    assert status_parameter(replay, "type") == "query-event"
    assert event_numbers([replay]) == [1, 2]
    focus = [e["focus"]["valueReference"]["reference"].rsplit("/", 1)[1] for e in events_of(replay)]
    assert focus == [first["id"], second["id"]]
    only_two = client.get(f"/fhir/Subscription/{sid}/$events", params={"eventsSinceNumber": "2"}).json()
    assert event_numbers([only_two]) == [2]
    assert count_rows(db, "subscription_event") == 2  # nothing lost
    # the receiver is back; the client asks for a new handshake; the missed events follow, in order
    hook.answers = []
    body = {**client.get(f"/fhir/Subscription/{sid}").json(), "status": "requested"}
    assert (
        client.put(f"/fhir/Subscription/{sid}", json=body, headers={"Content-Type": FHIR_JSON}).status_code
        == 200
    )
    hook.wait_for(lambda r: len(r.bundles("event-notification")) == 2)
    assert event_numbers(hook.bundles("event-notification")) == [1, 2]


def test_off_and_a_past_end_stop_delivery(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    off = active(client, hook, subscription_body(hook.url))
    stored = client.get(f"/fhir/Subscription/{off}").json()
    assert (
        client.put(
            f"/fhir/Subscription/{off}", json={**stored, "status": "off"}, headers={"Content-Type": FHIR_JSON}
        ).status_code
        == 200
    )
    with receiver() as ended_hook:
        ended = active(client, ended_hook, subscription_body(ended_hook.url))
        stored = client.get(f"/fhir/Subscription/{ended}").json()
        past = {**stored, "end": "2026-01-01T00:00:00Z"}
        assert (
            client.put(
                f"/fhir/Subscription/{ended}", json=past, headers={"Content-Type": FHIR_JSON}
            ).status_code
            == 200
        )
        with receiver() as live_hook:
            active(client, live_hook, subscription_body(live_hook.url))
            clinic.phq9(pid, WHEN, ITEM9)
            live_hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
        assert ended_hook.bundles("event-notification") == []
    assert hook.bundles("event-notification") == []
    statuses = client.get("/fhir/Subscription/$status").json()
    counts = {
        {p["name"]: p for p in e["resource"]["parameter"]}["subscription"]["valueReference"][
            "reference"
        ].rsplit("/", 1)[1]: {p["name"]: p for p in e["resource"]["parameter"]}[
            "events-since-subscription-start"
        ]["valueString"]
        for e in statuses["entry"]
    }
    assert counts[off] == "0" and counts[ended] == "0"  # nothing recorded for them


def test_a_large_answer_is_read_only_so_far(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    hook.reply_bytes = 1024 * 1024  # the receiver answers 1 MiB; at most 64 KiB are read
    sid = subscribe(client, subscription_body(hook.url))
    wait_status(client, sid, "active")


def test_metadata_lists_subscriptions(notifying: Callable[..., TestClient]) -> None:
    body = notifying().get("/fhir/metadata").json()
    assert (
        "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
        in body["instantiates"]
    )
    [subscription] = [r for r in body["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert {o["name"] for o in subscription["operation"]} == {"status", "events"}
    topics = {e["valueCanonical"] for e in subscription["extension"]}
    assert topics == {SAFETY_RISK, MEASUREMENT_RECORDED, CARE_FLAG_RAISED, BILLING_THRESHOLD_REACHED}
    assert {p["name"] for p in subscription["searchParam"]} >= {"status", "url", "criteria"}


# ----------------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"criteria": "http://cocm-api.org/fhir/SubscriptionTopic/unknown"}, "Subscription.criteria"),
        (
            {"channel": {"type": "websocket", "endpoint": "https://x.example.org/"}},
            "Subscription.channel.type",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "http://hooks.example.org/"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://127.0.0.2/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://10.1.2.3/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://169.254.169.254/"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://localhost/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://[::1]/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://192.168.0.10/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                            "valueString": "Observation?code=44261-6",
                        }
                    ]
                }
            },
            "Subscription.criteria.extension",
        ),
    ],
)
def test_what_is_not_supported_is_422_and_stores_nothing(
    make_client: Callable[..., TestClient], db: Any, change: dict[str, Any], where: str
) -> None:
    client = make_client(notify_in_process=False)  # no COCM_SUBSCRIPTION_ALLOWED_HOSTS
    body = {**subscription_body("http://127.0.0.1:9/hook"), **change}
    response = client.post("/fhir/Subscription", json=body, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == [where]
    assert count_rows(db, "resource") == 0 and count_rows(db, "subscription_state") == 0


@pytest.mark.parametrize(
    ("allowed", "endpoint"),
    [
        ("localhost", "https://localhost/hook"),  # a name resolving to 127.0.0.1, allowed by name
        ("10.1.2.3", "https://10.1.2.3/hook"),  # an address, allowed as such
        ("127.0.0.1", "http://127.0.0.1:9/hook"),  # http:// only for an allowed host
    ],
)
def test_the_setting_allows_a_private_endpoint(
    make_client: Callable[..., TestClient], allowed: str, endpoint: str
) -> None:
    client = make_client(subscription_allowed_hosts=allowed, notify_in_process=False)
    response = client.post(
        "/fhir/Subscription", json=subscription_body(endpoint), headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 201, response.text


def test_search_subscriptions(notifying: Callable[..., TestClient], hook: Receiver) -> None:
    client = notifying()
    sid = active(client, hook, subscription_body(hook.url))
    for query, expected in [
        ({"status": "active"}, [sid]),
        ({"status": "requested"}, []),
        ({"url": hook.url}, [sid]),
        ({"criteria": MEASUREMENT_RECORDED}, []),
    ]:
        found = client.get("/fhir/Subscription", params=query).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == expected, query
